import t, { type Test } from 'tap';
import { DeliveryLog, FakeBehavior, Gate, settle, snapshotOf, startSystem, waitFor } from './fixtures/fake-behavior.js';

t.test('actor system - snapshots after snapshotEveryMessages', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior, { snapshotEveryMessages: 5 });

  for (let id = 1; id <= 4; id++) {
    system.tell('k', { id });
  }
  await settle(20);
  t.equal(behavior.persists.length, 0, 'four messages are not enough');

  system.tell('k', { id: 5 });
  await waitFor(() => behavior.stored('k') !== undefined, 'the first snapshot');
  for (let id = 6; id <= 8; id++) {
    system.tell('k', { id });
  }
  await settle(20);

  t.same(behavior.persists, [[{ key: 'k', count: 5 }]], 'one snapshot, taken at the fifth message');
  t.equal(behavior.stored('k')?.count, 5);
  t.equal(system.stats().dirty, 1, 'the three later messages stay dirty');
});

t.test('actor system - snapshots after snapshotIntervalMs', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior, { snapshotIntervalMs: 40 });
  const log = new DeliveryLog();
  const toldAt = performance.now();

  system.tell('k', { id: 1 }, log.for(1));
  system.tell('k', { id: 2 }, log.for(2));
  await settle();
  t.equal(behavior.persists.length, 0, 'nothing persisted before the interval');

  await waitFor(() => log.durable.length === 2, 'onDurable of both messages');
  t.ok(performance.now() - toldAt >= 35, 'persisted after about snapshotIntervalMs');
  t.same(behavior.persists, [[{ key: 'k', count: 2 }]]);
  t.equal(system.stats().dirty, 0);
});

/** Tells actors k1 to k`count` one message each and waits until every message is durable. */
async function persistEach(system: ReturnType<typeof startSystem>, count: number): Promise<void> {
  const log = new DeliveryLog();
  for (let id = 1; id <= count; id++) {
    system.tell(`k${id}`, { id }, log.for(id));
  }
  await waitFor(() => log.durable.length === count, 'every onDurable');
}

t.test('actor system - batches persists up to maxPersistBatch', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior, { snapshotEveryMessages: 1, maxPersistBatch: 3 });
  await persistEach(system, 7);

  const sizes = behavior.persists.map((batch) => batch.length);
  t.same(sizes, [3, 3, 1], 'due actors are written three at a time');
  t.equal(system.stats().persistedSnapshots, 7);
  t.equal(behavior.store.size, 7);
});

t.test('actor system - sizes persist batches by encoding time', async (t) => {
  const behavior = new FakeBehavior();
  behavior.encodeCostMs = 1;
  const system = startSystem(t, behavior, { snapshotEveryMessages: 1, maxPersistBatch: 500 });
  await persistEach(system, 120);

  const sizes = behavior.persists.map((batch) => batch.length);
  t.equal(sizes[0], 50, 'the first batch, before any cost is known, holds 50');

  // At 1 ms per snapshot the time budget allows about 5, and a batch takes at least a quarter of the due actors.
  let due = 120 - sizes[0];
  for (const size of sizes.slice(1)) {
    const quarter = Math.ceil(due / 4);
    if (size < Math.min(due, quarter) || size > Math.max(5, quarter)) t.fail(`a batch of ${size} with ${due} due (${sizes.join(', ')})`);
    due -= size;
  }
  t.ok(sizes.length >= 10, `the other 70 take at least 9 batches (${sizes.join(', ')})`);
  t.equal(system.stats().persistedSnapshots, 120);
});

/** Starts a system whose persist takes 1 ms per snapshot, with 120 dirty actors that no interval makes due. */
async function systemWithDirtyActors(t: Test): Promise<{ behavior: FakeBehavior; system: ReturnType<typeof startSystem> }> {
  const behavior = new FakeBehavior();
  behavior.encodeCostMs = 1;
  const system = startSystem(t, behavior, { snapshotIntervalMs: 60_000, maxPersistBatch: 500 });

  for (let id = 1; id <= 120; id++) {
    system.tell(`k${id}`, { id });
  }
  await settle();
  return { behavior, system };
}

t.test('actor system - a drain takes the largest batches', async (t) => {
  const { behavior, system } = await systemWithDirtyActors(t);
  await system.drain();

  t.same(behavior.persists.map((batch) => batch.length), [120], 'a drain waits for every batch, so it writes them all at once');
});

t.test('actor system - a flush before a drain takes the largest batches', async (t) => {
  const { behavior, system } = await systemWithDirtyActors(t);
  await system.flush({ largestBatches: true });

  t.same(behavior.persists.map((batch) => batch.length), [120], 'the flush writes them all at once');
});

t.test('actor system - a flush on a running system sizes its batches', async (t) => {
  const { behavior, system } = await systemWithDirtyActors(t);
  await system.flush();

  const sizes = behavior.persists.map((batch) => batch.length);
  t.equal(sizes[0], 50, 'the first batch holds 50');
  t.ok(sizes.length > 2, `the rest take several batches (${sizes.join(', ')})`);
  t.equal(system.stats().persistedSnapshots, 120);
});

