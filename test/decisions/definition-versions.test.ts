/**
 * Versioning of definitions on the embedded store: real RocksDB in a test directory. The
 * shared contract runs here, plus what only the RocksDB store promises.
 */
import t, { type Test } from 'tap';
import { DefinitionConflictError, type DefinitionVersion } from '../../decisions/definitions/definition-store.js';
import { RocksDbDefinitionStore } from '../../decisions/definitions/rocksdb-definition-store.js';
import { Store } from '../../storage/store.js';
import { changes, definitionStoreContract, files, registryOn, SEGMENT, TRAIT } from './definition-store-contract.js';

async function openStore(t: Test, dir = t.testdir()) {
  const store = await Store.open({ path: dir });
  t.teardown(() => store.close());
  return { store, definitions: new RocksDbDefinitionStore(store), dir };
}

definitionStoreContract(t, 'rocksdb definitions', {
  async open(t) {
    const { definitions } = await openStore(t);
    return { definitions, settle: async () => {} };
  },
});

t.test('rocksdb definitions - append is all or nothing', async (t) => {
  const { definitions } = await openStore(t);
  const registry = registryOn(definitions);
  await registry.apply('default', files(TRAIT('orders')));
  const [orders] = await definitions.listLatest('default');

  const fresh: DefinitionVersion = { ...orders, name: 'fresh', version: 1 };
  const stale: DefinitionVersion = { ...orders, version: 1 };
  await t.rejects(definitions.append([fresh, stale]), DefinitionConflictError);
  t.equal(await definitions.getVersion('default', 'ComputedTrait', 'fresh'), undefined, 'the valid version of the batch is not stored');
});

t.test('rocksdb definitions - survive reopen', async (t) => {
  const dir = t.testdir();
  const first = await Store.open({ path: dir });
  await registryOn(new RocksDbDefinitionStore(first)).apply('default', files(TRAIT('orders'), SEGMENT('buyers', 'computed.orders > 0')));
  await first.close();

  const { definitions } = await openStore(t, dir);
  t.same((await definitions.listLatest('default')).map((version) => `${version.kind}/${version.name}`), ['ComputedTrait/orders', 'Segment/buyers'], 'both stored');
  const again = await registryOn(definitions).apply('default', files(TRAIT('orders'), SEGMENT('buyers', 'computed.orders > 0')));
  t.same(changes(again), ['unchanged ComputedTrait/orders@1', 'unchanged Segment/buyers@1'], 'idempotent after a restart');
});

