import t from 'tap';
import { DeliveryLog, FakeBehavior, Gate, settle, snapshotOf, startSystem, waitFor } from './fixtures/fake-behavior.js';

t.test('actor system - dead-letters a poison message', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior, { maxAttempts: 3 });
  const log = new DeliveryLog();
  let deadLettersWhenDurable = -1;

  system.tell('k', { id: 1 }, log.for(1));
  system.tell('k', { id: 2, failTimes: Infinity }, log.for(2, () => (deadLettersWhenDurable = behavior.deadLetters.length)));
  system.tell('k', { id: 3 }, log.for(3));
  system.tell('k', { id: 4 }, log.for(4));

  const state = await system.ask('k', snapshotOf);
  t.same(state, { count: 3, applied: [1, 3, 4] }, 'every good message applied exactly once');
  t.same(log.applied, [1, 3, 4]);
  t.same(log.deadLettered, [2], 'onApplied reported the dead letter');

  await waitFor(() => log.durable.includes(2), 'onDurable of the dead letter');
  t.equal(deadLettersWhenDurable, 1, 'onDurable ran after the dead letter was stored');
  t.match(behavior.deadLetters, [{ key: 'k', id: 2, attempts: 3, error: { message: 'message 2 failed on call 3' } }]);

  const stats = system.stats();
  t.equal(stats.restarts, 3, 'one restart per failed attempt');
  t.equal(stats.deadLetters, 1);
});

t.test('actor system - replays the journal without double-applying', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior, { snapshotEveryMessages: 2 });

  system.tell('k', { id: 1 });
  system.tell('k', { id: 2 });
  await waitFor(() => behavior.stored('k')?.count === 2, 'the first snapshot');

  system.tell('k', { id: 3 });
  system.tell('k', { id: 4, failTimes: 1 });
  system.tell('k', { id: 5 });
  const state = await system.ask('k', snapshotOf);

  t.same(state, { count: 5, applied: [1, 2, 3, 4, 5] });
  t.equal(system.stats().restarts, 1);
  t.equal(system.stats().deadLetters, 0);
  t.same(behavior.loads, ['k', 'k'], 'the restart reloaded the snapshot');
});

t.test('actor system - restarts from create when no snapshot exists', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior);

  system.tell('k', { id: 1 });
  system.tell('k', { id: 2, failTimes: 2 });
  const state = await system.ask('k', snapshotOf);

  t.same(state, { count: 2, applied: [1, 2] });
  t.equal(system.stats().restarts, 2);
  t.same(behavior.creates, ['k', 'k', 'k'], 'create rebuilt the state on each restart');
});

t.test('actor system - restart waits for the in-flight persist', async (t) => {
  const behavior = new FakeBehavior();
  behavior.persistGate = new Gate();
  const system = startSystem(t, behavior, { snapshotEveryMessages: 2 });
  const log = new DeliveryLog();

  system.tell('k', { id: 1 }, log.for(1));
  system.tell('k', { id: 2 }, log.for(2));
  await waitFor(() => behavior.persists.length === 1, 'the persist call');

  system.tell('k', { id: 3, failTimes: 1 }, log.for(3));
  await waitFor(() => system.stats().restarts === 1, 'the restart');
  await settle(20);
  t.same(behavior.loads, ['k'], 'no load while the persist is in flight');

  behavior.persistGate.open();
  const state = await system.ask('k', snapshotOf);
  t.same(state, { count: 3, applied: [1, 2, 3] }, 'the journal was replayed on the new snapshot only');
  t.ok(behavior.events.indexOf('persist end k') < behavior.events.lastIndexOf('load k'), 'load came after the persist ended');
  t.same(log.applied, [1, 2, 3]);
});

t.test('actor system - restart after a failed persist replays the whole journal', async (t) => {
  const behavior = new FakeBehavior();
  behavior.persistGate = new Gate();
  behavior.failPersists = 1;
  const system = startSystem(t, behavior, { snapshotEveryMessages: 2 });

  system.tell('k', { id: 1 });
  system.tell('k', { id: 2 });
  await waitFor(() => behavior.persists.length === 1, 'the persist call');
  system.tell('k', { id: 3, failTimes: 1 });
  await waitFor(() => system.stats().restarts === 1, 'the restart');

  behavior.persistGate.open();
  const state = await system.ask('k', snapshotOf);
  t.same(state, { count: 3, applied: [1, 2, 3] });
  await system.flush();
  t.same(behavior.stored('k'), { count: 3, applied: [1, 2, 3] });
});

t.test('actor system - dead-letters a message that throws on replay', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior);
  const log = new DeliveryLog();

  system.tell('k', { id: 1, failOnCall: 2 }, log.for(1));
  system.tell('k', { id: 2, failTimes: 1 }, log.for(2));
  const state = await system.ask('k', snapshotOf);

  t.same(state, { count: 1, applied: [2] }, 'the message that failed on replay is gone from the state');
  t.same(log.applied, [1, 2], 'onApplied ran once for each message');
  t.same(log.deadLettered, []);
  await waitFor(() => log.durable.includes(1), 'onDurable of the replayed message');
  t.match(behavior.deadLetters, [{ key: 'k', id: 1 }]);
  t.equal(system.stats().restarts, 2);
  t.equal(system.stats().deadLetters, 1);
});

t.test('actor system - retries a failed dead-letter write', async (t) => {
  const behavior = new FakeBehavior();
  behavior.failDeadLetters = 1;
  const system = startSystem(t, behavior, { maxAttempts: 1 });
  const log = new DeliveryLog();

  system.tell('k', { id: 1, failTimes: Infinity }, log.for(1));
  await waitFor(() => log.deadLettered.length === 1, 'the dead letter decision');
  t.same(log.durable, []);

  await waitFor(() => log.durable.length === 1, 'onDurable after the retry');
  t.equal(behavior.deadLetters.length, 1);
});
