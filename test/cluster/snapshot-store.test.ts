import t, { type Test } from 'tap';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createLogger } from '../../common/logger.js';
import { NatsKvStore } from '../../cluster/kv/nats-kv-store.js';
import { SNAPSHOT_BUCKET, SNAPSHOT_PARTS_STREAM, SnapshotStore } from '../../cluster/nats/snapshot-store.js';
import { createProfile, toSnapshot, type ProfileSnapshot } from '../../profiles/profile.js';
import { encode } from '../../storage/codec.js';
import { startNatsServer } from '../helpers/nats-server.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });
const OPEN = { replicas: 1, requestTimeoutMs: 2_000, logger };

/** Builds a snapshot of profile `p1` with one trait of `noteLength` characters; 40,000 is over the test server's max_payload. */
function snapshotWith(noteLength: number, eventCount = 1): ProfileSnapshot {
  const state = createProfile('w', 'p1');
  state.traits.note = 'n'.repeat(noteLength);
  state.eventCount = eventCount;
  return toSnapshot(state);
}

async function startServer(t: Test): Promise<NatsConnection> {
  const server = await startNatsServer({ maxPayloadBytes: 16_384 });
  t.teardown(() => server.stop());
  const connection = await connect({ servers: server.url });
  t.teardown(() => connection.close());
  return connection;
}

async function storedParts(connection: NatsConnection): Promise<number> {
  const jsm = await jetstreamManager(connection);
  return (await jsm.streams.info(SNAPSHOT_PARTS_STREAM)).state.messages;
}

t.test('snapshot store - a snapshot over max_payload is written in parts and loads whole', async (t) => {
  const connection = await startServer(t);
  const store = await SnapshotStore.open(connection, OPEN);

  const revision = await store.write({ workspace: 'w', shard: 0, profileId: 'p1', snapshot: snapshotWith(40_000), expectedRevision: undefined }, 1);
  const loaded = await store.load('w', 0, 'p1');
  t.equal(loaded?.revision, revision);
  t.equal((loaded?.snapshot.traits.note as string).length, 40_000, 'the snapshot is whole');
  t.equal(await storedParts(connection), 4, 'four parts of up to 12 KiB');

  const kv = await NatsKvStore.open(connection, { bucket: SNAPSHOT_BUCKET, allowDirect: false });
  const record = await kv.get('w.0.cDE');
  t.ok(record !== null && record.value.length < 1_000, 'the bucket holds only a small record that points to the parts');
});

t.test('snapshot store - replacing a snapshot deletes the parts of the one it replaced', async (t) => {
  const connection = await startServer(t);
  const store = await SnapshotStore.open(connection, OPEN);
  const write = (snapshot: ProfileSnapshot, expectedRevision: number | undefined) => store.write({ workspace: 'w', shard: 0, profileId: 'p1', snapshot, expectedRevision }, 1);

  let revision = await write(snapshotWith(40_000), undefined);
  revision = await write(snapshotWith(100), revision);
  t.equal(await storedParts(connection), 0, 'a small snapshot leaves no parts');
  t.equal((await store.load('w', 0, 'p1'))?.snapshot.traits.note, 'n'.repeat(100));

  revision = await write(snapshotWith(30_000), revision);
  await write(snapshotWith(30_000, 2), revision);
  t.equal(await storedParts(connection), 3, 'only the parts of the latest snapshot stay');
  t.equal((await store.load('w', 0, 'p1'))?.snapshot.eventCount, 2);
});

t.test('snapshot store - a new owner deletes the parts of the snapshot it replaces, loaded or not', async (t) => {
  const connection = await startServer(t);
  const first = await SnapshotStore.open(connection, OPEN);
  await first.write({ workspace: 'w', shard: 0, profileId: 'p1', snapshot: snapshotWith(40_000), expectedRevision: undefined }, 1);

  const loading = await SnapshotStore.open(connection, OPEN);
  const loaded = await loading.load('w', 0, 'p1');
  const revision = await loading.write({ workspace: 'w', shard: 0, profileId: 'p1', snapshot: snapshotWith(20_000, 2), expectedRevision: loaded!.revision }, 2);
  t.equal(await storedParts(connection), 2, 'the loaded snapshot\'s parts are gone, the new ones stay');

  // An owner that loaded the profile from its own disk has no revision and gets it from a conflict.
  const local = await SnapshotStore.open(connection, OPEN);
  await local.write({ workspace: 'w', shard: 0, profileId: 'p1', snapshot: snapshotWith(10, 3), expectedRevision: undefined }, 3);
  t.equal(await storedParts(connection), 0, 'the parts found through the conflict are deleted');
  t.equal((await first.load('w', 0, 'p1'))?.snapshot.eventCount, 3);
  t.ok(revision > 0);
});

