/**
 * The harness side of the open-loop generator processes (open-loop-generator.ts): start a
 * group of them, and run a closed-loop phase or a step on every one at once.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { IpcChannel } from './ipc.js';
import type { ClosedLoopReport, OpenLoopConfig, OpenLoopReport, StepReport, StepRequest } from './open-loop-generator.js';
import type { ChildProcesses } from './processes.js';
import type { ProfileRef, WorkloadConfig } from './workloads.js';

/** How long a generator may take to start, including reading a replay file, in milliseconds. */
const START_TIMEOUT_MS = 120_000;

export interface OpenLoopGroupOptions extends Omit<OpenLoopConfig, 'generatorId' | 'runTag' | 'seed' | 'workload'> {
  count: number;
  seed: number;
  /** Workload of generator `index`; null for readers. */
  workloadOf: (index: number) => WorkloadConfig | null;
}

export class OpenLoopGroup {
  readonly #processes: ChildProcesses;
  readonly #children: ChildProcess[];
  readonly #channels: IpcChannel[];

  private constructor(processes: ChildProcesses, children: ChildProcess[], channels: IpcChannel[]) {
    this.#processes = processes;
    this.#children = children;
    this.#channels = channels;
  }

  static async start(processes: ChildProcesses, options: OpenLoopGroupOptions): Promise<OpenLoopGroup> {
    const runTag = randomBytes(4).toString('hex');
    const nodeFlags = options.role === 'writer' ? [] : processes.callerFlags();
    const children = Array.from({ length: options.count }, () => processes.fork('open-loop-generator.ts', { nodeFlags }));
    const channels = children.map((child, index) => new IpcChannel(child, `open-loop ${options.role} ${index}`));
    const group = new OpenLoopGroup(processes, children, channels);

    try {
      await Promise.all(channels.map((channel, index) => channel.request('start', configOf(options, runTag, index), START_TIMEOUT_MS)));
      return group;
    } catch (error) {
      await group.kill();
      throw error;
    }
  }

  get size(): number {
    return this.#channels.length;
  }

  closedLoop(durationMs: number, concurrency: number): Promise<ClosedLoopReport[]> {
    return Promise.all(this.#channels.map((channel) => channel.request<ClosedLoopReport>('closedLoop', { durationMs, concurrency }, durationMs + 120_000)));
  }

  /** Runs one step on every generator; generator i gets `requestsPerSecond / size` and phase i / size. */
  step(request: Omit<StepRequest, 'phase'>, responseWaitMs: number): Promise<StepReport[]> {
    const share = { ...request, requestsPerSecond: request.requestsPerSecond / this.size };
    const timeoutMs = request.startAtEpochMs - Date.now() + request.durationMs + responseWaitMs + 60_000;
    return Promise.all(this.#channels.map((channel, index) => channel.request<StepReport>('step', { ...share, phase: index / this.size }, timeoutMs)));
  }

  /** Up to `max` profiles the writers got an event stored for. */
  async sampleProfiles(max: number): Promise<ProfileRef[]> {
    const perGenerator = Math.ceil(max / this.size);
    const samples = await Promise.all(this.#channels.map((channel) => channel.request<ProfileRef[]>('sampleProfiles', perGenerator)));
    return samples.flat().slice(0, max);
  }

  /** Resolves unknown outcomes, collects each generator's report and stops the processes. */
  async finish(): Promise<OpenLoopReport[]> {
    try {
      return await Promise.all(this.#channels.map((channel) => channel.request<OpenLoopReport>('finish', null, 120_000)));
    } finally {
      await this.kill();
    }
  }

  async kill(): Promise<void> {
    await Promise.all(this.#children.map((child) => this.#processes.stop(child)));
  }
}

function configOf(options: OpenLoopGroupOptions, runTag: string, index: number): OpenLoopConfig {
  return {
    address: options.address,
    role: options.role,
    generatorId: index,
    runTag: `${runTag}-${options.role}`,
    seed: options.seed + index * 7_919,
    driver: options.driver,
    batchSize: options.batchSize,
    workload: options.workloadOf(index),
    maxOutstandingRequests: options.maxOutstandingRequests,
    callTimeoutMs: options.callTimeoutMs,
  };
}
