import t from 'tap';
import { ActorSystem } from '../../actors/actor-system.js';
import { DeliveryLog, FakeBehavior, Gate, settle, snapshotOf, startSystem, waitFor } from './fixtures/fake-behavior.js';

t.test('actor system - moves through lifecycle states', async (t) => {
  const system = new ActorSystem(new FakeBehavior());
  t.equal(system.state, 'created');

  system.start();
  t.equal(system.state, 'running');

  const draining = system.drain();
  t.equal(system.state, 'draining');
  await draining;
  t.equal(system.state, 'stopped');
});

t.test('actor system - rejects calls before start', async (t) => {
  const system = new ActorSystem(new FakeBehavior());

  t.equal(system.tell('k', { id: 1 }), false);
  await t.rejects(system.ask('k', snapshotOf), { name: 'InvalidStateError', code: 'INVALID_STATE' });
  await t.rejects(system.whenWritable('k'), { code: 'INVALID_STATE' });
  await t.rejects(system.flush(), { code: 'INVALID_STATE' });
  t.equal(system.stats().resident, 0);
});

t.test('actor system - start twice throws', async (t) => {
  const system = startSystem(t, new FakeBehavior());

  t.throws(() => system.start(), { code: 'INVALID_STATE', message: 'actor system cannot start while running' });
});

t.test('actor system - drain finishes queued messages and persists', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior);
  const log = new DeliveryLog();
  const ids: number[] = [];

  for (let id = 1; id <= 300; id++) {
    system.tell(`k${id % 7}`, { id }, log.for(id));
    ids.push(id);
  }
  await system.drain();

  t.equal(system.state, 'stopped');
  t.same([...log.applied].sort((a, b) => a - b), ids, 'every queued message applied');
  t.same([...log.durable].sort((a, b) => a - b), ids, 'every applied message durable');
  t.equal(behavior.store.size, 7);
  t.equal(behavior.stored('k1')?.count, 43);

  const stats = system.stats();
  t.equal(stats.resident, 0);
  t.equal(stats.passivations, 7);
  t.equal(stats.dirty, 0);
  t.equal(stats.queued, 0);
});

t.test('actor system - rejects tells and asks while draining', async (t) => {
  const behavior = new FakeBehavior();
  behavior.persistGate = new Gate();
  const system = startSystem(t, behavior);
  system.tell('k', { id: 1 });

  const draining = system.drain();
  t.equal(system.tell('k', { id: 2 }), false);
  await t.rejects(system.ask('k', snapshotOf), { code: 'INVALID_STATE', message: 'actor system cannot run a query while draining' });
  await system.whenWritable('k');

  behavior.persistGate.open();
  await draining;
  t.same(behavior.stored('k'), { count: 1, applied: [1] });
});

t.test('actor system - drain waits for dead letters to be stored', async (t) => {
  const behavior = new FakeBehavior();
  const system = startSystem(t, behavior, { maxAttempts: 1 });
  const log = new DeliveryLog();

  system.tell('k', { id: 1, failTimes: Infinity }, log.for(1));
  await system.drain();

  t.same(log.deadLettered, [1]);
  t.same(log.durable, [1]);
  t.equal(behavior.deadLetters.length, 1);
});

t.test('actor system - drain timeout still persists applied messages', async (t) => {
  const behavior = new FakeBehavior();
  behavior.loadGates.set('stuck', new Gate());
  const system = startSystem(t, behavior);
  const log = new DeliveryLog();

  system.tell('ok', { id: 1 }, log.for(1));
  system.tell('stuck', { id: 2 }, log.for(2));
  const stuckAsk = system.ask('stuck', snapshotOf).catch((error: unknown) => error);
  await waitFor(() => log.applied.length === 1, 'the message for ok');

  await system.drain({ timeoutMs: 30 });

  t.equal(system.state, 'stopped');
  t.same(log.applied, [1], 'the queued message of stuck was dropped');
  t.same(log.durable, [1], 'the applied message is durable');
  t.same(behavior.stored('ok'), { count: 1, applied: [1] });
  t.match(await stuckAsk, { code: 'INVALID_STATE' }, 'the queued ask was rejected');
  t.equal(system.stats().queued, 0);
  t.equal(system.stats().resident, 0);
});

t.test('actor system - drain flush timeout', async (t) => {
  const behavior = new FakeBehavior();
  behavior.persistGate = new Gate();
  const system = startSystem(t, behavior);
  const log = new DeliveryLog();

  system.tell('k', { id: 1 }, log.for(1));
  await waitFor(() => log.applied.length === 1, 'the message for k');
  await system.drain({ flushTimeoutMs: 50 });

  t.equal(system.state, 'stopped', 'a persist that never finishes does not hold the drain');
  t.same(log.durable, [], 'the unpersisted message is not reported durable');
  t.equal(system.stats().resident, 0);

  behavior.persistGate.open();
  await settle();
  t.same(log.durable, [], 'nor once the abandoned write finishes');
});

t.test('actor system - drain flush timeout with failing writes', async (t) => {
  const behavior = new FakeBehavior();
  behavior.failPersists = Infinity;
  const system = startSystem(t, behavior);
  const log = new DeliveryLog();

  system.tell('k', { id: 1 }, log.for(1));
  await system.drain({ flushTimeoutMs: 50 });

  t.equal(system.state, 'stopped');
  t.same(log.applied, [1]);
  t.same(log.durable, []);
  t.equal(behavior.stored('k'), undefined);
});

t.test('actor system - stop rejects pending asks', async (t) => {
  const behavior = new FakeBehavior();
  behavior.loadGates.set('k', new Gate());
  const system = startSystem(t, behavior);

  system.tell('k', { id: 1 });
  const pending = system.ask('k', snapshotOf);
  await system.stop();

  await t.rejects(pending, { name: 'InvalidStateError', code: 'INVALID_STATE', message: 'actor system cannot run a query while stopped' });
  t.equal(system.state, 'stopped');
  t.equal(system.tell('k', { id: 2 }), false);
  t.equal(system.stats().resident, 0);
});

t.test('actor system - stop rejects a pending drain', async (t) => {
  const behavior = new FakeBehavior();
  behavior.persistGate = new Gate();
  const system = startSystem(t, behavior);

  system.tell('k', { id: 1 });
  const draining = system.drain().catch((error: unknown) => error);
  await settle();
  await system.stop();

  t.match(await draining, { code: 'INVALID_STATE' }, 'drain rejected');
  t.equal(system.state, 'stopped');
});

t.test('actor system - timers do not keep the process alive', async (t) => {
  const countTimers = (): number => process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;
  const before = countTimers();
  const behavior = new FakeBehavior();
  behavior.failPersists = 1;
  const system = startSystem(t, behavior, { idleTimeoutMs: 10_000, snapshotIntervalMs: 10_000, snapshotEveryMessages: 2 });

  system.tell('a', { id: 1 });
  system.tell('b', { id: 2 });
  system.tell('b', { id: 3 });
  await waitFor(() => behavior.events.includes('persist failed'), 'the failed persist');

  // startSystem's own keep-alive interval is the one extra ref'd timer.
  t.equal(countTimers(), before + 1, 'idle, interval and retry timers are unref()ed');
});
