/**
 * NATS failures under load, with `rtcdp node` processes as clients. A single NATS server
 * is stopped for longer than the shard leases last and started again on the same port and
 * store directory. Then, on a three-server NATS cluster with replicas 3, the server that
 * leads the event stream is killed. Either way the nodes reconnect, no acknowledged event
 * is lost, and none is applied twice.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import t from 'tap';
import { EVENT_STREAM } from '../../cluster/nats/subjects.js';
import { startNatsCluster, startNatsServer } from '../helpers/nats-server.js';
import { expectExactCounts, ProcessCluster } from '../helpers/process-cluster.js';

const CUSTOMERS = 2_000;
const LOAD_MS = 2_000;
/** Longer than a lease stays valid (3,000 ms ttl in FAST_CLUSTER_ARGS), so every node steps down from every shard. */
const OUTAGE_MS = 4_000;

/** Returns the server name of the event stream's leader, polling while there is none, for at most 30 s. */
async function eventStreamLeader(urls: string[]): Promise<string | undefined> {
  const connection = await connect({ servers: urls });
  try {
    const jsm = await jetstreamManager(connection, { checkAPI: false });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const leader = await jsm.streams.info(EVENT_STREAM).then((info) => info.cluster?.leader, () => undefined);
      if (leader !== undefined && leader !== '') return leader;
      await sleep(200);
    }
    return undefined;
  } finally {
    await connection.close();
  }
}

t.test('cluster nats outage - restart of the only NATS server under load', async (t) => {
  const storeDir = path.join(t.testdir(), 'nats');
  let nats = await startNatsServer({ storeDir });
  t.teardown(() => nats.stop());
  const cluster = await ProcessCluster.create(t, { nats: [nats.url], baseDir: t.testdir() });
  const nodeIds = ['a', 'b', 'c'];
  await Promise.all(nodeIds.map((nodeId) => cluster.start(nodeId)));
  await cluster.waitForShardsOn(nodeIds);

  const load = cluster.load({ customers: CUSTOMERS, prefix: 'restart' });
  load.start();
  await sleep(LOAD_MS);

  const acknowledgedBefore = load.acknowledgedEvents;
  await nats.stop();
  await sleep(OUTAGE_MS);
  nats = await startNatsServer({ storeDir, port: nats.port });
  const restartedAt = Date.now();

  await cluster.waitForShardsOn(nodeIds);
  t.comment(`every shard runs again ${Date.now() - restartedAt} ms after the NATS server restarted`);
  const acknowledgedAtSettle = load.acknowledgedEvents;
  await sleep(LOAD_MS);
  await load.stop();
  t.ok(load.acknowledgedEvents > acknowledgedAtSettle, `events are acknowledged after the restart (${acknowledgedBefore} before the stop, ${load.acknowledgedEvents} in all)`);
  t.same(cluster.runningIds().sort(), nodeIds, 'every node process is still running');

  await expectExactCounts(t, load, cluster);
});

t.test('cluster nats outage - kill of the event stream leader in a 3-server NATS cluster', async (t) => {
  const servers = await startNatsCluster(3);
  t.teardown(() => Promise.all(servers.map((server) => server.stop())));
  const urls = servers.map((server) => server.url);
  const cluster = await ProcessCluster.create(t, { nats: urls, baseDir: t.testdir(), replicas: 3 });
  const nodeIds = ['a', 'b', 'c'];
  await Promise.all(nodeIds.map((nodeId) => cluster.start(nodeId)));
  await cluster.waitForShardsOn(nodeIds);

  const load = cluster.load({ customers: CUSTOMERS, prefix: 'replicas' });
  load.start();
  await sleep(LOAD_MS);

  const leader = await eventStreamLeader(urls);
  const victim = servers.find((server) => server.serverName === leader);
  t.ok(victim !== undefined, `the event stream has a leader (${leader})`);
  await victim!.kill();
  const killedAt = Date.now();
  const survivors = urls.filter((url) => url !== victim!.url);
  t.comment(`the event stream leader is ${await eventStreamLeader(survivors)} ${Date.now() - killedAt} ms after the kill of ${leader}`);

  const acknowledgedAtKill = load.acknowledgedEvents;
  await sleep(LOAD_MS);
  await cluster.waitForShardsOn(nodeIds);
  await sleep(LOAD_MS);
  await load.stop();
  t.ok(load.acknowledgedEvents > acknowledgedAtKill, `events are acknowledged after the kill (${acknowledgedAtKill} before it, ${load.acknowledgedEvents} in all)`);
  t.same(cluster.runningIds().sort(), nodeIds, 'every node process is still running');

  await expectExactCounts(t, load, cluster);
});
