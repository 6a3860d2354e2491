/**
 * ListProfileEvents in cluster mode of a profile that absorbed a visitor whose shard is
 * owned by another node: the visitor's history, stored on that node, joins the survivor's,
 * and a node that stored it and left is named in departedNodes.
 */
import t from 'tap';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClusterNode } from '../../cluster/cluster-node.js';
import type { ClusterNodeOptions } from '../../cluster/cluster-options.js';
import { shardOf } from '../../cluster/routing.js';
import { createLogger } from '../../common/logger.js';
import type { RawEvent } from '../../profiles/event.js';
import { waitFor } from '../helpers/cluster-nodes.js';
import { startNatsServer } from '../helpers/nats-server.js';

const SHARDS = 8;
const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });

/** Fast rebalancing; a long member timeout keeps the member list stable while the test runs. */
const OPTIONS: Partial<ClusterNodeOptions> = {
  shards: SHARDS,
  leaseTtlMs: 3_000,
  leaseRenewIntervalMs: 500,
  heartbeatIntervalMs: 300,
  memberTimeoutMs: 30_000,
  rebalanceStableForMs: 500,
  checkpointIntervalMs: 200,
  queryTimeoutMs: 20_000,
  actors: { snapshotIntervalMs: 50 },
  logger,
};

const page = (anonymousId: string, messageId: string): RawEvent => ({ type: 'page', name: 'Home', anonymousId, messageId });
const track = (userId: string, messageId: string): RawEvent => ({ type: 'track', event: 'Order Completed', userId, messageId });

/** Waits up to 60 s until `condition` is true, through the shared polling loop of the cluster test helpers. */
function waitUntil(condition: () => boolean, what: string): Promise<boolean> {
  return waitFor(async () => condition(), (done) => done, what, 60_000);
}

function ownerOf(nodes: ClusterNode[], profileId: string): string | undefined {
  const shard = shardOf(profileId, SHARDS);
  return nodes.find((node) => node.status().hosted.some((host) => host.shard === shard))?.nodeId;
}

/** Ingests one batch through `node` and waits a few ms, so the next batch gets a later receive time. */
async function send(node: ClusterNode, events: RawEvent[]): Promise<void> {
  const results = await node.ingest('w', events);
  if (!results.every((result) => result.status === 'accepted')) throw new Error(`batch was not accepted: ${JSON.stringify(results)}`);
  await sleep(3);
}

/** Reads every page of a user's events through `node`, `pageSize` at a time. */
async function readAll(node: ClusterNode, userId: string, pageSize: number) {
  const listing = { messageIds: [] as string[], profileIds: [] as string[], unavailable: new Set<string>(), departed: new Set<string>() };
  let pageToken = '';
  for (let pageIndex = 0; pageIndex < 100; pageIndex++) {
    const page = await node.listProfileEvents('w', { type: 'user_id', value: userId }, { pageSize, pageToken });
    listing.messageIds.push(...page.events.map((event) => event.messageId));
    listing.profileIds.push(...page.events.map((event) => event.profileId ?? ''));
    page.unavailableNodes.forEach((nodeId) => listing.unavailable.add(nodeId));
    page.departedNodes.forEach((nodeId) => listing.departed.add(nodeId));
    pageToken = page.nextPageToken;
    if (pageToken === '') return { ...listing, unavailable: [...listing.unavailable], departed: [...listing.departed] };
  }
  throw new Error(`paging the events of ${userId} did not end after 100 pages`);
}

t.test('merged history in cluster mode - a visitor on another shard and node joins the survivor', { timeout: 180_000 }, async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nodes: ClusterNode[] = [];
  t.teardown(() => Promise.all(nodes.map((node) => node.abort())));
  const root = t.testdir();
  const start = async (nodeId: string) => nodes.push(await ClusterNode.start({ ...OPTIONS, servers: [server.url], nodeId, dataDir: path.join(root, nodeId) }));
  const hostedShards = () => nodes.reduce((sum, node) => sum + node.status().hosted.length, 0);

  await start('a');
  await start('b');
  await waitUntil(() => hostedShards() === SHARDS && nodes.every((node) => node.status().hosted.length > 0), 'a and b hosting every shard');
  await start('c');
  // Balanced by count (3, 3 and 2 shards), so no shard moves while the test runs.
  const balanced = () => {
    const counts = nodes.map((node) => node.status().hosted.length);
    return hostedShards() === SHARDS && Math.max(...counts) - Math.min(...counts) <= 1;
  };
  await waitUntil(balanced, 'the shards balanced over a, b and c');

  // The visitor's shard is c's, and the user's shard is one that c never owned.
  const candidates = Array.from({ length: 200 }, (_, i) => `v${i}`);
  const visitor = candidates.find((id) => ownerOf(nodes, `anon:${id}`) === 'c') as string;
  const userId = candidates.find((id) => ownerOf(nodes, `user:${id}`) !== 'c' && ownerOf(nodes, `user:${id}`) !== undefined) as string;
  t.ok(visitor && userId, 'ids for both shards exist');
  t.not(shardOf(`anon:${visitor}`, SHARDS), shardOf(`user:${userId}`, SHARDS), 'the two profiles are on different shards');

  const [a, b, c] = nodes;
  await send(a, [page(visitor, 'p1')]);
  await send(b, [track(userId, 't1')]);
  await send(c, [page(visitor, 'p2')]);
  await send(a, [track(userId, 't2'), page(visitor, 'p3')]);
  await send(b, [{ type: 'identify', userId, anonymousId: visitor, messageId: 'i1' }]);
  await send(c, [page(visitor, 'p4')]);

  const expected = {
    messageIds: ['p4', 'i1', 'p3', 't2', 'p2', 't1', 'p1'],
    profileIds: [`user:${userId}`, `user:${userId}`, `anon:${visitor}`, `user:${userId}`, `anon:${visitor}`, `user:${userId}`, `anon:${visitor}`],
  };
  for (const node of nodes) {
    for (const pageSize of [1, 2, 100]) {
      const listing = await readAll(node, userId, pageSize);
      t.same(listing.messageIds, expected.messageIds, `node ${node.nodeId}, pages of ${pageSize}: both profiles' events, newest receive time first`);
      t.same(listing.profileIds, expected.profileIds, `node ${node.nodeId}, pages of ${pageSize}: each with its profile id`);
      t.same(listing.unavailable, [], `node ${node.nodeId}, pages of ${pageSize}: every member responded`);
      t.same(listing.departed, [], `node ${node.nodeId}, pages of ${pageSize}: no owner left`);
    }
  }

  // c stored the visitor's history and leaves for good: the page names it, although c never owned the user's shard.
  await c.drain({ timeoutMs: 20_000 });
  await waitUntil(() => ownerOf([a, b], `anon:${visitor}`) !== undefined, `a or b hosting the shard of anon:${visitor}`);
  const afterDrain = await readAll(a, userId, 100);
  t.same(afterDrain.departed, ['c'], 'the page names c, which owned the visitor\'s shard and left');
  t.same(afterDrain.unavailable, [], 'every remaining member responded');
  t.same(afterDrain.messageIds, ['p4', 'i1', 't2', 't1'], 'the page holds the survivor\'s own events, which a and b stored');
});
