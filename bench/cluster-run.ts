/**
 * The running cluster of the cluster scenario: nats-server, the node hosts, the harness's
 * own NATS connection, the load generator groups and a sampler that records the cluster's
 * throughput and backlog once a second for the whole run. It also waits for the states
 * the phases need: shards running where the coordinator's balanced placement puts them,
 * and every stored event applied.
 */
import { randomBytes } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { ClusterNodeStatus } from '../cluster/cluster-node.js';
import { EVENT_STREAM, eventSubject } from '../cluster/nats/subjects.js';
import { GeneratorGroup } from './children.js';
import { ClusterNodeHost } from './cluster-children.js';
import type { ClusterNodeHostConfig, ClusterTimings, ShardMoveRecord } from './cluster-node-host.js';
import { dataDir, type RunContext } from './context.js';
import type { GeneratorReport } from './generator.js';
import { NatsServerProcess } from './nats-server.js';
import { progress, sleep } from './report.js';
import type { WorkloadConfig } from './workloads.js';

const WORKSPACE = 'default';
const BALANCE_POLL_MS = 250;
/**
 * How long a balanced placement must stay unchanged before waitPlaced returns: three of the
 * coordinator's reconcile passes, each of which would publish a move still to be made.
 */
const PLACEMENT_QUIET_MS = 1_500;
/** Each poll sends one JetStream API request per shard, so it is not much more frequent. */
const APPLIED_POLL_MS = 100;
const SAMPLE_INTERVAL_MS = 1_000;
/** Grace after SIGTERM when the run ends. The data is discarded, so nodes need not finish their handoffs. */
const TEARDOWN_GRACE_MS = 2_000;

export interface LoadSettings {
  generatorsPerNode: number;
  batchSize: number;
  inFlightBatches: number;
  workload: WorkloadConfig;
  seed: number;
}

/** One point of the run's timeline. */
export interface ClusterSample {
  /** Seconds since the first load group started. */
  seconds: number;
  /** Events acknowledged to the running load group per second since the previous point, or 0 without load. */
  acknowledgedPerSecond: number;
  /** Events in the stream that no owner has applied yet: unread plus pending records of the running shards. */
  backlogEvents: number;
  runningShards: number;
}

export interface Placement {
  /** The node running each shard when the wait ended. */
  owners: Map<number, string>;
  /** When the placement was reached, in epoch ms, or null when it was not within the timeout. */
  placedAtMs: number | null;
  /** The shards still misplaced when the wait timed out, or null. */
  problem: string | null;
}

export interface RunMarker {
  /** Milliseconds since the Unix epoch. */
  timeMs: number;
  label: string;
}

interface RunningLoad {
  name: string;
  group: GeneratorGroup;
  startedAtMs: number;
}

export class ClusterRun {
  readonly context: RunContext;
  readonly nats: NatsServerProcess;
  readonly shards: number;
  readonly nodes = new Map<string, ClusterNodeHost>();
  readonly shardMoves: ShardMoveRecord[] = [];
  readonly markers: RunMarker[] = [];
  readonly timeline: ClusterSample[] = [];
  /** Reports of every load group stopped so far. */
  readonly reports: GeneratorReport[] = [];
  readonly #timings: ClusterTimings;
  readonly #connection: NatsConnection;
  readonly #jsm: JetStreamManager;
  readonly #load: LoadSettings;
  #running: RunningLoad | null = null;
  #firstLoadAtMs: number | null = null;
  #sampler: Promise<void> = Promise.resolve();
  #sampling = false;

  private constructor(context: RunContext, nats: NatsServerProcess, connection: NatsConnection, jsm: JetStreamManager, shards: number, timings: ClusterTimings, load: LoadSettings) {
    this.context = context;
    this.nats = nats;
    this.#connection = connection;
    this.#jsm = jsm;
    this.shards = shards;
    this.#timings = timings;
    this.#load = load;
  }

  /** Starts nats-server and the nodes `nodeIds` one after another; the first creates the cluster with `shards` shards. */
  static async start(context: RunContext, nodeIds: string[], shards: number, timings: ClusterTimings, load: LoadSettings): Promise<ClusterRun> {
    const nats = await NatsServerProcess.start(context.processes, dataDir(context, 'nats'));
    progress(`cluster: nats-server (PID ${nats.pid}) on ${nats.url}`);

    let connection: NatsConnection | null = null;
    try {
      connection = await connect({ servers: nats.url, name: 'rtcdp-bench-harness', maxReconnectAttempts: -1, reconnectTimeWait: 250 });
      const run = new ClusterRun(context, nats, connection, await jetstreamManager(connection), shards, timings, load);
      for (const nodeId of nodeIds) await run.startNode(nodeId);
      return run;
    } catch (error) {
      await connection?.close();
      await nats.stop();
      throw error;
    }
  }

