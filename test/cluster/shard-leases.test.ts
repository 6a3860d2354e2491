import t, { type Test } from 'tap';
import { pino } from 'pino';
import type { KvEntry, KvStore } from '../../storage/kv-store.js';
import { MemoryKvStore } from '../../storage/memory-kv-store.js';
import { resolveShardLeaseOptions, type ShardLeaseOptions } from '../../cluster/leases/lease-options.js';
import { decodeLeaseRecord, encodeLeaseRecord, leaseEpoch, type LeaseRecord } from '../../cluster/leases/lease-record.js';
import { leaseKey, ShardLeases } from '../../cluster/leases/shard-leases.js';
import { ManualClock, settle } from '../helpers/manual-clock.js';

// With the default options a lease is valid for 10,000 - 2,000 ms after its write was
// sent, and a taker waits 10,000 + 2,000 ms.
const VALIDITY_MS = 8_000;
const TAKEOVER_WAIT_MS = 12_000;

/** A KvStore in memory that a test can take down or whose replies it can hold back. */
class ScriptedKvStore implements KvStore {
  readonly store = new MemoryKvStore();
  /** Every request fails before it reaches the store, as when the KV is down. */
  down = false;
  /** Replies wait for releaseReplies() while this is true, and their requests are already applied. */
  holdingReplies = false;
  /** The next this many requests are applied, but their callers get an error, as after a timeout. */
  lostReplies = 0;
  readonly requests: string[] = [];
  readonly #heldReplies: Array<() => void> = [];

  get(key: string): Promise<KvEntry | null> {
    return this.#request(`get ${key}`, () => this.store.get(key));
  }
  create(key: string, value: Uint8Array): Promise<number> {
    return this.#request(`create ${key}`, () => this.store.create(key, value));
  }
  update(key: string, value: Uint8Array, expectedRevision: number): Promise<number> {
    return this.#request(`update ${key}@${expectedRevision}`, () => this.store.update(key, value, expectedRevision));
  }
  put(key: string, value: Uint8Array): Promise<number> {
    return this.#request(`put ${key}`, () => this.store.put(key, value));
  }
  delete(key: string, expectedRevision?: number): Promise<void> {
    return this.#request(`delete ${key}`, () => this.store.delete(key, expectedRevision));
  }
  list(prefix?: string): Promise<KvEntry[]> {
    return this.#request(`list ${prefix}`, () => this.store.list(prefix));
  }

  releaseReplies(): void {
    for (const release of this.#heldReplies.splice(0)) release();
  }

  async #request<T>(description: string, run: () => Promise<T>): Promise<T> {
    this.requests.push(description);
    if (this.down) throw new Error(`scripted KV is down: ${description} failed`);
    const outcome = await run().then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    if (this.holdingReplies) await new Promise<void>((resolve) => this.#heldReplies.push(resolve));
    if (this.lostReplies > 0) {
      this.lostReplies -= 1;
      throw new Error(`scripted KV lost the reply: ${description} timed out`);
    }
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }
}

interface Started {
  leases: ShardLeases;
  changes: Array<[number, boolean]>;
  logs: Array<Record<string, unknown>>;
}

function startLeases(t: Test, kv: KvStore, clock: ManualClock, nodeId: string, options: Partial<ShardLeaseOptions> = {}): Started {
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) });
  const leases = new ShardLeases(kv, { nodeId, incarnation: `${nodeId}-run-1`, clock, logger, ...options });
  const changes: Array<[number, boolean]> = [];
  leases.onChange((shard, owned) => changes.push([shard, owned]));
  leases.start();
  t.teardown(() => leases.stop());
  return { leases, changes, logs };
}

async function readRecord(store: KvStore, shard: number): Promise<{ record: LeaseRecord; revision: number } | null> {
  const entry = await store.get(leaseKey(shard));
  return entry === null ? null : { record: decodeLeaseRecord(entry.value, entry.key, entry.revision), revision: entry.revision };
}

