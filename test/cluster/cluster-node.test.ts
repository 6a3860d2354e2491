import t, { type Test } from 'tap';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClusterNode } from '../../cluster/cluster-node.js';
import { shardOf } from '../../cluster/routing.js';
import type { ClusterNodeOptions } from '../../cluster/cluster-options.js';
import { createLogger } from '../../common/logger.js';
import type { RawEvent } from '../../profiles/event.js';
import { startNatsServer } from '../helpers/nats-server.js';

const track = (userId: string, messageId: string): RawEvent => ({ type: 'track', event: 'Viewed', userId, messageId, properties: { value: 1 } });
const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });

/** Fast timings so shards settle within seconds. */
const FAST: Partial<ClusterNodeOptions> = {
  shards: 8,
  leaseTtlMs: 3_000,
  leaseRenewIntervalMs: 500,
  heartbeatIntervalMs: 300,
  memberTimeoutMs: 1_500,
  rebalanceStableForMs: 500,
  checkpointIntervalMs: 200,
  queryTimeoutMs: 20_000,
  logger,
};

async function waitUntil(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

function hostedShards(nodes: ClusterNode[]): number {
  return nodes.reduce((sum, node) => sum + node.status().hosted.length, 0);
}

t.test('cluster node - NATS without JetStream', async (t) => {
  const server = await startNatsServer({ jetstream: false });
  t.teardown(() => server.stop());

  await t.rejects(ClusterNode.start({ ...FAST, servers: [server.url], nodeId: 'a', dataDir: t.testdir() }), {
    code: 'INVALID_CONFIG',
    message: `JetStream is not enabled on the NATS servers at ${server.url}; start nats-server with -js, or add jetstream {} to its configuration`,
  });
});

t.test('cluster node - three nodes share shards and answer for every customer', { timeout: 120_000 }, async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());

  const nodes: ClusterNode[] = [];
  t.teardown(() => Promise.all(nodes.map((node) => node.abort())));
  const root = t.testdir();
  for (const nodeId of ['a', 'b', 'c']) {
    nodes.push(await ClusterNode.start({ ...FAST, servers: [server.url], nodeId, dataDir: path.join(root, nodeId) }));
  }
  await waitUntil(() => hostedShards(nodes) === 8 && nodes.every((node) => node.status().hosted.length > 0), 'every shard hosted and every node hosting');

  const expected = new Map<string, number>();
  for (let batch = 0; batch < 20; batch++) {
    const events = Array.from({ length: 50 }, (_, i) => {
      const userId = `u${(batch * 50 + i) % 97}`;
      expected.set(userId, (expected.get(userId) ?? 0) + 1);
      return track(userId, `m-${batch}-${i}`);
    });
    const results = await nodes[batch % 3].ingest('w', events);
    t.ok(results.every((result) => result.status === 'accepted'), `batch ${batch} accepted`);
  }

  for (const [userId, count] of expected) {
    const profile = await nodes[Number(userId.slice(1)) % 3].getProfile('w', { type: 'user_id', value: userId });
    t.equal(profile.eventCount, count, `${userId} has every event`);
  }

  const resent = await nodes[1].ingest('w', [track('u1', 'm-0-1')]);
  t.equal(resent[0].status, 'duplicate', 'a resent messageId is a duplicate');

  const identify: RawEvent = { type: 'identify', userId: 'u5', messageId: 'id-1', traits: { email: 'ada@example.com' }, timestamp: '2026-01-01T00:00:00Z' };
  const later: RawEvent = { type: 'identify', userId: 'u6', messageId: 'id-2', traits: { email: 'ada@example.com' }, timestamp: '2026-02-01T00:00:00Z' };
  const anonymous: RawEvent = { type: 'page', anonymousId: 'visitor-9', messageId: 'anon-1', name: 'Home' };
  await nodes[0].ingest('w', [later]);
  await nodes[2].ingest('w', [identify, anonymous]);

  for (const node of nodes) {
    const byEmail = await node.getProfile('w', { type: 'email', value: 'ada@example.com' });
    t.equal(byEmail.profileId, 'user:u6', `node ${node.nodeId} finds the profile of the first event that carried the email`);
    const byAnonymousId = await node.getProfile('w', { type: 'anonymous_id', value: 'visitor-9' });
    t.equal(byAnonymousId.profileId, 'anon:visitor-9', `node ${node.nodeId} finds an anonymous profile`);
  }
  await t.rejects(nodes[1].getProfile('w', { type: 'email', value: 'nobody@example.com' }), { code: 'PROFILE_NOT_FOUND' });
  const pendingLinks = await nodes[1].identityAdmin.listQuarantine('w', 'pending');
  t.match(pendingLinks, [{ reason: 'MERGE_PROTECTED', profileId: 'user:u5', otherProfileId: 'user:u6' }], "u5's link to the email is held: user ids are merge-protected");
});

