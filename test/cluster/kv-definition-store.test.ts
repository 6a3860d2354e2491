import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { KvDefinitionStore, DEFINITION_BUCKET } from '../../cluster/kv-definition-store.js';
import { MemoryKvStore } from '../../storage/memory-kv-store.js';
import { NatsKvStore } from '../../cluster/kv/nats-kv-store.js';
import { definitionStoreContract, files, registryOn, TRAIT } from '../decisions/definition-store-contract.js';
import { startNatsServer } from '../helpers/nats-server.js';

const WATCH_INTERVAL_MS = 50;
/** Long enough for two watch reads. */
const settle = () => sleep(WATCH_INTERVAL_MS * 4);

definitionStoreContract(t, 'kv definitions on memory', {
  async open(t) {
    const definitions = new KvDefinitionStore(new MemoryKvStore(), { watchIntervalMs: WATCH_INTERVAL_MS });
    return { definitions, settle };
  },
});

const server = await startNatsServer();
t.teardown(() => server.stop());
const connection = await connect({ servers: server.url });
t.teardown(() => connection.close());

definitionStoreContract(t, 'kv definitions on nats', {
  async open() {
    // Each test starts from an empty bucket.
    await (await jetstreamManager(connection)).streams.delete(`KV_${DEFINITION_BUCKET}`).catch(() => false);
    const kv = await NatsKvStore.open(connection, { bucket: DEFINITION_BUCKET, allowDirect: false });
    return { definitions: new KvDefinitionStore(kv, { watchIntervalMs: WATCH_INTERVAL_MS }), settle: () => sleep(300) };
  },
});

t.test('kv definitions - a version whose copy was not written is still listed', async (t) => {
  const kv = new MemoryKvStore();
  const definitions = new KvDefinitionStore(kv);
  await registryOn(definitions).apply('default', files(TRAIT('orders')));
  await kv.delete('definitions.default.ComputedTrait.orders.v000000001');

  t.same((await definitions.listVersions('default', 'ComputedTrait', 'orders')).map((version) => version.version), [1]);
  const again = await registryOn(definitions).apply('default', files(TRAIT('orders', 'Order Placed')));
  t.equal(again.results[0].version, 2, 'the next apply continues from the latest key');
});

t.test('kv definitions - two nodes see each other\'s applies', async (t) => {
  const kv = new MemoryKvStore();
  const first = new KvDefinitionStore(kv, { watchIntervalMs: WATCH_INTERVAL_MS });
  const second = new KvDefinitionStore(kv, { watchIntervalMs: WATCH_INTERVAL_MS });
  const seen: string[] = [];
  const stop = second.watch((version) => seen.push(`${version.name}@${version.version}`));
  t.teardown(stop);
  await settle();

  await registryOn(first).apply('default', files(TRAIT('orders')));
  await registryOn(first).apply('default', files(TRAIT('orders', 'Order Placed')));
  await settle();
  t.same(seen, ['orders@1', 'orders@2'], 'the watching store reports both versions in order');
});
