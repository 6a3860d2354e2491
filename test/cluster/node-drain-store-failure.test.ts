/**
 * A node whose store rejects every write once its events are in the log, as a full disk
 * would. Its drain gives up persisting after the timeout instead of retrying forever, and a
 * restart replays the unpersisted events from the log.
 */
import t from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import type { RawEvent } from '../../profiles/event.js';
import { StorageError, type WriteOp } from '../../storage/store.js';

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
  t.ok(performance.now() - startedAt < 5_000, 'the drain ends instead of retrying the snapshot write forever');
  t.ok(rejected >= 1, 'the snapshot write was attempted');

  const restarted = await RtcdpNode.start({ dataDir });
  t.teardown(() => restarted.drain());
  t.equal((await restarted.getProfile('w', user)).eventCount, 2, 'the restart replays the events from the log');
});