/** Sends `batches` batches of 20 events for 50 customers to random running nodes; returns the acknowledged count per customer. */
async function sendLoad(nodes: () => ClusterNode[], batches: number, prefix: string, expected: Map<string, number>): Promise<void> {
  for (let batch = 0; batch < batches; batch++) {
    const events = Array.from({ length: 20 }, (_, i) => track(`u${(batch * 20 + i) % 50}`, `${prefix}-${batch}-${i}`));
    const running = nodes().filter((node) => node.state === 'running');
    const target = running[batch % running.length];
    try {
      const results = await target.ingest('w', events);
      results.forEach((result, i) => {
        if (result.status === 'accepted') expected.set(events[i].userId as string, (expected.get(events[i].userId as string) ?? 0) + 1);
      });
    } catch (error) {
      // The node began to drain after it was picked: nothing of the batch was acknowledged.
      if ((error as { code?: string }).code !== 'NODE_UNAVAILABLE') throw error;
    }
  }
}

async function checkCounts(t: Test, node: ClusterNode, expected: Map<string, number>): Promise<void> {
  const wrong: string[] = [];
  for (const [userId, count] of expected) {
    const profile = await node.getProfile('w', { type: 'user_id', value: userId });
    if (profile.eventCount !== count) wrong.push(`${userId}: ${profile.eventCount} applied, ${count} acknowledged`);
  }
  t.same(wrong, [], `every one of ${expected.size} customers has exactly its acknowledged events`);
}

t.test('cluster node - a resend after the duplicate window is not applied again', { timeout: 120_000 }, async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());

  const nodes: ClusterNode[] = [];
  t.teardown(() => Promise.all(nodes.map((node) => node.abort())));
  const root = t.testdir();
  for (const nodeId of ['a', 'b']) {
    nodes.push(await ClusterNode.start({ ...FAST, duplicateWindowMs: 1_000, servers: [server.url], nodeId, dataDir: path.join(root, nodeId) }));
  }
  await waitUntil(() => hostedShards(nodes) === 8 && nodes.every((node) => node.status().hosted.length > 0), 'every shard hosted and every node hosting');

  // More events than the 32 messageIds an embedded profile keeps.
  const events = Array.from({ length: 60 }, (_, i) => track('resender', `resend-${i}`));
  const first = await nodes[0].ingest('w', events);
  t.ok(first.every((result) => result.status === 'accepted'), 'the first send is accepted');
  await sleep(1_500);

  const resent = await nodes[1].ingest('w', events);
  t.ok(resent.every((result) => result.status === 'accepted'), 'after the duplicate window JetStream stores the resend');
  const profile = await nodes[1].getProfile('w', { type: 'user_id', value: 'resender' });
  t.equal(profile.eventCount, 60, 'the owner does not apply a resent event');

  const shard = shardOf('user:resender', 8);
  const owner = nodes.find((node) => node.status().hosted.some((host) => host.shard === shard)) as ClusterNode;
  const survivor = nodes.find((node) => node !== owner) as ClusterNode;
  await owner.drain({ timeoutMs: 20_000 });
  await waitUntil(() => hostedShards([survivor]) === 8, 'the remaining node hosting every shard');

  await survivor.ingest('w', events);
  const moved = await survivor.getProfile('w', { type: 'user_id', value: 'resender' });
  t.equal(moved.eventCount, 60, "the shard's next owner does not apply a resent event either");
});