/** Starts `promise` and records when it settles, so a test can check that it is still pending. */
function track<T>(promise: Promise<T>): { settled: () => boolean; result: Promise<T> } {
  let settled = false;
  const result = promise.finally(() => {
    settled = true;
  });
  return { settled: () => settled, result };
}

function logsWithMessage(logs: Array<Record<string, unknown>>, pattern: RegExp): Array<Record<string, unknown>> {
  return logs.filter((line) => pattern.test(String(line.msg)));
}

t.test('shard leases - acquire creates a missing key', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases, changes } = startLeases(t, kv, clock, 'node-a');

  const result = await leases.acquire(3);
  const stored = await readRecord(kv.store, 3);

  t.same(result, { acquired: true, epoch: stored?.revision, previous: null });
  t.ok(leases.owns(3), 'owns the shard');
  t.equal(leases.epoch(3), stored?.revision, 'the epoch is the revision of the acquiring write');
  t.same(changes, [[3, true]], 'onChange reports the gain');
  t.same(stored?.record, { holder: 'node-a', incarnation: 'node-a-run-1', epoch: 0, ttlMs: 10_000, released: false, previousHolder: null });
  t.same(kv.requests, ['get shard.3', 'create shard.3'], 'one read and one create');
  t.notOk(leases.owns(4), 'another shard is not owned');
  t.equal(leases.epoch(4), 0, 'the epoch of a shard not owned is 0');
});

t.test('shard leases - renewals keep the epoch', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases } = startLeases(t, kv, clock, 'node-a');
  const { epoch } = (await leases.acquire(0)) as { epoch: number };

  await clock.advance(3_000);
  const renewed = await readRecord(kv.store, 0);
  t.ok(renewed!.revision > epoch, 'the renewal wrote a new revision');
  t.equal(renewed!.record.epoch, epoch, 'the renewal stores the epoch');
  t.equal(leaseEpoch(renewed!.record, renewed!.revision), epoch);

  await clock.advance(60_000);
  const later = await readRecord(kv.store, 0);
  t.equal(kv.requests.filter((request) => request.startsWith('update')).length, 21, 'one renewal every 3,000 ms');
  t.ok(leases.owns(0), 'still owns the shard after a minute');
  t.equal(leases.epoch(0), epoch, 'the epoch is unchanged');
  t.equal(later!.record.epoch, epoch);
});

t.test('shard leases - waits out a lease held by another node', async (t) => {
  const kv = new ScriptedKvStore();
  const clockA = new ManualClock();
  const a = startLeases(t, kv, clockA, 'node-a');
  const first = (await a.leases.acquire(1)) as { epoch: number };
  a.leases.stop();
  const heldRevision = (await readRecord(kv.store, 1))!.revision;

  // Another origin, so that nothing can compare node-b's clock with node-a's.
  const clockB = new ManualClock(5_000_000);
  const b = startLeases(t, kv, clockB, 'node-b');
  const attempt = track(b.leases.acquire(1));

  await clockB.advance(TAKEOVER_WAIT_MS - 1);
  t.notOk(attempt.settled(), 'acquire still waits 1 ms before ttl + margin');
  t.notOk(b.leases.owns(1));
  t.equal((await readRecord(kv.store, 1))!.revision, heldRevision, 'node-b has not written yet');
  t.notOk(kv.requests.some((request) => request.startsWith('update')), 'no update was sent');

  await clockB.advance(1);
  const result = await attempt.result;
  t.same(result, {
    acquired: true,
    epoch: leaseEpoch((await readRecord(kv.store, 1))!.record, (await readRecord(kv.store, 1))!.revision),
    previous: { holder: 'node-a', incarnation: 'node-a-run-1', epoch: first.epoch, released: false },
  });
  t.ok(b.leases.owns(1));
  t.ok(b.leases.epoch(1) > first.epoch, 'the new tenure has a higher epoch');
  t.same(kv.requests.filter((request) => request.startsWith('update')), [`update shard.1@${heldRevision}`], 'the update expects the observed revision');
});

