import t from 'tap';
import { pino } from 'pino';
import { balancedAssignment } from '../../cluster/assignment.js';
import { AssignmentWatcher, ASSIGNMENT_KEY, decodeAssignment, encodeAssignment, type Assignment } from '../../cluster/assignment-watcher.js';
import { COORDINATOR_KEY, Coordinator, type CoordinatorOptions, type MemberSource } from '../../cluster/coordinator.js';
import { parseKvLeaseRecord } from '../../cluster/kv-lease.js';
import type { KvStore } from '../../storage/kv-store.js';
import { MemoryKvStore } from '../../storage/memory-kv-store.js';
import { Membership } from '../../cluster/membership.js';
import { FakeTime, type FakeClock } from '../helpers/fake-time.js';

// Defaults: lease ttl 5,000 ms, renewal every 1,000 ms, takeover margin 1,000 ms, stall
// margin 1,000 ms, stable window 3,000 ms, 2 concurrent moves, reconcile every 500 ms.

/** A MemoryKvStore that keeps every assignment it stored, in write order. */
class RecordingKvStore extends MemoryKvStore {
  readonly assignments: Assignment[] = [];

  override async create(key: string, value: Uint8Array): Promise<number> {
    const revision = await super.create(key, value);
    this.#record(key, value, revision);
    return revision;
  }

  override async update(key: string, value: Uint8Array, expectedRevision: number): Promise<number> {
    const revision = await super.update(key, value, expectedRevision);
    this.#record(key, value, revision);
    return revision;
  }

  #record(key: string, value: Uint8Array, revision: number): void {
    if (key === ASSIGNMENT_KEY) this.assignments.push(decodeAssignment({ key, value, revision })!);
  }
}

/** A member list that the test sets by hand. */
class StaticMembers implements MemberSource {
  constructor(public ids: string[]) {}

  members(): Array<{ nodeId: string }> {
    return this.ids.map((nodeId) => ({ nodeId }));
  }
}

/** Shard holders that the test sets by hand, read the way a shard lease reader returns them. */
class Holders {
  readonly map = new Map<number, string | null>();

  readonly read = async (): Promise<Map<number, string | null>> => new Map(this.map);

  /** Hands every shard over to its published owner at once, as nodes that follow the assignment would. */
  async follow(kv: KvStore): Promise<void> {
    const assignment = await readAssignment(kv);
    for (const [shard, owner] of assignment?.shards ?? []) this.map.set(shard, owner);
  }
}

async function readAssignment(kv: KvStore): Promise<Assignment | null> {
  const entry = await kv.get(ASSIGNMENT_KEY);
  return entry === null ? null : decodeAssignment(entry);
}

function createCoordinator(
  kv: KvStore,
  nodeId: string,
  clock: FakeClock,
  membership: MemberSource,
  holders: Holders,
  options: Partial<CoordinatorOptions> = {},
): Coordinator {
  return new Coordinator({ kv, nodeId, clock, membership, shardCount: 16, readShardHolders: holders.read, ...options });
}

function leaders(coordinators: Coordinator[]): Coordinator[] {
  return coordinators.filter((coordinator) => coordinator.isLeader());
}

function pendingMoves(assignment: Assignment | null, holders: Holders): number[] {
  return [...(assignment?.shards ?? [])].filter(([shard, owner]) => holders.map.get(shard) !== owner).map(([shard]) => shard);
}

