/**
 * SIGSTOP of an `rtcdp node` process past its shard leases, under load. The other nodes
 * take its shards over. After SIGCONT the stale owner must find its leases ended, stop
 * applying those shards and write nothing for them, and every count must stay exact.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import t from 'tap';
import { CLUSTER_BUCKET } from '../../cluster/cluster-node.js';
import { NatsKvStore } from '../../cluster/kv/nats-kv-store.js';
import { decodeLeaseRecord, leaseEpoch } from '../../cluster/leases/lease-record.js';
import { SNAPSHOT_BUCKET } from '../../cluster/nats/snapshot-store.js';
import { shardStateKey, type ShardState } from '../../cluster/shard-state.js';
import { decode } from '../../storage/codec.js';
import { logRecords } from '../helpers/cluster-node-process.js';
import { startNatsServer } from '../helpers/nats-server.js';
import { expectExactCounts, ProcessCluster } from '../helpers/process-cluster.js';

const CUSTOMERS = 2_000;
const LOAD_BEFORE_PAUSE_MS = 2_000;
/** How long the test waits for the resumed node to log that it stopped each shard. */
const STEP_DOWN_TIMEOUT_MS = 30_000;
/** Workspace of calls without a write key, which the nodes take in dev mode. */
const WORKSPACE = 'default';

interface ShardOwnerRecords {
  leaseHolder: string;
  leaseEpoch: number;
  stateNodeId: string;
  stateEpoch: number;
}

/** Reads the lease and the shard-state record of each shard straight from the cluster bucket. */
async function readShardRecords(connection: NatsConnection, shards: number[]): Promise<Map<number, ShardOwnerRecords>> {
  const kv = await NatsKvStore.open(connection, { bucket: CLUSTER_BUCKET, replicas: 1 });
  const records = new Map<number, ShardOwnerRecords>();
  for (const shard of shards) {
    const lease = await kv.get(`shard.${shard}`);
    const state = await kv.get(shardStateKey(shard));
    if (lease === null || state === null) continue;
    const leaseRecord = decodeLeaseRecord(lease.value, lease.key, lease.revision);
    const stateRecord = decode<ShardState>(Buffer.from(state.value));
    records.set(shard, { leaseHolder: leaseRecord.holder, leaseEpoch: leaseEpoch(leaseRecord, lease.revision), stateNodeId: stateRecord.nodeId, stateEpoch: stateRecord.epoch });
  }
  return records;
}

/** Returns the last revision written to the profile snapshot bucket. */
async function lastSnapshotRevision(connection: NatsConnection): Promise<number> {
  const jsm = await jetstreamManager(connection);
  return (await jsm.streams.info(`KV_${SNAPSHOT_BUCKET}`)).state.last_seq;
}

/**
 * Lists the stored profile snapshots of each shard that carry the shard's stale lease
 * epoch and a revision above `afterRevision`: writes of the stale owner that the store
 * accepted after the takeover and no newer owner has overwritten.
 */
async function staleSnapshotsAfter(connection: NatsConnection, staleEpochs: Map<number, number>, afterRevision: number): Promise<string[]> {
  const kv = await NatsKvStore.open(connection, { bucket: SNAPSHOT_BUCKET, replicas: 1, allowDirect: false });
  const found: string[] = [];
  for (const [shard, epoch] of staleEpochs) {
    for (const entry of await kv.list(`${WORKSPACE}.${shard}.`)) {
      const stored = decode<{ epoch: number }>(Buffer.from(entry.value));
      if (stored.epoch === epoch && entry.revision > afterRevision) found.push(`${entry.key} at revision ${entry.revision}`);
    }
  }
  return found;
}