t.test('shard leases - wait counts from the first observation', async (t) => {
  const kv = new ScriptedKvStore();
  const clockA = new ManualClock();
  const a = startLeases(t, kv, clockA, 'node-a');
  await a.leases.acquire(1);
  a.leases.stop();

  const clockB = new ManualClock(7_000_000);
  const b = startLeases(t, kv, clockB, 'node-b');
  b.leases.observe(await kv.store.list('shard.'));
  await clockB.advance(4_000);

  const attempt = track(b.leases.acquire(1));
  await clockB.advance(TAKEOVER_WAIT_MS - 4_000 - 1);
  t.notOk(attempt.settled(), 'acquire waits until ttl + margin after the first observation');

  await clockB.advance(1);
  t.match(await attempt.result, { acquired: true }, 'and takes the lease 4,000 ms sooner than without it');
});

t.test('shard leases - a changed revision restarts the wait', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const a = startLeases(t, kv, clock, 'node-a');
  await a.leases.acquire(1);
  const b = startLeases(t, kv, clock, 'node-b');
  b.leases.observe(await kv.store.list('shard.'));

  // node-a renews, then stops without a release: the old observation no longer counts.
  await clock.advance(3_000);
  a.leases.stop();
  const attempt = track(b.leases.acquire(1));
  await clock.advance(TAKEOVER_WAIT_MS - 1);
  t.notOk(attempt.settled(), 'the wait counts from the renewed revision');

  await clock.advance(1);
  t.match(await attempt.result, { acquired: true });
});

t.test('shard leases - waits out a longer ttl of the holder', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const a = startLeases(t, kv, clock, 'node-a', { leaseTtlMs: 30_000 });
  await a.leases.acquire(1);
  a.leases.stop();

  const b = startLeases(t, kv, clock, 'node-b');
  const attempt = track(b.leases.acquire(1));
  await clock.advance(30_000 + 2_000 - 1);
  t.notOk(attempt.settled(), 'the taker waits the holder\'s ttl of 30,000 ms, not its own');

  await clock.advance(1);
  t.match(await attempt.result, { acquired: true });
});

t.test('shard leases - waiting ends when the holder renews', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const a = startLeases(t, kv, clock, 'node-a');
  await a.leases.acquire(2);
  const b = startLeases(t, kv, clock, 'node-b');

  const attempt = track(b.leases.acquire(2));
  await clock.advance(TAKEOVER_WAIT_MS);

  t.ok(attempt.settled(), 'acquire returned before ttl + margin');
  t.same(await attempt.result, { acquired: false, reason: 'held' });
  t.ok(a.leases.owns(2), 'node-a still owns the shard');
  t.equal((await readRecord(kv.store, 2))!.record.holder, 'node-a');
});

t.test('shard leases - takes a released lease at once', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const a = startLeases(t, kv, clock, 'node-a');
  const first = (await a.leases.acquire(0)) as { epoch: number };

  t.equal(await a.leases.release(0), true, 'release succeeds');
  t.notOk(a.leases.owns(0), 'node-a no longer owns the shard');
  t.same(a.changes, [[0, true], [0, false]]);
  const released = await readRecord(kv.store, 0);
  t.same(released!.record, { holder: 'node-a', incarnation: 'node-a-run-1', epoch: first.epoch, ttlMs: 10_000, released: true, previousHolder: null });

  const b = startLeases(t, kv, clock, 'node-b');
  const result = await b.leases.acquire(0);
  t.same(result, {
    acquired: true,
    epoch: (await readRecord(kv.store, 0))!.revision,
    previous: { holder: 'node-a', incarnation: 'node-a-run-1', epoch: first.epoch, released: true },
  });
  t.equal(clock.nowMs(), 0, 'no time passed');
});