t.test('coordinator - one of three wins the election', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const members = new StaticMembers(['a', 'b', 'c']);
  const holders = new Holders();
  const coordinators = members.ids.map((id, index) => createCoordinator(kv, id, time.clock(index * 7_777_777), members, holders));
  t.teardown(() => Promise.all(coordinators.map((coordinator) => coordinator.stop())));
  for (const coordinator of coordinators) coordinator.start();

  await time.advance(100);
  const [leader, ...others] = leaders(coordinators);
  t.ok(leader, 'one coordinator leads');
  t.equal(others.length, 0, 'no second leader');
  const record = parseKvLeaseRecord((await kv.get(COORDINATOR_KEY))!);
  t.equal(record?.holder, leader.options.nodeId, 'the lease record names the leader');
  t.equal(record?.ttlMs, 5_000);
  const epoch = leader.epoch!;
  t.ok(epoch > 0, `the leader has epoch ${epoch}`);
  for (const coordinator of coordinators.filter((c) => c !== leader)) t.equal(coordinator.epoch, null, `${coordinator.options.nodeId} has no epoch`);

  let steps = 0;
  for (; steps < 300; steps++) {
    await time.advance(100);
    const current = leaders(coordinators);
    if (current.length !== 1 || current[0] !== leader) break;
  }
  t.equal(steps, 300, 'the same single leader renews for 30 s');
  t.equal(leader.epoch, epoch, 'renewals keep the epoch');
});

t.test('coordinator - election stays single with stale reads', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  kv.staleReads = 1;
  const members = new StaticMembers(['a', 'b', 'c']);
  const holders = new Holders();
  const coordinators = members.ids.map((id) => createCoordinator(kv, id, time.clock(), members, holders));
  t.teardown(() => Promise.all(coordinators.map((coordinator) => coordinator.stop())));
  for (const coordinator of coordinators) coordinator.start();

  const counts = new Set<number>();
  for (let step = 0; step < 300; step++) {
    await time.advance(100);
    counts.add(leaders(coordinators).length);
  }
  t.same([...counts], [1], 'exactly one leader at every step, although get() returns the previous value');
});

t.test('coordinator - failover only after the lease expires', async (t) => {
  const time = new FakeTime();
  const kv = new RecordingKvStore();
  const members = new StaticMembers(['a', 'b', 'c']);
  const holders = new Holders();
  const clocks = members.ids.map((_, index) => time.clock(-index * 1_000_000));
  const coordinators = members.ids.map((id, index) => createCoordinator(kv, id, clocks[index], members, holders));
  t.teardown(() => Promise.all(coordinators.map((coordinator) => coordinator.stop())));
  for (const coordinator of coordinators) coordinator.start();
  await time.advance(4_000);

  const [oldLeader] = leaders(coordinators);
  const oldEpoch = oldLeader.epoch!;
  t.ok((await readAssignment(kv))?.coordinatorEpoch === oldEpoch, 'the first leader published an assignment');

  // The leader's process stalls: its timers stop, its clock goes on.
  const oldClock = clocks[coordinators.indexOf(oldLeader)];
  oldClock.pause();
  const pausedAtMs = time.nowMs;
  const others = coordinators.filter((coordinator) => coordinator !== oldLeader);

  // Its last renewal was sent at most 1,000 ms before the pause, so its validity ends
  // at most ttl - stall margin = 4,000 ms after that renewal.
  await time.advance(3_900);
  t.equal(leaders(others).length, 0, 'no takeover while the old lease may be valid');
  await time.advance(1_000);
  t.equal(oldLeader.isLeader(), false, 'the stalled leader stops counting itself leader when its validity ends');
  t.equal(leaders(others).length, 0, 'no takeover before ttl + takeover margin');

  const waitedMs = await time.advanceUntil(() => leaders(others).length > 0, 10_000);
  const takeoverAfterMs = time.nowMs - pausedAtMs;
  t.ok(takeoverAfterMs >= 5_000 && takeoverAfterMs <= 9_000, `takeover ${takeoverAfterMs} ms after the pause`);
  t.ok(waitedMs > 0);
  const [newLeader] = leaders(others);
  t.ok(newLeader.epoch! > oldEpoch, `new epoch ${newLeader.epoch} is above ${oldEpoch}`);

  // The old leader wakes up with overdue timers: it must not publish, and must step down.
  oldClock.resume();
  await time.advance(3_000);
  t.equal(oldLeader.isLeader(), false, 'the old leader stepped down');
  t.same(leaders(coordinators), [newLeader], 'one leader after the stalled one resumed');

  members.ids = ['a', 'b'];
  await time.advance(4_000);
  const epochs = kv.assignments.map((assignment) => assignment.coordinatorEpoch);
  t.same(epochs, [...epochs].sort((a, b) => a - b), `assignment epochs never decrease: ${epochs.join(', ')}`);
  t.equal(kv.assignments.at(-1)?.coordinatorEpoch, newLeader.epoch, 'the new leader published the latest version');
});

