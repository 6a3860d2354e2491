import { setImmediate as nextTurn } from 'node:timers/promises';
import t from 'tap';
import { DeliveryLog, FakeBehavior, Gate, snapshotOf, startSystem, waitFor } from './fixtures/fake-behavior.js';

t.test('actor system - applies messages in order', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior);
  const expected = { a: [] as number[], b: [] as number[] };
  let accepted = 0;

  for (let id = 1; id <= 600; id++) {
    const key = id % 3 === 0 ? 'b' : 'a';
    accepted += system.tell(key, { id }) ? 1 : 0;
    expected[key].push(id);
  }
  t.equal(accepted, 600, 'every tell accepted');

  const a = await system.ask('a', snapshotOf);
  const b = await system.ask('b', snapshotOf);
  t.same(a?.applied, expected.a);
  t.same(b?.applied, expected.b);
  t.equal(a?.count, expected.a.length);
  await system.stop();
});

t.test('actor system - slow activation does not block other keys', async (t) => {
  const behavior = new FakeBehavior();
  const slowLoad = new Gate();
  behavior.loadGates.set('slow', slowLoad);
  const system = startSystem(t, behavior);

  system.tell('slow', { id: 1 });
  system.tell('fast', { id: 2 });

  const fast = await system.ask('fast', snapshotOf);
  t.same(fast?.applied, [2], 'fast key applied while the slow load is pending');
  t.equal(slowLoad.opened, false);

  slowLoad.open();
  const slow = await system.ask('slow', snapshotOf);
  t.same(slow?.applied, [1]);
  await system.stop();
});

t.test('actor system - ask sees every message told before it', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior);

  system.tell('k', { id: 1 });
  system.tell('k', { id: 2 });
  const answer = system.ask('k', snapshotOf);
  system.tell('k', { id: 3 });

  t.same((await answer)?.applied, [1, 2]);
  t.same((await system.ask('k', snapshotOf))?.applied, [1, 2, 3]);
  await system.stop();
});

t.test('actor system - calls onApplied before any persist', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior, { snapshotEveryMessages: 1 });
  const persistsWhenApplied: number[] = [];

  system.tell('k', { id: 1 }, { onApplied: () => persistsWhenApplied.push(behavior.persists.length) });

  await waitFor(() => persistsWhenApplied.length === 1, 'onApplied');
  t.same(persistsWhenApplied, [0], 'no persist had started when onApplied ran');
  await waitFor(() => behavior.persists.length === 1, 'the snapshot');
  await system.stop();
});

t.test('actor system - yields to the event loop during long runs', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior);
  const log = new DeliveryLog();
  const total = 5_000;

  for (let id = 1; id <= total; id++) {
    system.tell(`k${id % 50}`, { id }, log.for(id));
  }
  await waitFor(() => log.applied.length > 0, 'the first applied message');

  const appliedAtYield = log.applied.length;
  await nextTurn();
  t.ok(appliedAtYield < total, `an immediate ran after ${appliedAtYield} of ${total} messages`);

  await waitFor(() => log.applied.length === total, 'every message');
  t.equal(system.stats().queued, 0);
  await system.stop();
});
