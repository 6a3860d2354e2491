/**
 * The final persist of a node's drain. A store may reject every write once the events are
 * in the log, as a full disk would. Then the drain gives up persisting after the timeout
 * instead of retrying forever, and a restart replays the unpersisted events from the log.
 * A drain timeout of 0 still leaves the final persist its time.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import type { RawEvent } from '../../profiles/event.js';
import type { ProfileSnapshot } from '../../profiles/profile.js';
import { decode } from '../../storage/codec.js';
import { keys } from '../../storage/keys.js';
import { StorageError, Store, type WriteOp } from '../../storage/store.js';

const track = (userId: string, messageId: string): RawEvent => ({ type: 'track', event: 'Viewed', userId, messageId });
const user = { type: 'user_id' as const, value: 'u1' };

t.test('node - drain with a store that rejects writes', async (t) => {
  const dataDir = t.testdir();
  const node = await RtcdpNode.start({ dataDir, actors: { snapshotEveryMessages: 1_000_000, snapshotIntervalMs: 3_600_000 } });
  await node.ingest('w', [track('u1', 'm1'), track('u1', 'm2')]);
  t.equal((await node.getProfile('w', user)).eventCount, 2);

  const store = node.store;
  const write = store.write.bind(store);
  let rejected = 0;
  store.write = async (ops: WriteOp[], options?: { sync?: boolean }) => {
    if (!ops.some((op) => 'key' in op && op.key.toString().startsWith('snapshot/'))) return write(ops, options);
    rejected++;
    throw new StorageError('IO error: No space left on device');
  };

  const startedAt = performance.now();
  await node.drain({ timeoutMs: 300 });
  // The final persist gets at least 5 s, whatever the drain timeout.
  t.ok(performance.now() - startedAt < 20_000, 'the drain ends instead of retrying the snapshot write forever');
  t.ok(rejected >= 1, 'the snapshot write was attempted');

  const restarted = await RtcdpNode.start({ dataDir });
  t.teardown(() => restarted.drain());
  t.equal((await restarted.getProfile('w', user)).eventCount, 2, 'the restart replays the events from the log');
});

t.test('node - drain with timeout 0 still persists', async (t) => {
  const dataDir = t.testdir();
  const node = await RtcdpNode.start({ dataDir, actors: { snapshotEveryMessages: 1_000_000, snapshotIntervalMs: 3_600_000 } });
  await node.ingest('w', [track('u1', 'm1')]);
  t.equal((await node.getProfile('w', user)).eventCount, 1);

  // A slow disk: each snapshot write takes 50 ms.
  const store = node.store;
  const write = store.write.bind(store);
  store.write = async (ops: WriteOp[], options?: { sync?: boolean }) => {
    if (ops.some((op) => 'key' in op && op.key.toString().startsWith('snapshot/'))) await sleep(50);
    return write(ops, options);
  };
  await node.drain({ timeoutMs: 0 });

  const reopened = await Store.open({ path: dataDir });
  t.teardown(() => reopened.close());
  const snapshot = await reopened.get(keys.snapshot('w', 'user:u1'));
  t.ok(snapshot !== null, 'the applied event is in a snapshot, not only in the log');
  t.equal(decode<ProfileSnapshot>(snapshot!).eventCount, 1);
});