t.test('cluster node - a draining node hands its shards off under load', { timeout: 120_000 }, async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());

  const nodes: ClusterNode[] = [];
  t.teardown(() => Promise.all(nodes.map((node) => node.abort())));
  const root = t.testdir();
  for (const nodeId of ['a', 'b', 'c']) nodes.push(await ClusterNode.start({ ...FAST, servers: [server.url], nodeId, dataDir: path.join(root, nodeId) }));
  await waitUntil(() => hostedShards(nodes) === 8 && nodes.every((node) => node.status().hosted.length > 0), 'every shard hosted');

  // A customer on a shard of the draining node: after the drain only the published claim finds it by email.
  const drainingShards = new Set(nodes[0].status().hosted.map((host) => host.shard));
  const movingUser = Array.from({ length: 200 }, (_, i) => `mover${i}`).find((userId) => drainingShards.has(shardOf(`user:${userId}`, 8))) as string;
  await nodes[1].ingest('w', [{ type: 'identify', userId: movingUser, messageId: 'mover-identify', traits: { email: 'mover@example.com' } }]);

  const expected = new Map<string, number>();
  const load = sendLoad(() => nodes, 200, 'drain', expected);
  await sleep(200);
  await nodes[0].drain({ timeoutMs: 20_000 });
  await load;

  t.equal(nodes[0].state, 'stopped');
  await waitUntil(() => hostedShards(nodes.slice(1)) === 8, 'the two remaining nodes hosting every shard');
  await checkCounts(t, nodes[1], expected);
  const mover = await nodes[2].getProfile('w', { type: 'email', value: 'mover@example.com' });
  t.equal(mover.profileId, `user:${movingUser}`, 'a moved profile is found by email through the published claim');
});

t.test('cluster node - survivors take over the shards of a stopped node', { timeout: 120_000 }, async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());

  const nodes: ClusterNode[] = [];
  t.teardown(() => Promise.all(nodes.map((node) => node.abort())));
  const root = t.testdir();
  for (const nodeId of ['a', 'b', 'c']) nodes.push(await ClusterNode.start({ ...FAST, servers: [server.url], nodeId, dataDir: path.join(root, nodeId) }));
  await waitUntil(() => hostedShards(nodes) === 8 && nodes.every((node) => node.status().hosted.length > 0), 'every shard hosted');

  const expected = new Map<string, number>();
  await sendLoad(() => nodes, 50, 'before', expected);
  // Abort writes nothing more and releases nothing: like a crash, the leases must expire.
  const lostShards = nodes[2].status().hosted.map((host) => host.shard);
  await nodes[2].abort();
  await sendLoad(() => nodes.slice(0, 2), 50, 'after', expected);

  await waitUntil(() => hostedShards(nodes.slice(0, 2)) === 8, `shards ${lostShards.join(', ')} taken over`);
  await checkCounts(t, nodes[0], expected);
});

function loads(node: ClusterNode): { local: number; nats: number } {
  return node.status().hosted.reduce((sum, host) => ({ local: sum.local + host.loads.local, nats: sum.nats + host.loads.nats }), { local: 0, nats: 0 });
}

t.test('cluster node - a restart after a handoff loads profiles from local RocksDB', { timeout: 120_000 }, async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const dataDir = t.testdir();
  const options = { ...FAST, servers: [server.url], nodeId: 'solo', dataDir };

  const first = await ClusterNode.start(options);
  await waitUntil(() => first.status().hosted.length === 8, 'every shard hosted');
  const expected = new Map<string, number>();
  await sendLoad(() => [first], 20, 'first', expected);
  await first.drain({ timeoutMs: 10_000 });

  const second = await ClusterNode.start(options);
  t.teardown(() => second.abort());
  await waitUntil(() => second.status().hosted.length === 8, 'every shard hosted again');
  await checkCounts(t, second, expected);
  t.same(loads(second), { local: expected.size, nats: 0 }, 'every profile loads from its current local snapshot');

  // An abort ends the tenures without a handoff, so the next run cannot trust local snapshots.
  await sendLoad(() => [second], 10, 'second', expected);
  await second.abort();
  const third = await ClusterNode.start(options);
  t.teardown(() => third.abort());
  await waitUntil(() => third.status().hosted.length === 8, 'every shard hosted a third time', 60_000);
  await checkCounts(t, third, expected);
  t.same(loads(third), { local: 0, nats: expected.size }, 'after a crash every profile loads from NATS');
});