t.test('snapshot store - a fenced write of a large snapshot leaves no parts', async (t) => {
  const connection = await startServer(t);
  const current = await SnapshotStore.open(connection, OPEN);
  const stale = await SnapshotStore.open(connection, OPEN);
  const staleRevision = await stale.write({ workspace: 'w', shard: 0, profileId: 'p1', snapshot: snapshotWith(10), expectedRevision: undefined }, 1);
  await current.write({ workspace: 'w', shard: 0, profileId: 'p1', snapshot: snapshotWith(20_000, 5), expectedRevision: staleRevision }, 2);
  const before = await storedParts(connection);

  await t.rejects(stale.write({ workspace: 'w', shard: 0, profileId: 'p1', snapshot: snapshotWith(40_000, 9), expectedRevision: staleRevision }, 1), { code: 'SHARD_FENCED' });
  t.equal(await storedParts(connection), before, 'the stale owner\'s parts are deleted');
  t.equal((await current.load('w', 0, 'p1'))?.snapshot.eventCount, 5, 'the newer owner\'s snapshot stays');
});

t.test('snapshot store - a record whose parts are gone fails to load with a clear error', async (t) => {
  const connection = await startServer(t);
  const store = await SnapshotStore.open(connection, OPEN);
  await store.write({ workspace: 'w', shard: 0, profileId: 'p1', snapshot: snapshotWith(40_000), expectedRevision: undefined }, 1);
  const jsm = await jetstreamManager(connection);
  await jsm.streams.purge(SNAPSHOT_PARTS_STREAM);

  await t.rejects(store.load('w', 0, 'p1'), { code: 'SNAPSHOT_UNREADABLE', message: /the snapshot of profile p1 points to parts that are gone, after 5 reads of its record/ });

  const withoutParts = new SnapshotStore(await NatsKvStore.open(connection, { bucket: SNAPSHOT_BUCKET, allowDirect: false }));
  await t.rejects(withoutParts.load('w', 0, 'p1'), { code: 'SNAPSHOT_UNREADABLE', message: /stored in parts, which this store was opened without/ });
});

t.test('snapshot store - without a parts stream every snapshot is written whole', async (t) => {
  const connection = await startServer(t);
  const kv = await NatsKvStore.open(connection, { bucket: SNAPSHOT_BUCKET, allowDirect: false });
  const store = new SnapshotStore(kv, undefined);
  await store.write({ workspace: 'w', shard: 0, profileId: 'p1', snapshot: snapshotWith(5_000), expectedRevision: undefined }, 1);
  t.equal((await store.load('w', 0, 'p1'))?.snapshot.traits.note, 'n'.repeat(5_000));
});

t.test('snapshot store - encoded snapshot, same record as whole', async (t) => {
  const connection = await startServer(t);
  const store = await SnapshotStore.open(connection, OPEN);
  const kv = await NatsKvStore.open(connection, { bucket: SNAPSHOT_BUCKET, allowDirect: false });

  await store.write({ workspace: 'w', shard: 0, profileId: 'p1', snapshot: encode(snapshotWith(100, 3)), expectedRevision: undefined }, 4);
  const record = await kv.get('w.0.cDE');
  t.ok(record !== null && Buffer.from(record.value).equals(encode({ version: 1, epoch: 4, snapshot: snapshotWith(100, 3) })), 'a record of version 1 with the snapshot inline');
  t.same((await store.load('w', 0, 'p1'))?.snapshot, snapshotWith(100, 3));

  const revision = await store.write({ workspace: 'w', shard: 0, profileId: 'p1', snapshot: encode(snapshotWith(40_000)), expectedRevision: record?.revision }, 4);
  const loaded = await store.load('w', 0, 'p1');
  t.equal(loaded?.revision, revision);
  t.equal((loaded?.snapshot.traits.note as string).length, 40_000, 'an encoded snapshot over max_payload goes to parts and loads whole');
});