  /** Starts node `nodeId` on its data directory, which a restart of the same id reuses. */
  async startNode(nodeId: string): Promise<ClusterNodeHost> {
    const config: ClusterNodeHostConfig = {
      servers: [this.nats.url],
      nodeId,
      dataDir: dataDir(this.context, `cluster-${nodeId}`),
      shards: this.shards,
      timings: this.#timings,
    };
    const node = await ClusterNodeHost.start(this.context.processes, config, (record) => this.shardMoves.push(record));
    this.nodes.set(nodeId, node);
    progress(`cluster: node ${nodeId} (PID ${node.pid}) on ${node.address}`);
    return node;
  }

  node(nodeId: string): ClusterNodeHost {
    const node = this.nodes.get(nodeId);
    if (node === undefined) throw new Error(`node ${nodeId} was never started`);
    return node;
  }

  liveNodeIds(): string[] {
    return [...this.nodes.values()].filter((node) => node.running).map((node) => node.nodeId);
  }

  mark(label: string): number {
    const timeMs = epochNow();
    this.markers.push({ timeMs, label });
    progress(`cluster: ${label}`);
    return timeMs;
  }

  /** Seconds since the first load group started, for the timeline and its markers. */
  secondsOf(timeMs: number): number {
    return (timeMs - (this.#firstLoadAtMs ?? timeMs)) / 1_000;
  }

  /** Returns the status of each of `nodeIds` that responds. A node that does not respond is left out. */
  async statuses(nodeIds = this.liveNodeIds()): Promise<Map<string, ClusterNodeStatus>> {
    const statuses = new Map<string, ClusterNodeStatus>();
    await Promise.all(
      nodeIds.map(async (nodeId) => {
        try {
          statuses.set(nodeId, await this.node(nodeId).status());
        } catch {
          // A node that was just killed or is exiting has no status, so the caller sees it missing.
        }
      }),
    );
    return statuses;
  }

  /** Returns the node running each shard now, from the nodes' own reports. */
  async owners(): Promise<Map<number, string>> {
    return runningOwners(await this.statuses());
  }

  /**
   * Waits until the coordinator has placed the shards over `nodeIds` and that has lasted
   * PLACEMENT_QUIET_MS. Placed means that every shard runs where the published assignment
   * puts it, on one of `nodeIds`, and that each of them runs an even share: the shard count
   * divided by theirs, rounded down or up. placedAtMs is when the placement was first seen.
   * After `timeoutMs` it returns with placedAtMs null and what was still missing.
   */
  async waitPlaced(nodeIds: string[], timeoutMs: number): Promise<Placement> {
    const deadline = Date.now() + timeoutMs;
    let owners = new Map<number, string>();
    let problem = 'no node status read yet';
    // The assignment version and the time the placement was first seen with it.
    let placedVersion = -1;
    let placedAtMs = 0;

    while (Date.now() < deadline) {
      const statuses = await this.statuses(nodeIds);
      owners = runningOwners(statuses);
      const assignment = newestAssignment(statuses);
      problem = assignment === null ? 'no assignment published yet' : describeMisplaced(owners, assignment.shards, nodeIds, this.shards);

      if (problem !== '' || assignment === null) {
        placedVersion = -1;
      } else if (placedVersion !== assignment.version) {
        placedVersion = assignment.version;
        placedAtMs = epochNow();
      } else if (epochNow() - placedAtMs >= PLACEMENT_QUIET_MS) {
        return { owners, placedAtMs, problem: null };
      }
      await sleep(BALANCE_POLL_MS);
    }

    return { owners, placedAtMs: null, problem: `the shards did not reach a balanced placement over ${nodeIds.join(', ')} within ${timeoutMs} ms: ${problem || 'the assignment kept changing'}` };
  }

  /**
   * Waits until every shard runs and its owner has read the shard's subject up to the
   * stream's last event and applied everything it read. Nothing may append meanwhile (load
   * stopped, probe paused). Returns when that was seen, in epoch ms.
   */
  async waitApplied(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let behind = 'no node status read yet';

    while (Date.now() < deadline) {
      const heads = await Promise.all(Array.from({ length: this.shards }, (_, shard) => this.#headSequence(shard)));
      const statuses = await this.statuses();
      const seenAt = epochNow();
      behind = describeUnapplied(statuses, heads);
      if (behind === '') return seenAt;
      await sleep(APPLIED_POLL_MS);
    }

    throw new Error(`the cluster did not apply every stored event within ${timeoutMs} ms: ${behind}`);
  }

  async #headSequence(shard: number): Promise<number> {
    const last = await this.#jsm.streams.getMessage(EVENT_STREAM, { last_by_subj: eventSubject({ workspace: WORKSPACE, shard }) });
    return last?.seq ?? 0;
  }

  /** Unapplied events of the running shards plus events the nodes are still appending. */
  async backlog(): Promise<number> {
    let events = 0;
    for (const status of (await this.statuses()).values()) {
      events += status.inFlightEvents;
      for (const host of status.hosted) events += host.unreadRecords + host.pendingRecords;
    }
    return events;
  }

  /** Starts a load group: `generatorsPerNode` generators per node of `nodeIds`, each switching to the other nodes when its node fails. */
  /** Starts a load group over `nodeIds`; each generator sends at most maxEventsPerSecond when it is given. */
  async startLoad(name: string, nodeIds: string[], maxSendMs: number, maxEventsPerSecond?: number): Promise<GeneratorGroup> {
    if (this.#running !== null) throw new Error(`load "${this.#running.name}" is still running. Stop it before starting "${name}".`);

    const addresses = nodeIds.map((nodeId) => this.node(nodeId).address);
    const group = await GeneratorGroup.start(this.context.processes, {
      addresses,
      count: addresses.length * this.#load.generatorsPerNode,
      batchSize: this.#load.batchSize,
      inFlightBatches: this.#load.inFlightBatches,
      maxSendMs,
      maxEventsPerSecond,
      workloadOf: () => this.#load.workload,
      // A new seed per group draws another sequence of customers. Each group also gets a new
      // run tag from GeneratorGroup, so messageIds never repeat across groups.
      seed: this.#load.seed + this.reports.length * 104_729,
    });

    const startedAtMs = epochNow();
    this.#firstLoadAtMs ??= startedAtMs;
    this.#running = { name, group, startedAtMs };
    const pace = maxEventsPerSecond === undefined ? '' : `, at most ${maxEventsPerSecond.toLocaleString('en-US')} events/s each`;
    progress(`cluster: load "${name}": ${addresses.length * this.#load.generatorsPerNode} generators over ${nodeIds.join(', ')}${pace}`);
    return group;
  }

  /** Stops the running load group and keeps its reports. */
  async stopLoad(): Promise<GeneratorReport[]> {
    const running = this.#running;
    if (running === null) throw new Error('no load is running, so there is none to stop');
    this.#running = null;

    const reports = await running.group.stop();
    this.reports.push(...reports);
    return reports;
  }

  /** Starts recording a timeline point every second until `stopSampling`. */
  startSampling(maxDurationMs: number): void {
    this.#sampling = true;
    this.#sampler = this.#sampleLoop(Date.now() + maxDurationMs);
  }

  async stopSampling(): Promise<void> {
    this.#sampling = false;
    await this.#sampler;
  }

  async #sampleLoop(deadline: number): Promise<void> {
    let previous: { load: RunningLoad | null; acknowledged: number; timeMs: number } = { load: null, acknowledged: 0, timeMs: epochNow() };

    while (this.#sampling && Date.now() < deadline) {
      await sleep(SAMPLE_INTERVAL_MS);
      const load = this.#running;
      const [acknowledged, statuses] = await Promise.all([acknowledgedBy(load), this.statuses()]);
      const timeMs = epochNow();
      if (this.#firstLoadAtMs === null) {
        previous = { load, acknowledged: acknowledged ?? 0, timeMs };
        continue;
      }

      let rate = 0;
      if (load !== null && acknowledged !== null) {
        const sameLoad = previous.load === load;
        const since = sameLoad ? previous.timeMs : Math.max(previous.timeMs, load.startedAtMs);
        rate = (acknowledged - (sameLoad ? previous.acknowledged : 0)) / ((timeMs - since) / 1_000);
      }

      let backlogEvents = 0;
      let runningShards = 0;
      for (const status of statuses.values()) {
        backlogEvents += status.inFlightEvents;
        for (const host of status.hosted) {
          backlogEvents += host.unreadRecords + host.pendingRecords;
          if (host.state === 'running') runningShards++;
        }
      }

      this.timeline.push({ seconds: this.secondsOf(timeMs), acknowledgedPerSecond: Math.max(0, rate), backlogEvents, runningShards });
      previous = { load, acknowledged: acknowledged ?? 0, timeMs };
    }
  }

  /** Ends the run: stops any load and the sampler, then the nodes and NATS. A failure to stop the load is printed, not raised. */
  async close(): Promise<void> {
    await this.stopSampling();
    if (this.#running !== null) await this.stopLoad().catch((error) => progress(`cluster: stopping the load failed: ${(error as Error).message}`));

    await Promise.all([...this.nodes.values()].map((node) => node.stop(TEARDOWN_GRACE_MS)));
    await this.#connection.close().catch(() => undefined);
    await this.nats.stop();
  }
}

/** Makes the run tag of probe messageIds. */
export function newRunTag(): string {
  return randomBytes(4).toString('hex');
}

export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

async function acknowledgedBy(load: RunningLoad | null): Promise<number | null> {
  if (load === null) return null;
  try {
    const states = await load.group.progress();
    return states.reduce((total, state) => total + state.acceptedEvents, 0);
  } catch {
    // The group is being stopped.
    return null;
  }
}

/** Returns the assignment with the highest version that any of the nodes has read, or null. */
function newestAssignment(statuses: Map<string, ClusterNodeStatus>): NonNullable<ClusterNodeStatus['assignment']> | null {
  let newest = null as ClusterNodeStatus['assignment'];
  for (const status of statuses.values()) {
    if (status.assignment !== null && (newest === null || status.assignment.version > newest.version)) newest = status.assignment;
  }
  return newest;
}

/**
 * Describes how the running shards differ from an even placement over `nodeIds` that
 * `assigned` publishes, or returns '' when they match it.
 */
function describeMisplaced(owners: Map<number, string>, assigned: Record<number, string>, nodeIds: string[], shardCount: number): string {
  const problems: string[] = [];
  for (let shard = 0; shard < shardCount; shard++) {
    const owner = owners.get(shard);
    if (owner === undefined || !nodeIds.includes(owner)) problems.push(`shard ${shard} runs on ${owner ?? 'no node'}`);
    else if (assigned[shard] !== owner) problems.push(`shard ${shard} runs on ${owner}, assigned to ${assigned[shard] ?? 'no node'}`);
  }

  const even = Math.floor(shardCount / nodeIds.length);
  for (const nodeId of nodeIds) {
    const load = [...owners.values()].filter((owner) => owner === nodeId).length;
    if (load < even || load > even + 1) problems.push(`${nodeId} runs ${load} shards, not ${even}${shardCount % nodeIds.length === 0 ? '' : ` or ${even + 1}`}`);
  }
  return problems.join('; ');
}

function runningOwners(statuses: Map<string, ClusterNodeStatus>): Map<number, string> {
  const owners = new Map<number, string>();
  for (const [nodeId, status] of statuses) {
    for (const host of status.hosted) {
      if (host.state === 'running') owners.set(host.shard, nodeId);
    }
  }
  return owners;
}

/** Describes the shards that are not running or not fully applied, or returns '' when every one is. */
function describeUnapplied(statuses: Map<string, ClusterNodeStatus>, heads: number[]): string {
  const hosts = new Map<number, ClusterNodeStatus['hosted'][number]>();
  const problems: string[] = [];

  for (const [nodeId, status] of statuses) {
    if (status.inFlightEvents > 0) problems.push(`node ${nodeId} still appends ${status.inFlightEvents} events`);
    for (const host of status.hosted) {
      if (host.state === 'running') hosts.set(host.shard, host);
    }
  }

  heads.forEach((head, shard) => {
    const host = hosts.get(shard);
    if (host === undefined) problems.push(`shard ${shard} runs nowhere`);
    else if (host.nextSequence <= head) problems.push(`shard ${shard} read up to ${host.nextSequence - 1} of ${head}`);
    else if (host.pendingRecords > 0) problems.push(`shard ${shard} has ${host.pendingRecords} records to apply`);
  });

  return problems.slice(0, 5).join('; ');
}
