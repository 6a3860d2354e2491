/**
 * A profile whose snapshot is larger than NATS's max_payload. Its snapshot is stored in
 * parts, queries from other nodes get their replies in parts, and the profile survives a
 * handoff whole. test/cluster/snapshot-store.test.ts and shard-rpc.test.ts cover the parts
 * themselves.
 */
import path from 'node:path';
import t from 'tap';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { ClusterNode } from '../../cluster/cluster-node.js';
import type { ClusterNodeOptions } from '../../cluster/cluster-options.js';
import { RECORD_PARTS_STREAM } from '../../cluster/nats/jetstream-event-log.js';
import { SNAPSHOT_PARTS_STREAM } from '../../cluster/nats/snapshot-store.js';
import { createLogger } from '../../common/logger.js';
import type { RawEvent } from '../../profiles/event.js';
import { startNatsServer } from '../helpers/nats-server.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });
const MAX_PAYLOAD_BYTES = 65_536;

/** Returns an identify with three 8,000-character traits (about 24 KB), under the event limit and max_payload; four of them make a profile over it. */
function bigIdentify(index: number): RawEvent {
  const traits = Object.fromEntries([0, 1, 2].map((slot) => [`note_${index}_${slot}`, 'x'.repeat(8_000)]));
  return { type: 'identify', userId: 'big', messageId: `big-${index}`, traits };
}

async function waitUntil(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

t.test('oversized snapshot - a profile over max_payload is persisted, served and handed off whole', { timeout: 120_000 }, async (t) => {
  const server = await startNatsServer({ maxPayloadBytes: MAX_PAYLOAD_BYTES });
  t.teardown(() => server.stop());
  const root = t.testdir();
  const options = (nodeId: string): ClusterNodeOptions => ({
    servers: [server.url],
    nodeId,
    dataDir: path.join(root, nodeId),
    shards: 2,
    leaseTtlMs: 3_000,
    leaseRenewIntervalMs: 500,
    heartbeatIntervalMs: 300,
    memberTimeoutMs: 1_500,
    rebalanceStableForMs: 500,
    handoffTimeoutMs: 2_000,
    logger,
  });

  const first = await ClusterNode.start(options('first'));
  t.teardown(() => first.abort());
  await waitUntil(() => first.status().hosted.length === 2, 'the first node hosts both shards');

  const results = await first.ingest('w', [0, 1, 2, 3].map(bigIdentify));
  t.ok(results.every((result) => result.status === 'accepted'), 'each event fits max_payload and is stored');
  await first.ingest('w', [{ type: 'track', userId: 'small', messageId: 'small-1', event: 'Viewed' }]);

  const second = await ClusterNode.start(options('second'));
  t.teardown(() => second.abort());
  await waitUntil(() => first.status().hosted.length === 1 && second.status().hosted.length === 1, 'each node hosts one shard');

  for (const node of [first, second]) {
    const big = await node.getProfile('w', { type: 'user_id', value: 'big' });
    t.equal(big.eventCount, 4, `node ${node.nodeId} serves the big profile, from its owner or in parts from the other node`);
    t.equal(Object.keys(big.traits).length, 12, 'with every trait');
  }
  const startedMs = Date.now();
  await first.drain({ timeoutMs: 10_000 });
  t.equal(first.state, 'stopped');
  t.ok(Date.now() - startedMs < 10_000, `the drain hands both shards over within its timeout (${Date.now() - startedMs} ms)`);
  await waitUntil(() => second.status().hosted.length === 2, 'the second node hosts both shards');
  const connection = await connect({ servers: server.url });
  t.teardown(() => connection.close());
  const jsm = await jetstreamManager(connection);
  t.ok((await jsm.streams.info(SNAPSHOT_PARTS_STREAM)).state.messages > 0, 'the big snapshot is stored in parts');

  const handedOver = await second.getProfile('w', { type: 'user_id', value: 'big' });
  t.equal(handedOver.eventCount, 4, 'the new owner has every event of the big profile');
  t.equal(Object.keys(handedOver.traits).length, 12);
  t.equal((await second.getProfile('w', { type: 'user_id', value: 'small' })).eventCount, 1);
});

t.test('oversized snapshot - records over max_payload go to the log in parts', { timeout: 120_000 }, async (t) => {
  const server = await startNatsServer({ maxPayloadBytes: MAX_PAYLOAD_BYTES });
  t.teardown(() => server.stop());
  const node = await ClusterNode.start({ servers: [server.url], nodeId: 'solo', dataDir: path.join(t.testdir(), 'solo'), shards: 2, logger });
  t.teardown(() => node.abort());
  await waitUntil(() => node.status().hosted.length === 2, 'the node hosts both shards');

  // Each 0.1 takes 9 bytes as msgpack and 4 as JSON, so this event passes the JSON size limit but not max_payload.
  const properties = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`series_${i}`, Array.from({ length: 250 }, () => 0.1)]));
  const [dense] = await node.ingest('w', [{ type: 'track', userId: 'dense', messageId: 'dense-1', event: 'Measured', properties }]);
  t.equal(dense.status, 'accepted', 'an event larger as msgpack than max_payload is stored');
  t.equal((await node.getProfile('w', { type: 'user_id', value: 'dense' })).eventCount, 1, 'and applied');

  const bigVisitor = [4, 5, 6, 7].map((index): RawEvent => ({ ...bigIdentify(index), userId: undefined, anonymousId: 'visitor', messageId: `visitor-${index}` }));
  const results = await node.ingest('w', [...[0, 1, 2, 3].map(bigIdentify), ...bigVisitor]);
  t.ok(results.every((result) => result.status === 'accepted'), 'two profiles over max_payload are stored');
  await node.ingest('w', [{ type: 'track', userId: 'big', anonymousId: 'visitor', messageId: 'join', event: 'Signed In' }]);

  const merged = await node.getProfile('w', { type: 'anonymous_id', value: 'visitor' });
  t.equal(merged.eventCount, 9, 'the merge hands the whole big profile to its survivor');
  t.equal(Object.keys(merged.traits).length, 24, 'with the traits of both');
  const connection = await connect({ servers: server.url });
  t.teardown(() => connection.close());
  const jsm = await jetstreamManager(connection);
  t.ok((await jsm.streams.info(RECORD_PARTS_STREAM)).state.messages > 0, 'the merge state went to the log in parts');

  await node.drain({ timeoutMs: 10_000 });
  t.equal(node.state, 'stopped', 'a drain persists every profile of both shards');
});

t.test('oversized snapshot - a node does not start on a server with a tiny max_payload', async (t) => {
  const server = await startNatsServer({ maxPayloadBytes: 8_192 });
  t.teardown(() => server.stop());

  await t.rejects(ClusterNode.start({ servers: [server.url], nodeId: 'tiny', dataDir: path.join(t.testdir(), 'tiny'), shards: 2, logger }), {
    code: 'INVALID_CONFIG',
    message: "the NATS server's max_payload is 8192 bytes, below the 16384 that rtcdp needs; raise it in the NATS servers' configuration (its default is 1048576)",
  });
});
