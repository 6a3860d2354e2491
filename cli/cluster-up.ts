/**
 * `rtcdp cluster up`: a local cluster to try on one machine. It starts nats-server with
 * JetStream and N `rtcdp node` processes on loopback, optionally applies definition files
 * and then loads event files, and
 * stops everything on SIGINT or SIGTERM: the nodes one by one, so each hands its shards
 * to the others, then NATS. Logs go to a file per process under the data directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { connect as connectTcp } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { connect } from '@nats-io/transport-node';
import { DefinitionChange, type SourceFile } from '../proto/gen/rtcdp/v1/definitions.js';
import { callUnary } from './client.js';
import { CommandFailure, LOG_LEVELS, UsageError, parseChoice, parseInteger, portInUse, waitForStopSignal } from './common.js';
import { readDefinitionFiles, validationFailure, withClient } from './definition-commands.js';
import { sendSources } from './sender.js';
import { openSource } from './sources/index.js';

interface ClusterUpOptions {
  nodes: number;
  data: string;
  natsPort: number;
  grpcPort: number;
  shards: number;
  load?: string[];
  definitions?: string[];
  logLevel: string;
  natsServer?: string;
}

const BIN = fileURLToPath(new URL('../bin/rtcdp.js', import.meta.url));
const START_TIMEOUT_MS = 30_000;
const NATS_CANDIDATES = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'];

export function addClusterUpCommand(cluster: Command): void {
  cluster
    .command('up')
    .description(
      'Start a local cluster to try: nats-server with JetStream and N rtcdp nodes on 127.0.0.1, optionally load event ' +
        'files, and run until SIGINT or SIGTERM. Logs go to NODE.log and nats.log in the data directory.',
    )
    .option('--nodes <count>', 'rtcdp nodes to start', parseInteger('--nodes', 1, 9), 3)
    .option('--data <dir>', 'directory for the NATS store, the nodes\' RocksDB databases and the logs', '.rtcdp-cluster')
    .option('--nats-port <port>', 'client port of nats-server', parseInteger('--nats-port', 1, 65535), 4222)
    .option('--grpc-port <port>', 'gRPC port of the first node; node i listens on this port + i - 1', parseInteger('--grpc-port', 1, 65535), 50051)
    .option('--shards <count>', 'virtual shards when the cluster is created', parseInteger('--shards', 1, 4096), 16)
    .option('--definitions <path...>', 'definition files or directories to apply through the first node once every shard runs, before --load, so that computed traits count the loaded events')
    .option('--load <file...>', 'event files to send to the first node once every shard runs; rejected when the data directory already contains the data of a cluster, whose JetStream would count a resent event twice after its 2-minute duplicate window')
    .option('--log-level <level>', `log level of the nodes, one of ${LOG_LEVELS.join(', ')}`, parseChoice('--log-level', LOG_LEVELS), 'info')
    .option('--nats-server <path>', 'nats-server executable (default: found on PATH or in /usr/sbin)')
    .addHelpText('after', '\nExample:\n  rtcdp cluster up --nodes 3 --definitions data/definitions/ --load data/online-retail-2010-12.csv')
    .action((options: ClusterUpOptions) => runClusterUp(options));
}

async function runClusterUp(options: ClusterUpOptions): Promise<void> {
  const natsServer = options.natsServer ?? findNatsServer();
  const dataDir = path.resolve(options.data);
  if ((options.load ?? []).length > 0 && existsSync(path.join(dataDir, 'nats'))) {
    throw new UsageError(
      `${options.data} already contains a cluster's data, so --load would send its events again, and JetStream drops a resent event only within its 2-minute duplicate window. Delete ${options.data} to start afresh (rm -rf ${options.data}), or start the same cluster again on its data without --load: node bin/rtcdp.js cluster up --data ${options.data}`,
    );
  }
  const definitions = options.definitions === undefined ? [] : await readDefinitionFiles(options.definitions, '--definitions');
  checkPortRange(options);
  await checkPortFree(options.natsPort, 'nats-server', '--nats-port');
  for (let i = 1; i <= options.nodes; i++) await checkPortFree(options.grpcPort + i - 1, `node n${i}`, '--grpc-port');
  await mkdir(dataDir, { recursive: true });
  const children: Array<{ name: string; child: ChildProcess }> = [];
  const stopSignal = waitForStopSignal();
  /** Set once this command stops the processes itself, after which their exits are expected. */
  let stopping = false;

  try {
    const nats = spawnLogged(natsServer, ['-js', '-a', '127.0.0.1', '-p', String(options.natsPort), '-sd', path.join(dataDir, 'nats')], path.join(dataDir, 'nats.log'));
    children.push({ name: 'nats-server', child: nats });
    nats.once('exit', (code, signal) => {
      if (!stopping) process.stdout.write(`nats-server exited (${signal ?? `code ${code}`}), so the nodes cannot reach NATS; see ${path.join(dataDir, 'nats.log')}\n`);
    });
    await waitForPort(options.natsPort, nats, 'nats-server');
    const natsUrl = `nats://127.0.0.1:${options.natsPort}`;
    process.stdout.write(`nats-server (PID ${nats.pid}) on ${natsUrl}, log ${path.join(dataDir, 'nats.log')}\n`);

    const addresses: string[] = [];
    for (let i = 1; i <= options.nodes; i++) {
      const grpcPort = options.grpcPort + i - 1;
      const args = [BIN, 'node', '--nats', natsUrl, '--node-id', `n${i}`, '--data', path.join(dataDir, `n${i}`), '--grpc-port', String(grpcPort), '--shards', String(options.shards), '--log-level', options.logLevel];
      const node = spawnLogged(process.execPath, ['--max-semi-space-size=64', ...args], path.join(dataDir, `n${i}.log`));
      children.push({ name: `n${i}`, child: node });
      node.once('exit', (code, signal) => {
        if (!stopping) process.stdout.write(`node n${i} exited (${signal ?? `code ${code}`}), so 127.0.0.1:${grpcPort} no longer answers; see ${path.join(dataDir, `n${i}.log`)}\n`);
      });
      await waitForPort(grpcPort, node, `node n${i}`);
      addresses.push(`127.0.0.1:${grpcPort}`);
      process.stdout.write(`node n${i} (PID ${node.pid}) on 127.0.0.1:${grpcPort}, log ${path.join(dataDir, `n${i}.log`)}\n`);
    }

    await waitForShards(natsUrl, children.filter(({ name }) => name !== 'nats-server').map(({ name }) => name));
    if (definitions.length > 0) await applyDefinitionFiles(definitions, addresses[0]);
    const userId = await loadFiles(options.load ?? [], addresses[0]);
    printHints(natsUrl, addresses, userId);

    const signal = await Promise.race([stopSignal, allExited(children)]);
    if (signal === null) throw new CommandFailure(`nats-server and every node have exited; see the logs in ${dataDir}`);
    process.stderr.write(`rtcdp: received ${signal}, stopping the nodes one by one\n`);
  } finally {
    stopping = true;
    await stopAll(children);
  }
}

