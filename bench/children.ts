/**
 * The harness side of the child processes: start a node host, the raw reference server or
 * a group of load generators, and talk to them over IPC.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { SourceFile } from '../decisions/definitions/document.js';
import type { GeneratorConfig, GeneratorProgress, GeneratorReport } from './generator.js';
import { IpcChannel } from './ipc.js';
import type { LatencySummary } from './latency.js';
import type { NodeHostConfig, NodeSample, TimedQueries } from './node-host.js';
import type { PauseReport } from './pause-monitor.js';
import type { ChildProcesses } from './processes.js';
import type { ProfileRef, WorkloadConfig } from './workloads.js';

/** How long a child may take to start listening, in milliseconds. */
const READY_TIMEOUT_MS = 60_000;

export class NodeHost {
  readonly address: string;
  readonly #child: ChildProcess;
  readonly #channel: IpcChannel;
  readonly #processes: ChildProcesses;

  private constructor(processes: ChildProcesses, child: ChildProcess, channel: IpcChannel, address: string) {
    this.#processes = processes;
    this.#child = child;
    this.#channel = channel;
    this.address = address;
  }

  static async start(processes: ChildProcesses, config: NodeHostConfig, options: { exposeGc?: boolean } = {}): Promise<NodeHost> {
    // By default the same V8 flag that `npm start` runs the node with (64 MiB).
    const nodeFlags = [...processes.nodeFlags(), ...(options.exposeGc === true ? ['--expose-gc'] : [])];
    const child = processes.fork('node-host.ts', { nodeFlags, args: [JSON.stringify(config)] });
    const channel = new IpcChannel(child, 'node host');

    try {
      const ready = await channel.waitForEvent<{ address: string }>('ready', READY_TIMEOUT_MS);
      return new NodeHost(processes, child, channel, ready.address);
    } catch (error) {
      await processes.stop(child);
      throw error;
    }
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  sample(): Promise<NodeSample> {
    return this.#channel.request('stats');
  }

  /** Returns how long node.decide took inside the node since the last call, and starts recording anew. */
  decideTimings(): Promise<LatencySummary> {
    return this.#channel.request('decideTimings');
  }

  /** Returns the node process's GC pauses and event-loop delay since the last call, and starts recording anew. */
  pauses(): Promise<PauseReport> {
    return this.#channel.request('pauses');
  }

  collectGarbage(): Promise<NodeSample> {
    return this.#channel.request('gc', null, 120_000);
  }

  /** Waits until nothing is in flight or queued (and with `persisted`, nothing unpersisted); returns that time in epoch ms. */
  async waitSettled(timeoutMs: number, persisted = false): Promise<number> {
    const result = await this.#channel.request<{ settledAtMs: number }>('waitSettled', { timeoutMs, persisted }, timeoutMs + 10_000);
    return result.settledAtMs;
  }

  /** eventCount per user id, -1 where no profile exists. */
  eventCounts(userIds: string[]): Promise<Int32Array> {
    return this.#channel.request('eventCounts', userIds, 300_000);
  }

  /** eventCount per profile found by its userId or anonymousId, -1 where no profile exists. */
  eventCountsOf(profiles: ProfileRef[]): Promise<Int32Array> {
    return this.#channel.request('eventCountsOf', profiles, 300_000);
  }

  timeQueries(userIds: string[]): Promise<TimedQueries> {
    return this.#channel.request('timeQueries', userIds, 600_000);
  }

  /** Applies definition files to workspace "default" and returns how many definitions the set holds; rejects on an invalid set. */
  async applyDefinitions(files: SourceFile[]): Promise<number> {
    const result = await this.#channel.request<{ definitions: number }>('applyDefinitions', files, 60_000);
    return result.definitions;
  }

  startProfiler(): Promise<void> {
    return this.#channel.request('startProfiler');
  }

  stopProfiler(path: string): Promise<void> {
    return this.#channel.request('stopProfiler', path, 60_000);
  }

  /** Drains the node (everything acknowledged is applied and persisted), then stops the process. */
  async stop(): Promise<void> {
    try {
      await this.#channel.request('drain', null, 120_000);
    } finally {
      await this.#processes.stop(this.#child);
    }
  }
}

export class RawServer {
  readonly address: string;
  readonly #child: ChildProcess;
  readonly #processes: ChildProcesses;