t.test('coordinator - graceful stop hands the lease over at once', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const members = new StaticMembers(['a', 'b']);
  const holders = new Holders();
  const coordinators = members.ids.map((id) => createCoordinator(kv, id, time.clock(), members, holders));
  t.teardown(() => Promise.all(coordinators.map((coordinator) => coordinator.stop())));
  for (const coordinator of coordinators) coordinator.start();
  await time.advance(500);

  const [leader] = leaders(coordinators);
  const oldEpoch = leader.epoch!;
  await leader.stop();
  t.equal(leader.state, 'stopped');
  t.equal(await kv.get(COORDINATOR_KEY), null, 'stop deletes the lease key');

  const [other] = coordinators.filter((coordinator) => coordinator !== leader);
  const waitedMs = await time.advanceUntil(() => other.isLeader(), 10_000);
  t.ok(waitedMs <= 1_000, `the other node took over after ${waitedMs} ms, within one renew interval`);
  t.ok(other.epoch! > oldEpoch, 'with a higher epoch');
});

t.test('coordinator - waits for a stable member list', async (t) => {
  const time = new FakeTime();
  const kv = new RecordingKvStore();
  const members = new StaticMembers(['a', 'c']);
  const holders = new Holders();
  const coordinator = createCoordinator(kv, 'a', time.clock(), members, holders);
  t.teardown(() => coordinator.stop());
  coordinator.start();

  // The first pass, 500 ms after start, reads the member list and starts the window.
  await time.advance(3_400);
  t.ok(coordinator.isLeader());
  t.equal(await readAssignment(kv), null, 'nothing published before the list was stable for 3,000 ms');
  await time.advance(100);
  t.same((await readAssignment(kv))?.shards, balancedAssignment(16, ['a', 'c']), 'free shards are all assigned at once');
  await holders.follow(kv);

  members.ids = ['a', 'b', 'c'];
  await time.advance(2_000);
  members.ids = ['a', 'b', 'c', 'd'];
  await time.advance(2_900);
  t.equal(kv.assignments.length, 1, 'each change of the list restarts the window');
  t.equal(pendingMoves(await readAssignment(kv), holders).length, 0);

  await time.advance(600);
  t.equal(kv.assignments.length, 2, 'published once the latest list was stable');
  const target = balancedAssignment(16, ['a', 'b', 'c', 'd'], holders.map);
  for (const [shard, owner] of (await readAssignment(kv))!.shards) {
    const moving = owner !== holders.map.get(shard);
    if (moving && owner !== target.get(shard)) t.fail(`shard ${shard} moves to ${owner}, not to its target ${target.get(shard)}`);
  }
});

t.test('coordinator - moves the shards of a member that left without waiting', async (t) => {
  const time = new FakeTime();
  const kv = new RecordingKvStore();
  const members = new StaticMembers(['a', 'b', 'c']);
  const holders = new Holders();
  const coordinator = createCoordinator(kv, 'a', time.clock(), members, holders);
  t.teardown(() => coordinator.stop());
  coordinator.start();
  await time.advance(4_000);
  await holders.follow(kv);
  t.equal(kv.assignments.length, 1, 'the first assignment is published');

  members.ids = ['a', 'b'];
  const overTwo = balancedAssignment(16, ['a', 'b'], holders.map);
  await time.advance(500);
  t.equal(kv.assignments.length, 2, 'published at the first pass after c left');
  t.same((await readAssignment(kv))!.shards, overTwo, "c's shards go to a and b, which keep theirs");
  await holders.follow(kv);

  // A join starts the window, and a member leaving during it does not end it early.
  const target = balancedAssignment(16, ['a', 'd'], holders.map);
  members.ids = ['a', 'b', 'd'];
  await time.advance(1_000);
  members.ids = ['a', 'd'];
  await time.advance(1_500);
  t.equal(kv.assignments.length, 2, 'nothing published while the window of the join runs');
  await time.advance(1_000);
  t.equal(kv.assignments.length, 3, 'published once the join was 3,000 ms old');
  const published = (await readAssignment(kv))!;
  for (const [shard, holder] of holders.map) {
    if (holder === 'b') t.equal(published.shards.get(shard), target.get(shard), `shard ${shard} of b moves to its target`);
  }
});

