/**
 * Segments in cluster mode. Definitions applied through one node reach every node through
 * NATS KV, and each shard's owner evaluates its profiles. Queries through any node show the
 * computed traits and memberships, and a durable timer on the owner fires a time-based exit.
 */
import path from 'node:path';
import t from 'tap';
import { ClusterNode } from '../../cluster/cluster-node.js';
import { shardOf } from '../../cluster/routing.js';
import type { ClusterNodeOptions } from '../../cluster/cluster-options.js';
import { createLogger } from '../../common/logger.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import type { StoredActivation } from '../../profiles/activation-log.js';
import type { RawEvent } from '../../profiles/event.js';
import { startClusterNodes, waitFor } from '../helpers/cluster-nodes.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });
const HOUR_MS = 3_600_000;
const WORKSPACE = 'w';

const FAST: Partial<ClusterNodeOptions> & { shards: number } = {
  shards: 6,
  leaseTtlMs: 3_000,
  leaseRenewIntervalMs: 500,
  heartbeatIntervalMs: 300,
  memberTimeoutMs: 1_500,
  rebalanceStableForMs: 500,
  checkpointIntervalMs: 200,
  evaluationTimerIntervalMs: 100,
  queryTimeoutMs: 20_000,
  actors: { snapshotIntervalMs: 50 },
  logger,
};

const DEFINITIONS = `
apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: orders_1h }
spec: { kind: count, event: Order Completed, window: { hours: 1 } }
---
apiVersion: rtcdp/v1
kind: Segment
metadata: { name: recent_buyer }
spec: { condition: 'computed.orders_1h >= 1' }
---
apiVersion: rtcdp/v1
kind: DecisionRule
metadata: { name: thanks }
spec: { eligibility: '"recent_buyer" in segments', caps: [{ max: 1, window: { days: 1 } }] }
`;

const order = (userId: string, messageId: string, timestampMs: number): RawEvent => ({
  type: 'track',
  event: 'Order Completed',
  userId,
  messageId,
  timestamp: new Date(timestampMs).toISOString(),
});

async function activationsOf(node: ClusterNode): Promise<StoredActivation[]> {
  return (await node.activations.list(WORKSPACE, { limit: 1_000 })).activations;
}

