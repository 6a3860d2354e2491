/**
 * A cluster of `rtcdp node` child processes on one NATS deployment, for end-to-end tests.
 * It starts, restarts and signals nodes by id and lists the running ones for the load
 * driver. Which node runs which shard comes from each node's admin status request.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Test } from 'tap';
import { requestAdmin, type ClusterNodeStatus } from '../../cluster/cluster-node.js';
import { shardOf } from '../../cluster/routing.js';
import { profileIdForIdentifier } from '../../profiles/identifiers.js';
import { startClusterNodeProcess, type ClusterNodeProcess, type ClusterNodeProcessOptions } from './cluster-node-process.js';
import { checkCounts, ClusterClients, ClusterLoad, type ClusterLoadOptions, type CountCheckOptions, type CountCheckResult } from './cluster-load.js';

export interface ProcessClusterOptions {
  /** NATS server URLs every node gets. */
  nats: string[];
  /** Directory under which each node gets `<nodeId>/` as its data directory. */
  baseDir: string;
  shards?: number;
  replicas?: number;
  /** Extra `rtcdp node` arguments; default FAST_CLUSTER_ARGS. */
  extraArgs?: string[];
}

/** Time for one admin status request to a running node. */
const STATUS_TIMEOUT_MS = 2_000;

export class ProcessCluster {
  readonly options: ProcessClusterOptions;
  readonly shards: number;
  readonly clients = new ClusterClients();
  /** The latest process of each node id. */
  readonly nodes = new Map<string, ClusterNodeProcess>();
  /** Every process started, restarted ones included, in start order. */
  readonly processes: ClusterNodeProcess[] = [];
  readonly #loads: ClusterLoad[] = [];
  readonly #connection: NatsConnection;

  private constructor(options: ProcessClusterOptions, connection: NatsConnection) {
    this.options = options;
    this.shards = options.shards ?? 16;
    this.#connection = connection;
  }