t.test('shard leases - wake ends the wait for a released lease at once', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const a = startLeases(t, kv, clock, 'node-a');
  const b = startLeases(t, kv, clock, 'node-b', { takeoverPollIntervalMs: 1_000 });
  await a.leases.acquire(0);
  await a.leases.acquire(1);

  let outcome: unknown = 'waiting';
  void b.leases.acquire(0).then((result) => (outcome = result));
  await settle();
  t.equal(await a.leases.release(0), true, 'node-a released the lease');
  const readsBefore = kv.requests.filter((request) => request === 'get shard.0').length;

  b.leases.wake(1);
  await settle();
  t.equal(outcome, 'waiting', 'waking another shard does not end the wait');
  t.equal(kv.requests.filter((request) => request === 'get shard.0').length, readsBefore, 'and reads nothing');

  b.leases.wake(0);
  await settle();
  t.match(outcome, { acquired: true }, 'the wait ended and the released lease was taken');
  t.equal(clock.nowMs(), 0, 'no time passed');
});

t.test('shard leases - release keeps the previous holder', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const a = startLeases(t, kv, clock, 'node-a');
  const b = startLeases(t, kv, clock, 'node-b');
  const c = startLeases(t, kv, clock, 'node-c');

  const first = (await a.leases.acquire(0)) as { epoch: number };
  await a.leases.release(0);
  const second = (await b.leases.acquire(0)) as { epoch: number };
  await b.leases.release(0);

  const stored = await readRecord(kv.store, 0);
  t.equal(stored!.record.holder, 'node-b', 'the released record names the node that released it');
  t.same(stored!.record.previousHolder, { holder: 'node-a', incarnation: 'node-a-run-1', epoch: first.epoch, released: true }, 'and the tenure before it');

  const third = await c.leases.acquire(0);
  t.match(third, { acquired: true, previous: { holder: 'node-b', epoch: second.epoch, released: true } });
});

t.test('shard leases - concurrent acquires, one wins', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const nodes = ['node-a', 'node-b', 'node-c'].map((nodeId) => startLeases(t, kv, clock, nodeId));

  const results = await Promise.all(nodes.map((node) => node.leases.acquire(5)));
  const winners = results.filter((result) => result.acquired);
  t.equal(winners.length, 1, 'exactly one node acquires the shard');
  t.same(
    results.filter((result) => !result.acquired),
    [
      { acquired: false, reason: 'conflict' },
      { acquired: false, reason: 'conflict' },
    ],
    'the others lost the compare-and-set',
  );
  t.equal(nodes.filter((node) => node.leases.owns(5)).length, 1, 'exactly one node owns it');
});

t.test('shard leases - concurrent calls share one attempt', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases } = startLeases(t, kv, clock, 'node-a');

  const [first, second] = await Promise.all([leases.acquire(0), leases.acquire(0)]);
  t.same(first, second);
  t.equal(kv.requests.filter((request) => request.startsWith('create')).length, 1, 'one create was sent');
  t.same(await leases.acquire(0), first, 'acquire of an owned shard returns the current tenure');
});

t.test('shard leases - steps down when renewals fail', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases, changes, logs } = startLeases(t, kv, clock, 'node-a');
  const { epoch } = (await leases.acquire(0)) as { epoch: number };
  kv.down = true;

  await clock.advance(VALIDITY_MS - 1);
  t.ok(leases.owns(0), 'owns the shard 1 ms before the validity ends');
  t.same(changes, [[0, true]]);
  const renewals = kv.requests.filter((request) => request.startsWith('update'));
  t.equal(renewals.length, 5, 'renewal at 3,000 ms and retries every 1,000 ms');

  await clock.advance(1);
  t.notOk(leases.owns(0), 'stops owning when the validity ends');
  t.equal(leases.epoch(0), 0);
  t.same(changes, [[0, true], [0, false]], 'onChange reports the loss');

  const expired = logsWithMessage(logs, /expired without a confirmed renewal/);
  t.equal(expired.length, 1);
  t.match(expired[0], { level: 40, nodeId: 'node-a', shard: 0, epoch, reason: 'expired' });
  t.equal(logsWithMessage(logs, /renewal failed/).filter((line) => line.level === 40).length, 1, 'only the first failed renewal is a warning');

  kv.down = false;
  const requestsAfter = kv.requests.length;
  await clock.advance(30_000);
  t.equal(kv.requests.length, requestsAfter, 'no renewal is sent after stepping down');
});

