/**
 * Two profiles with different user ids carry the same email. The identity graph links the
 * email to the profile of the first event that carried it and quarantines the second link.
 * So a lookup by email must keep returning that profile when the other one is snapshotted
 * first, and after a SIGKILL and a replay of the log.
 */
import { Metadata } from '@grpc/grpc-js';
import t from 'tap';
import { callUnary, createIngestClient, createProfileClient } from '../../cli/client.js';
import { shardOf } from '../../cluster/routing.js';
import type { RawEvent } from '../../profiles/event.js';
import { rawEventToProto } from '../../profiles/segment-json.js';
import { startNodeProcess } from '../helpers/node-process.js';

const SHARED_EMAIL = 'shared@example.com';
const DEFAULT_SHARDS = 16;

async function ingestAll(server: string, events: RawEvent[]): Promise<number> {
  const client = createIngestClient(server);
  try {
    const response = await callUnary(client.ingestBatch.bind(client), { events: events.map(rawEventToProto), batchId: '' }, new Metadata());
    return response.accepted;
  } finally {
    client.close();
  }
}

async function profileIdByEmail(server: string): Promise<string | undefined> {
  const client = createProfileClient(server);
  try {
    const response = await callUnary(client.getProfile.bind(client), { identifier: { type: 'email', value: SHARED_EMAIL } }, new Metadata());
    return response.profile?.profileId;
  } finally {
    client.close();
  }
}

let nextSecond = 0;

/** An identify event carrying the shared email, each one a second later than the previous. */
function identify(userId: string, messageId: string): RawEvent {
  nextSecond += 1;
  const timestamp = new Date(Date.UTC(2024, 0, 1, 0, 0, nextSecond)).toISOString();
  return { type: 'identify', userId, messageId, timestamp, traits: { email: SHARED_EMAIL } };
}

t.test('chaos - email owner survives a later snapshot', async (t) => {
  const node = await startNodeProcess(t.testdir());
  t.teardown(() => node.stop('SIGKILL'));

  t.equal(await ingestAll(node.address, [identify('alice', 'owner-1')]), 1, 'alice carries the email first');
  t.equal(await ingestAll(node.address, [identify('bob', 'owner-2')]), 1, 'bob carries the same email second');
  t.equal(await profileIdByEmail(node.address), 'user:alice', 'the email points to alice before any snapshot');

  // 500 applied events make bob's snapshot due at once (snapshotEveryMessages), long
  // before alice's 5 s snapshot interval passes.
  const bobEvents = Array.from({ length: 499 }, (_, i): RawEvent => ({ type: 'track', userId: 'bob', messageId: `bob-${i}`, event: 'Page Viewed' }));
  t.equal(await ingestAll(node.address, bobEvents), 499, 'bob gets enough events for an early snapshot');
  await new Promise((resolve) => setTimeout(resolve, 1_000));

  t.equal(await profileIdByEmail(node.address), 'user:alice', 'the email still points to alice after bob is snapshotted');
});

t.test('chaos - email owner survives SIGKILL replay', async (t) => {
  // Replay after a restart starts the partitions in shard order, so the first carrier is
  // put on the higher shard. An owner decided while replaying in shard order instead of
  // before the log would give the email to the second carrier.
  const [first, second] = shardOf('user:alice', DEFAULT_SHARDS) > shardOf('user:bob', DEFAULT_SHARDS) ? ['alice', 'bob'] : ['bob', 'alice'];
  t.not(shardOf(`user:${first}`, DEFAULT_SHARDS), shardOf(`user:${second}`, DEFAULT_SHARDS), 'the two users are on different shards');

  const dataDir = t.testdir();
  const node = await startNodeProcess(dataDir);
  t.teardown(() => node.stop('SIGKILL'));
  t.equal(await ingestAll(node.address, [identify(first, 'replay-1')]), 1, `${first} carries the email first`);
  t.equal(await ingestAll(node.address, [identify(second, 'replay-2')]), 1, `${second} carries the same email second`);
  t.equal(await profileIdByEmail(node.address), `user:${first}`, `the email points to ${first} before the kill`);

  // The node is killed before its first snapshot interval (5 s), so the profiles exist only in the log.
  t.equal(await node.stop('SIGKILL'), 'SIGKILL', 'the node is killed');
  const restarted = await startNodeProcess(dataDir);
  t.teardown(() => restarted.stop('SIGKILL'));

  t.equal(await profileIdByEmail(restarted.address), `user:${first}`, `the email still points to ${first} after the replay`);
  t.equal(await restarted.stop('SIGTERM'), 0, 'SIGTERM drains and exits 0');
});