t.test('coordinator - moves at most maxConcurrentMoves held shards', async (t) => {
  const time = new FakeTime();
  const kv = new RecordingKvStore();
  const members = new StaticMembers(['a']);
  const holders = new Holders();
  const coordinator = createCoordinator(kv, 'a', time.clock(), members, holders, { shardCount: 32 });
  t.teardown(() => coordinator.stop());
  coordinator.start();
  await time.advance(4_000);
  await holders.follow(kv);
  t.equal(pendingMoves(await readAssignment(kv), holders).length, 0, 'node a holds all 32 shards');

  members.ids = ['a', 'b', 'c'];
  const target = balancedAssignment(32, members.ids, holders.map);
  const toMove = [...target.values()].filter((owner) => owner !== 'a').length;
  t.ok(toMove > 4, `${toMove} shards must leave a`);

  await time.advance(4_000);
  const first = (await readAssignment(kv))!;
  t.equal(pendingMoves(first, holders).length, 2, 'two moves start');

  await time.advance(3_000);
  t.equal((await readAssignment(kv))!.version, first.version, 'no further move while both are in progress');

  // Finish one move at a time: each frees a slot for exactly one more.
  let finished = 0;
  while (true) {
    const assignment = (await readAssignment(kv))!;
    const pending = pendingMoves(assignment, holders);
    if (pending.length > 2) t.fail(`${pending.length} moves in progress: ${pending.join(', ')}`);
    if (pending.length === 0) break;

    holders.map.set(pending[0], assignment.shards.get(pending[0])!);
    finished += 1;
    await time.advance(500);
    if (finished > 100) t.fail('moves never finish');
  }
  t.equal(finished, toMove, 'every shard moved once');
  t.same((await readAssignment(kv))!.shards, target, 'the assignment converged to the rendezvous placement');
});

t.test('coordinator - writes nothing over a newer coordinator epoch', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const members = new StaticMembers(['a']);
  const holders = new Holders();
  const newer = { version: 9, coordinatorEpoch: 1_000_000, coordinator: 'z', shards: new Map([[0, 'z']]) };
  await kv.create(ASSIGNMENT_KEY, encodeAssignment(newer));

  const coordinator = createCoordinator(kv, 'a', time.clock(), members, holders);
  t.teardown(() => coordinator.stop());
  coordinator.start();
  await time.advance(6_000);
  t.ok(coordinator.isLeader());
  t.equal((await readAssignment(kv))?.version, 9, 'the assignment of the newer epoch is left as it is');
});

t.test('coordinator - logs moves with coordinator id and epoch', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const holders = new Holders();
  const coordinator = createCoordinator(kv, 'a', time.clock(), new StaticMembers(['a', 'b']), holders, { logger });
  t.teardown(() => coordinator.stop());
  coordinator.start();
  await time.advance(4_000);

  const published = lines.find((line) => line.msg === 'published shard moves');
  t.equal(published?.coordinatorId, 'a');
  t.equal(published?.epoch, coordinator.epoch);
  t.equal((published?.moves as unknown[]).length, 16, 'the log lists every move');
  t.same((published?.moves as unknown[])[0], { shard: 0, from: null, to: balancedAssignment(16, ['a', 'b']).get(0) });
  t.ok(lines.some((line) => line.msg === 'acquired coordinator lease' && line.epoch === coordinator.epoch), 'the lease acquisition is logged');
});

