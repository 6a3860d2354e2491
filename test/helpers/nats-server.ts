/**
 * Runs real nats-server processes for tests: one JetStream server or a routed cluster, all on
 * free loopback ports. Every process is stopped by PID, and any still running when the test
 * process exits normally or by an uncaught error gets SIGKILL.
 *
 * Only options that Debian's nats-server 2.9.10 supports are used.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';

export interface NatsServer {
  /** Client URL, for example `nats://127.0.0.1:4222`. */
  url: string;
  port: number;
  pid: number;
  /** `--server_name` of a cluster member, such as `n1`, which stream and meta leader reports use. */
  serverName?: string;
  /** Last lines the server wrote to stdout and stderr. */
  output(): string;
  /** Sends `signal` (SIGTERM by default), then SIGKILL if the process is still running after 5 s. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Sends SIGKILL and waits for the process to exit. */
  kill(): Promise<void>;
}

export interface NatsServerOptions {
  /** Enables JetStream (`-js`). Defaults to true. */
  jetstream?: boolean;
  /** JetStream store directory. Defaults to a new temporary directory that stop() removes. */
  storeDir?: string;
  /** Client port, such as the port of a stopped server that this one replaces. Defaults to a free port. */
  port?: number;
  /** Largest message the server accepts, in bytes (`max_payload`). Defaults to the server's 1 MB. */
  maxPayloadBytes?: number;
}

const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 10_000;
const CLUSTER_READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5_000;
const OUTPUT_LINES = 100;
const PORT_ATTEMPTS = 3;
const PORT_RETRY_DELAY_MS = 500;
const READY_PROBE_STREAM = 'rtcdp_harness_ready_probe';

/** Running servers, each with the temporary store directory that this module created for it. */
const running = new Map<ChildProcess, string | undefined>();

// Synchronous last resort, so a failed test run leaves no server or store directory behind.
// NOTE: 'exit' does not fire when the test process itself dies by SIGKILL or an unhandled signal.
process.on('exit', () => {
  for (const [child, storeDir] of running) {
    child.kill('SIGKILL');
    if (storeDir !== undefined) rmSync(storeDir, { recursive: true, force: true });
  }
});

/** Raised when nats-server exits because one of its ports was taken in the meantime. */
class PortInUseError extends Error {}

const DEBIAN_NATS_SERVER = '/usr/sbin/nats-server';

/** Returns the nats-server executable: `RTCDP_NATS_SERVER`, Debian's, or `nats-server` on PATH. */
export function natsServerBinary(): string {
  if (process.env.RTCDP_NATS_SERVER) return process.env.RTCDP_NATS_SERVER;
  // Debian installs it in /usr/sbin, which a non-login PATH may leave out.
  return existsSync(DEBIAN_NATS_SERVER) ? DEBIAN_NATS_SERVER : 'nats-server';
}

/**
 * Starts one nats-server on a loopback port and resolves once a client can connect.
 * Retries when the port was taken before the server bound it: with another free port, or
 * with `options.port` again after a short delay.
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const jetstream = options.jetstream ?? true;

  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    const args = ['-a', HOST, '-p', String(port)];
    const configFile = options.maxPayloadBytes === undefined ? undefined : await writeConfig(`max_payload: ${options.maxPayloadBytes}\n`);
    if (configFile !== undefined) args.push('-c', configFile);

    let ownedStoreDir: string | undefined;
    if (jetstream) {
      ownedStoreDir = options.storeDir === undefined ? await mkdtemp(path.join(tmpdir(), 'rtcdp-nats-')) : undefined;
      args.push('-js', '-sd', options.storeDir ?? ownedStoreDir!);
    }

    try {
      return await launch(args, port, ownedStoreDir);
    } catch (error) {
      if (!(error instanceof PortInUseError) || attempt >= PORT_ATTEMPTS) throw error;
      if (options.port !== undefined) await sleep(PORT_RETRY_DELAY_MS);
    } finally {
      if (configFile !== undefined) await rm(path.dirname(configFile), { recursive: true, force: true });
    }
  }
}

/** Writes a server configuration file for the settings that have no command-line flag. The server reads it once, at start. */
async function writeConfig(content: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'rtcdp-nats-config-'));
  const file = path.join(dir, 'nats.conf');
  await writeFile(file, content);
  return file;
}

/**
 * Starts `size` JetStream servers routed to each other as one cluster and waits until the
 * JetStream meta group has a leader and can place a stream on every server, so replicated
 * streams can be created right away.
 */
export async function startNatsCluster(size = 3): Promise<NatsServer[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchCluster(size);
    } catch (error) {
      if (!(error instanceof PortInUseError) || attempt >= PORT_ATTEMPTS) throw error;
    }
  }
}

async function launchCluster(size: number): Promise<NatsServer[]> {
  const clusterName = `rtcdp-test-${process.pid}`;
  // One set of distinct ports, so no client port can equal another server's cluster port.
  const ports = await freePorts(2 * size);
  const clientPorts = ports.slice(0, size);
  const routeUrls = ports.slice(size).map((port) => `nats://${HOST}:${port}`);
  const servers: NatsServer[] = [];

  try {
    for (let i = 0; i < size; i++) {
      const port = clientPorts[i];
      const serverName = `n${i + 1}`;
      const storeDir = await mkdtemp(path.join(tmpdir(), 'rtcdp-nats-'));
      const args = [
        '-a', HOST, '-p', String(port), '-js', '-sd', storeDir,
        '--server_name', serverName,
        '--cluster_name', clusterName,
        '--cluster', routeUrls[i],
        '--routes', routeUrls.filter((_, other) => other !== i).join(','),
      ];
      const server = await launch(args, port, storeDir);
      servers.push({ ...server, serverName });
    }

    await waitForClusterReady(servers);
    return servers;
  } catch (error) {
    await Promise.all(servers.map((server) => server.kill()));
    throw error;
  }
}

