/**
 * A profile's records for other profiles (merge state, forwarded events) survive a crash
 * during the persist that carries them. A restart on the same store applies the message
 * again and sends them.
 */
import t from 'tap';
import { silentLogger } from '../../common/logger.js';
import type { CustomerEvent } from '../../profiles/event.js';
import type { IdentityCommandMessage, OutgoingRecord } from '../../profiles/identity-commands.js';
import { actorKey, ProfileBehavior } from '../../profiles/profile-behavior.js';
import { DEFAULT_PROFILE_LIMITS, type ProfileState } from '../../profiles/profile.js';
import { Store } from '../../storage/store.js';

const KEY = actorKey('w', 'anon:a1');
const MERGE: IdentityCommandMessage = {
  kind: 'identity-command',
  command: { command: 'merge', profileId: 'anon:a1', into: 'user:u1', cause: { messageId: 'm9', rule: 'shared-identifier', atMs: 1 } },
  position: { shard: 3, sequence: 7 },
};

function behaviorOn(store: Store, send: (records: OutgoingRecord[]) => Promise<void>): ProfileBehavior {
  return new ProfileBehavior({ store, limits: DEFAULT_PROFILE_LIMITS, logger: silentLogger(), send });
}

/** Applies the merge command to the profile's stored state, as an actor would after a restart. */
async function applyMerge(behavior: ProfileBehavior): Promise<ProfileState> {
  const state = (await behavior.load(KEY)) ?? behavior.create(KEY);
  return behavior.handle(state, MERGE);
}

t.test('profile outbox - a send that fails leaves the message to be applied again', async (t) => {
  const store = await Store.open({ path: t.testdir() });
  t.teardown(() => store.close());

  const crashed = behaviorOn(store, async () => {
    throw new Error('process killed');
  });
  const first = await applyMerge(crashed);
  t.equal(first.outbox.length, 1, 'the tombstone has its state to send');
  await t.rejects(crashed.persist([{ key: KEY, state: first }]), { message: 'process killed' });

  const sent: OutgoingRecord[] = [];
  const restarted = behaviorOn(store, async (records) => void sent.push(...records));
  const second = await applyMerge(restarted);
  await restarted.persist([{ key: KEY, state: second }]);
  t.match(sent, [{ profileId: 'user:u1', entry: { command: 'absorb', from: 'anon:a1' } }], 'the restart sends the state to the survivor');
  t.equal(second.outbox.length, 0);

  const third = await applyMerge(restarted);
  t.equal(third.outbox.length, 0, 'once stored, the command is not applied a third time');
});

t.test('profile outbox - persist writes the starting state', async (t) => {
  const store = await Store.open({ path: t.testdir() });
  t.teardown(() => store.close());

  let sendStarted: () => void = () => {};
  let releaseSend: () => void = () => {};
  const sending = new Promise<void>((resolve) => (sendStarted = resolve));
  const behavior = behaviorOn(store, () => {
    sendStarted();
    return new Promise<void>((resolve) => (releaseSend = resolve));
  });
  const tombstone = await applyMerge(behavior);
  const persisted = behavior.persist([{ key: KEY, state: tombstone }]);

  // The actor applies another event while the persist sends the merge state.
  await sending;
  const timestamp = '2024-01-01T00:00:00.000Z';
  const event: CustomerEvent = { type: 'track', event: 'Viewed', messageId: 'm10', timestamp, timestampMs: Date.parse(timestamp), receivedAt: timestamp, anonymousId: 'a1' };
  behavior.handle(tombstone, { event, position: { shard: 3, sequence: 8 }, payload: Buffer.from('{}') });
  releaseSend();
  await persisted;

  t.same(tombstone.outbox.map((record) => record.entry), [{ ...event, profileId: 'user:u1' }], 'the forwarded event waits for the next persist');
  const stored = await behavior.load(KEY);
  t.same(stored?.lastApplied, { shard: 3, sequence: 7 }, 'the stored snapshot stops at the merge, so a restart forwards the event again');
});