t.test('coordinator - options are validated', async (t) => {
  const kv = new MemoryKvStore();
  const base: CoordinatorOptions = { kv, nodeId: 'a', membership: new StaticMembers([]), shardCount: 16, readShardHolders: new Holders().read };
  const cases: Array<[string, Partial<CoordinatorOptions>, RegExp]> = [
    ['invalid node id', { nodeId: 'a:b' }, /nodeId must be 1 to 64 characters/],
    ['zero shards', { shardCount: 0 }, /shardCount must be an integer from 1 to 65536/],
    ['too many shards', { shardCount: 65_537 }, /shardCount must be/],
    ['zero moves', { maxConcurrentMoves: 0 }, /maxConcurrentMoves must be an integer from 1/],
    ['negative stable window', { stableForMs: -1 }, /stableForMs must be an integer number of milliseconds/],
    ['stall margin of the whole ttl', { leaseTtlMs: 2_000, stallMarginMs: 2_000 }, /stallMarginMs must be less than leaseTtlMs \(2000 ms\)/],
    ['renewals too rare', { leaseTtlMs: 5_000, stallMarginMs: 1_000, renewIntervalMs: 2_001 }, /renewIntervalMs must be at most \(leaseTtlMs - stallMarginMs\) \/ 2 \(2000 ms\)/],
    ['fractional reconcile interval', { reconcileIntervalMs: 1.5 }, /reconcileIntervalMs must be an integer/],
    ['missing holder reader', { readShardHolders: undefined }, /readShardHolders is required/],
  ];
  for (const [name, override, message] of cases) {
    t.throws(() => new Coordinator({ ...base, ...override }), { name: 'ConfigError', message }, name);
  }
  t.doesNotThrow(() => new Coordinator({ ...base, leaseTtlMs: 5_000, stallMarginMs: 1_000, renewIntervalMs: 2_000 }), 'the longest renew interval');
});

t.test('coordinator - reassigns shards of a member gone after the timeout', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const holders = new Holders();
  const nodes = ['a', 'b', 'c'].map((id, index) => {
    const clock = time.clock(index * 3_333_333);
    const membership = new Membership({ kv, nodeId: id, grpcAddress: `10.0.0.${index + 1}:50051`, clock });
    return { id, clock, membership, coordinator: createCoordinator(kv, id, clock, membership, holders) };
  });
  t.teardown(() => Promise.all(nodes.flatMap((node) => [node.coordinator.stop(), node.membership.stop()])));
  for (const node of nodes) {
    await node.membership.start();
    node.coordinator.start();
  }

  const everyNode = balancedAssignment(16, ['a', 'b', 'c']);
  await time.advanceUntil(() => nodes.some((node) => node.coordinator.isLeader()), 2_000);
  await time.advance(5_000);
  t.same((await readAssignment(kv))?.shards, everyNode, 'all three nodes own shards');
  await holders.follow(kv);

  // Crash a node that is not the coordinator, so only the membership timeout matters.
  const victim = nodes.find((node) => !node.coordinator.isLeader())!;
  victim.clock.pause();
  const survivors = nodes.filter((node) => node !== victim).map((node) => node.id);

  // Gone after memberTimeoutMs (5,000) plus up to one heartbeat and one poll. A member
  // that leaves does not restart the stable window, so its shards move at the next pass.
  await time.advance(4_500);
  t.same((await readAssignment(kv))?.shards, everyNode, `${victim.id} keeps its shards until the member timeout`);

  const expected = balancedAssignment(16, survivors, holders.map);
  const waitedMs = await advanceUntilAssignment(time, kv, holders, expected, 10_000);
  t.ok(waitedMs <= 2_500, `reassigned ${4_500 + waitedMs} ms after the crash`);
});

t.test('coordinator - graceful leave reassigns shards before the timeout', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const holders = new Holders();
  const nodes = ['a', 'b', 'c'].map((id) => {
    const clock = time.clock();
    const membership = new Membership({ kv, nodeId: id, grpcAddress: `${id}:50051`, clock });
    return { id, membership, coordinator: createCoordinator(kv, id, clock, membership, holders) };
  });
  t.teardown(() => Promise.all(nodes.flatMap((node) => [node.coordinator.stop(), node.membership.stop()])));
  for (const node of nodes) {
    await node.membership.start();
    node.coordinator.start();
  }
  const everyNode = balancedAssignment(16, ['a', 'b', 'c']);
  await advanceUntilAssignment(time, kv, holders, everyNode, 10_000);

  // The coordinator itself leaves, so the lease handover is part of the path.
  const leaving = nodes.find((node) => node.coordinator.isLeader())!;
  await leaving.coordinator.stop();
  await leaving.membership.stop();
  const survivors = nodes.filter((node) => node !== leaving).map((node) => node.id);

  const waitedMs = await advanceUntilAssignment(time, kv, holders, balancedAssignment(16, survivors, everyNode), 10_000);
  t.ok(waitedMs < 5_000, `reassigned ${waitedMs} ms after the leave, less than memberTimeoutMs`);
  t.ok(nodes.some((node) => node !== leaving && node.coordinator.isLeader()), 'another node coordinates');
});