  private constructor(processes: ChildProcesses, child: ChildProcess, address: string) {
    this.#processes = processes;
    this.#child = child;
    this.address = address;
  }

  static async start(processes: ChildProcesses): Promise<RawServer> {
    const child = processes.fork('raw-server.ts');
    const channel = new IpcChannel(child, 'raw gRPC server');

    try {
      const ready = await channel.waitForEvent<{ address: string }>('ready', READY_TIMEOUT_MS);
      return new RawServer(processes, child, ready.address);
    } catch (error) {
      await processes.stop(child);
      throw error;
    }
  }

  stop(): Promise<void> {
    return this.#processes.stop(this.#child);
  }
}

export interface GeneratorGroupOptions {
  /**
   * gRPC addresses to send to. Generator i starts at addresses[i % length] and moves on to
   * the next address, wrapping around, after a stream fails with anything but RESOURCE_EXHAUSTED.
   */
  addresses: string[];
  count: number;
  batchSize: number;
  inFlightBatches: number;
  maxSendMs: number;
  /** Events per second each generator sends at most; undefined sends as fast as acknowledgements allow. */
  maxEventsPerSecond?: number;
  /** Workload of generator `index`, for example its share of the profiles. */
  workloadOf: (index: number) => WorkloadConfig;
  seed: number;
}

/** Load generators, one process each, started and stopped together. */
export class GeneratorGroup {
  readonly #processes: ChildProcesses;
  readonly #children: ChildProcess[];
  readonly #channels: IpcChannel[];

  private constructor(processes: ChildProcesses, children: ChildProcess[], channels: IpcChannel[]) {
    this.#processes = processes;
    this.#children = children;
    this.#channels = channels;
  }

  static async start(processes: ChildProcesses, options: GeneratorGroupOptions): Promise<GeneratorGroup> {
    const runTag = randomBytes(4).toString('hex');
    const children = Array.from({ length: options.count }, () => processes.fork('generator.ts'));
    const channels = children.map((child, index) => new IpcChannel(child, `load generator ${index}`));
    const group = new GeneratorGroup(processes, children, channels);

    try {
      await Promise.all(channels.map((channel, index) => channel.request('start', generatorConfig(options, runTag, index), READY_TIMEOUT_MS)));
      return group;
    } catch (error) {
      await group.kill();
      throw error;
    }
  }

  mark(): Promise<GeneratorProgress[]> {
    return Promise.all(this.#channels.map((channel) => channel.request<GeneratorProgress>('mark')));
  }

  progress(): Promise<GeneratorProgress[]> {
    return Promise.all(this.#channels.map((channel) => channel.request<GeneratorProgress>('progress')));
  }

  /** Resolves once every generator has sent and acknowledged its whole workload, or rejects after `timeoutMs`. */
  waitFinished(timeoutMs: number): Promise<unknown[]> {
    return Promise.all(this.#channels.map((channel) => channel.waitForEvent('finished', timeoutMs)));
  }

  /** Stops sending, collects each generator's report and stops the processes. */
  async stop(): Promise<GeneratorReport[]> {
    try {
      return await Promise.all(this.#channels.map((channel) => channel.request<GeneratorReport>('stop', null, 120_000)));
    } finally {
      await this.kill();
    }
  }

  async kill(): Promise<void> {
    await Promise.all(this.#children.map((child) => this.#processes.stop(child)));
  }
}

function generatorConfig(options: GeneratorGroupOptions, runTag: string, index: number): GeneratorConfig {
  return {
    addresses: options.addresses.map((_, offset) => options.addresses[(index + offset) % options.addresses.length]),
    generatorId: index,
    runTag,
    seed: options.seed + index * 7_919,
    batchSize: options.batchSize,
    inFlightBatches: options.inFlightBatches,
    workload: options.workloadOf(index),
    maxSendMs: options.maxSendMs,
    maxEventsPerSecond: options.maxEventsPerSecond,
  };
}

/** Splits customers [0, total) into `parts` contiguous ranges of nearly equal size. */
export function splitRange(total: number, parts: number, index: number): { first: number; end: number } {
  const size = Math.ceil(total / parts);
  return { first: Math.min(total, index * size), end: Math.min(total, (index + 1) * size) };
}