t.test('shard leases - validity counts from the send time', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases } = startLeases(t, kv, clock, 'node-a');
  await leases.acquire(0);

  kv.holdingReplies = true;
  await clock.advance(3_000);
  t.equal(kv.requests.at(-1)?.startsWith('update'), true, 'the renewal was sent at 3,000 ms');

  // The reply comes 4,000 ms later. The lease counts from 3,000 ms, so it ends at 11,000 ms.
  await clock.advance(4_000);
  kv.holdingReplies = false;
  kv.down = true;
  kv.releaseReplies();
  await settle();

  await clock.advance(10_999 - clock.nowMs());
  t.ok(leases.owns(0), 'owns the shard at 10,999 ms');
  await clock.advance(1);
  t.notOk(leases.owns(0), 'the lease ends at 11,000 ms, not 8,000 ms after the reply');
});

t.test('shard leases - late acquire reply is not ownership', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases, changes, logs } = startLeases(t, kv, clock, 'node-a');

  kv.holdingReplies = true;
  const attempt = track(leases.acquire(0));
  await settle();
  kv.releaseReplies();
  await settle();
  t.match(kv.requests, ['get shard.0', 'create shard.0']);

  await clock.advance(VALIDITY_MS);
  kv.holdingReplies = false;
  kv.releaseReplies();
  t.same(await attempt.result, { acquired: false, reason: 'expired' });
  t.notOk(leases.owns(0));
  t.same(changes, [], 'no gain was reported');
  t.equal(logsWithMessage(logs, /confirmed too late/).length, 1);

  const again = await leases.acquire(0);
  t.match(again, { acquired: true, previous: { holder: 'node-a', incarnation: 'node-a-run-1', released: false } }, 'its own record is taken at once');
});

t.test('shard leases - renewal conflict loses at once', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases, changes, logs } = startLeases(t, kv, clock, 'node-a');
  const { epoch } = (await leases.acquire(0)) as { epoch: number };

  const intruder: LeaseRecord = { holder: 'node-x', incarnation: 'x', epoch: 0, ttlMs: 10_000, released: false, previousHolder: null };
  await kv.store.put(leaseKey(0), encodeLeaseRecord(intruder));
  await clock.advance(2_999);
  t.ok(leases.owns(0), 'no renewal yet, so the write is not noticed');

  await clock.advance(1);
  t.notOk(leases.owns(0), 'the renewal conflict ends ownership at 3,000 ms');
  t.same(changes, [[0, true], [0, false]]);
  const lost = logsWithMessage(logs, /lease lost/);
  t.equal(lost.length, 1);
  t.match(lost[0], { level: 40, nodeId: 'node-a', shard: 0, epoch, reason: 'lost' });
});

t.test('shard leases - lost renewal reply is adopted', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases, changes, logs } = startLeases(t, kv, clock, 'node-a');
  const { epoch } = (await leases.acquire(0)) as { epoch: number };

  kv.lostReplies = 1;
  await clock.advance(3_000);
  const applied = await readRecord(kv.store, 0);
  t.ok(applied!.revision > epoch, 'the renewal was applied although its caller got an error');

  // The retry expects the old revision and conflicts with the node's own write.
  await clock.advance(1_000);
  t.ok(leases.owns(0), 'the conflict with its own write does not end ownership');
  t.same(changes, [[0, true]]);
  t.equal(logsWithMessage(logs, /reply was lost had been applied/).length, 1);
  const renewed = await readRecord(kv.store, 0);
  t.ok(renewed!.revision > applied!.revision, 'the renewal was sent again at the adopted revision');
  t.equal(renewed!.record.epoch, epoch);

  await clock.advance(VALIDITY_MS);
  t.ok(leases.owns(0), 'later renewals keep the lease');
});