/**
 * Polls until every server lists all cluster members and JetStream accepts a stream with one
 * replica per server. Account info alone is not enough because the meta leader can be elected
 * before it has registered every peer, and then an R3 stream fails with "no suitable peers for
 * placement".
 */
async function waitForClusterReady(servers: NatsServer[]): Promise<void> {
  const deadline = Date.now() + CLUSTER_READY_TIMEOUT_MS;

  for (const server of servers) {
    await pollUntil(deadline, servers, () => checkClusterMember(server, servers.length));
  }
  await pollUntil(deadline, servers, () => checkReplicaPlacement(servers[0], servers.length));
}

async function pollUntil(deadline: number, servers: NatsServer[], check: () => Promise<void>): Promise<void> {
  while (true) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) {
        const outputs = servers.map((member) => `--- ${member.url} output:\n${member.output()}`).join('\n');
        throw new Error(`timed out after ${CLUSTER_READY_TIMEOUT_MS} ms waiting for the nats cluster to become ready: ${String(error)}\n${outputs}`);
      }
    }
    await sleep(200);
  }
}

async function checkClusterMember(server: NatsServer, size: number): Promise<void> {
  const nc = await connect({ servers: server.url, timeout: 1_000, reconnect: false });

  try {
    // connect_urls lists the client URLs of every routed server, this one included.
    const known = nc.info?.connect_urls?.length ?? 0;
    if (known < size) throw new Error(`${server.url} lists ${known} of ${size} cluster members in connect_urls`);

    // A clustered server rejects account info requests while the JetStream meta group has no leader.
    const jsm = await jetstreamManager(nc, { timeout: 2_000 });
    await jsm.getAccountInfo();
  } finally {
    await nc.close();
  }
}

/** Creates and deletes a stream with `size` replicas, which succeeds once every peer can hold one. */
async function checkReplicaPlacement(server: NatsServer, size: number): Promise<void> {
  const nc = await connect({ servers: server.url, timeout: 1_000, reconnect: false });

  try {
    const jsm = await jetstreamManager(nc, { timeout: 2_000 });
    // Adding a stream again with the same config succeeds, so a retry after a failed delete works.
    await jsm.streams.add({ name: READY_PROBE_STREAM, num_replicas: size });
    await jsm.streams.delete(READY_PROBE_STREAM);
  } finally {
    await nc.close();
  }
}

/** Spawns nats-server with `args` and resolves once a client can connect on `port`. */
async function launch(args: string[], port: number, ownedStoreDir: string | undefined): Promise<NatsServer> {
  const binary = natsServerBinary();
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = captureOutput(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  try {
    await waitForSpawn(child, binary);
  } catch (error) {
    if (ownedStoreDir !== undefined) await rm(ownedStoreDir, { recursive: true, force: true });
    throw error;
  }
  running.set(child, ownedStoreDir);
  void exited.then(() => running.delete(child));

  // A server that a test forgot to stop must not keep the test process alive. The 'exit'
  // handler above then kills it.
  child.unref();
  (child.stdout as Socket).unref();
  (child.stderr as Socket).unref();

  const server = buildServer(child, port, output, exited, ownedStoreDir);
  try {
    await waitForClient(server, child, args);
  } catch (error) {
    await server.kill();
    throw error;
  }
  return server;
}

function buildServer(
  child: ChildProcess,
  port: number,
  output: () => string,
  exited: Promise<void>,
  ownedStoreDir: string | undefined,
): NatsServer {
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (isRunning(child)) child.kill(signal);

    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);

    if (ownedStoreDir !== undefined) await rm(ownedStoreDir, { recursive: true, force: true });
  };

  return {
    url: `nats://${HOST}:${port}`,
    port,
    pid: child.pid!,
    output,
    stop,
    kill: () => stop('SIGKILL'),
  };
}

function waitForSpawn(child: ChildProcess, binary: string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        reject(new Error(`nats-server binary not found: ${binary}. Install Debian's nats-server package (apt-get install -y nats-server) or set RTCDP_NATS_SERVER to its path.`));
      } else {
        reject(new Error(`failed to start ${binary}: ${error.message}`));
      }
    });
  });
}

async function waitForClient(server: NatsServer, child: ChildProcess, args: string[]): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let lastError: unknown;

  while (Date.now() < deadline) {
    if (!isRunning(child)) {
      const output = server.output();
      const message = `nats-server ${args.join(' ')} exited with ${child.exitCode ?? child.signalCode} before accepting clients. Output:\n${output}`;
      throw /address already in use/i.test(output) ? new PortInUseError(message) : new Error(message);
    }

    try {
      const nc: NatsConnection = await connect({ servers: server.url, timeout: 1_000, reconnect: false });
      await nc.close();
      return;
    } catch (error) {
      lastError = error;
    }
    await sleep(100);
  }

  throw new Error(`nats-server ${args.join(' ')} did not accept a client connection within ${START_TIMEOUT_MS} ms: ${String(lastError)}. Output:\n${server.output()}`);
}

/** Keeps the last OUTPUT_LINES lines of the child's stdout and stderr, interleaved as they arrive. */
function captureOutput(child: ChildProcess): () => string {
  const lines: string[] = [];
  let partial = '';

  const append = (chunk: Buffer): void => {
    const parts = (partial + chunk.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    if (lines.length > OUTPUT_LINES) lines.splice(0, lines.length - OUTPUT_LINES);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);

  return () => [...lines, partial].join('\n');
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * Returns a port that was free a moment ago. Another process can take it before nats-server
 * binds it, so callers retry on PortInUseError.
 */
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

async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}
