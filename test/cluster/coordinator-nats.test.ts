import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { balancedAssignment } from '../../cluster/assignment.js';
import { AssignmentWatcher } from '../../cluster/assignment-watcher.js';
import { Coordinator } from '../../cluster/coordinator.js';
import type { KvStore } from '../../storage/kv-store.js';
import { NatsKvStore } from '../../cluster/kv/nats-kv-store.js';
import { decodeLeaseRecord } from '../../cluster/leases/lease-record.js';
import { ShardLeases } from '../../cluster/leases/shard-leases.js';
import { Membership } from '../../cluster/membership.js';
import { startNatsServer } from '../helpers/nats-server.js';

const SHARD_COUNT = 16;

// Short intervals, so the test converges in seconds. Each satisfies the option rules:
// memberTimeoutMs >= 2 × 200 + 100, and renewIntervalMs <= (1,000 - 200) / 2.
const MEMBERSHIP = { heartbeatIntervalMs: 200, pollIntervalMs: 100, memberTimeoutMs: 1_000 };
const COORDINATOR = { leaseTtlMs: 1_000, renewIntervalMs: 300, stallMarginMs: 200, takeoverMarginMs: 200, stableForMs: 500, reconcileIntervalMs: 100 };
const SHARD_LEASES = { leaseTtlMs: 1_500, renewIntervalMs: 300, stallMarginMs: 500, takeoverMarginMs: 500, renewRetryIntervalMs: 200 };

/** Reads the holder of every shard lease, as a node passes it to its Coordinator. */
async function readShardHolders(kv: KvStore): Promise<Map<number, string | null>> {
  const holders = new Map<number, string | null>();
  for (const entry of await kv.list('shard.')) {
    const record = decodeLeaseRecord(entry.value, entry.key, entry.revision);
    holders.set(Number(entry.key.slice('shard.'.length)), record.released ? null : record.holder);
  }
  return holders;
}

/**
 * One simulated node: membership, coordinator, assignment watcher, and shard leases that
 * follow the published assignment by taking the shards assigned to this node and
 * releasing the others.
 */
