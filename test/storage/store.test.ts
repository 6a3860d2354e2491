import t from 'tap';
import { Store, syncCurrentWal, WalSyncError } from '../../storage/store.js';

t.test('store - writes, reads and lists in key order', async (t) => {
  const store = await Store.open({ path: t.testdir() });
  t.teardown(() => store.close());

  await store.write([
    { type: 'put', key: 'a/2', value: 'two' },
    { type: 'put', key: 'a/1', value: 'one' },
    { type: 'put', key: 'b/1', value: 'other' },
  ]);

  t.equal(String(await store.get('a/1')), 'one');
  t.equal(await store.get('missing'), null);
  t.same((await store.getMany(['a/2', 'missing'])).map((value) => value?.toString() ?? null), ['two', null]);
  t.same((await store.list({ gte: 'a/', lt: 'a0' })).map((entry) => entry.key.toString()), ['a/1', 'a/2']);
  t.same((await store.list({ gte: 'a/', lt: 'a0', reverse: true, limit: 1 })).map((entry) => entry.key.toString()), ['a/2']);
});

t.test('store - reads of one turn share a batch', async (t) => {
  const store = await Store.open({ path: t.testdir() });
  t.teardown(() => store.close());
  await store.write(Array.from({ length: 100 }, (_, i) => ({ type: 'put' as const, key: `r${i}`, value: `v${i}` })));

  const before = store.readBatches;
  const singles = Array.from({ length: 100 }, (_, i) => store.get(i % 2 === 0 ? `r${i}` : `missing${i}`));
  const many = [store.getMany(['r5', 'missing', 'r7']), store.getMany(['r99', 'r0'])];
  const [singleValues, manyValues] = await Promise.all([Promise.all(singles), Promise.all(many)]);

  t.equal(store.readBatches - before, 1, '102 reads of one turn go to RocksDB as one batch');
  t.same(
    singleValues.map((value) => value?.toString() ?? null),
    Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? `v${i}` : null)),
    'each get returns its own key\'s value',
  );
  t.same(
    manyValues.map((values) => values.map((value) => value?.toString() ?? null)),
    [
      ['v5', null, 'v7'],
      ['v99', 'v0'],
    ],
    'each getMany returns its keys\' values in order',
  );

  await store.get('r1');
  await store.get('r2');
  t.equal(store.readBatches - before, 3, 'reads of later turns go in batches of their own');
});

t.test('store - a read queued before close completes', async (t) => {
  const store = await Store.open({ path: t.testdir() });
  await store.write([{ type: 'put', key: 'last', value: 'value' }]);

  const read = store.get('last');
  await store.close();

  t.equal(String(await read), 'value', 'the read gets its value');
  t.equal(store.state, 'stopped', 'the store is closed');
});

t.test('store - deletes keys and ranges', async (t) => {
  const store = await Store.open({ path: t.testdir() });
  t.teardown(() => store.close());

  await store.write(['k1', 'k2', 'k3', 'k4'].map((key) => ({ type: 'put' as const, key, value: key })));
  await store.write([{ type: 'del', key: 'k1' }, { type: 'delRange', start: 'k2', end: 'k4' }]);

  t.same((await store.list({ gte: 'k', lt: 'l' })).map((entry) => entry.key.toString()), ['k4']);
});

t.test('store - synced writes share fdatasync calls', async (t) => {
  const store = await Store.open({ path: t.testdir() });
  t.teardown(() => store.close());

  await Promise.all(Array.from({ length: 200 }, (_, i) => store.write([{ type: 'put', key: `s${i}`, value: 'v' }], { sync: true })));

  t.equal((await store.list({ gte: 's', lt: 't' })).length, 200);
});

t.test('store - data survives close and reopen', async (t) => {
  const path = t.testdir();
  const first = await Store.open({ path });
  await first.write([{ type: 'put', key: 'kept', value: 'yes' }], { sync: true });
  await first.close();

  const second = await Store.open({ path });
  t.teardown(() => second.close());
  t.equal(String(await second.get('kept')), 'yes');
});

t.test('store - rejects calls after close', async (t) => {
  const store = await Store.open({ path: t.testdir() });
  await store.close();

  await t.rejects(store.get('a'), { code: 'INVALID_STATE', message: 'store cannot get while stopped' });
});

t.test('store - a WAL that rolls over during its sync', async (t) => {
  const missing = (file: string) => Object.assign(new Error(`failed to open WAL file ${file} for fdatasync`), { cause: Object.assign(new Error('ENOENT'), { code: 'ENOENT' }) });

  // The first name read is flushed and deleted before it is opened; the next WAL is synced.
  const names = ['/db/000010.log', '/db/000012.log', '/db/000012.log'];
  const synced: string[] = [];
  const result = await syncCurrentWal(
    async () => names.shift() ?? '/db/000012.log',
    async (file) => {
      if (file === '/db/000010.log') throw missing(file);
      synced.push(file);
    },
  );
  t.equal(result, '/db/000012.log');
  t.same(synced, ['/db/000012.log']);

  // A current WAL that is missing is an error, not a rollover.
  await t.rejects(
    syncCurrentWal(
      async () => '/db/000013.log',
      async (file) => {
        throw missing(file);
      },
    ),
    { message: 'failed to open WAL file /db/000013.log for fdatasync' },
  );

  // RocksDB fails to name the current WAL when one it listed is deleted before it reads the size.
  let reads = 0;
  const named = await syncCurrentWal(
    async () => {
      reads += 1;
      if (reads === 1) throw new Error('IO error: No such file or directory: while stat a file for size: /db/000014.log');
      return '/db/000015.log';
    },
    async () => undefined,
  );
  t.equal(named, '/db/000015.log', 'the name is read again');

  // Other errors are never retried.
  let calls = 0;
  await t.rejects(
    syncCurrentWal(
      async () => `/db/${++calls}.log`,
      async () => {
        throw new Error('EIO');
      },
    ),
    { message: 'EIO' },
  );
});

t.test('store - a failed WAL sync rejects a written batch', async (t) => {
  const store = await Store.open({ path: t.testdir() });
  t.teardown(() => store.close());
  store.setWalSyncFault(() => new Error('EIO: i/o error, fdatasync'));

  const write = store.write([{ type: 'put', key: 'k', value: 'v' }], { sync: true });
  await t.rejects(write, WalSyncError);
  await t.rejects(write, { code: 'STORAGE_FAILED', message: /^failed to fdatasync the WAL of RocksDB at .+: EIO: i\/o error, fdatasync$/ });
  t.equal(String(await store.get('k')), 'v', 'the batch was written before the sync failed');

  store.setWalSyncFault(null);
  await store.write([{ type: 'put', key: 'k2', value: 'v' }], { sync: true });
  t.equal(String(await store.get('k2')), 'v', 'syncs succeed once the fault is removed');
});

t.test('store - a sync queued behind a failed one runs', async (t) => {
  const store = await Store.open({ path: t.testdir() });
  t.teardown(() => store.close());
  let failures = 1;
  store.setWalSyncFault(() => (failures-- > 0 ? new Error('EIO') : null));
  await store.write([{ type: 'put', key: 'k', value: 'v' }]);

  // The second call arrives while the first sync runs, so it waits for the next one.
  const first = store.syncWal();
  const queued = store.syncWal();
  await t.rejects(first, WalSyncError);
  await t.resolves(queued, 'the queued caller gets its own sync');

  const again = [store.syncWal(), store.syncWal()];
  await t.resolves(Promise.all(again), 'later callers do not inherit the failure');
});
