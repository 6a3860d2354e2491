/**
 * Computed traits and segments evaluated inside the profile actors of an embedded node on
 * real RocksDB: entries and exits on events, exits on durable timers, the activation log
 * across restarts and crashes, and definition changes without a restart.
 */
import t from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import type { StoredActivation } from '../../profiles/activation-log.js';
import type { RawEvent } from '../../profiles/event.js';

const WORKSPACE = 'w';
const HOUR_MS = 3_600_000;
const user = (value: string) => ({ type: 'user_id', value });

const DEFINITIONS = `
apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: orders_1h }
spec: { kind: count, event: Order Completed, window: { hours: 1 } }
---
apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: revenue }
spec: { kind: sum, event: Order Completed, property: revenue }
---
apiVersion: rtcdp/v1
kind: Segment
metadata: { name: recent_buyer }
spec: { condition: 'computed.orders_1h >= 1' }
---
apiVersion: rtcdp/v1
kind: Segment
metadata: { name: pro }
spec: { condition: 'traits.plan == "pro"' }
`;

function order(userId: string, messageId: string, timestampMs: number, revenue = 10): RawEvent {
  return { type: 'track', event: 'Order Completed', userId, messageId, timestamp: new Date(timestampMs).toISOString(), properties: { revenue } };
}

function identify(userId: string, messageId: string, plan: string): RawEvent {
  return { type: 'identify', userId, messageId, traits: { plan } };
}

async function apply(node: RtcdpNode, content: string, prune = false): Promise<void> {
  const outcome = await new DefinitionRegistry(node.definitionStore).apply(WORKSPACE, [{ name: 'definitions.yaml', content }], { prune });
  if (outcome.issues.length > 0) throw new Error(`definitions rejected: ${JSON.stringify(outcome.issues)}`);
}

async function activations(node: RtcdpNode): Promise<StoredActivation[]> {
  return (await node.activations.list(WORKSPACE, { limit: 1_000 })).activations;
}

