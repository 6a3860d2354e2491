/**
 * Start-up of a benchmark's server process (nats-server, redis-server) on a free port of
 * 127.0.0.1. It is spawned through `ChildProcesses`, so it is stopped by PID like every
 * other child. Start-up waits until a client can use the server, and starts it again on
 * another port when another process took the port in the meantime.
 */
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { hasExited, type ChildProcesses } from './processes.js';
import { sleep } from './report.js';

export const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 10_000;
const PORT_ATTEMPTS = 3;
const OUTPUT_LINES = 50;
const READY_POLL_INTERVAL_MS = 100;

/** Raised when a server exits because another process took its port first. */
class PortInUseError extends Error {}

export interface ServerSpec {
  /** Name in messages, such as `nats-server`. */
  name: string;
  binary: string;
  args: string[];
  /** Advice for the error message when the binary does not exist. */
  installHint: string;
  /** Resolves once a client can use the server; rejects while it cannot yet. */
  ready: () => Promise<void>;
}

export interface StartedServer {
  child: ChildProcess;
  /** The last lines the server wrote to stdout and stderr. */
  output: () => string;
}

/** Calls `launch` with a free port, and again with another one when the server lost its port. */
export async function startOnFreePort<T>(launch: (port: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await launch(port);
    } catch (error) {
      if (!(error instanceof PortInUseError) || attempt >= PORT_ATTEMPTS) throw error;
    }
  }
}

/** Spawns the server and resolves once `spec.ready` does. Kills the server when it does not start. */
export async function spawnServer(processes: ChildProcesses, spec: ServerSpec): Promise<StartedServer> {
  const child = processes.spawn(spec.binary, spec.args);
  const output = captureOutput(child);

  try {
    await waitForSpawn(child, spec);
    await waitUntilReady(child, output, spec);
    return { child, output };
  } catch (error) {
    await processes.kill(child);
    throw error;
  }
}

async function waitUntilReady(child: ChildProcess, output: () => string, spec: ServerSpec): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let lastError: unknown = null;

  while (Date.now() < deadline) {
    if (hasExited(child)) {
      const message = `${spec.name} ${spec.args.join(' ')} exited with ${child.exitCode ?? child.signalCode} before accepting clients. Output:\n${output()}`;
      throw /address already in use/i.test(output()) ? new PortInUseError(message) : new Error(message);
    }

    try {
      await spec.ready();
      return;
    } catch (error) {
      lastError = error;
    }
    await sleep(READY_POLL_INTERVAL_MS);
  }

  throw new Error(`${spec.name} ${spec.args.join(' ')} did not accept a client within ${START_TIMEOUT_MS} ms: ${String(lastError)}. Output:\n${output()}`);
}

function waitForSpawn(child: ChildProcess, spec: ServerSpec): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        reject(new Error(`${spec.name} executable not found: ${spec.binary}. ${spec.installHint}`));
      } else {
        reject(new Error(`failed to start ${spec.binary}: ${error.message}`));
      }
    });
  });
}

/** Keeps the last lines a server process wrote to stdout and stderr, for error messages. */
function captureOutput(child: ChildProcess): () => string {
  const lines: string[] = [];
  const append = (chunk: Buffer): void => {
    lines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
    if (lines.length > OUTPUT_LINES) lines.splice(0, lines.length - OUTPUT_LINES);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  return () => lines.join('\n');
}

/** Returns a port of 127.0.0.1 that was free a moment ago. The server started on it may still lose it to another process. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, HOST, () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}
