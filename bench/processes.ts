/**
 * Child processes of a benchmark run: the node hosts, nats-server, the raw reference server,
 * the load generators and the probe. Every child is started through `ChildProcesses`, so
 * the harness can stop all of them by PID, with SIGTERM first and SIGKILL after a grace
 * period, even when the run fails or the harness itself gets SIGINT or SIGTERM.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));

/** How long a child gets to exit after SIGTERM before it gets SIGKILL, in milliseconds. */
const DEFAULT_GRACE_MS = 10_000;

export interface ForkOptions {
  /** Node.js flags placed before the script, for example --expose-gc. */
  nodeFlags?: string[];
  args?: string[];
}

export class ChildProcesses {
  readonly #children = new Set<ChildProcess>();
  /** V8's --max-semi-space-size of the rtcdp node processes, in MiB: the size of the young generation's halves. */
  readonly nodeSemiSpaceMib: number;
  /** More Node.js and V8 flags of the rtcdp node processes, such as --single-threaded-gc. */
  readonly extraNodeFlags: readonly string[];
  /** V8's --max-semi-space-size of the query and Decide callers, in MiB. */
  readonly callerSemiSpaceMib: number;

  constructor(options: { nodeSemiSpaceMib?: number; extraNodeFlags?: readonly string[]; callerSemiSpaceMib?: number } = {}) {
    this.nodeSemiSpaceMib = options.nodeSemiSpaceMib ?? 64;
    this.extraNodeFlags = options.extraNodeFlags ?? [];
    this.callerSemiSpaceMib = options.callerSemiSpaceMib ?? 1;
  }

  /**
   * Returns the V8 flags of a process that times its calls (a GetProfile reader or a Decide
   * caller). Each scavenge of its young generation pauses it for a time that grows with the
   * generation's size, and every call in flight waits that long.
   */
  callerFlags(): string[] {
    return [`--max-semi-space-size=${this.callerSemiSpaceMib}`];
  }

  /** Returns the Node.js and V8 flags of an rtcdp node process. */
  nodeFlags(): string[] {
    return [`--max-semi-space-size=${this.nodeSemiSpaceMib}`, ...this.extraNodeFlags];
  }

  /** Forks `script` (a file in bench/) with tsx and an IPC channel that carries structured clones. */
  fork(script: string, options: ForkOptions = {}): ChildProcess {
    const child = fork(path.join(BENCH_DIR, script), options.args ?? [], {
      execArgv: ['--import', 'tsx', ...(options.nodeFlags ?? [])],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });

    this.#track(child);
    return child;
  }

  /** Starts a program that is not a bench script, such as nats-server, with stdout and stderr piped. */
  spawn(command: string, args: string[]): ChildProcess {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#track(child);
    return child;
  }

  #track(child: ChildProcess): void {
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
  }

  /** Sends SIGTERM to the child, then SIGKILL after `graceMs`, and resolves once it has exited. */
  async stop(child: ChildProcess, graceMs = DEFAULT_GRACE_MS): Promise<void> {
    // Without a PID the process never started (spawn failed), so no 'exit' may ever come.
    if (hasExited(child) || child.pid === undefined) {
      return;
    }

    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    signal(child, 'SIGTERM');

    const timer = setTimeout(() => signal(child, 'SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Sends SIGTERM without waiting, for a caller that times the child's shutdown itself. */
  requestStop(child: ChildProcess): void {
    signal(child, 'SIGTERM');
  }

  /** Sends SIGKILL to the child and resolves once it has exited. */
  async kill(child: ChildProcess): Promise<void> {
    if (hasExited(child) || child.pid === undefined) {
      return;
    }

    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    signal(child, 'SIGKILL');
    await exited;
  }

  async stopAll(graceMs = DEFAULT_GRACE_MS): Promise<void> {
    await Promise.all([...this.#children].map((child) => this.stop(child, graceMs)));
  }

  /** SIGKILLs every child still running; for the process 'exit' handler, which cannot wait. */
  killAllNow(): void {
    for (const child of this.#children) {
      signal(child, 'SIGKILL');
    }
  }
}

/** Waits for the child to exit on its own, for at most `timeoutMs`; returns whether it did. */
export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (hasExited(child)) {
    return Promise.resolve(true);
  }

  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function signal(child: ChildProcess, name: NodeJS.Signals): void {
  if (hasExited(child) || child.pid === undefined) {
    return;
  }

  try {
    process.kill(child.pid, name);
  } catch (error) {
    // ESRCH: the child exited between the check and the kill.
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}
