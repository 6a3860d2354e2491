import t from 'tap';
import { ConfigError, InvalidStateError } from '../../common/errors.js';
import { MemoryKvStore } from '../../storage/memory-kv-store.js';
import type { KvEntry, KvStore } from '../../storage/kv-store.js';
import { Membership, parseMemberInfo, type MemberInfo, type MembershipOptions } from '../../cluster/membership.js';
import { decodeJsonValue, encodeJsonValue } from '../../cluster/kv-json.js';
import { FailingKvStore } from '../helpers/failing-kv-store.js';
import { FakeTime, type FakeClock } from '../helpers/fake-time.js';

// Defaults: heartbeat every 1,000 ms, poll every 500 ms, member timeout 5,000 ms.

/** A MemoryKvStore whose list() leaves out chosen keys, as a list that races with writes can. */
class OmittingKvStore extends MemoryKvStore {
  readonly omitted = new Set<string>();

  override async list(prefix?: string): Promise<KvEntry[]> {
    return (await super.list(prefix)).filter((entry) => !this.omitted.has(entry.key));
  }
}

function createMember(kv: KvStore, nodeId: string, clock: FakeClock, options: Partial<MembershipOptions> = {}): Membership {
  return new Membership({ kv, nodeId, grpcAddress: `10.0.0.1:${50_000 + nodeId.length}`, clock, ...options });
}

function ids(members: MemberInfo[]): string[] {
  return members.map((member) => member.nodeId);
}

async function readRecord(kv: KvStore, key: string): Promise<Record<string, unknown> | null> {
  const entry = await kv.get(key);
  return entry === null ? null : (decodeJsonValue(entry.value) as Record<string, unknown>);
}

t.test('membership - start registers the member key', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const a = createMember(kv, 'node-a', time.clock());
  t.teardown(() => a.stop());

  await a.start();
  t.equal(a.state, 'running');

  const record = await readRecord(kv, 'member.node-a');
  t.equal(record?.nodeId, 'node-a');
  t.equal(record?.incarnation, a.incarnation);
  t.equal(record?.grpcAddress, '10.0.0.1:50006');
  t.equal(record?.heartbeat, 1);
  t.ok(Number.isFinite(Date.parse(String(record?.startedAt))), `startedAt ${record?.startedAt} is a date`);
  t.same(ids(a.members()), ['node-a'], 'a node counts itself alive right after start');
});

t.test('membership - heartbeats every heartbeatIntervalMs', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const a = createMember(kv, 'a', time.clock());
  t.teardown(() => a.stop());
  await a.start();
  const firstRevision = (await kv.get('member.a'))!.revision;

  await time.advance(999);
  t.equal((await readRecord(kv, 'member.a'))?.heartbeat, 1, 'no heartbeat before the interval');

  await time.advance(1);
  const second = await kv.get('member.a');
  t.equal((decodeJsonValue(second!.value) as MemberInfo).heartbeat, 2);
  t.ok(second!.revision > firstRevision, 'each heartbeat writes a new revision');

  await time.advance(3_000);
  t.equal((await readRecord(kv, 'member.a'))?.heartbeat, 5);
});

t.test('membership - members see each other sorted by id', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const nodes = ['node-c', 'node-a', 'node-b'].map((id, index) => createMember(kv, id, time.clock(index * 1_000_000)));
  t.teardown(() => Promise.all(nodes.map((node) => node.stop())));

  const seenByA: string[][] = [];
  nodes[1].onChange((members) => seenByA.push(ids(members)));

  for (const node of nodes) await node.start();
  await time.advance(500);
  t.same(ids(nodes[0].members()), ['node-a', 'node-b', 'node-c'], 'node-c, started first, saw the later keys appear');
  t.same(ids(nodes[1].members()), ['node-a', 'node-b'], 'node-a waits for a change of the key node-c wrote before node-a started');

  await time.advance(500);
  for (const node of nodes) t.same(ids(node.members()), ['node-a', 'node-b', 'node-c'], `${node.nodeId} sees every node`);
  t.same(seenByA.at(-1), ['node-a', 'node-b', 'node-c'], 'the last change that node-a reported lists every node');
  t.equal(nodes[0].members()[1].grpcAddress, '10.0.0.1:50006', 'members carry the gRPC address');
});

t.test('membership - member gone after memberTimeoutMs without heartbeats', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const clockB = time.clock(-5_000_000);
  const a = createMember(kv, 'a', time.clock());
  const b = createMember(kv, 'b', clockB);
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  await a.start();
  await b.start();
  await time.advance(2_000);
  t.same(ids(a.members()), ['a', 'b']);

  const changes: string[][] = [];
  a.onChange((members) => changes.push(ids(members)));
  // A paused clock fires no timers, so b neither heartbeats nor polls from now on, like a crashed process.
  clockB.pause();

  // b wrote its last heartbeat at most 1,000 ms ago, and a dates it at most one poll (500 ms) earlier.
  await time.advance(3_400);
  t.same(ids(a.members()), ['a', 'b'], 'b is alive until its last heartbeat is memberTimeoutMs old');
  t.same(changes, [], 'no change reported yet');

  await time.advance(2_200);
  t.same(ids(a.members()), ['a'], 'b is gone once its key stopped changing for memberTimeoutMs');
  t.same(changes, [['a']], 'the removal is reported once');
});

