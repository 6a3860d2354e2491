import t from 'tap';
import { DeliveryLog, FakeBehavior, Gate, settle, snapshotOf, startSystem } from './fixtures/fake-behavior.js';

t.test('actor system - tell returns false on a full mailbox', async (t) => {
  const behavior = new FakeBehavior();
  const load = new Gate();
  behavior.loadGates.set('k', load);
  const system = startSystem(t, behavior, { mailboxCapacity: 3 });
  const log = new DeliveryLog();

  const accepted = [1, 2, 3, 4].map((id) => system.tell('k', { id }, log.for(id)));
  t.same(accepted, [true, true, true, false]);
  t.equal(system.stats().queued, 3, 'the rejected message was not enqueued');
  t.ok(system.tell('other', { id: 5 }), 'other keys have their own mailbox');

  load.open();
  await system.whenWritable('k');
  t.same(await system.ask('k', snapshotOf), { count: 3, applied: [1, 2, 3] });
  t.same(log.applied.filter((id) => id !== 5), [1, 2, 3]);
});

t.test('actor system - whenWritable resolves when room frees', async (t) => {
  const behavior = new FakeBehavior();
  const load = new Gate();
  behavior.loadGates.set('k', load);
  const system = startSystem(t, behavior, { mailboxCapacity: 2 });

  system.tell('k', { id: 1 });
  system.tell('k', { id: 2 });
  let writable = false;
  const waiting = system.whenWritable('k').then(() => (writable = true));
  await settle();
  t.equal(writable, false, 'pending while the mailbox is full');

  load.open();
  await waiting;
  t.ok(system.tell('k', { id: 3 }), 'tell succeeds once whenWritable resolved');
});

t.test('actor system - whenWritable resolves at once with room', async (t) => {
  const system = startSystem(t, new FakeBehavior(), { mailboxCapacity: 2 });

  await system.whenWritable('never-told');
  system.tell('k', { id: 1 });
  await system.whenWritable('k');
  t.pass('both resolved');
});

t.test('actor system - asks count towards mailbox capacity', async (t) => {
  const behavior = new FakeBehavior();
  const load = new Gate();
  behavior.loadGates.set('k', load);
  const system = startSystem(t, behavior, { mailboxCapacity: 2 });

  system.tell('k', { id: 1 });
  const first = system.ask('k', snapshotOf);
  t.equal(system.tell('k', { id: 2 }), false, 'the ask took the second slot');
  await t.rejects(system.ask('k', snapshotOf), { name: 'OverloadedError', code: 'OVERLOADED' });

  load.open();
  t.same(await first, { count: 1, applied: [1] });
});
