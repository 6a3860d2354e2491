import t from 'tap';
import { KvConflictError } from '../../storage/kv-store.js';
import { RocksDbKvStore } from '../../storage/rocksdb-kv-store.js';
import { Store } from '../../storage/store.js';
import { kvStoreContract } from './kv-store-contract.js';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined): string | undefined => (value === undefined ? undefined : new TextDecoder().decode(value));

let stores = 0;

kvStoreContract(t, 'rocksdb kv store', {
  async open(t) {
    const store = await Store.open({ path: t.testdir() });
    t.teardown(() => store.close());
    return RocksDbKvStore.open(store, `contract-${++stores}`);
  },
});

t.test('rocksdb kv store - concurrent creates of one key: exactly one wins', async (t) => {
  const store = await Store.open({ path: t.testdir() });
  t.teardown(() => store.close());
  const kv = await RocksDbKvStore.open(store, 'race');

  const outcomes = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => kv.create('key', bytes(`writer-${i}`))));
  const won = outcomes.filter((outcome) => outcome.status === 'fulfilled');
  t.equal(won.length, 1, 'one create succeeds');
  for (const outcome of outcomes) if (outcome.status === 'rejected') t.type(outcome.reason, KvConflictError);
});

t.test('rocksdb kv store - concurrent updates at one revision: exactly one wins', async (t) => {
  const store = await Store.open({ path: t.testdir() });
  t.teardown(() => store.close());
  const kv = await RocksDbKvStore.open(store, 'race');
  const first = await kv.create('key', bytes('start'));

  const outcomes = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => kv.update('key', bytes(`writer-${i}`), first)));
  t.equal(outcomes.filter((outcome) => outcome.status === 'fulfilled').length, 1, 'one update succeeds');
});

t.test('rocksdb kv store - survives a reopen with revisions still growing', async (t) => {
  const path = t.testdir();
  let store = await Store.open({ path });
  let kv = await RocksDbKvStore.open(store, 'durable');
  const before = await kv.create('a', bytes('one'));
  await store.close();

  store = await Store.open({ path });
  t.teardown(() => store.close());
  kv = await RocksDbKvStore.open(store, 'durable');
  t.equal(text((await kv.get('a'))?.value), 'one', 'the value is there after a reopen');
  const after = await kv.create('b', bytes('two'));
  t.ok(after > before, `a write after the reopen has a higher revision (${before} then ${after})`);
});

t.test('rocksdb kv store - stores with different names do not see each other', async (t) => {
  const store = await Store.open({ path: t.testdir() });
  t.teardown(() => store.close());
  const left = await RocksDbKvStore.open(store, 'left');
  const right = await RocksDbKvStore.open(store, 'right');
  await left.create('key', bytes('left'));

  t.equal(await right.get('key'), null);
  t.same(await right.list(), []);
  t.same((await left.list()).map((entry) => entry.key), ['key']);
});