t.test('cluster stale owner - SIGSTOP past the lease, then SIGCONT', async (t) => {
  const nats = await startNatsServer();
  t.teardown(() => nats.stop());
  const cluster = await ProcessCluster.create(t, { nats: [nats.url], baseDir: t.testdir() });
  const connection = await connect({ servers: nats.url });
  t.teardown(() => connection.close());
  const nodeIds = ['a', 'b', 'c'];
  await Promise.all(nodeIds.map((nodeId) => cluster.start(nodeId)));
  await cluster.waitForShardsOn(nodeIds);

  const load = cluster.load({ customers: CUSTOMERS, prefix: 'stale' });
  load.start();
  await new Promise((resolve) => setTimeout(resolve, LOAD_BEFORE_PAUSE_MS));

  const statuses = await cluster.statuses(nodeIds);
  const victim = nodeIds.find((nodeId) => statuses.get(nodeId)?.coordinator === false)!;
  const others = nodeIds.filter((nodeId) => nodeId !== victim);
  const victimHosts = statuses.get(victim)!.hosted.filter((host) => host.state === 'running');
  const staleShards = victimHosts.map((host) => host.shard);
  t.ok(staleShards.length > 0, `node ${victim} runs shards ${staleShards.join(', ')} before the pause`);

  const pausedAt = Date.now();
  cluster.node(victim).pause();
  await cluster.waitForShardsOn(others);
  t.comment(`nodes ${others.join(' and ')} run every shard ${Date.now() - pausedAt} ms after SIGSTOP of ${victim}`);

  const snapshotRevisionAtTakeover = await lastSnapshotRevision(connection);
  const recordsAtTakeover = await readShardRecords(connection, staleShards);
  for (const host of victimHosts) {
    const records = recordsAtTakeover.get(host.shard);
    t.not(records?.leaseHolder, victim, `shard ${host.shard} has another lease holder than ${victim}`);
    t.ok((records?.leaseEpoch ?? 0) > host.epoch, `the lease epoch of shard ${host.shard} is above ${host.epoch}`);
  }

  cluster.node(victim).resume();
  const deadline = Date.now() + STEP_DOWN_TIMEOUT_MS;
  const stoppedShards = () =>
    new Set(
      logRecords(cluster.node(victim).stderr())
        .filter((record) => record.msg === 'lost the shard lease; stopped applying its events')
        .map((record) => record.shard as number),
    );
  while (staleShards.some((shard) => !stoppedShards().has(shard)) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  // The records are read before the coordinator can give the resumed node shards again,
  // which needs it to be a member for rebalance-stable-for-ms first.
  const afterResume = await readShardRecords(connection, staleShards);
  const staleEpochs = new Map(victimHosts.map((host) => [host.shard, host.epoch]));
  const staleSnapshots = await staleSnapshotsAfter(connection, staleEpochs, snapshotRevisionAtTakeover);
  const log = logRecords(cluster.node(victim).stderr());
  const stepDowns = log.filter((record) => typeof record.msg === 'string' && /^shard lease (expired without a confirmed renewal|lost: another node wrote the key), stepping down$/.test(record.msg));
  const fenced = log.filter((record) => record.msg === 'another node owns the shard now; stopping without writing');
  t.comment(`node ${victim} after SIGCONT: ${stepDowns.length} lease step-downs, ${fenced.length} writes rejected as fenced, shards stopped ${[...stoppedShards()].join(', ')}`);

  for (const host of victimHosts) {
    t.ok(stoppedShards().has(host.shard), `node ${victim} logs that it stopped applying shard ${host.shard}`);
    t.ok(stepDowns.some((record) => record.shard === host.shard && record.epoch === host.epoch), `node ${victim} logs the step-down from its lease of shard ${host.shard} at epoch ${host.epoch}`);
    const records = afterResume.get(host.shard);
    t.not(records?.stateNodeId, victim, `the checkpoint record of shard ${host.shard} names another node than ${victim}`);
    t.ok((records?.stateEpoch ?? 0) > host.epoch, `the checkpoint record of shard ${host.shard} has an epoch above ${host.epoch}`);
  }

  t.same(staleSnapshots.slice(0, 10), [], `no profile snapshot of node ${victim}'s old epochs was stored after the takeover`);

  await cluster.waitForShardsOn(nodeIds);
  t.comment(`node ${victim} runs shards again ${Date.now() - pausedAt} ms after the SIGSTOP`);
  await load.stop();
  await expectExactCounts(t, load, cluster);
});