t.test('shard leases - lost reply then another writer', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases, changes } = startLeases(t, kv, clock, 'node-a');
  await leases.acquire(0);

  kv.lostReplies = 1;
  await clock.advance(3_000);
  const intruder: LeaseRecord = { holder: 'node-x', incarnation: 'x', epoch: 0, ttlMs: 10_000, released: false, previousHolder: null };
  await kv.store.put(leaseKey(0), encodeLeaseRecord(intruder));

  await clock.advance(1_000);
  t.notOk(leases.owns(0), 'a record of another node is no lost reply');
  t.same(changes, [[0, true], [0, false]]);
});

t.test('shard leases - stalled process reports no ownership', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases, changes } = startLeases(t, kv, clock, 'node-a');
  await leases.acquire(0);
  const revision = (await readRecord(kv.store, 0))!.revision;

  // The process stops before its first renewal and resumes after the validity ended.
  clock.jump(VALIDITY_MS);
  t.notOk(leases.owns(0), 'owns() is false before any timer runs');
  t.equal(leases.epoch(0), 0);
  t.same(leases.ownedShards(), []);

  await clock.advance(0);
  t.same(changes, [[0, true], [0, false]], 'the late timers step down');
  t.equal((await readRecord(kv.store, 0))!.revision, revision, 'the late renewal timer sent nothing');
});

t.test('shard leases - own record is retaken at once', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases, changes } = startLeases(t, kv, clock, 'node-a');
  const first = (await leases.acquire(0)) as { epoch: number };

  kv.down = true;
  await clock.advance(VALIDITY_MS);
  t.notOk(leases.owns(0));
  kv.down = false;

  const second = await leases.acquire(0);
  t.match(second, { acquired: true, previous: { holder: 'node-a', incarnation: 'node-a-run-1', epoch: first.epoch, released: false } });
  t.ok((second as { epoch: number }).epoch > first.epoch, 'the new tenure has a higher epoch');
  t.same(changes, [[0, true], [0, false], [0, true]]);
});

t.test('shard leases - restarted node waits out its old run', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const oldRun = startLeases(t, kv, clock, 'node-a');
  await oldRun.leases.acquire(0);
  oldRun.leases.stop();

  const newRun = startLeases(t, kv, clock, 'node-a', { incarnation: 'node-a-run-2' });
  const attempt = track(newRun.leases.acquire(0));
  await clock.advance(TAKEOVER_WAIT_MS - 1);
  t.notOk(attempt.settled(), 'another incarnation of the same node id waits like any other node');
  await clock.advance(1);
  t.match(await attempt.result, { acquired: true, previous: { holder: 'node-a', incarnation: 'node-a-run-1', released: false } });
});

t.test('shard leases - stale read cannot take a lease', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const a = startLeases(t, kv, clock, 'node-a');
  await a.leases.acquire(0);
  await a.leases.release(0);
  const second = startLeases(t, kv, clock, 'node-b');
  await second.leases.acquire(0);

  // node-c reads the released record of node-a, which node-b has since replaced.
  kv.store.staleReads = 1;
  const c = startLeases(t, kv, clock, 'node-c');
  t.same(await c.leases.acquire(0), { acquired: false, reason: 'conflict' });
  t.ok(second.leases.owns(0), 'node-b keeps the shard');
  t.notOk(c.leases.owns(0));
});

