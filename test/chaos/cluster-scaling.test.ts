/**
 * Membership changes of `rtcdp node` processes under load: growing from three nodes to
 * five, shrinking to two with SIGTERM, and restarting every node in turn on its data
 * directory and node id. Shards move by handoff each time, and every count stays exact.
 */
import t from 'tap';
import { startNatsServer } from '../helpers/nats-server.js';
import { expectExactCounts, ProcessCluster } from '../helpers/process-cluster.js';

const CUSTOMERS = 2_000;
const LOAD_BETWEEN_STEPS_MS = 1_000;

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

t.test('cluster scaling - 3 to 5 to 2 nodes under load', async (t) => {
  const nats = await startNatsServer();
  t.teardown(() => nats.stop());
  const cluster = await ProcessCluster.create(t, { nats: [nats.url], baseDir: t.testdir() });
  await Promise.all(['a', 'b', 'c'].map((nodeId) => cluster.start(nodeId)));
  await cluster.waitForShardsOn(['a', 'b', 'c']);

  const load = cluster.load({ customers: CUSTOMERS, prefix: 'scale' });
  load.start();
  await pause(LOAD_BETWEEN_STEPS_MS);

  let startedAt = Date.now();
  await Promise.all(['d', 'e'].map((nodeId) => cluster.start(nodeId)));
  const five = await cluster.waitForShardsOn(['a', 'b', 'c', 'd', 'e']);
  t.comment(`3 -> 5 nodes: shards settled after ${Date.now() - startedAt} ms: ${JSON.stringify(Object.fromEntries(five))}`);
  await pause(LOAD_BETWEEN_STEPS_MS);

  startedAt = Date.now();
  const exitCodes = await Promise.all(['a', 'c', 'e'].map((nodeId) => cluster.node(nodeId).stop()));
  t.same(exitCodes, [0, 0, 0], 'every node exits with 0 after SIGTERM');
  const two = await cluster.waitForShardsOn(['b', 'd']);
  t.comment(`5 -> 2 nodes: stopped and shards settled after ${Date.now() - startedAt} ms: ${JSON.stringify(Object.fromEntries(two))}`);
  await pause(LOAD_BETWEEN_STEPS_MS);

  await load.stop();
  await expectExactCounts(t, load, cluster);
});

t.test('cluster scaling - rolling restart of every node under load', async (t) => {
  const nats = await startNatsServer();
  t.teardown(() => nats.stop());
  const cluster = await ProcessCluster.create(t, { nats: [nats.url], baseDir: t.testdir() });
  const nodeIds = ['a', 'b', 'c'];
  await Promise.all(nodeIds.map((nodeId) => cluster.start(nodeId)));
  await cluster.waitForShardsOn(nodeIds);

  const load = cluster.load({ customers: CUSTOMERS, prefix: 'rolling' });
  load.start();
  await pause(LOAD_BETWEEN_STEPS_MS);

  for (const nodeId of nodeIds) {
    const startedAt = Date.now();
    t.equal(await cluster.node(nodeId).stop(), 0, `node ${nodeId} exits with 0 after SIGTERM`);
    const stoppedMs = Date.now() - startedAt;
    await cluster.start(nodeId);
    await cluster.waitForShardsOn(nodeIds);
    t.comment(`restart of ${nodeId}: stopped after ${stoppedMs} ms, shards settled after ${Date.now() - startedAt} ms`);
    await pause(LOAD_BETWEEN_STEPS_MS);
  }

  await load.stop();
  await expectExactCounts(t, load, cluster);
});