t.test('cluster segments - owners evaluate, any node answers, timers exit', { timeout: 120_000 }, async (t) => {
  const nodes = await startClusterNodes(t, ['a', 'b'], FAST);

  const outcome = await new DefinitionRegistry(nodes[0].definitionStore).apply(WORKSPACE, [{ name: 'definitions.yaml', content: DEFINITIONS }]);
  t.same(outcome.issues, []);

  const users = Array.from({ length: 12 }, (_, i) => `u${i}`);
  const nowMs = Date.now();
  // u0's order leaves the one-hour window about 20 s from now; the others stay inside it.
  await nodes[1].ingest(
    WORKSPACE,
    users.map((userId, i) => order(userId, `o-${userId}`, i === 0 ? nowMs - HOUR_MS + 20_000 : nowMs)),
  );

  // u0 is left out: by the time of its query its order may have left the window.
  for (const [i, userId] of users.entries()) {
    if (i === 0) continue;
    const profile = await nodes[i % 2].getProfile(WORKSPACE, { type: 'user_id', value: userId });
    t.same(profile.computedValues, { orders_1h: 1 }, `${userId}: the computed trait through node ${nodes[i % 2].nodeId}`);
    t.same(Object.keys(profile.segments), ['recent_buyer'], `${userId}: the membership through node ${nodes[i % 2].nodeId}`);
  }

  const activations = await waitFor(
    () => activationsOf(nodes[0]),
    (list) => list.length >= users.length + 1,
    'an entry per customer and the exit of u0',
    60_000,
  );
  const entries = activations.filter((activation) => activation.type === 'segment.entered').map((activation) => activation.profileId);
  t.same(entries.sort(), users.map((userId) => `user:${userId}`).sort(), 'each customer entered once');
  const exits = activations.filter((activation) => activation.type === 'segment.exited');
  t.same(
    exits.map((activation) => [activation.profileId, activation.cause.kind]),
    [['user:u0', 'timer']],
  );

  t.same(await activationsOf(nodes[1]), await activationsOf(nodes[0]), 'every node serves the same activation stream');
  const sequences = activations.map((activation) => activation.sequence);
  t.same(sequences, [...sequences].sort((a, b) => a - b), 'in stream order');

  const u0 = await nodes[0].getProfile(WORKSPACE, { type: 'user_id', value: 'u0' });
  t.same(u0.segments, {}, 'u0 left the segment without a new event');

  // Decide calls through both nodes reach the owner's actor, so a cap of one holds.
  const u5 = { type: 'user_id', value: 'u5' };
  const receipts = await Promise.all(Array.from({ length: 6 }, (_, i) => nodes[i % 2].decide(WORKSPACE, u5, { channel: '', context: {} })));
  t.equal(receipts.filter((receipt) => receipt.chosen?.rule === 'thanks').length, 1, 'one decision passes the cap');
  t.equal((await nodes[0].listReceipts(WORKSPACE, u5)).length, 6, 'every call left a receipt');
  // A reader waiting on one node wakes for an activation produced on whichever node owns the profile.
  const { visibleSequence } = await nodes[1].activations.list(WORKSPACE, { afterSequence: 0, limit: 1 });
  const woke = nodes[1].activations.waitBeyond(WORKSPACE, visibleSequence, AbortSignal.timeout(20_000));
  await nodes[0].ingest(WORKSPACE, [order('u99', 'o-u99', Date.now())]);
  await woke;
  const page = await nodes[1].activations.list(WORKSPACE, { afterSequence: visibleSequence });
  t.same(
    page.activations.map((activation) => [activation.type, activation.profileId]),
    [['segment.entered', 'user:u99']],
  );

  const late = await nodes[1].decide(WORKSPACE, { type: 'user_id', value: 'u0' }, { channel: '', context: {} });
  t.same(
    late.candidates.map((candidate) => candidate.outcome),
    ['not_eligible'],
    'u0 is no longer eligible',
  );
});

t.test('cluster segments - a time-based exit fires on the new owner after a handoff', { timeout: 120_000 }, async (t) => {
  const nodes = await startClusterNodes(t, ['a', 'b'], FAST);
  await new DefinitionRegistry(nodes[0].definitionStore).apply(WORKSPACE, [{ name: 'definitions.yaml', content: DEFINITIONS }]);

  // The order leaves the one-hour window 15 s from now, after the handoff below.
  await nodes[0].ingest(WORKSPACE, [order('late', 'o-late', Date.now() - HOUR_MS + 15_000)]);
  await waitFor(() => activationsOf(nodes[0]), (list) => list.some((activation) => activation.profileId === 'user:late'), 'the entry');

  // Drain whichever node owns the profile's shard: the other one takes the shard and its timer.
  const shard = shardOf('user:late', 6);
  const owner = nodes.find((node) => node.status().hosted.some((hosted) => hosted.shard === shard));
  const survivor = nodes.find((node) => node !== owner) as ClusterNode;
  await owner?.drain();
  nodes.splice(nodes.indexOf(owner as ClusterNode), 1);
  await waitFor(async () => survivor.status().hosted.length, (hosted) => hosted === 6, 'the survivor hosting every shard');

  const list = await waitFor(
    () => activationsOf(survivor),
    (found) => found.some((activation) => activation.type === 'segment.exited'),
    'the exit on the new owner',
    60_000,
  );
  const exit = list.find((activation) => activation.type === 'segment.exited');
  t.equal(exit?.profileId, 'user:late');
  t.equal(exit?.cause.kind, 'timer', 'the timer fired without a new event');
});