function findNatsServer(): string {
  const onPath = (process.env.PATH ?? '').split(path.delimiter).map((dir) => path.join(dir, 'nats-server'));
  const found = [...onPath, ...NATS_CANDIDATES].find((candidate) => existsSync(candidate));
  if (found === undefined) {
    throw new CommandFailure('nats-server was not found on PATH or in /usr/sbin; install it (Debian: apt-get install nats-server) or pass --nats-server PATH');
  }
  return found;
}

/** Processes still running, killed when this process exits before it could stop them in order. */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Starts a process in its own process group, so a Ctrl-C in the terminal reaches only this
 * command, which then stops the nodes one by one.
 */
function spawnLogged(command: string, args: string[], logFile: string): ChildProcess {
  const log = openSync(logFile, 'a');
  const child = spawn(command, args, { stdio: ['ignore', log, log], detached: true });
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

/** Rejects a --grpc-port whose node ports go past 65535 or include the --nats-port. */
function checkPortRange(options: ClusterUpOptions): void {
  const lastGrpcPort = options.grpcPort + options.nodes - 1;
  if (lastGrpcPort > 65535) {
    throw new UsageError(`invalid --grpc-port ${options.grpcPort}: ${options.nodes} nodes need ports ${options.grpcPort} to ${lastGrpcPort}, and the last is above 65535. Pass a --grpc-port of at most ${65536 - options.nodes}`);
  }
  if (options.natsPort >= options.grpcPort && options.natsPort <= lastGrpcPort) {
    throw new UsageError(`invalid --nats-port ${options.natsPort}: nodes n1 to n${options.nodes} listen on ports ${options.grpcPort} to ${lastGrpcPort}. Pass a --nats-port or --grpc-port outside that range`);
  }
}

/**
 * Fails when another process listens on the port. Otherwise the cluster's own process would
 * fail to start while the readiness checks reached the other one.
 */
async function checkPortFree(port: number, name: string, option: string): Promise<void> {
  if (!(await portInUse('127.0.0.1', port))) return;
  throw new UsageError(`port ${port} on 127.0.0.1 is already in use, so ${name} cannot listen on it; stop the process that uses it (another cluster up?) or pass another ${option}`);
}

/** Resolves with null once every child has exited: nothing is left to stop. */
function allExited(children: Array<{ child: ChildProcess }>): Promise<null> {
  return Promise.all(children.map(({ child }) => (child.exitCode !== null || child.signalCode !== null ? undefined : new Promise((resolve) => child.once('exit', resolve))))).then(() => null);
}

/** Waits until the port accepts TCP connections; fails when the process exits first. */
async function waitForPort(port: number, child: ChildProcess, name: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new CommandFailure(`${name} exited with code ${child.exitCode} while starting; see its log`);
    if (await accepts(port)) return;
    await sleep(100);
  }
  throw new CommandFailure(`${name} did not listen on port ${port} within ${START_TIMEOUT_MS} ms; see its log`);
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connectTcp({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/**
 * Waits until the coordinator has spread the shards over every started node and each shard
 * runs on the node it is assigned to, printing progress. A shard that runs only until the
 * next node joins does not count, so the sample load and the first queries meet no handoff.
 */
async function waitForShards(natsUrl: string, nodeIds: readonly string[]): Promise<void> {
  const { readClusterView } = await import('../cluster/cluster-view.js');
  const connection = await connect({ servers: natsUrl });
  try {
    const deadline = Date.now() + START_TIMEOUT_MS;
    let last = '';
    while (Date.now() < deadline) {
      const view = await readClusterView(connection, 2_000).catch(() => null);
      const shards = view?.shardViews ?? [];
      const placed = shards.filter((shard) => shard.host?.state === 'running' && shard.leaseHolder === shard.assignedTo);
      const assignedNodes = new Set(shards.map((shard) => shard.assignedTo));
      const nodesWithShards = nodeIds.filter((nodeId) => assignedNodes.has(nodeId)).length;
      const total = view?.shards ?? 0;

      const line = `shards running: ${placed.length} of ${total || '?'}, assigned to ${nodesWithShards} of ${nodeIds.length} nodes`;
      if (line !== last) process.stdout.write(`${line}\n`);
      last = line;
      if (total > 0 && placed.length === total && nodesWithShards === Math.min(total, nodeIds.length)) return;
      await sleep(500);
    }
    throw new CommandFailure(`the shards were not running on every node within ${START_TIMEOUT_MS} ms; see the node logs`);
  } finally {
    await connection.close();
  }
}

/** Applies definition files through the node at `address`, as `rtcdp apply` does; invalid files apply nothing and fail. */
async function applyDefinitionFiles(files: SourceFile[], address: string): Promise<void> {
  const response = await withClient({ server: address }, (client, metadata) => callUnary(client.apply.bind(client), { files, dryRun: false, prune: false }, metadata));
  if (response.errors.length > 0) throw validationFailure(response.errors, 'nothing was applied');

  const changed = response.results.filter((result) => result.change !== DefinitionChange.DEFINITION_CHANGE_UNCHANGED).length;
  process.stdout.write(`definitions: ${response.results.length} applied through ${address} (${changed} new or changed)\n`);
}

/** Sends each file to the node at `address`; returns a user id from the loaded events, for the query hint. */
async function loadFiles(files: string[], address: string): Promise<string | undefined> {
  let userId: string | undefined;
  for (const file of files) {
    process.stdout.write(`loading ${file} into ${address}\n`);
    const summary = await sendSources([await openSource(file)], { server: address });
    process.stdout.write(`  accepted ${summary.accepted}, duplicates ${summary.duplicates}, rejected ${summary.rejected}, in ${(summary.elapsedMs / 1000).toFixed(1)} s\n`);
    if (summary.exampleIdentifier?.type === 'user_id') userId ??= summary.exampleIdentifier.value;
  }
  return userId;
}

function printHints(natsUrl: string, addresses: string[], userId = 'USER_ID'): void {
  const lines = [
    '',
    `Every node takes events and queries: ${addresses.join(', ')}`,
    `  node ${BIN} cluster status --nats ${natsUrl}`,
    `  node ${BIN} profile get --server ${addresses[addresses.length - 1]} --user-id ${userId}`,
    'Press Ctrl-C to stop.',
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

/** Stops the nodes one by one with SIGTERM, so each hands its shards off, then nats-server. */
async function stopAll(children: Array<{ name: string; child: ChildProcess }>): Promise<void> {
  const nodes = children.filter(({ name }) => name !== 'nats-server');
  for (const { name, child } of nodes.reverse()) await stopChild(name, child, 45_000);
  const nats = children.find(({ name }) => name === 'nats-server');
  if (nats !== undefined) await stopChild(nats.name, nats.child, 10_000);
}

async function stopChild(name: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = new AbortController();
  const timedOut = sleep(timeoutMs, false, { signal: timer.signal }).catch(() => false);
  const stopped = await Promise.race([exited.then(() => true), timedOut]);
  timer.abort();
  if (!stopped) {
    process.stderr.write(`rtcdp: ${name} did not stop within ${timeoutMs} ms; killing it\n`);
    child.kill('SIGKILL');
    await exited;
  }
  process.stdout.write(`stopped ${name}\n`);
}
