/**
 * Embedded nodes for tests: one per test directory, drained when the test ends, and the
 * activations they store.
 */
import type { Test } from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import type { NodeOptions } from '../../cluster/node-options.js';
import type { ProfileActivation } from '../../profiles/activation.js';

/**
 * Makes the nodes of every test of `tap` drain before tap removes the test's directory. tap
 * removes it before the teardowns registered after t.testdir() run, and after those
 * registered before it, so one teardown is registered first.
 */
export function drainBeforeRemovingTestdirs(tap: Test): void {
  tap.beforeEach((t) => t.teardown(() => undefined));
}

/** Starts a node on `options.dataDir`, or on the test's directory. Call t.testdir() once per test: a second call empties it. */
export async function startNode(t: Test, options: Partial<NodeOptions> = {}): Promise<RtcdpNode> {
  const node = await RtcdpNode.start({ ...options, dataDir: options.dataDir ?? t.testdir() });
  t.teardown(() => (node.state === 'running' ? node.drain() : undefined));
  return node;
}

/**
 * Lists a workspace's activations once at least `count` are stored, or after 2 s. A query
 * reflects the profile's state at once, while its activations are stored with its next snapshot.
 */
export async function storedActivations(node: RtcdpNode, count: number, workspace = 'w'): Promise<ProfileActivation[]> {
  for (let attempt = 0; ; attempt++) {
    const { activations } = await node.activations.list(workspace, { afterSequence: 0, limit: 1_000 });
    if (activations.length >= count || attempt === 200) return activations;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
