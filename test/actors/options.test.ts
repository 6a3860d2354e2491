import { inspect } from 'node:util';
import t from 'tap';
import { ActorSystem } from '../../actors/actor-system.js';
import type { ActorSystemOptions } from '../../actors/types.js';
import { FakeBehavior, startSystem } from './fixtures/fake-behavior.js';

const OPTION_NAMES = [
  'mailboxCapacity',
  'maxResidentActors',
  'idleTimeoutMs',
  'snapshotEveryMessages',
  'snapshotIntervalMs',
  'maxPersistBatch',
  'maxAttempts',
  'maxJournalMessages',
] as const;

function construct(options: Record<string, unknown>): ActorSystem<unknown, unknown> {
  return new ActorSystem(new FakeBehavior() as never, options as ActorSystemOptions);
}

t.test('actor system options - must be positive integers', async (t) => {
  for (const name of OPTION_NAMES) {
    for (const value of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '10']) {
      const options = name === 'maxJournalMessages' ? { snapshotEveryMessages: 1, [name]: value } : { [name]: value };
      t.throws(() => construct(options), new RangeError(`${name} must be a positive integer, received ${inspect(value)}`), `${name} = ${inspect(value)}`);
    }
  }
});

t.test('actor system options - durations must fit a timer', async (t) => {
  for (const name of ['idleTimeoutMs', 'snapshotIntervalMs']) {
    t.throws(
      () => construct({ [name]: 2_147_483_648 }),
      new RangeError(`${name} must be at most 2147483647 ms, received 2147483648`),
    );
    t.doesNotThrow(() => construct({ [name]: 2_147_483_647 }), `${name} at the maximum`);
  }
});

t.test('actor system options - maxJournalMessages must cover snapshotEveryMessages', async (t) => {
  t.throws(
    () => construct({ snapshotEveryMessages: 50, maxJournalMessages: 49 }),
    new RangeError('maxJournalMessages must be at least snapshotEveryMessages (50), received 49'),
  );
  t.doesNotThrow(() => construct({ snapshotEveryMessages: 50, maxJournalMessages: 50 }));
  t.doesNotThrow(() => construct({ snapshotEveryMessages: 20_000 }), 'the default grows with snapshotEveryMessages');
});

t.test('actor system options - undefined values get defaults', async (t) => {
  t.doesNotThrow(() => construct({}));
  t.doesNotThrow(() => construct({ mailboxCapacity: undefined, idleTimeoutMs: undefined }));
});

t.test('actor system options - drain timeouts must be non-negative integers', async (t) => {
  for (const name of ['timeoutMs', 'flushTimeoutMs']) {
    for (const value of [-1, 1.5, Number.NaN]) {
      const system = startSystem(t, new FakeBehavior());
      await t.rejects(system.drain({ [name]: value }), new RangeError(`${name} must be a non-negative integer, received ${inspect(value)}`));
      t.equal(system.state, 'running', `${name} = ${inspect(value)} left the system running`);
    }
  }
});