  /** Connects the test's own NATS client, for status requests, and stops everything at the end of `t`. */
  static async create(t: Test, options: ProcessClusterOptions): Promise<ProcessCluster> {
    const connection = await connect({ servers: options.nats, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    const cluster = new ProcessCluster(options, connection);
    t.teardown(() => cluster.close());
    return cluster;
  }

  /** Starts node `nodeId` on its data directory, which a restart reuses. */
  async start(nodeId: string, overrides: Partial<ClusterNodeProcessOptions> = {}): Promise<ClusterNodeProcess> {
    const current = this.nodes.get(nodeId);
    if (current !== undefined && current.state !== 'exited') throw new Error(`node ${nodeId} is still ${current.state}; stop it before starting it again`);

    const node = await startClusterNodeProcess({
      nats: this.options.nats,
      nodeId,
      dataDir: path.join(this.options.baseDir, nodeId),
      replicas: this.options.replicas,
      shards: this.shards,
      extraArgs: this.options.extraArgs,
      ...overrides,
    });
    this.nodes.set(nodeId, node);
    this.processes.push(node);
    return node;
  }

  /** Creates a load driver that sends to this cluster's running nodes; close() aborts it. */
  load(options: Omit<ClusterLoadOptions, 'targets' | 'clients'>): ClusterLoad {
    const load = new ClusterLoad({ ...options, targets: this.targets, clients: this.clients });
    this.#loads.push(load);
    return load;
  }

  node(nodeId: string): ClusterNodeProcess {
    const node = this.nodes.get(nodeId);
    if (node === undefined) throw new Error(`node ${nodeId} was never started`);
    return node;
  }

  /** Ids of the nodes whose process is running and not paused. */
  runningIds(): string[] {
    return [...this.nodes.values()].filter((node) => node.state === 'running').map((node) => node.nodeId);
  }

  /** gRPC addresses of the running, unpaused nodes: where the load driver may send calls. */
  readonly targets = (): string[] => [...this.nodes.values()].filter((node) => node.state === 'running').map((node) => node.address);

  /** Requests the status of each of `nodeIds`. A node that does not reply in time is left out. */
  async statuses(nodeIds: string[] = this.runningIds()): Promise<Map<string, ClusterNodeStatus>> {
    const statuses = new Map<string, ClusterNodeStatus>();
    await Promise.all(
      nodeIds.map(async (nodeId) => {
        try {
          statuses.set(nodeId, await requestAdmin<ClusterNodeStatus>(this.#connection, nodeId, { op: 'status' }, STATUS_TIMEOUT_MS));
        } catch {
          // The caller sees the node missing, which is the information it needs.
        }
      }),
    );
    return statuses;
  }

  /** Returns the shards that each of `nodeIds` runs (hosts in state running), by node id. */
  async runningShards(nodeIds: string[] = this.runningIds()): Promise<Map<string, number[]>> {
    const shards = new Map<string, number[]>();
    for (const [nodeId, status] of await this.statuses(nodeIds)) {
      shards.set(nodeId, status.hosted.filter((host) => host.state === 'running').map((host) => host.shard));
    }
    return shards;
  }

  /**
   * Waits until `nodeIds` together run every shard exactly once, each of them at least
   * one. Returns the shards per node; throws after `timeoutMs` with the last view.
   */
  async waitForShardsOn(nodeIds: string[], timeoutMs = 60_000): Promise<Map<string, number[]>> {
    const deadline = Date.now() + timeoutMs;
    let last = new Map<string, number[]>();
    while (Date.now() < deadline) {
      last = await this.runningShards(nodeIds);
      if (this.#coversEveryShard(nodeIds, last)) return last;
      await sleep(200);
    }
    const view = JSON.stringify(Object.fromEntries(last));
    throw new Error(`timed out after ${timeoutMs} ms waiting for nodes ${nodeIds.join(', ')} to run all ${this.shards} shards between them; last view ${view}`);
  }

  #coversEveryShard(nodeIds: string[], shards: Map<string, number[]>): boolean {
    if (nodeIds.some((nodeId) => (shards.get(nodeId)?.length ?? 0) === 0)) return false;
    const all = nodeIds.flatMap((nodeId) => shards.get(nodeId) ?? []).sort((a, b) => a - b);
    return all.length === this.shards && all.every((shard, i) => shard === i);
  }

  /**
   * Aborts the load drivers, kills every node still running, then closes the clients and the NATS connection. With
   * RTCDP_TEST_LOG_DIR set, writes each process's log there as `<nodeId>-<pid>.log`.
   */
  async close(): Promise<void> {
    for (const load of this.#loads) load.abort();
    await Promise.all(this.processes.map((node) => node.kill()));
    const logDir = process.env.RTCDP_TEST_LOG_DIR;
    if (logDir !== undefined && logDir !== '') {
      await mkdir(logDir, { recursive: true });
      await Promise.all(this.processes.map((node) => writeFile(path.join(logDir, `${node.nodeId}-${node.pid}.log`), node.stderr())));
    }
    this.clients.close();
    await this.#connection.close();
  }
}

/** Returns the shard that a user id's events and queries go to. */
export function shardOfUser(userId: string, shards: number): number {
  return shardOf(profileIdForIdentifier({ type: 'user_id', value: userId })!, shards);
}

/**
 * Checks that the load driver gave up on no batch and that every customer's eventCount is
 * exactly its number of acknowledged messageIds: none lost, none applied twice.
 */
export async function expectExactCounts(t: Test, load: ClusterLoad, cluster: ProcessCluster, options: CountCheckOptions = {}): Promise<CountCheckResult> {
  t.same(load.failures.slice(0, 10), [], 'the load driver got every batch acknowledged');
  t.ok(load.acknowledgedEvents > 0, `events were acknowledged (${load.acknowledgedEvents})`);

  const result = await checkCounts(load, cluster.targets, cluster.clients, options);
  t.comment(`count check: ${result.customers} customers in ${result.elapsedMs} ms, retried reads ${JSON.stringify(result.retries)}; load ${JSON.stringify(load.stats)}`);
  t.same(result.unanswered.slice(0, 10), [], 'every customer\'s profile was read');
  t.same(result.mismatches.slice(0, 10), [], `every one of ${result.customers} customers has exactly its acknowledged events`);
  t.same(result.wrongReads.slice(0, 10), [], 'no read returned a count other than the acknowledged one');
  return result;
}
