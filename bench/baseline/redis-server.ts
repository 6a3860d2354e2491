/**
 * One redis-server for the Redis baseline, on a free port of 127.0.0.1, with its append-only
 * file in a directory of the run's data root. It is started through `ChildProcesses`, so it
 * is stopped by PID like every other child: SIGTERM, on which Redis fsyncs the AOF and
 * exits, then SIGKILL after 5 s.
 *
 * Persistence: no RDB snapshots (`--save ''`) and an append-only file (AOF). Redis 7 writes
 * the commands of an event-loop iteration to the AOF with write(2) before it sends their
 * replies (`beforeSleep` in server.c). With `appendfsync everysec` a background thread
 * fsyncs the AOF about once a second, so a power loss or OS crash can lose the events
 * acknowledged in the last second or two. While that fsync is slow, Redis postpones the
 * write(2) for up to 2 s and still replies, so even a kill -9 of redis-server can lose
 * acknowledged events then. With `appendfsync always` Redis fsyncs the AOF before it sends
 * the replies, which is the guarantee of rtcdp's fdatasync before acknowledging.
 *
 * NOTE: redis-server has no IPC channel, so when the harness itself dies by SIGKILL the
 * server keeps running. The harness prints its PID when it starts.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { Redis } from 'ioredis';
import type { ChildProcesses } from '../processes.js';
import { HOST, spawnServer, startOnFreePort } from '../server-process.js';

export type AppendFsync = 'everysec' | 'always';

export const APPEND_FSYNC_POLICIES: AppendFsync[] = ['everysec', 'always'];

const DEBIAN_REDIS_SERVER = '/usr/bin/redis-server';
const STOP_GRACE_MS = 5_000;

export class RedisServerProcess {
  readonly host = HOST;
  readonly port: number;
  readonly appendFsync: AppendFsync;
  readonly #processes: ChildProcesses;
  readonly #child: ChildProcess;

  private constructor(processes: ChildProcesses, child: ChildProcess, port: number, appendFsync: AppendFsync) {
    this.#processes = processes;
    this.#child = child;
    this.port = port;
    this.appendFsync = appendFsync;
  }

  /** Starts redis-server with its AOF in `dir` and resolves once it responds to PING. */
  static async start(processes: ChildProcesses, dir: string, appendFsync: AppendFsync): Promise<RedisServerProcess> {
    await mkdir(dir, { recursive: true });

    return startOnFreePort(async (port) => {
      const args = [
        '--bind', HOST,
        '--port', String(port),
        '--dir', dir,
        '--save', '',
        '--appendonly', 'yes',
        '--appendfsync', appendFsync,
        '--daemonize', 'no',
        '--logfile', '',
      ];
      const { child } = await spawnServer(processes, {
        name: 'redis-server',
        binary: redisServerBinary(),
        args,
        installHint: 'Install it (Debian: apt-get install redis-server) or set RTCDP_REDIS_SERVER to its path.',
        ready: () => ping(port),
      });
      return new RedisServerProcess(processes, child, port, appendFsync);
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

/** Resolves once a client can connect to the server on `port` and PING it. */
async function ping(port: number): Promise<void> {
  const client = new Redis({ host: HOST, port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  // A refused connection while the server starts is expected; connect() rejects with it.
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
  } finally {
    client.disconnect();
  }
}

/** Returns the redis-server executable: RTCDP_REDIS_SERVER, Debian's in /usr/bin, or `redis-server` on PATH. */
export function redisServerBinary(): string {
  if (process.env.RTCDP_REDIS_SERVER) return process.env.RTCDP_REDIS_SERVER;
  return existsSync(DEBIAN_REDIS_SERVER) ? DEBIAN_REDIS_SERVER : 'redis-server';
}
