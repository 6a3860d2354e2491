/**
 * A cluster persist writes each profile to NATS and to the local store as it was when the
 * persist started, although its actor goes on applying events during the writes.
 */
import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { createLogger } from '../../common/logger.js';
import { ClusterProfileBehavior } from '../../cluster/cluster-profile-behavior.js';
import { ClusterTimerIndex } from '../../cluster/nats/timer-index.js';
import { SnapshotStore } from '../../cluster/nats/snapshot-store.js';
import type { ProfileActivation } from '../../profiles/activation.js';
import type { CustomerEvent } from '../../profiles/event.js';
import { actorKey, ProfileBehavior } from '../../profiles/profile-behavior.js';
import { DEFAULT_PROFILE_LIMITS, type AppliedEvent, type ProfileSnapshot } from '../../profiles/profile.js';
import { decode, encode } from '../../storage/codec.js';
import { keys } from '../../storage/keys.js';
import { Store } from '../../storage/store.js';
import { startNatsServer } from '../helpers/nats-server.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });
const KEY = actorKey('w', 'user:u1');

function applied(sequence: number): AppliedEvent {
  const timestamp = '2024-01-01T00:00:00.000Z';
  const event: CustomerEvent = { type: 'track', event: 'Viewed', messageId: `m${sequence}`, timestamp, timestampMs: Date.parse(timestamp), receivedAt: timestamp, userId: 'u1' };
  return { event, position: { shard: 0, sequence }, payload: encode(event) };
}

t.test('cluster profile behavior - persist writes the starting state', async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const connection = await connect({ servers: server.url });
  t.teardown(() => connection.close());
  const store = await Store.open({ path: t.testdir() });
  t.teardown(() => store.close());
  const snapshots = await SnapshotStore.open(connection, { replicas: 1, requestTimeoutMs: 2_000, logger });

  // Activations are published first, so holding that publish open lets the actor apply an event during the persist.
  let publishStarted: () => void = () => {};
  let releasePublish: () => void = () => {};
  const publishing = new Promise<void>((resolve) => (publishStarted = resolve));
  const activations = {
    publish: (_activations: readonly ProfileActivation[]) => {
      publishStarted();
      return new Promise<void>((resolve) => (releasePublish = resolve));
    },
  };
  const local = new ProfileBehavior({ store, limits: DEFAULT_PROFILE_LIMITS, logger });
  const behavior = new ClusterProfileBehavior({
    shard: 0,
    epoch: 1,
    chain: 1,
    clusterId: 'c1',
    activations,
    timers: await ClusterTimerIndex.open(connection, { replicas: 1 }),
    snapshots,
    local,
    store,
    isOwner: () => true,
    onFenced: () => t.fail('the write is not fenced'),
  });

  const state = behavior.handle(behavior.create(KEY), applied(1));
  const persisted = behavior.persist([{ key: KEY, state }]);
  await publishing;
  behavior.handle(state, applied(2));
  releasePublish();
  await persisted;

  t.equal((await snapshots.load('w', 0, 'user:u1'))?.snapshot.lastApplied.sequence, 1, 'the NATS snapshot stops at the first event');
  const stored = await store.get(keys.snapshot('w', 'user:u1'));
  t.equal(stored === null ? undefined : decode<ProfileSnapshot>(stored).lastApplied.sequence, 1, 'the local snapshot stops at the first event too');
  t.same(state.unpersisted.map((event) => event.sequence), [2], 'the second event waits for the next persist');
  t.equal(await store.get(keys.profileEvent('w', 'user:u1', 2)), null, 'its history is not written yet');
});
