/**
 * One nats-server with JetStream for the cluster scenario, on a free port of 127.0.0.1 with
 * its store in the run's data root. It is started through `ChildProcesses`, so it is
 * stopped by PID like every other child. Only options that Debian's nats-server 2.9.10
 * supports are used.
 *
 * NOTE: nats-server has no IPC channel, so when the harness itself dies by SIGKILL the
 * server keeps running. The harness prints its PID when it starts.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { connect } from '@nats-io/transport-node';
import type { ChildProcesses } from './processes.js';
import { hasExited } from './processes.js';
import { sleep } from './report.js';

const HOST = '127.0.0.1';
const DEBIAN_NATS_SERVER = '/usr/sbin/nats-server';
const START_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;
const PORT_ATTEMPTS = 3;
const OUTPUT_LINES = 50;

/** Raised when nats-server exits because another process took its port first. */
class PortInUseError extends Error {}

export class NatsServerProcess {
  readonly url: string;
  readonly #processes: ChildProcesses;
  readonly #child: ChildProcess;
  readonly #output: () => string;

  private constructor(processes: ChildProcesses, child: ChildProcess, port: number, output: () => string) {
    this.#processes = processes;
    this.#child = child;
    this.#output = output;
    this.url = `nats://${HOST}:${port}`;
  }

  /** Starts nats-server with JetStream storing in `storeDir` and resolves once a client can connect. */
  static async start(processes: ChildProcesses, storeDir: string): Promise<NatsServerProcess> {
    await mkdir(storeDir, { recursive: true });

    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      try {
        return await NatsServerProcess.#launch(processes, storeDir, port);
      } catch (error) {
        if (!(error instanceof PortInUseError) || attempt >= PORT_ATTEMPTS) throw error;
      }
    }
  }

  static async #launch(processes: ChildProcesses, storeDir: string, port: number): Promise<NatsServerProcess> {
    const binary = natsServerBinary();
    const args = ['-a', HOST, '-p', String(port), '-js', '-sd', storeDir];
    const child = processes.spawn(binary, args);
    const output = captureOutput(child);
    const server = new NatsServerProcess(processes, child, port, output);

    try {
      await waitForSpawn(child, binary);
      await server.#waitForClient(args);
      return server;
    } catch (error) {
      await processes.kill(child);
      throw error;
    }
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  /** Sends SIGTERM, then SIGKILL after 5 s, and resolves once the server has exited. */
  stop(): Promise<void> {
    return this.#processes.stop(this.#child, STOP_GRACE_MS);
  }

  async #waitForClient(args: string[]): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    let lastError: unknown = null;

    while (Date.now() < deadline) {
      if (hasExited(this.#child)) {
        const message = `nats-server ${args.join(' ')} exited with ${this.#child.exitCode ?? this.#child.signalCode} before accepting clients. Output:\n${this.#output()}`;
        throw /address already in use/i.test(this.#output()) ? new PortInUseError(message) : new Error(message);
      }

      try {
        const connection = await connect({ servers: this.url, timeout: 1_000, reconnect: false });
        await connection.close();
        return;
      } catch (error) {
        lastError = error;
      }
      await sleep(100);
    }

    throw new Error(`nats-server ${args.join(' ')} did not accept a client within ${START_TIMEOUT_MS} ms: ${String(lastError)}. Output:\n${this.#output()}`);
  }
}

/** Returns the nats-server executable: RTCDP_NATS_SERVER, Debian's in /usr/sbin, or `nats-server` on PATH. */
function natsServerBinary(): string {
  if (process.env.RTCDP_NATS_SERVER) return process.env.RTCDP_NATS_SERVER;
  return existsSync(DEBIAN_NATS_SERVER) ? DEBIAN_NATS_SERVER : 'nats-server';
}

function waitForSpawn(child: ChildProcess, binary: string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        reject(new Error(`nats-server executable not found: ${binary}. Install it (Debian: apt-get install nats-server) or set RTCDP_NATS_SERVER to its path.`));
      } else {
        reject(new Error(`failed to start ${binary}: ${error.message}`));
      }
    });
  });
}

/** Keeps the last lines a server process wrote to stdout and stderr, for error messages. */
export function captureOutput(child: ChildProcess): () => string {
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
export function freePort(): Promise<number> {
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
