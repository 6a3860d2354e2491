/**
 * An embedded node's webhook state in RocksDB: replay requests that race with the delivery
 * loop's check for queued replays.
 */
import path from 'node:path';
import t from 'tap';
import { silentLogger } from '../../common/logger.js';
import type { WebhookDeadLetter } from '../../decisions/activation-delivery/delivery-state.js';
import { RocksDbDeliveryState } from '../../decisions/activation-delivery/rocksdb-delivery-state.js';
import { Store, type Entry, type Range } from '../../storage/store.js';

function deadLetter(firstSequence: number): WebhookDeadLetter {
  return { version: 1, destination: 'crm', workspace: 'w', firstSequence, lastSequence: firstSequence, activations: [], attempts: 1, status: 400, error: 'received HTTP 400', failedAtMs: 0 };
}

t.test('rocksdb webhook state - replay queued during a list', async (t) => {
  const store = await Store.open({ path: path.join(t.testdir(), 'db'), logger: silentLogger() });
  t.teardown(() => store.close());
  const state = new RocksDbDeliveryState(store, 'w', 'crm');
  await state.writeDeadLetter(deadLetter(3), 3);

  // The next list returns what it read only once `release` is called, so a replay request can come in between.
  // The gate is taken when the list is called, not when its read completes, because the
  // request's own list may complete first.
  const realList = store.list.bind(store);
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  let readDone: () => void = () => {};
  const gatedReadDone = new Promise<void>((resolve) => (readDone = resolve));
  let gateNextList = true;
  store.list = async (range: Range): Promise<Entry[]> => {
    const gated = gateNextList;
    gateNextList = false;
    const entries = await realList(range);
    if (gated) {
      readDone();
      await released;
    }
    return entries;
  };

  const staleList = state.listQueuedReplays(10);
  await gatedReadDone;
  t.equal(await state.queueReplays({ all: true }, 1_000), 1, 'the dead letter is queued while the list is in flight');
  release();
  t.same(await staleList, [], 'the list that read before the request finds nothing queued');

  const queued = await state.listQueuedReplays(10);
  t.same(
    queued.map((listed) => listed.firstSequence),
    [3],
    'the next list finds the queued dead letter',
  );
});
