/**
 * SIGKILL of an `rtcdp node` process under load. Its shard leases expire, the other nodes
 * take the shards over from the snapshots in NATS and the event log, and no acknowledged
 * event is lost or applied twice. The test kills a node that is not the coordinator, then
 * restarts it and kills the coordinator. Each failover time runs from the SIGKILL to the
 * first read that returns a write made after the kill, for a customer whose shard the
 * killed node ran. The times are printed only, because they depend on the machine.
 */
import t, { type Test } from 'tap';
import { type ClusterLoad, readEventCount } from '../helpers/cluster-load.js';
import { startNatsServer } from '../helpers/nats-server.js';
import { expectExactCounts, ProcessCluster, shardOfUser } from '../helpers/process-cluster.js';

const CUSTOMERS = 2_000;
/** How long the measurement waits for a customer of a killed node to be readable again. */
const FAILOVER_TIMEOUT_MS = 60_000;
const LOAD_BEFORE_KILL_MS = 2_000;

/**
 * Writes one event for a customer on one of `shards`, then reads the customer until the
 * count includes that write. Returns the times from `killedAt` to the acknowledgement and
 * to the first such read.
 */
async function measureFailover(t: Test, cluster: ProcessCluster, load: ClusterLoad, shards: number[], killedAt: number, probe: string): Promise<{ writeMs: number; readMs: number }> {
  let userId = '';
  for (let i = 0; userId === ''; i++) {
    if (shards.includes(shardOfUser(`${probe}-${i}`, cluster.shards))) userId = `${probe}-${i}`;
  }

  t.ok(await load.sendOne(userId), `the write for ${userId} on shard ${shardOfUser(userId, cluster.shards)} is acknowledged`);
  const writeMs = Date.now() - killedAt;
  const expected = load.acknowledged.get(userId)?.size ?? 0;

  const deadline = killedAt + FAILOVER_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const count = await readEventCount(userId, cluster.targets, cluster.clients, 10_000);
    if (count === null) continue;
    t.equal(count, expected, `the first answered read of ${userId} counts its acknowledged write`);
    return { writeMs, readMs: Date.now() - killedAt };
  }
  throw new Error(`no node answered for ${userId} within ${FAILOVER_TIMEOUT_MS} ms of the kill`);
}

/** Kills `victim` under load, waits for the others to run every shard, and prints the failover time. */
async function killAndTakeOver(t: Test, cluster: ProcessCluster, load: ClusterLoad, victim: string, survivors: string[], label: string): Promise<void> {
  const shards = (await cluster.runningShards([victim])).get(victim) ?? [];
  t.ok(shards.length > 0, `${label}: node ${victim} runs shards ${shards.join(', ')} before the kill`);

  const killedAt = Date.now();
  t.equal(await cluster.node(victim).kill(), 'SIGKILL', `${label}: node ${victim} is killed`);
  const failover = await measureFailover(t, cluster, load, shards, killedAt, `probe-${victim}`);
  t.comment(`${label}: failover time ${failover.readMs} ms from SIGKILL to the first read of a write (acknowledged after ${failover.writeMs} ms) on a shard of the killed node`);

  await cluster.waitForShardsOn(survivors);
}

t.test('cluster failover - SIGKILL of a node under load', async (t) => {
  const nats = await startNatsServer();
  t.teardown(() => nats.stop());
  const cluster = await ProcessCluster.create(t, { nats: [nats.url], baseDir: t.testdir() });
  const nodeIds = ['a', 'b', 'c'];
  await Promise.all(nodeIds.map((nodeId) => cluster.start(nodeId)));
  await cluster.waitForShardsOn(nodeIds);

  const load = cluster.load({ customers: CUSTOMERS, prefix: 'failover' });
  load.start();
  await new Promise((resolve) => setTimeout(resolve, LOAD_BEFORE_KILL_MS));

  const statuses = await cluster.statuses(nodeIds);
  const coordinator = nodeIds.find((nodeId) => statuses.get(nodeId)?.coordinator === true);
  t.ok(coordinator !== undefined, `one node is the coordinator (${coordinator})`);
  const follower = nodeIds.find((nodeId) => nodeId !== coordinator)!;

  await killAndTakeOver(t, cluster, load, follower, nodeIds.filter((nodeId) => nodeId !== follower), 'non-coordinator');

  await cluster.start(follower);
  await cluster.waitForShardsOn(nodeIds);
  await killAndTakeOver(t, cluster, load, coordinator!, nodeIds.filter((nodeId) => nodeId !== coordinator), 'coordinator');

  await load.stop();
  await expectExactCounts(t, load, cluster);
});
