/**
 * The harness side of the cluster scenario's child processes: cluster node hosts, which
 * the harness can stop gracefully (SIGTERM) or kill (SIGKILL) by PID, and the probe.
 */
import type { ChildProcess } from 'node:child_process';
import type { ClusterNodeStatus } from '../cluster/cluster-node.js';
import type { ClusterNodeHostConfig, ShardMoveRecord } from './cluster-node-host.js';
import type { ProbeConfig, ProbeReport } from './cluster-probe.js';
import { IpcChannel } from './ipc.js';
import { hasExited, waitForExit, type ChildProcesses } from './processes.js';

/** How long a node may take to join the cluster and listen, in milliseconds. */
const READY_TIMEOUT_MS = 60_000;
const STATUS_TIMEOUT_MS = 5_000;

export class ClusterNodeHost {
  readonly nodeId: string;
  readonly address: string;
  readonly #processes: ChildProcesses;
  readonly #child: ChildProcess;
  readonly #channel: IpcChannel;

  private constructor(processes: ChildProcesses, child: ChildProcess, channel: IpcChannel, nodeId: string, address: string) {
    this.#processes = processes;
    this.#child = child;
    this.#channel = channel;
    this.nodeId = nodeId;
    this.address = address;
  }

  /** Starts a node host. `onShardMove` receives the node's shard move log records from the start on. */
  static async start(processes: ChildProcesses, config: ClusterNodeHostConfig, onShardMove: (record: ShardMoveRecord) => void): Promise<ClusterNodeHost> {
    const child = processes.fork('cluster-node-host.ts', { nodeFlags: processes.nodeFlags(), args: [JSON.stringify(config)] });
    const channel = new IpcChannel(child, `cluster node ${config.nodeId}`);
    channel.onEvent('shardMove', (payload) => onShardMove(payload as ShardMoveRecord));

    try {
      const ready = await channel.waitForEvent<{ address: string }>('ready', READY_TIMEOUT_MS);
      return new ClusterNodeHost(processes, child, channel, config.nodeId, ready.address);
    } catch (error) {
      await processes.stop(child);
      throw error;
    }
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  get running(): boolean {
    return !hasExited(this.#child);
  }

  status(): Promise<ClusterNodeStatus> {
    return this.#channel.request('status', null, STATUS_TIMEOUT_MS);
  }

  /** Returns the eventCount per user id, -1 where no profile exists. The node queries each profile's owner. */
  eventCounts(userIds: string[]): Promise<Int32Array> {
    return this.#channel.request('eventCounts', userIds, 300_000);
  }

  /** Sends SIGKILL by PID, as a crash would end the node, and resolves once the process is gone. */
  kill(): Promise<void> {
    return this.#processes.kill(this.#child);
  }

  /** Sends SIGTERM by PID, so the node hands its shards off, and returns without waiting for the exit. */
  requestStop(): void {
    this.#processes.requestStop(this.#child);
  }

  /** Sends SIGTERM, then SIGKILL after `graceMs`, and resolves once the process is gone. */
  stop(graceMs: number): Promise<void> {
    return this.#processes.stop(this.#child, graceMs);
  }

  /** Waits for the process to exit, sending SIGKILL after `timeoutMs`. Returns whether it exited on its own. */
  async waitForExit(timeoutMs: number): Promise<boolean> {
    const exited = await waitForExit(this.#child, timeoutMs);
    if (!exited) await this.kill();
    return exited;
  }
}

/** The probe process: write+read cycles for one customer per shard. */
export class ProbeProcess {
  readonly #processes: ChildProcesses;
  readonly #child: ChildProcess;
  readonly #channel: IpcChannel;
  readonly #settleTimeoutMs: number;

  private constructor(processes: ChildProcesses, child: ChildProcess, channel: IpcChannel, settleTimeoutMs: number) {
    this.#processes = processes;
    this.#child = child;
    this.#channel = channel;
    this.#settleTimeoutMs = settleTimeoutMs;
  }

  static async start(processes: ChildProcesses, config: ProbeConfig): Promise<ProbeProcess> {
    const child = processes.fork('cluster-probe.ts');
    const channel = new IpcChannel(child, 'probe');
    // Running cycles may each wait for two calls before a pause or stop completes.
    const probe = new ProbeProcess(processes, child, channel, config.callTimeoutMs * 2 + 15_000);

    try {
      await channel.request('start', config, READY_TIMEOUT_MS);
      return probe;
    } catch (error) {
      await processes.stop(child);
      throw error;
    }
  }

  /** Stops starting cycles and resolves once none runs, so no probe event is in flight. */
  pause(): Promise<void> {
    return this.#channel.request('pause', null, this.#settleTimeoutMs);
  }

  resume(): Promise<void> {
    return this.#channel.request('resume');
  }

  /** Per probe customer: the end (epoch ms) of the first successful cycle started at or after `sinceMs`, or null. */
  firstSuccesses(sinceMs: number): Promise<Array<number | null>> {
    return this.#channel.request('firstSuccesses', sinceMs);
  }

  /** Stops probing, collects the report and stops the process. */
  async stop(): Promise<ProbeReport> {
    try {
      return await this.#channel.request<ProbeReport>('stop', null, this.#settleTimeoutMs + 30_000);
    } finally {
      await this.#processes.stop(this.#child);
    }
  }
}
