import t from 'tap';
import { FakeBehavior, Gate, settle, snapshotOf, startSystem } from './fixtures/fake-behavior.js';

t.test('actor system - loads a snapshot on first message', async (t) => {
  const behavior = new FakeBehavior();
  behavior.seed('k', { count: 10, applied: [] });
  const system = startSystem(t, behavior);

  system.tell('k', { id: 1 });
  system.tell('k', { id: 2 });
  const state = await system.ask('k', snapshotOf);

  t.equal(state?.count, 12);
  t.same(behavior.loads, ['k'], 'loaded once');
  t.same(behavior.creates, [], 'create not called');
  t.equal(system.stats().activations, 1);
  await system.stop();
});

t.test('actor system - creates state when no snapshot exists', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior);

  system.tell('k', { id: 1 });
  const state = await system.ask('k', snapshotOf);

  t.same(state, { count: 1, applied: [1] });
  t.same(behavior.loads, ['k']);
  t.same(behavior.creates, ['k']);
  t.equal(system.stats().activations, 1);
  t.equal(system.stats().resident, 1);
  await system.stop();
});

t.test('actor system - ask without snapshot leaves nothing resident', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior);

  const state = await system.ask('missing', snapshotOf);
  await settle();

  t.equal(state, undefined);
  t.same(behavior.creates, [], 'create not called for an ask');
  t.equal(system.stats().resident, 0);
  t.equal(system.stats().activations, 0);
  t.equal(system.stats().passivations, 0);
  await system.stop();
});

t.test('actor system - ask before the first tell sees undefined', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior);

  const before = system.ask('k', snapshotOf);
  system.tell('k', { id: 1 });
  const after = system.ask('k', snapshotOf);

  t.equal(await before, undefined);
  t.same(await after, { count: 1, applied: [1] });
  t.equal(system.stats().resident, 1);
  t.same(behavior.loads, ['k'], 'one activation served both asks and the tell');
  await system.stop();
});

t.test('actor system - ask rejects when aborted before it runs', async (t) => {
  const behavior = new FakeBehavior();
  const load = new Gate();
  behavior.loadGates.set('k', load);
  const system = startSystem(t, behavior);
  system.tell('k', { id: 1 });

  const controller = new AbortController();
  const queried: string[] = [];
  const pending = system.ask('k', () => queried.push('ran'), { signal: controller.signal });
  controller.abort();

  await t.rejects(pending, { name: 'AbortedError', code: 'ABORTED' });
  load.open();
  t.equal((await system.ask('k', snapshotOf))?.count, 1, 'later asks still run');
  t.same(queried, [], 'the aborted query never ran');
  await system.stop();
});

t.test('actor system - ask rejects at once with an aborted signal', async (t) => {
  const system = startSystem(t, new FakeBehavior());

  await t.rejects(system.ask('k', snapshotOf, { signal: AbortSignal.abort() }), { code: 'ABORTED' });
  t.equal(system.stats().resident, 0, 'no actor was activated');
  await system.stop();
});

t.test('actor system - ask rejects with the query error', async (t) => {
  const system = startSystem(t, new FakeBehavior());
  system.tell('k', { id: 1 });

  const failing = system.ask('k', () => {
    throw new Error('query failed');
  });

  await t.rejects(failing, { message: 'query failed' });
  t.equal((await system.ask('k', snapshotOf))?.count, 1, 'the actor is unaffected');
  await system.stop();
});

t.test('actor system - retries a failed load', async (t) => {
  const behavior = new FakeBehavior();
  behavior.seed('k', { count: 5, applied: [] });
  behavior.failLoads = 1;
  const system = startSystem(t, behavior);

  system.tell('k', { id: 1 });
  const queuedAsk = system.ask('k', snapshotOf);

  await t.rejects(queuedAsk, { message: 'load of k failed' }, 'a queued ask gets the load error');
  const state = await system.ask('k', snapshotOf);
  t.equal(state?.count, 6, 'the message applied on the reloaded snapshot');
  t.same(behavior.loads, ['k', 'k']);
  await system.stop();
});

t.test('actor system - failed load for an ask alone is not retried', async (t) => {
  const behavior = new FakeBehavior();
  behavior.failLoads = 1;
  const system = startSystem(t, behavior);

  await t.rejects(system.ask('k', snapshotOf), { message: 'load of k failed' });
  await settle();

  t.equal(system.stats().resident, 0);
  t.same(behavior.loads, ['k']);
  await system.stop();
});
