import t, { type Test } from 'tap';
import type { AppendRequest, LogRecord } from '../../storage/event-log.js';
import { RocksDbEventLog } from '../../storage/rocksdb-event-log.js';
import { Store } from '../../storage/store.js';
import { eventLogContract } from './event-log-contract.js';

eventLogContract(t, 'rocksdb event log', {
  contiguous: true,
  pruneForgetsMessageIds: true,
  async open(t) {
    const path = t.testdir();
    let store = await Store.open({ path });
    let log = await RocksDbEventLog.open(store);
    t.teardown(async () => {
      await log.close();
      await store.close();
    });

    return {
      log,
      async reopen() {
        await log.close();
        await store.close();
        store = await Store.open({ path });
        log = await RocksDbEventLog.open(store);
        return log;
      },
    };
  },
});

const request = (messageId: string, shard = 0): AppendRequest => ({ workspace: 'w', shard, messageId, payload: Buffer.from(messageId) });

/** Opens a log on a fresh store, with every record it delivers to listeners collected in `seen`. */
async function openWithListener(t: Test) {
  const store = await Store.open({ path: t.testdir() });
  const log = await RocksDbEventLog.open(store);
  t.teardown(async () => {
    await log.close();
    await store.close();
  });

  const seen: LogRecord[] = [];
  log.onAppend((records) => seen.push(...records));
  return { store, log, seen };
}

const failingSync = () => new Error('EIO: i/o error, fdatasync');

t.test('rocksdb event log - stored messageIds', async (t) => {
  const { store, log } = await openWithListener(t);
  await log.append([request('a'), request('b', 1)]);

  t.same([...(await log.storedMessageIds('w', ['a', 'x', 'b']))].sort(), ['a', 'b'], 'the appended ids of the workspace, not the unknown one');
  t.same([...(await log.storedMessageIds('other', ['a']))], [], 'ids are kept per workspace');
  t.same([...(await log.storedMessageIds('w', []))], [], 'no ids, none stored');

  store.setWalSyncFault(failingSync);
  await t.rejects(log.append([request('c')]), { code: 'EVENT_LOG_FAILED', written: 1 });
  t.same([...(await log.storedMessageIds('w', ['a', 'c']))], [], 'after a failed sync, every id goes through append again');

  store.setWalSyncFault(null);
  t.same(await log.append([request('c')]), [{ status: 'duplicate' }], 'the append that syncs first finds the written one');
  t.same([...(await log.storedMessageIds('w', ['a', 'c']))].sort(), ['a', 'c'], 'once a sync succeeds, the stored ids are found again');
});

t.test('rocksdb event log - failed sync delivers written records', async (t) => {
  const { store, log, seen } = await openWithListener(t);
  store.setWalSyncFault(failingSync);

  const failed = log.append([request('a'), request('b', 1), request('c')]);
  await t.rejects(failed, { code: 'EVENT_LOG_FAILED', written: 3, retryable: true });
  await t.rejects(failed, { message: /^failed to append 3 events: 3 were written but not proven durable \(failed to fdatasync the WAL of RocksDB at .+: EIO: i\/o error, fdatasync\)\./ });
  t.same(seen.map((record) => [record.messageId, record.shard, record.sequence]), [['a', 0, 1], ['b', 1, 1], ['c', 0, 2]], 'listeners get the written records in sequence order');
  t.equal(await log.headSequence({ workspace: 'w', shard: 0 }), 2);

  store.setWalSyncFault(null);
  const outcomes = await log.append([request('a'), request('d'), request('b', 1)]);
  t.same(outcomes, [{ status: 'duplicate' }, { status: 'appended', sequence: 3 }, { status: 'duplicate' }], 'retries are duplicates and new records follow the head');
  t.same(seen.map((record) => record.messageId), ['a', 'b', 'c', 'd'], 'each record reaches the listeners once');
  t.same((await log.read({ workspace: 'w', shard: 0 }, 0, 10)).map((record) => [record.messageId, record.sequence]), [['a', 1], ['c', 2], ['d', 3]], 'no record was overwritten');
});

t.test('rocksdb event log - append after failed sync syncs first', async (t) => {
  const { store, log, seen } = await openWithListener(t);
  const synced: string[] = [];
  let failing = true;
  store.setWalSyncFault((file) => {
    synced.push(file);
    return failing ? failingSync() : null;
  });

  await t.rejects(log.append([request('a')]), { code: 'EVENT_LOG_FAILED', written: 1 });
  await t.rejects(log.append([request('b')]), { code: 'EVENT_LOG_FAILED', written: 0, message: /^failed to append 1 events: failed to fdatasync/ });
  t.equal(synced.length, 2, 'the second append only retried the sync');
  t.equal(await log.headSequence({ workspace: 'w', shard: 0 }), 1, 'nothing is written while the WAL cannot sync');
  t.same(seen.map((record) => record.messageId), ['a']);

  failing = false;
  t.same(await log.append([request('a'), request('b')]), [{ status: 'duplicate' }, { status: 'appended', sequence: 2 }]);
  t.same(seen.map((record) => record.messageId), ['a', 'b']);
});

t.test('rocksdb event log - concurrent duplicate fails with original', async (t) => {
  const { store, log } = await openWithListener(t);
  store.setWalSyncFault(failingSync);

  const [first, duplicate] = await Promise.allSettled([log.append([request('a')]), log.append([request('a')])]);
  t.match(first, { status: 'rejected', reason: { code: 'EVENT_LOG_FAILED', written: 1 } });
  t.match(duplicate, { status: 'rejected', reason: { code: 'EVENT_LOG_FAILED', written: 0 } }, 'a duplicate is not acknowledged before its first append is durable');

  store.setWalSyncFault(null);
  const [retried, retriedDuplicate] = await Promise.all([log.append([request('a')]), log.append([request('a')])]);
  t.same([...retried, ...retriedDuplicate], [{ status: 'duplicate' }, { status: 'duplicate' }]);
});

t.test('rocksdb event log - failure before write delivers nothing', async (t) => {
  const { store, log, seen } = await openWithListener(t);
  await store.close();

  await t.rejects(log.append([request('a')]), { code: 'EVENT_LOG_FAILED', written: 0, message: 'failed to append 1 events: store cannot getMany while stopped' });
  t.same(seen, []);
  t.equal(await log.headSequence({ workspace: 'w', shard: 0 }), 0);
});