t.test('shard leases - stop steps down and ends timers', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases, changes, logs } = startLeases(t, kv, clock, 'node-a');
  await leases.acquire(0);
  await leases.acquire(1);
  const b = startLeases(t, kv, clock, 'node-b');
  const waiting = track(b.leases.acquire(0));
  await settle();

  b.leases.stop();
  t.same(await waiting.result, { acquired: false, reason: 'stopped' }, 'a waiting acquire ends');
  leases.stop();
  t.same(leases.ownedShards(), []);
  t.same(changes, [[0, true], [1, true], [0, false], [1, false]]);
  t.equal(clock.pendingTimers, 0, 'no timer is left');
  t.equal(leases.state, 'stopped');
  t.equal(logsWithMessage(logs, /manager stopped/).length, 2);

  await t.rejects(leases.acquire(2), { code: 'INVALID_STATE' });
  t.equal(await leases.release(0), false, 'release after stop does nothing');
  const requests = kv.requests.length;
  await clock.advance(60_000);
  t.equal(kv.requests.length, requests, 'nothing is sent after stop');
});

t.test('shard leases - release waits for a renewal in flight', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases, changes } = startLeases(t, kv, clock, 'node-a');
  await leases.acquire(0);

  kv.holdingReplies = true;
  await clock.advance(3_000);
  const release = track(leases.release(0));
  await settle();
  t.notOk(leases.owns(0), 'owns() is false as soon as the release starts');
  t.same(changes, [[0, true]], 'onChange waits for the released record');

  kv.holdingReplies = false;
  kv.releaseReplies();
  t.equal(await release.result, true, 'the release writes after the renewal, at its revision');
  t.equal((await readRecord(kv.store, 0))!.record.released, true);
  t.same(changes, [[0, true], [0, false]]);
});

t.test('shard leases - failed release steps down', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases, changes, logs } = startLeases(t, kv, clock, 'node-a');
  await leases.acquire(0);

  kv.down = true;
  t.equal(await leases.release(0), false);
  t.notOk(leases.owns(0));
  t.same(changes, [[0, true], [0, false]]);
  t.match(logsWithMessage(logs, /release failed/)[0], { level: 40, shard: 0, reason: 'release failed' });
  t.equal(await leases.release(0), false, 'a second release finds nothing to release');
});

t.test('shard leases - acquire errors', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const leases = new ShardLeases(kv, { nodeId: 'node-a', clock });
  await t.rejects(leases.acquire(0), { code: 'INVALID_STATE' }, 'acquire before start');
  leases.start();
  t.teardown(() => leases.stop());

  await t.rejects(leases.acquire(-1), RangeError);
  await t.rejects(leases.acquire(1.5), RangeError);

  kv.down = true;
  await t.rejects(leases.acquire(0), { message: /scripted KV is down/ }, 'a failed request rejects with its error');
  kv.down = false;

  await kv.store.put(leaseKey(1), new TextEncoder().encode('{"version":1,"holder":""}'));
  await t.rejects(leases.acquire(1), { code: 'INVALID_LEASE_RECORD', message: /key shard\.1 at revision \d+ is invalid: holder/ });
  t.notOk(leases.owns(1));
});

t.test('shard leases - logs name node, shard and epoch', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases, logs } = startLeases(t, kv, clock, 'node-a');
  const { epoch } = (await leases.acquire(7)) as { epoch: number };
  await leases.release(7);

  t.match(logsWithMessage(logs, /shard lease acquired/), [{ level: 30, nodeId: 'node-a', incarnation: 'node-a-run-1', shard: 7, epoch, previousHolder: null }]);
  t.match(logsWithMessage(logs, /shard lease released/), [{ level: 30, nodeId: 'node-a', shard: 7, epoch }]);
});

t.test('shard leases - listener errors are logged', async (t) => {
  const kv = new ScriptedKvStore();
  const clock = new ManualClock();
  const { leases, logs } = startLeases(t, kv, clock, 'node-a');
  const unsubscribe = leases.onChange(() => {
    throw new Error('listener failed');
  });

  t.match(await leases.acquire(0), { acquired: true }, 'a throwing listener does not fail acquire');
  t.match(logsWithMessage(logs, /listener threw/), [{ level: 50, shard: 0, owned: true }]);
  unsubscribe();
  await leases.release(0);
  t.equal(logsWithMessage(logs, /listener threw/).length, 1, 'an unsubscribed listener is not called');
});

