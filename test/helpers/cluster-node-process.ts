/**
 * Runs `rtcdp node` as a child process for cluster tests: on a free loopback gRPC port,
 * with its own data directory, and signalled by PID (SIGTERM, SIGKILL, SIGSTOP, SIGCONT).
 * Every node still running when the test process exits gets SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { RTCDP_BIN } from './node-process.js';

/** Timings short enough for tests: a lost node's shards move within a few seconds. */
export const FAST_CLUSTER_ARGS = [
  '--lease-ttl-ms', '3000',
  '--lease-renew-interval-ms', '500',
  '--heartbeat-interval-ms', '300',
  '--member-timeout-ms', '2000',
  '--rebalance-stable-for-ms', '500',
  '--checkpoint-interval-ms', '200',
  '--handoff-timeout-ms', '10000',
  '--query-timeout-ms', '5000',
];

export interface ClusterNodeProcessOptions {
  /** NATS server URLs, passed as `--nats`. */
  nats: string[];
  nodeId: string;
  dataDir: string;
  /** `--replicas`; default 1. */
  replicas?: number;
  /** `--shards`, used only by the node that creates the cluster; default 16. */
  shards?: number;
  /** Arguments after the others; default FAST_CLUSTER_ARGS. */
  extraArgs?: string[];
  /** `--log-level`; default info, so that shard moves and lease step-downs are in the output. */
  logLevel?: string;
}

export type NodeProcessState = 'running' | 'paused' | 'stopping' | 'exited';

export interface ClusterNodeProcess {
  readonly nodeId: string;
  readonly dataDir: string;
  /** "127.0.0.1:port" of the node's gRPC server. */
  readonly address: string;
  readonly pid: number;
  readonly state: NodeProcessState;
  /** Resolves with the exit code, or the signal name, once the process is gone. */
  readonly exited: Promise<number | string>;
  /** Everything the process wrote to stderr (its JSON log lines) so far, up to the last 8 MiB. */
  stderr(): string;
  /** Sends SIGTERM, so the node hands its shards off, and resolves with the exit code; SIGKILL after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<number | string>;
  /** Sends SIGKILL and resolves once the process is gone. */
  kill(): Promise<number | string>;
  /** Sends SIGSTOP: the process stays alive but runs no code until resume(). */
  pause(): void;
  /** Sends SIGCONT. */
  resume(): void;
}

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 60_000;
const MAX_OUTPUT_CHARS = 8 * 1024 * 1024;

const running = new Set<ChildProcess>();

// Last resort for a failed test, so that no node outlives the test process. It does not
// run when the test process itself dies by SIGKILL.
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts `rtcdp node` and resolves once it prints that it is listening. */
export async function startClusterNodeProcess(options: ClusterNodeProcessOptions): Promise<ClusterNodeProcess> {
  const args = [
    RTCDP_BIN, 'node',
    '--nats', ...options.nats,
    '--node-id', options.nodeId,
    '--data', options.dataDir,
    '--grpc-port', '0',
    '--replicas', String(options.replicas ?? 1),
    '--shards', String(options.shards ?? 16),
    '--log-level', options.logLevel ?? 'info',
    ...(options.extraArgs ?? FAST_CLUSTER_ARGS),
  ];
  // RTCDP_LOG_LEVEL would override --log-level, and the tests read the log.
  const { RTCDP_LOG_LEVEL: _ignored, ...env } = process.env;
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  running.add(child);

  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
    if (stderr.length > MAX_OUTPUT_CHARS) stderr = stderr.slice(stderr.length - MAX_OUTPUT_CHARS / 2);
  });
  let state: NodeProcessState = 'running';
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      state = 'exited';
      running.delete(child);
      resolve(code ?? signal ?? 'unknown');
    });
  });

  let address: string;
  try {
    address = await waitForListening(child, exited, () => stderr, options.nodeId);
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw error;
  }

  const signal = (name: NodeJS.Signals): void => {
    if (state !== 'exited') child.kill(name);
  };
  const stopWith = async (name: NodeJS.Signals, timeoutMs: number): Promise<number | string> => {
    if (state === 'exited') return exited;
    if (name === 'SIGTERM') state = 'stopping';
    // A paused process acts on SIGTERM only once it runs again.
    if (state === 'paused' && name !== 'SIGKILL') child.kill('SIGCONT');
    signal(name);
    const timer = setTimeout(() => signal('SIGKILL'), timeoutMs);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    nodeId: options.nodeId,
    dataDir: options.dataDir,
    address,
    pid: child.pid!,
    get state() {
      return state;
    },
    exited,
    stderr: () => stderr,
    stop: (timeoutMs = STOP_TIMEOUT_MS) => stopWith('SIGTERM', timeoutMs),
    kill: () => stopWith('SIGKILL', STOP_TIMEOUT_MS),
    pause: () => {
      if (state !== 'running') return;
      signal('SIGSTOP');
      state = 'paused';
    },
    resume: () => {
      if (state !== 'paused') return;
      signal('SIGCONT');
      state = 'running';
    },
  };
}

function waitForListening(child: ChildProcess, exited: Promise<number | string>, stderr: () => string, nodeId: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => reject(new Error(`rtcdp node ${nodeId} did not print its address within ${START_TIMEOUT_MS} ms; stderr:\n${stderr().slice(-4_000)}`)), START_TIMEOUT_MS);
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      const match = /rtcdp node \S+ listening on (\S+)/.exec(stdout);
      if (match === null) return;
      clearTimeout(timer);
      resolve(match[1]);
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`rtcdp node ${nodeId} exited with ${code} before listening; stderr:\n${stderr().slice(-4_000)}`));
    });
  });
}

/** Parses the node's JSON log lines; lines that are not JSON are skipped. */
export function logRecords(output: string): Array<Record<string, unknown>> {
  const records: Array<Record<string, unknown>> = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      records.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // A line cut by SIGKILL or by the output limit.
    }
  }
  return records;
}