t.test('membership - graceful leave removes the member at the next poll', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const a = createMember(kv, 'a', time.clock());
  const b = createMember(kv, 'b', time.clock());
  t.teardown(() => a.stop());
  await a.start();
  await b.start();
  await time.advance(500);
  t.same(ids(a.members()), ['a', 'b']);

  await b.stop();
  t.equal(b.state, 'stopped');
  t.equal(await kv.get('member.b'), null, 'stop deletes the member key');
  t.same(b.members(), [], 'a stopped membership lists no members');

  await time.advance(500);
  t.same(ids(a.members()), ['a'], 'a drops b at its next poll, long before memberTimeoutMs');

  const heartbeatsBefore = (await kv.list('member.')).length;
  await time.advance(5_000);
  t.equal(await kv.get('member.b'), null, 'b writes no heartbeat after stop');
  t.equal((await kv.list('member.')).length, heartbeatsBefore);
});

t.test('membership - key left by a crashed process is not alive', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const stale: MemberInfo = { nodeId: 'z', incarnation: 'old-run', grpcAddress: '10.0.0.9:1', startedAt: '2020-01-01T00:00:00.000Z', heartbeat: 7 };
  await kv.put('member.z', encodeJsonValue(stale));

  const a = createMember(kv, 'a', time.clock());
  t.teardown(() => a.stop());
  await a.start();
  t.same(ids(a.members()), ['a'], 'a key written before this node started proves nothing');

  await time.advance(6_000);
  t.same(ids(a.members()), ['a'], 'a key that never changes never becomes alive');

  await kv.put('member.z', encodeJsonValue({ ...stale, heartbeat: 8 }));
  await time.advance(500);
  t.same(ids(a.members()), ['a', 'z'], 'a key that changes is alive');
});

t.test('membership - crashed members are listed as absent', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const clockB = time.clock(-5_000_000);
  const a = createMember(kv, 'a', time.clock());
  const b = createMember(kv, 'b', clockB);
  const c = createMember(kv, 'c', time.clock());
  t.teardown(() => Promise.all([a.stop(), b.stop(), c.stop()]));
  await Promise.all([a.start(), b.start(), c.start()]);
  await time.advance(2_000);
  t.same(ids(a.members()), ['a', 'b', 'c'], 'all three are alive');
  t.same(a.absentNodeIds(), [], 'none is absent');

  // A paused clock fires no timers, so b stops heartbeating like a crashed process, and c leaves.
  clockB.pause();
  await c.stop();
  await time.advance(6_000);
  t.same(ids(a.members()), ['a'], 'b and c are gone');
  t.same(a.absentNodeIds(), ['b'], 'b, which left its key behind, is absent');
});

t.test('membership - restarted node replaces its predecessor', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const a = createMember(kv, 'a', time.clock());
  const clockOld = time.clock();
  const oldB = createMember(kv, 'b', clockOld);
  t.teardown(() => a.stop());
  await a.start();
  await oldB.start();
  await time.advance(1_000);
  t.equal(a.members()[1].incarnation, oldB.incarnation);

  clockOld.pause();
  const newB = createMember(kv, 'b', time.clock());
  t.teardown(() => newB.stop());
  t.not(newB.incarnation, oldB.incarnation, 'each start has its own incarnation');
  await newB.start();
  await time.advance(500);
  t.same(ids(a.members()), ['a', 'b']);
  t.equal(a.members()[1].incarnation, newB.incarnation, 'a lists the new incarnation');

  // The old process wakes up and stops: the key is no longer its own, so it must stay.
  clockOld.resume();
  await oldB.stop();
  t.equal((await readRecord(kv, 'member.b'))?.incarnation, newB.incarnation, 'the old incarnation does not delete the new one');
});

t.test('membership - KV outage expires every member, then recovers', async (t) => {
  const time = new FakeTime();
  const memory = new MemoryKvStore();
  const flaky = new FailingKvStore(memory);
  const a = createMember(flaky, 'a', time.clock());
  const b = createMember(memory, 'b', time.clock());
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  await a.start();
  await b.start();
  await time.advance(500);
  t.same(ids(a.members()), ['a', 'b']);

  flaky.failAll();
  await time.advance(3_400);
  t.same(ids(a.members()), ['a', 'b'], 'failed reads keep the last view until it times out');

  await time.advance(2_200);
  t.same(ids(a.members()), [], 'without reads or heartbeats nothing is known to be alive');
  t.same(ids(b.members()), ['b'], 'b drops a, whose heartbeats fail');

  flaky.failing.clear();
  await time.advance(1_500);
  t.same(ids(a.members()), ['a', 'b'], 'a sees both again once the KV store answers');
  t.same(ids(b.members()), ['a', 'b'], 'b sees a again');
});