t.test('actor system - calls onDurable only after persist resolves', async (t) => {
  const behavior = new FakeBehavior();
  behavior.persistGate = new Gate();
  const system = startSystem(t, behavior, { snapshotEveryMessages: 1 });
  const log = new DeliveryLog();

  system.tell('k', { id: 1 }, log.for(1));
  await waitFor(() => behavior.persists.length === 1, 'the persist call');
  await settle();

  t.same(log.applied, [1]);
  t.same(log.durable, [], 'not durable while the persist is in flight');

  behavior.persistGate.open();
  await waitFor(() => log.durable.length === 1, 'onDurable');
  t.equal(behavior.stored('k')?.count, 1, 'the snapshot was stored before onDurable');
});

t.test('actor system - keeps messages applied during a persist dirty', async (t) => {
  const behavior = new FakeBehavior();
  behavior.persistGate = new Gate();
  const system = startSystem(t, behavior, { snapshotEveryMessages: 2 });
  const log = new DeliveryLog();

  system.tell('k', { id: 1 }, log.for(1));
  system.tell('k', { id: 2 }, log.for(2));
  await waitFor(() => behavior.persists.length === 1, 'the first persist call');

  system.tell('k', { id: 3 }, log.for(3));
  await waitFor(() => log.applied.length === 3, 'the third message applied during the persist');
  behavior.persistGate.open();
  await waitFor(() => log.durable.length === 2, 'onDurable of the first two');
  await settle();

  t.same(log.durable, [1, 2], 'the message applied after the snapshot is not durable');
  t.same(behavior.stored('k')?.applied, [1, 2]);
  t.equal(system.stats().dirty, 1);

  await system.flush();
  t.same(log.durable, [1, 2, 3]);
  t.same(behavior.stored('k')?.applied, [1, 2, 3]);
  t.equal(system.stats().dirty, 0);
});

t.test('actor system - retries a failed persist with backoff', async (t) => {
  const behavior = new FakeBehavior();
  behavior.failPersists = 2;
  const system = startSystem(t, behavior, { snapshotEveryMessages: 1 });
  const log = new DeliveryLog();
  const toldAt = performance.now();

  system.tell('k', { id: 1 }, log.for(1));
  await waitFor(() => behavior.events.includes('persist failed'), 'the first failure');
  t.equal(system.stats().dirty, 1, 'the actor stays dirty after a failure');
  t.same(log.durable, []);

  await waitFor(() => log.durable.length === 1, 'onDurable after the retries');
  t.equal(behavior.persists.length, 3, 'two failures, then success');
  t.ok(performance.now() - toldAt >= 250, 'retried after 100 ms, then 200 ms');
  t.same(behavior.stored('k'), { count: 1, applied: [1] });
  t.equal(system.stats().dirty, 0);
});

t.test('actor system - flush persists every dirty actor', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior);
  const log = new DeliveryLog();

  for (let id = 1; id <= 3; id++) {
    system.tell(`k${id}`, { id }, log.for(id));
  }
  await system.ask('k3', snapshotOf);
  t.equal(system.stats().dirty, 3);

  await system.flush();
  t.same(log.durable.sort(), [1, 2, 3]);
  t.equal(behavior.store.size, 3);
  t.equal(system.stats().dirty, 0);
  t.equal(behavior.persists.length, 1, 'one batch for all three');
});

t.test('actor system - flush with nothing dirty resolves', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior);

  await system.flush();
  t.equal(behavior.persists.length, 0);
});

t.test('actor system - pauses an actor whose journal is full', async (t) => {
  const behavior = new FakeBehavior();
  behavior.failPersists = 1;
  const system = startSystem(t, behavior, { snapshotEveryMessages: 2, maxJournalMessages: 4 });
  const log = new DeliveryLog();

  for (let id = 1; id <= 10; id++) {
    system.tell('k', { id }, log.for(id));
  }
  await waitFor(() => behavior.events.includes('persist failed'), 'the failed persist');
  await settle();

  t.same(log.applied, [1, 2, 3, 4], 'the actor stops at maxJournalMessages unpersisted messages');
  t.equal(system.stats().queued, 6);

  await waitFor(() => log.durable.length === 10, 'every message durable after the retry');
  t.same(log.applied, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  t.same(behavior.stored('k')?.applied, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
});

t.test('actor system - an urgent message during a persist is persisted right after it', async (t) => {
  const behavior = new FakeBehavior();
  behavior.persistGate = new Gate();
  const system = startSystem(t, behavior, { snapshotIntervalMs: 60_000 });
  const log = new DeliveryLog();

  system.tell('k', { id: 1, urgent: true }, log.for(1));
  await waitFor(() => behavior.persists.length === 1, 'the first persist');
  system.tell('k', { id: 2, urgent: true }, log.for(2));
  await settle();
  behavior.persistGate.open();

  await waitFor(() => log.durable.length === 2, 'the second message durable well before snapshotIntervalMs');
  t.same(behavior.persists, [[{ key: 'k', count: 1 }], [{ key: 'k', count: 2 }]], 'a second persist follows the first at once');
});
