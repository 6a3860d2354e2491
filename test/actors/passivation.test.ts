import t from 'tap';
import { DeliveryLog, FakeBehavior, Gate, snapshotOf, startSystem, waitFor } from './fixtures/fake-behavior.js';

t.test('actor system - passivates after idleTimeoutMs', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior, { idleTimeoutMs: 50 });
  const log = new DeliveryLog();

  system.tell('k', { id: 1 }, log.for(1));
  await waitFor(() => log.applied.length === 1, 'the message applied');
  t.equal(system.stats().resident, 1);

  await waitFor(() => system.stats().resident === 0, 'passivation');
  t.equal(system.stats().passivations, 1);
  t.same(log.durable, [1], 'the dirty actor was persisted before it left memory');
  t.same(behavior.stored('k'), { count: 1, applied: [1] });

  system.tell('k', { id: 2 });
  t.same(await system.ask('k', snapshotOf), { count: 2, applied: [1, 2] }, 're-activated from the snapshot');
  t.same(behavior.loads, ['k', 'k']);
  t.same(behavior.creates, ['k'], 'create only ran for the first activation');
});

t.test('actor system - messages keep an actor resident', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior, { idleTimeoutMs: 150 });

  // Messages 25 ms apart outlast the idle timeout several times over, with margin for a loaded machine.
  for (let id = 1; id <= 20; id++) {
    system.tell('k', { id });
    await new Promise((resolve) => setTimeout(resolve, 25));
  }

  t.equal(system.stats().resident, 1, 'never idle for 150 ms');
  t.equal(system.stats().passivations, 0);
});

t.test('actor system - passivates least recently used above maxResidentActors', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior, { maxResidentActors: 2 });

  system.tell('a', { id: 1 });
  await system.ask('a', snapshotOf);
  system.tell('b', { id: 2 });
  await system.ask('b', snapshotOf);
  system.tell('a', { id: 3 });
  await system.ask('a', snapshotOf);
  system.tell('c', { id: 4 });

  await waitFor(() => system.stats().passivations === 1, 'one eviction');
  t.equal(system.stats().resident, 2);
  t.same(behavior.stored('b'), { count: 1, applied: [2] }, 'b, least recently used, was persisted and passivated');
  t.equal(behavior.stored('a'), undefined, 'a stayed resident');

  await system.ask('a', snapshotOf);
  t.same(behavior.loads.filter((key) => key === 'a'), ['a'], 'a was never reloaded');
});

t.test('actor system - does not evict a ready actor with queued messages', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior, { maxResidentActors: 1 });
  const log = new DeliveryLog();

  system.tell('a', { id: 1 }, log.for(1));
  await system.ask('a', snapshotOf);
  system.tell('a', { id: 2 }, log.for(2));
  system.tell('b', { id: 3 }, log.for(3));

  t.equal(system.stats().resident, 2, 'a has a queued message, so activating b evicts nothing');
  await waitFor(() => log.applied.length === 3, 'every message applied');
  t.same(log.applied, [1, 2, 3]);
  t.equal(behavior.stored('a'), undefined, 'a was not persisted for passivation');
});

t.test('actor system - does not evict a loading actor', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior, { maxResidentActors: 1 });
  const load = new Gate();
  behavior.loadGates.set('a', load);
  const log = new DeliveryLog();

  system.tell('a', { id: 1 }, log.for(1));
  system.tell('a', { id: 2 }, log.for(2));
  system.tell('b', { id: 3 }, log.for(3));
  await waitFor(() => log.applied.includes(3), 'b applied');

  t.equal(system.stats().resident, 2, 'a waits with queued messages, so it stays');
  load.open();
  await waitFor(() => log.applied.length === 3, 'a applied');
  t.same(log.applied, [3, 1, 2]);
});

t.test('actor system - passivation waits for the in-flight persist', async (t) => {
  const behavior = new FakeBehavior();
  behavior.persistGate = new Gate();
  const system = startSystem(t, behavior, { idleTimeoutMs: 30, snapshotEveryMessages: 1 });

  system.tell('k', { id: 1 });
  await waitFor(() => behavior.persists.length === 1, 'the persist call');
  await new Promise((resolve) => setTimeout(resolve, 80));

  t.equal(system.stats().resident, 1, 'still resident while its snapshot is in flight');
  behavior.persistGate.open();
  await waitFor(() => system.stats().resident === 0, 'passivation');

  system.tell('k', { id: 2 });
  t.same(await system.ask('k', snapshotOf), { count: 2, applied: [1, 2] });
  const persistEnd = behavior.events.indexOf('persist end k');
  const reload = behavior.events.lastIndexOf('load k');
  t.ok(persistEnd >= 0 && persistEnd < reload, 'the reload came after the persist ended');
});
