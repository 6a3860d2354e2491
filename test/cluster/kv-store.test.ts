import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { JetStreamApiError, jetstreamManager } from '@nats-io/jetstream';
import { KvConflictError } from '../../storage/kv-store.js';
import { MemoryKvStore } from '../../storage/memory-kv-store.js';
import { NatsKvStore } from '../../cluster/kv/nats-kv-store.js';
import { startNatsServer } from '../helpers/nats-server.js';
import { kvStoreContract } from '../storage/kv-store-contract.js';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

kvStoreContract(t, 'memory kv store', {
  async open() {
    return new MemoryKvStore();
  },
});

t.test('nats kv store', { timeout: 120_000 }, async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());

  // A bucket per test, so every test starts empty.
  let buckets = 0;
  const openBucket = () => NatsKvStore.open(nc, { bucket: `contract-${++buckets}`, replicas: 1 });

  kvStoreContract(t, 'nats kv store', { open: openBucket });

  t.test('nats kv store - conflict keeps the server error', async (t) => {
    const kv = await openBucket();
    await kv.create('shard.1', bytes('a'));

    const error = await kv.create('shard.1', bytes('b')).catch((caught: unknown) => caught);
    t.type(error, KvConflictError);
    const cause = (error as Error).cause;
    t.type(cause, JetStreamApiError, 'the cause is the JetStream API error');
    t.equal((cause as JetStreamApiError).code, 10071, 'nats-server reports "wrong last sequence" as code 10071');
    t.match((cause as Error).message, /wrong last sequence/);
  });

  t.test('nats kv store - rejects invalid keys', async (t) => {
    const kv = await openBucket();
    for (const key of ['', 'a b', 'a*', 'a.>', '.a', 'a.', 'a..b', 'ü']) {
      await t.rejects(kv.get(key), RangeError, `get of ${JSON.stringify(key)}`);
      await t.rejects(kv.create(key, bytes('x')), RangeError, `create of ${JSON.stringify(key)}`);
    }
    await t.rejects(kv.list('a*'), RangeError, 'list of a prefix with a wildcard');
    await t.rejects(kv.list('a..'), RangeError, 'list of a prefix with an empty token');
    t.ok((await kv.create('a-b/c_d=e.F9', bytes('x'))) > 0, 'every allowed character is accepted');
  });

  t.test('nats kv store - open validates options', async (t) => {
    await t.rejects(NatsKvStore.open(nc, { bucket: 'bad.name' }), { code: 'INVALID_CONFIG', message: /bucket/ });
    await t.rejects(NatsKvStore.open(nc, { bucket: 'fine', replicas: 2 }), { code: 'INVALID_CONFIG', message: /replicas must be 1, 3 or 5/ });
  });

  t.test('nats kv store - reopens an existing bucket', async (t) => {
    const first = await NatsKvStore.open(nc, { bucket: 'reopened' });
    const revision = await first.create('shard.1', bytes('a'));

    const second = await NatsKvStore.open(nc, { bucket: 'reopened', replicas: 1 });
    t.equal((await second.get('shard.1'))?.revision, revision, 'the second store reads the first one\'s write');

    await t.rejects(
      NatsKvStore.open(nc, { bucket: 'reopened', replicas: 3 }),
      { code: 'INVALID_CONFIG', message: /exists with replicas 1 and history 1, but replicas 3/ },
      'a bucket with another replica count is not silently reused',
    );
  });

  t.test('nats kv store - list removes its consumer', async (t) => {
    const kv = await NatsKvStore.open(nc, { bucket: 'listed' });
    await kv.put('shard.1', bytes('a'));
    t.equal((await kv.list('shard.')).length, 1);

    const jsm = await jetstreamManager(nc);
    const consumers = await jsm.consumers.list('KV_listed').next();
    t.same(consumers.map((consumer) => consumer.name), [], 'no consumer is left on the stream');
  });

  t.test('nats kv store - other errors pass through', async (t) => {
    const own = await connect({ servers: server.url });
    const kv = await NatsKvStore.open(own, { bucket: 'closed' });
    await own.close();

    const error = await kv.create('shard.1', bytes('a')).catch((caught: unknown) => caught);
    t.type(error, Error);
    t.notOk(error instanceof KvConflictError, `a closed connection is no conflict: ${String(error)}`);
  });
});