t.test('assignment watcher - reports each new version once', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const watcher = new AssignmentWatcher({ kv, clock: time.clock() });
  t.teardown(() => watcher.stop());
  const seen: number[] = [];
  watcher.onChange((assignment) => seen.push(assignment.version));
  watcher.start();
  await time.advance(500);
  t.equal(watcher.current(), null, 'nothing published yet');

  const first = { version: 1, coordinatorEpoch: 3, coordinator: 'a', shards: new Map([[0, 'a'], [1, 'b']]) };
  const revision = await kv.create(ASSIGNMENT_KEY, encodeAssignment(first));
  await time.advance(500);
  t.same(watcher.current(), { ...first, revision });

  await kv.update(ASSIGNMENT_KEY, encodeAssignment({ ...first, version: 2 }), revision);
  await time.advance(1_000);
  t.same(seen, [1, 2], 'each version once, although it was read twice');

  kv.staleReads = 1;
  await time.advance(1_000);
  t.equal(watcher.current()?.version, 2, 'a stale read of version 1 is ignored');
  kv.staleReads = 0;

  const latest = (await kv.get(ASSIGNMENT_KEY))!.revision;
  await kv.update(ASSIGNMENT_KEY, new TextEncoder().encode('{"version":"three"}'), latest);
  await time.advance(500);
  t.equal(watcher.current()?.version, 2, 'an invalid value is ignored');
  t.same(seen, [1, 2]);
});

t.test('assignment record - rejects invalid values', async (t) => {
  const valid = { version: 1, coordinatorEpoch: 2, coordinator: 'a', shards: { '0': 'a', '1': 'b' } };
  const decode = (value: unknown) => decodeAssignment({ key: ASSIGNMENT_KEY, value: new TextEncoder().encode(JSON.stringify(value)), revision: 5 });
  t.same(decode(valid)?.shards, new Map([[0, 'a'], [1, 'b']]));

  const invalid: Array<[string, unknown]> = [
    ['version 0', { ...valid, version: 0 }],
    ['epoch missing', { ...valid, coordinatorEpoch: undefined }],
    ['coordinator with a dot', { ...valid, coordinator: 'a.b' }],
    ['shard key not a number', { ...valid, shards: { x: 'a' } }],
    ['shard key with a leading zero', { ...valid, shards: { '01': 'a' } }],
    ['negative shard', { ...valid, shards: { '-1': 'a' } }],
    ['owner not a string', { ...valid, shards: { '0': 7 } }],
    ['shards an array', { ...valid, shards: ['a'] }],
  ];
  for (const [name, value] of invalid) t.equal(decode(value), null, name);
});

/** Advances until the published assignment equals `expected` and holders follow it, and returns the simulated time that took. */
async function advanceUntilAssignment(
  time: FakeTime,
  kv: KvStore,
  holders: Holders,
  expected: ReadonlyMap<number, string>,
  limitMs: number,
): Promise<number> {
  let converged = false;
  const startMs = time.nowMs;
  while (!converged) {
    if (time.nowMs - startMs > limitMs) throw new Error(`assignment did not converge within ${limitMs} ms`);
    await time.advance(100);
    await holders.follow(kv);
    const shards = (await readAssignment(kv))?.shards;
    converged = shards !== undefined && [...expected].every(([shard, owner]) => shards.get(shard) === owner) && shards.size === expected.size;
  }
  return time.nowMs - startMs;
}