t.test('membership - a key missing from one list stays alive', async (t) => {
  const time = new FakeTime();
  const kv = new OmittingKvStore();
  const a = createMember(kv, 'a', time.clock());
  const b = createMember(kv, 'b', time.clock());
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  await a.start();
  await b.start();
  await time.advance(500);
  const changes: string[][] = [];
  a.onChange((members) => changes.push(ids(members)));

  kv.omitted.add('member.b');
  await time.advance(2_000);
  t.same(ids(a.members()), ['a', 'b'], 'a reads the key that list() left out');
  t.same(changes, [], 'no change reported');

  await b.stop();
  await time.advance(500);
  t.same(ids(a.members()), ['a'], 'the read finds the key deleted after a graceful leave');
});

t.test('membership - invalid member values are ignored', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const a = createMember(kv, 'a', time.clock());
  t.teardown(() => a.stop());
  await a.start();

  const valid: MemberInfo = { nodeId: 'x', incarnation: 'i', grpcAddress: 'h:1', startedAt: '', heartbeat: 1 };
  await kv.put('member.bad-json', new TextEncoder().encode('{not json'));
  await kv.put('member.y', encodeJsonValue(valid));
  await kv.put('member.no-heartbeat', encodeJsonValue({ ...valid, nodeId: 'no-heartbeat', heartbeat: 0 }));
  await time.advance(500);
  t.same(ids(a.members()), ['a'], 'undecodable values and node ids that differ from the key are skipped');

  const entry = (await kv.get('member.y'))!;
  t.equal(parseMemberInfo(entry), null, 'member.y holds node id x');
  t.same(parseMemberInfo({ ...entry, key: 'member.x' }), valid);
});

t.test('membership - options are validated', async (t) => {
  const kv = new MemoryKvStore();
  const base: MembershipOptions = { kv, nodeId: 'a', grpcAddress: 'h:1' };
  const cases: Array<[string, Partial<MembershipOptions>, RegExp]> = [
    ['zero heartbeat interval', { heartbeatIntervalMs: 0 }, /heartbeatIntervalMs must be an integer number of milliseconds/],
    ['fractional poll interval', { pollIntervalMs: 0.5 }, /pollIntervalMs must be an integer/],
    ['timer overflow', { memberTimeoutMs: 2 ** 31 }, /memberTimeoutMs must be .* to 2147483647/],
    ['timeout below two heartbeats and a poll', { heartbeatIntervalMs: 1_000, pollIntervalMs: 500, memberTimeoutMs: 2_499 }, /memberTimeoutMs must be at least 2 × heartbeatIntervalMs \+ pollIntervalMs \(2500 ms\), received 2499/],
    ['empty address', { grpcAddress: '' }, /grpcAddress must be a non-empty string/],
    ['dot in node id', { nodeId: 'a.b' }, /nodeId must be 1 to 64 characters/],
    ['empty node id', { nodeId: '' }, /nodeId must be/],
    ['space in node id', { nodeId: 'node 1' }, /nodeId must be/],
    ['non-ASCII node id', { nodeId: 'nöde' }, /nodeId must be/],
    ['node id of 65 characters', { nodeId: 'x'.repeat(65) }, /nodeId must be/],
  ];
  for (const [name, override, message] of cases) {
    t.throws(() => new Membership({ ...base, ...override }), { name: 'ConfigError', message }, name);
  }
  t.throws(() => new Membership({ ...base, nodeId: 'a.b' }), ConfigError);

  t.doesNotThrow(() => new Membership({ ...base, nodeId: `Node_1-${'x'.repeat(57)}` }), 'a node id of 64 allowed characters');
  t.doesNotThrow(() => new Membership({ ...base, heartbeatIntervalMs: 1_000, pollIntervalMs: 500, memberTimeoutMs: 2_500 }), 'the minimum timeout');
});

t.test('membership - lifecycle', async (t) => {
  const time = new FakeTime();
  const memory = new MemoryKvStore();
  const a = createMember(memory, 'a', time.clock());
  await a.start();
  await t.rejects(a.start(), InvalidStateError, 'start twice');
  await a.stop();
  await a.stop();
  t.equal(a.state, 'stopped', 'a second stop does nothing');

  const flaky = new FailingKvStore(memory);
  flaky.failing.add('put');
  const b = createMember(flaky, 'b', time.clock());
  await t.rejects(b.start(), { message: /simulated KV failure: put/ }, 'start throws when registration fails');
  t.equal(b.state, 'failed');
  t.equal(time.pendingTimers, 0, 'a failed start leaves no timers');
});