t.test('lease options - defaults and rules', async (t) => {
  const resolved = resolveShardLeaseOptions({ nodeId: 'node-a' });
  t.match(resolved, { nodeId: 'node-a', leaseTtlMs: 10_000, renewIntervalMs: 3_000, stallMarginMs: 2_000, takeoverMarginMs: 2_000, renewRetryIntervalMs: 1_000 });
  t.match(resolved.incarnation, /^[0-9a-f-]{36}$/, 'the incarnation defaults to a UUID');

  const cases: Array<[Partial<ShardLeaseOptions>, RegExp]> = [
    [{ nodeId: '' }, /nodeId must be a non-empty string/],
    [{ incarnation: '' }, /incarnation must be a non-empty string/],
    [{ leaseTtlMs: 0 }, /leaseTtlMs must be an integer from 1/],
    [{ renewIntervalMs: 1.5 }, /renewIntervalMs must be an integer/],
    [{ takeoverMarginMs: -1 }, /takeoverMarginMs must be an integer/],
    [{ stallMarginMs: 10_000 }, /stallMarginMs \(10000\) must be less than leaseTtlMs \(10000\)/],
    [{ renewIntervalMs: 8_000 }, /renewIntervalMs \(8000\) must be less than leaseTtlMs - stallMarginMs \(8000\)/],
    [{ leaseTtlMs: 5_000 }, /renewIntervalMs \(3000\) must be less than leaseTtlMs - stallMarginMs \(3000\)/],
    [{ renewRetryIntervalMs: 5_000 }, /renewRetryIntervalMs \(5000\) must be less than .* \(5000\)/],
  ];
  for (const [options, message] of cases) {
    t.throws(() => resolveShardLeaseOptions({ nodeId: 'node-a', ...options }), { code: 'INVALID_CONFIG', message }, JSON.stringify(options));
  }
});

t.test('lease record - decode validates fields', async (t) => {
  const valid: LeaseRecord = {
    holder: 'node-a',
    incarnation: 'run-1',
    epoch: 4,
    ttlMs: 10_000,
    released: true,
    previousHolder: { holder: 'node-b', incarnation: 'run-9', epoch: 2, released: false },
  };
  t.same(decodeLeaseRecord(encodeLeaseRecord(valid), 'shard.0', 5), valid, 'a record survives encode and decode');

  const text = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));
  const base = { version: 1, ...valid };
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['not JSON', new TextEncoder().encode('{'), /not UTF-8 JSON/],
    ['not UTF-8', Uint8Array.of(0xff, 0xfe), /not UTF-8 JSON/],
    ['an array', text([]), /not a JSON object/],
    ['another version', text({ ...base, version: 2 }), /version must be 1, found 2/],
    ['no holder', text({ ...base, holder: undefined }), /holder must be a non-empty string/],
    ['a negative epoch', text({ ...base, epoch: -1 }), /epoch must be an integer of at least 0, found -1/],
    ['a zero ttl', text({ ...base, ttlMs: 0 }), /ttlMs must be an integer of at least 1/],
    ['a string released', text({ ...base, released: 'yes' }), /released must be true or false/],
    ['a bad previous holder', text({ ...base, previousHolder: 'node-b' }), /previousHolder must be an object or null/],
    ['a previous holder without epoch', text({ ...base, previousHolder: { ...valid.previousHolder, epoch: 0 } }), /previousHolder\.epoch must be an integer of at least 1/],
  ];
  for (const [name, value, message] of cases) {
    t.throws(() => decodeLeaseRecord(value, 'shard.0', 5), { code: 'INVALID_LEASE_RECORD', message: new RegExp(`key shard\\.0 at revision 5 is invalid: ${message.source}`) }, name);
  }
});
