import t from 'tap';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClusterNode } from '../../cluster/cluster-node.js';
import type { ClusterNodeOptions } from '../../cluster/cluster-options.js';
import { shardOf } from '../../cluster/routing.js';
import { createLogger } from '../../common/logger.js';
import type { RawEvent } from '../../profiles/event.js';
import { startNatsServer } from '../helpers/nats-server.js';

const SHARDS = 8;
const USERS = 40;
const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });

/** Fast rebalancing; a long member timeout keeps an aborted node in the member list while the test queries it. */
const OPTIONS: Partial<ClusterNodeOptions> = {
  shards: SHARDS,
  leaseTtlMs: 3_000,
  leaseRenewIntervalMs: 500,
  heartbeatIntervalMs: 300,
  memberTimeoutMs: 30_000,
  rebalanceStableForMs: 500,
  checkpointIntervalMs: 200,
  queryTimeoutMs: 20_000,
  logger,
};

const track = (userId: string, messageId: string): RawEvent => ({ type: 'track', event: 'Viewed', userId, messageId, properties: { step: messageId } });

async function waitUntil(condition: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

function ownerOf(nodes: ClusterNode[], shard: number): ClusterNode | undefined {
  return nodes.find((node) => node.status().hosted.some((host) => host.shard === shard));
}

/** Sends `perUser` events for every user, one batch per round, and returns the messageIds in the order sent. */
async function send(node: ClusterNode, phase: string, perUser: number): Promise<Map<string, string[]>> {
  const sent = new Map<string, string[]>();
  for (let round = 0; round < perUser; round++) {
    const events = Array.from({ length: USERS }, (_, i) => track(`u${i}`, `${phase}-${round}-u${i}`));
    const results = await node.ingest('w', events);
    if (!results.every((result) => result.status === 'accepted')) throw new Error(`phase ${phase} round ${round} was not accepted: ${JSON.stringify(results)}`);
    events.forEach((event) => sent.set(event.userId as string, [...(sent.get(event.userId as string) ?? []), event.messageId as string]));
  }
  return sent;
}

/** Reads every page of a profile's events through `node`, `pageSize` at a time. */
async function readAll(node: ClusterNode, userId: string, pageSize: number): Promise<{ messageIds: string[]; unavailable: string[]; departed: string[] }> {
  const messageIds: string[] = [];
  const unavailable = new Set<string>();
  const departed = new Set<string>();
  let pageToken = '';
  do {
    const page = await node.listProfileEvents('w', { type: 'user_id', value: userId }, { pageSize, pageToken });
    messageIds.push(...page.events.map((event) => event.messageId));
    page.unavailableNodes.forEach((nodeId) => unavailable.add(nodeId));
    page.departedNodes.forEach((nodeId) => departed.add(nodeId));
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return { messageIds, unavailable: [...unavailable], departed: [...departed] };
}

t.test('profile events in cluster mode - the history of a moved shard joins the parts each owner stored', { timeout: 180_000 }, async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nodes: ClusterNode[] = [];
  t.teardown(() => Promise.all(nodes.map((node) => node.abort())));
  const root = t.testdir();
  const start = async (nodeId: string) => nodes.push(await ClusterNode.start({ ...OPTIONS, servers: [server.url], nodeId, dataDir: path.join(root, nodeId) }));

  await start('a');
  await start('b');
  await waitUntil(() => nodes.reduce((sum, node) => sum + node.status().hosted.length, 0) === SHARDS, 'a and b hosting every shard');
  const firstOwners = new Map(Array.from({ length: SHARDS }, (_, shard) => [shard, ownerOf(nodes, shard)?.nodeId]));
  const before = await send(nodes[0], 'before', 12);

  await start('c');
  await waitUntil(() => nodes[2].status().hosted.length > 0 && nodes.reduce((sum, node) => sum + node.status().hosted.length, 0) === SHARDS, 'c hosting shards');
  const after = await send(nodes[1], 'after', 3);

  const moved = Array.from({ length: USERS }, (_, i) => `u${i}`).find((userId) => ownerOf(nodes, shardOf(`user:${userId}`, SHARDS))?.nodeId === 'c');
  t.ok(moved, 'some user lives on a shard that moved to c');
  const userId = moved as string;
  const firstOwner = firstOwners.get(shardOf(`user:${userId}`, SHARDS)) as string;
  const expected = [...(before.get(userId) ?? []), ...(after.get(userId) ?? [])].reverse();

  for (const node of nodes) {
    const all = await readAll(node, userId, 4);
    t.same(all.messageIds, expected, `node ${node.nodeId} returns all ${expected.length} events newest first, across pages`);
    t.same(all.unavailable, [], `node ${node.nodeId} heard from every member`);
    t.same(all.departed, [], `node ${node.nodeId} knows of no owner that left`);
  }
  const single = await nodes[0].listProfileEvents('w', { type: 'user_id', value: userId }, { pageSize: 1_000 });
  t.equal(single.events.length, expected.length, 'one large page holds the whole history');
  t.equal(single.nextPageToken, '', 'and it is the last page');

  // The first owner stops without leaving: its part of the history is unavailable, and the page names it.
  const stopped = nodes.find((node) => node.nodeId === firstOwner) as ClusterNode;
  await stopped.abort();
  const asker = nodes.find((node) => node.nodeId === 'c') as ClusterNode;
  const partial = await readAll(asker, userId, 100);
  t.same(partial.unavailable, [firstOwner], `the page names ${firstOwner}, which did not answer`);
  t.same(partial.messageIds, [...(after.get(userId) ?? [])].reverse(), 'the page holds the events that c stored');

  // c leaves for good and takes its part with it: the page names it as departed.
  await asker.drain({ timeoutMs: 20_000 });
  const remaining = nodes.find((node) => node.nodeId !== firstOwner && node.nodeId !== 'c') as ClusterNode;
  await waitUntil(() => remaining.status().hosted.some((host) => host.shard === shardOf(`user:${userId}`, SHARDS)), `${remaining.nodeId} hosting the shard of ${userId}`);
  const departed = await readAll(remaining, userId, 100);
  t.ok(departed.departed.includes('c'), 'the page names c, which owned the shard and left');
  // By now the stopped first owner may have been removed from the members, so it counts as departed.
  t.same([...departed.departed, ...departed.unavailable].sort(), [firstOwner, 'c'].sort(), `and names ${firstOwner}, as unavailable or departed`);
  t.same(departed.messageIds, [], 'no running node stores an event of the profile');
});