/** Polls the activation log until `done` holds, for at most `timeoutMs`. */
async function waitForActivations(node: RtcdpNode, done: (list: StoredActivation[]) => boolean, timeoutMs = 10_000): Promise<StoredActivation[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list = await activations(node);
    if (done(list) || Date.now() > deadline) return list;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const summary = (list: StoredActivation[]) => list.map((activation) => `${activation.type} ${activation.name} ${activation.profileId} ${activation.cause.kind}`);

t.test('segments - an event enters a segment, and a durable timer exits it when the order leaves the window', async (t) => {
  const node = await RtcdpNode.start({ dataDir: t.testdir(), evaluationTimerIntervalMs: 50, actors: { snapshotIntervalMs: 20 } });
  t.teardown(() => node.drain());
  await apply(node, DEFINITIONS);

  // The order leaves the one-hour window about 1.5 s from now.
  const placedAtMs = Date.now() - HOUR_MS + 1_500;
  await node.ingest(WORKSPACE, [order('u1', 'o1', placedAtMs, 25.5)]);

  const profile = await node.getProfile(WORKSPACE, user('u1'));
  t.same(profile.computedValues, { orders_1h: 1, revenue: 25.5 }, 'computed traits valued at query time');
  t.same(Object.keys(profile.segments), ['recent_buyer']);
  t.ok(profile.nextEvaluationMs >= placedAtMs + HOUR_MS, 'the profile is due again when the order leaves the window');

  const list = await waitForActivations(node, (found) => found.length >= 2);
  t.same(summary(list), ['segment.entered recent_buyer user:u1 event', 'segment.exited recent_buyer user:u1 timer']);
  t.same(
    list.map((activation) => activation.sequence),
    [1, 2],
  );
  t.ok(list[1].atMs >= placedAtMs + HOUR_MS, 'the exit happens once the order is out of the window, not before');

  const after = await node.getProfile(WORKSPACE, user('u1'));
  t.same(after.computedValues, { orders_1h: 0, revenue: 25.5 });
  t.same(after.segments, {}, 'no longer a member');
  t.equal(after.nextEvaluationMs, 0, 'nothing left to expire');
});

t.test('segments - a timer that fires without a change files the next one at once', async (t) => {
  // The node snapshots a profile only when it has activations, a decision or records, so a
  // timer index entry that waited for a periodic snapshot would come an hour late.
  const rare = { checkpointIntervalMs: 3_600_000, actors: { snapshotEveryMessages: 1_000_000, snapshotIntervalMs: 3_600_000 } };
  const node = await RtcdpNode.start({ dataDir: t.testdir(), evaluationTimerIntervalMs: 50, ...rare });
  t.teardown(() => node.drain());
  await apply(node, DEFINITIONS);

  // The first order leaves the one-hour window about 1 s from now, the second about 2 s from now.
  const firstLeavesAtMs = Date.now() + 1_000;
  const lastLeavesAtMs = firstLeavesAtMs + 1_000;
  await node.ingest(WORKSPACE, [order('u5', 'o1', firstLeavesAtMs - HOUR_MS), order('u5', 'o2', lastLeavesAtMs - HOUR_MS)]);

  const list = await waitForActivations(node, (found) => found.length >= 2, lastLeavesAtMs + 3_000 - Date.now());
  t.same(summary(list), ['segment.entered recent_buyer user:u5 event', 'segment.exited recent_buyer user:u5 timer'], 'the second timer exits the segment');
  const lateMs = (list[1]?.atMs ?? Date.now()) - lastLeavesAtMs;
  t.ok(lateMs < 2_000, `the exit is at most 2 s late, got ${lateMs} ms`);
});

t.test('segments - trait changes enter and exit; conditions that fail count as false', async (t) => {
  const node = await RtcdpNode.start({ dataDir: t.testdir(), actors: { snapshotIntervalMs: 20 } });
  t.teardown(() => node.drain());
  await apply(node, DEFINITIONS);

  // A track event before any identify: traits.plan is missing, so `pro` fails to evaluate.
  await node.ingest(WORKSPACE, [{ type: 'track', event: 'Viewed', userId: 'u2', messageId: 'v1' }]);
  t.same((await node.getProfile(WORKSPACE, user('u2'))).segments, {});
  t.ok(node.evaluator.stats().evaluationErrors >= 1, 'the failing condition is counted');
  await node.ingest(WORKSPACE, [identify('u2', 'i1', 'pro')]);
  await node.ingest(WORKSPACE, [identify('u2', 'i2', 'pro')]);
  await node.ingest(WORKSPACE, [identify('u2', 'i3', 'free')]);

  const list = await waitForActivations(node, (found) => found.length >= 2);
  t.same(summary(list), ['segment.entered pro user:u2 event', 'segment.exited pro user:u2 event'], 'one entry and one exit, however many events keep the state');
  t.equal(list[0].cause.kind === 'event' && list[0].cause.messageId, 'i1');
  t.equal(list[1].cause.kind === 'event' && list[1].cause.messageId, 'i3');
});

t.test('segments - a crash before the snapshot replays the same activations once', async (t) => {
  const dataDir = t.testdir();
  const rare = { checkpointIntervalMs: 3_600_000, actors: { snapshotEveryMessages: 1_000_000, snapshotIntervalMs: 3_600_000 } };
  const first = await RtcdpNode.start({ dataDir, ...rare });
  await apply(first, DEFINITIONS);
  await first.ingest(WORKSPACE, [identify('u3', 'i1', 'pro')]);
  t.same(Object.keys((await first.getProfile(WORKSPACE, user('u3'))).segments), ['pro']);
  t.same(await activations(first), [], 'nothing is stored before the snapshot');
  await first.abort();

  const second = await RtcdpNode.start({ dataDir, actors: { snapshotIntervalMs: 20 } });
  const replayed = await waitForActivations(second, (found) => found.length >= 1);
  t.same(summary(replayed), ['segment.entered pro user:u3 event'], 'the replay produced the entry');
  await second.drain();

  const third = await RtcdpNode.start({ dataDir, actors: { snapshotIntervalMs: 20 } });
  t.teardown(() => third.drain());
  await third.ingest(WORKSPACE, [identify('u3', 'i2', 'free')]);
  const list = await waitForActivations(third, (found) => found.length >= 2);
  t.same(summary(list), ['segment.entered pro user:u3 event', 'segment.exited pro user:u3 event'], 'no second entry after the restart');
  t.same(
    list.map((activation) => activation.sequence),
    [1, 2],
    'the numbering continues after a restart',
  );
  t.equal(list[0].id, replayed[0].id);
});

t.test('segments - a changed definition applies without a restart, and a deleted one exits its members', async (t) => {
  const node = await RtcdpNode.start({ dataDir: t.testdir(), definitionReloadIntervalMs: 100, actors: { snapshotIntervalMs: 20 } });
  t.teardown(() => node.drain());
  await apply(node, DEFINITIONS);
  await node.ingest(WORKSPACE, [identify('u4', 'i1', 'pro'), order('u4', 'o1', Date.now(), 5)]);
  t.same(Object.keys((await node.getProfile(WORKSPACE, user('u4'))).segments).sort(), ['pro', 'recent_buyer']);

  // `revenue` now sums a different property: its state starts again. `pro` is deleted.
  const changed = DEFINITIONS.replace('property: revenue }', 'property: total }').replace(/---\napiVersion: rtcdp\/v1\nkind: Segment\nmetadata: { name: pro }[^\n]*\n[^\n]*\n/, '');
  await apply(node, changed, true);
  await waitForReload(node, 'u4');

  await node.ingest(WORKSPACE, [order('u4', 'o2', Date.now(), 7), { ...order('u4', 'o3', Date.now()), properties: { total: 3 } }]);
  const profile = await node.getProfile(WORKSPACE, user('u4'));
  t.same(profile.computedValues, { orders_1h: 3, revenue: 3 }, 'the changed trait counts only events after the change');
  t.same(Object.keys(profile.segments), ['recent_buyer']);

  const list = await waitForActivations(node, (found) => found.some((activation) => activation.type === 'segment.exited'));
  const exit = list.find((activation) => activation.type === 'segment.exited');
  t.equal(exit?.name, 'pro');
  t.same(exit?.cause, { kind: 'definition', version: 1 });
});

/** Waits until the node evaluates with the changed definitions, whose `revenue` starts again at 0. */
async function waitForReload(node: RtcdpNode, userId: string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const profile = await node.getProfile(WORKSPACE, user(userId));
    if (profile.computedValues.revenue === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error('the node did not reload the definitions');
}
