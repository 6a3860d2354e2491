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
import { connect } from '@nats-io/transport-node';
import type { ChildProcesses } from './processes.js';
import { HOST, spawnServer, startOnFreePort } from './server-process.js';

const DEBIAN_NATS_SERVER = '/usr/sbin/nats-server';
const STOP_GRACE_MS = 5_000;

export class NatsServerProcess {
  readonly url: string;
  readonly #processes: ChildProcesses;
  readonly #child: ChildProcess;

  private constructor(processes: ChildProcesses, child: ChildProcess, port: number) {
    this.#processes = processes;
    this.#child = child;
    this.url = `nats://${HOST}:${port}`;
  }

  /** Starts nats-server with JetStream storing in `storeDir` and resolves once a client can connect. */
  static async start(processes: ChildProcesses, storeDir: string): Promise<NatsServerProcess> {
    await mkdir(storeDir, { recursive: true });

    return startOnFreePort(async (port) => {
      const { child } = await spawnServer(processes, {
        name: 'nats-server',
        binary: natsServerBinary(),
        args: ['-a', HOST, '-p', String(port), '-js', '-sd', storeDir],
        installHint: 'Install it (Debian: apt-get install nats-server) or set RTCDP_NATS_SERVER to its path.',
        ready: async () => {
          const connection = await connect({ servers: `nats://${HOST}:${port}`, timeout: 1_000, reconnect: false });
          await connection.close();
        },
      });
      return new NatsServerProcess(processes, child, port);
    });
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  /** Sends SIGTERM, then SIGKILL after 5 s, and resolves once the server has exited. */
  stop(): Promise<void> {
    return this.#processes.stop(this.#child, STOP_GRACE_MS);
  }
}

/** Returns the nats-server executable: RTCDP_NATS_SERVER, Debian's in /usr/sbin, or `nats-server` on PATH. */
function natsServerBinary(): string {
  if (process.env.RTCDP_NATS_SERVER) return process.env.RTCDP_NATS_SERVER;
  return existsSync(DEBIAN_NATS_SERVER) ? DEBIAN_NATS_SERVER : 'nats-server';
}
