/**
 * Three `rtcdp node` processes on one NATS server take events for 10,000 customers, each
 * batch sent to a random node. Every customer's profile must then count exactly the
 * events acknowledged for it, read from any node.
 */
import t from 'tap';
import { startNatsServer } from '../helpers/nats-server.js';
import { expectExactCounts, ProcessCluster } from '../helpers/process-cluster.js';

const CUSTOMERS = 10_000;
/** Six events per customer: about 10 s of sending on a 2-core machine. */
const EVENTS = 60_000;

t.test('cluster load - 10,000 customers on three nodes', async (t) => {
  const nats = await startNatsServer();
  t.teardown(() => nats.stop());
  const cluster = await ProcessCluster.create(t, { nats: [nats.url], baseDir: t.testdir() });
  const nodeIds = ['a', 'b', 'c'];
  await Promise.all(nodeIds.map((nodeId) => cluster.start(nodeId)));
  const shards = await cluster.waitForShardsOn(nodeIds);
  t.comment(`shards per node: ${JSON.stringify(Object.fromEntries(shards))}`);

  const load = cluster.load({ customers: CUSTOMERS, prefix: 'load' });
  const startedAt = Date.now();
  await load.sendEvents(EVENTS);
  t.comment(`sent ${EVENTS} events in ${Date.now() - startedAt} ms`);
  t.equal(load.acknowledgedEvents, EVENTS, 'every event sent is acknowledged');
  t.equal(load.acknowledged.size, CUSTOMERS, 'every customer has acknowledged events');

  await expectExactCounts(t, load, cluster);
});
