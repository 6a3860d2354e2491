/**
 * In-process cluster nodes for tests: a nats-server on a random loopback port and nodes on
 * it, all stopped when the test ends.
 */
import path from 'node:path';
import type { Test } from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClusterNode } from '../../cluster/cluster-node.js';
import type { ClusterNodeOptions } from '../../cluster/cluster-options.js';
import { startNatsServer } from './nats-server.js';

/** Polls `read` every 50 ms until `done` accepts its value; throws naming `what` after `timeoutMs`. */
export async function waitFor<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Starts nats-server and one node per id with `options` (which must set `shards`), and
 * waits until every shard is hosted and every node hosts one.
 */
export async function startClusterNodes(t: Test, nodeIds: string[], options: Partial<ClusterNodeOptions> & { shards: number }): Promise<ClusterNode[]> {
  const server = await startNatsServer();
  t.teardown(() => server.stop());

  const nodes: ClusterNode[] = [];
  t.teardown(() => Promise.all(nodes.map((node) => node.abort())));
  const root = t.testdir();
  for (const nodeId of nodeIds) {
    nodes.push(await ClusterNode.start({ ...options, servers: [server.url], nodeId, dataDir: path.join(root, nodeId) }));
  }
  await waitFor(
    async () => nodes.reduce((sum, node) => sum + node.status().hosted.length, 0),
    (hosted) => hosted === options.shards && nodes.every((node) => node.status().hosted.length > 0),
    'every shard hosted',
  );
  return nodes;
}
