/**
 * The KvStore implementations that run in one process, for tests that hold each of them
 * to the same behaviour: in memory, and in RocksDB under the test's directory.
 */
import type { Test } from 'tap';
import type { KvStore } from '../../storage/kv-store.js';
import { MemoryKvStore } from '../../storage/memory-kv-store.js';
import { RocksDbKvStore } from '../../storage/rocksdb-kv-store.js';
import { Store } from '../../storage/store.js';

export const localKvStores: Array<[string, (t: Test) => Promise<KvStore>]> = [
  ['memory', async () => new MemoryKvStore()],
  [
    'rocksdb',
    async (t) => {
      const store = await Store.open({ path: t.testdir() });
      t.teardown(() => store.close());
      return RocksDbKvStore.open(store, 'identity');
    },
  ],
];