class TestNode {
  readonly membership: Membership;
  readonly coordinator: Coordinator;
  readonly watcher: AssignmentWatcher;
  readonly leases: ShardLeases;
  readonly #busy = new Set<number>();
  #syncTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly nodeId: string,
    kv: KvStore,
  ) {
    this.membership = new Membership({ kv, nodeId, grpcAddress: `127.0.0.1:${50_051 + nodeId.charCodeAt(0)}`, ...MEMBERSHIP });
    this.coordinator = new Coordinator({ kv, nodeId, membership: this.membership, shardCount: SHARD_COUNT, readShardHolders: () => readShardHolders(kv), ...COORDINATOR });
    this.watcher = new AssignmentWatcher({ kv, pollIntervalMs: 100 });
    this.leases = new ShardLeases(kv, { nodeId, ...SHARD_LEASES });
  }

  async start(): Promise<void> {
    this.leases.start();
    await this.membership.start();
    this.coordinator.start();
    this.watcher.onChange(() => this.#sync());
    this.watcher.start();
    this.#syncTimer = setInterval(() => this.#sync(), 200);
  }

  /** Leaves gracefully: releases every shard, then the coordinator lease, then the member key. */
  async stop(): Promise<void> {
    clearInterval(this.#syncTimer);
    await this.watcher.stop();
    await Promise.all(this.leases.ownedShards().map((shard) => this.leases.release(shard)));
    this.leases.stop();
    await this.coordinator.stop();
    await this.membership.stop();
  }

  #sync(): void {
    const assignment = this.watcher.current();
    if (assignment === null) return;

    for (let shard = 0; shard < SHARD_COUNT; shard++) {
      if (this.#busy.has(shard)) continue;
      const mine = assignment.shards.get(shard) === this.nodeId;
      if (mine && !this.leases.owns(shard)) this.#run(shard, () => this.leases.acquire(shard));
      if (!mine && this.leases.owns(shard)) this.#run(shard, () => this.leases.release(shard));
    }
  }

  #run(shard: number, operation: () => Promise<unknown>): void {
    this.#busy.add(shard);
    operation()
      .catch(() => undefined)
      .finally(() => this.#busy.delete(shard));
  }
}

/** Returns whether every node has read `expected` and each shard is owned by the node it names. */
function converged(nodes: TestNode[], expected: ReadonlyMap<number, string>): boolean {
  for (const node of nodes) {
    const shards = node.watcher.current()?.shards;
    if (shards === undefined || shards.size !== expected.size) return false;
    for (const [shard, owner] of expected) {
      if (shards.get(shard) !== owner) return false;
      if (node.leases.owns(shard) !== (owner === node.nodeId)) return false;
    }
  }
  return true;
}

/** Returns the published assignment once every node follows it and it gives each node 5 or 6 of the 16 shards, else null. */
function balancedOwnership(nodes: TestNode[]): Map<number, string> | null {
  const published = nodes[0].watcher.current()?.shards;
  if (published === undefined || published.size !== SHARD_COUNT || !converged(nodes, published)) return null;

  const even = Math.floor(SHARD_COUNT / nodes.length);
  const loads = nodes.map((node) => [...published.values()].filter((owner) => owner === node.nodeId).length);
  return loads.every((load) => load === even || load === even + 1) ? new Map(published) : null;
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<number> {
  const startedAt = performance.now();
  while (!condition()) {
    if (performance.now() - startedAt > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(50);
  }
  return performance.now() - startedAt;
}

t.test('coordinator on nats - three nodes converge to a full assignment', { timeout: 90_000 }, async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  // One connection per node, as separate processes would have.
  const connections: NatsConnection[] = await Promise.all(['a', 'b', 'c'].map(() => connect({ servers: server.url })));
  t.teardown(() => Promise.all(connections.map((nc) => nc.close())));
  const stores = await Promise.all(connections.map((nc) => NatsKvStore.open(nc, { bucket: 'cluster', replicas: 1 })));

  const nodes = ['a', 'b', 'c'].map((nodeId, index) => new TestNode(nodeId, stores[index]));
  t.teardown(() => Promise.all(nodes.map((node) => node.stop().catch(() => undefined))));
  await Promise.all(nodes.map((node) => node.start()));

  let everyNode: Map<number, string> | null = null;
  const tookMs = await waitFor(() => (everyNode = balancedOwnership(nodes)) !== null, 30_000, 'the three nodes own a balanced placement');
  t.pass(`converged in ${Math.round(tookMs)} ms`);
  t.equal(nodes.filter((node) => node.coordinator.isLeader()).length, 1, 'exactly one coordinator');
  t.same(
    nodes.map((node) => node.membership.members().map((member) => member.nodeId)),
    [['a', 'b', 'c'], ['a', 'b', 'c'], ['a', 'b', 'c']],
    'every node lists every member',
  );

  const published = nodes[0].watcher.current()!;
  const leader = nodes.find((node) => node.coordinator.isLeader())!;
  t.equal(published.coordinatorEpoch, leader.coordinator.epoch, 'the assignment carries the coordinator epoch');
  t.equal(published.coordinator, leader.nodeId);

  // The coordinator leaves: another node takes over and gives its shards to the two others.
  await leader.stop();
  const remaining = nodes.filter((node) => node !== leader);
  const twoNodes = balancedAssignment(SHARD_COUNT, remaining.map((node) => node.nodeId), everyNode!);
  const handoverMs = await waitFor(() => converged(remaining, twoNodes), 30_000, 'the two remaining nodes own the new placement');
  t.pass(`converged again ${Math.round(handoverMs)} ms after ${leader.nodeId} left`);
  t.equal(remaining.filter((node) => node.coordinator.isLeader()).length, 1, 'exactly one coordinator among the remaining nodes');
  t.ok(remaining[0].watcher.current()!.coordinatorEpoch > published.coordinatorEpoch, 'the new coordinator has a higher epoch');
});
