/**
 * `rtcdp cluster status|shards|drain|forget|up`: operator commands that read a cluster's
 * state from NATS, ask a node to leave, remove a crashed node from the member list, or
 * start a local cluster to try.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { CommandFailure, OUTPUT_FORMATS, parseChoice, parseInteger, renderTable, UsageError } from './common.js';
import { addClusterUpCommand } from './cluster-up.js';

interface ClusterCommandOptions {
  nats: string[];
  output: string;
  timeoutMs: number;
}

interface ForgetCommandOptions extends ClusterCommandOptions {
  observeMs: number;
}

export function addClusterCommands(program: Command): void {
  const cluster = program.command('cluster').description('Inspect and operate an rtcdp cluster on NATS, or start one locally to try.');

  addConnectionOptions(cluster.command('status').description('Show the members, the shards each one runs and their lag.'), REPORT_TIMEOUT_HELP).action(
    (options: ClusterCommandOptions) => runStatus(options),
  );
  addConnectionOptions(cluster.command('shards').description('Show every shard: its assigned node, lease holder, epoch, lag and checkpoints.'), REPORT_TIMEOUT_HELP).action(
    (options: ClusterCommandOptions) => runShards(options),
  );
  addConnectionOptions(
    cluster
      .command('drain')
      .argument('<node-id>', 'id of the node to drain')
      .description('Ask a node to hand its shards to the other nodes and exit; waits until it has left the cluster.'),
    "how long to wait for the node to accept the drain request; after that the command waits for it to leave for this long, and at least 60,000 ms",
  ).action((nodeId: string, options: ClusterCommandOptions) => runDrain(nodeId, options));
  addConnectionOptions(
    cluster
      .command('forget')
      .argument('<node-id>', 'id of the node to remove from the member list')
      .description(
        'Remove a node that crashed and will not run again from the member list, so that queries stop waiting for it. ' +
          'Refuses a node that responds or writes a heartbeat; stop a running node with drain.',
      )
      .option('--observe-ms <ms>', "how long the node's member key must stay unchanged before it is deleted; longer than the nodes' heartbeat interval", parseInteger('--observe-ms', 1_000, 600_000), 10_000),
    'how long to wait for the node to respond to a status request; a node that responds is running',
  ).action((nodeId: string, options: ForgetCommandOptions) => runForget(nodeId, options));
  addClusterUpCommand(cluster);
}

const REPORT_TIMEOUT_HELP = "how long to wait for each node's report";

function addConnectionOptions(command: Command, timeoutHelp: string): Command {
  return command
    .option('--nats <url...>', 'NATS server URLs of the cluster', ['nats://127.0.0.1:4222'])
    .option('--output <format>', 'output format: table or json', parseChoice('--output', OUTPUT_FORMATS), 'table')
    .option('--timeout-ms <ms>', timeoutHelp, parseInteger('--timeout-ms', 100, 3_600_000), 5_000);
}

async function withConnection<T>(options: ClusterCommandOptions, work: (connection: NatsConnection) => Promise<T>): Promise<T> {
  let connection: NatsConnection;
  try {
    connection = await connect({ servers: options.nats, timeout: 5_000 });
  } catch (error) {
    throw new CommandFailure(
      `cannot connect to NATS at ${options.nats.join(', ')}: ${(error as Error).message}. Check that nats-server runs there, or pass the cluster's servers with --nats nats://HOST:PORT`,
      { cause: error },
    );
  }
  try {
    return await work(connection);
  } finally {
    await connection.close();
  }
}

async function readView(connection: NatsConnection, timeoutMs: number) {
  // Imported here so that other commands never load the cluster code.
  const { readClusterView } = await import('../cluster/cluster-view.js');
  try {
    return await readClusterView(connection, timeoutMs);
  } catch (error) {
    throw new CommandFailure((error as Error).message, { cause: error });
  }
}

async function runStatus(options: ClusterCommandOptions): Promise<void> {
  await withConnection(options, async (connection) => {
    const view = await readView(connection, options.timeoutMs);
    if (options.output === 'json') {
      process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
      return;
    }

    const hosted = view.shardViews.filter((shard) => shard.host !== null).length;
    const lines = [
      `shards       ${view.shards ?? '-'} (${hosted} running)`,
      `coordinator  ${view.coordinator ?? '(none)'}`,
      `assignment   ${view.assignmentVersion === null ? '(none yet)' : `version ${view.assignmentVersion}`}`,
      '',
      'members:',
      ...renderTable([
        ['NODE', 'GRPC', 'STATE', 'SHARDS', 'UNREAD', 'UNAPPLIED', 'STARTED'],
        ...view.members.map((member) => {
          if ('error' in member.status) return [member.nodeId, member.grpcAddress, 'no report', '-', '-', '-', member.startedAt];
          const unread = member.status.hosted.reduce((sum, host) => sum + host.unreadRecords, 0);
          const pending = member.status.hosted.reduce((sum, host) => sum + host.pendingRecords, 0);
          return [member.nodeId, member.grpcAddress, member.status.state, String(member.status.hosted.length), String(unread), String(pending), member.startedAt];
        }),
      ]),
    ];
    const silent = view.members.filter((member) => 'error' in member.status).map((member) => member.nodeId);
    if (silent.length > 0) {
      lines.push('', `no report from ${silent.join(', ')}: a node that crashed and will not run again stays listed until rtcdp cluster forget NODE removes it`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  });
}

async function runShards(options: ClusterCommandOptions): Promise<void> {
  await withConnection(options, async (connection) => {
    const view = await readView(connection, options.timeoutMs);
    if (options.output === 'json') {
      process.stdout.write(`${JSON.stringify(view.shardViews, null, 2)}\n`);
      return;
    }

    const rows = view.shardViews.map((shard) => [
      String(shard.shard),
      shard.assignedTo ?? '-',
      shard.leaseHolder ?? '-',
      shard.leaseEpoch === null ? '-' : String(shard.leaseEpoch),
      shard.host?.state ?? '-',
      shard.host === null ? '-' : String(shard.host.unreadRecords),
      shard.host === null ? '-' : String(shard.host.pendingRecords),
      Object.entries(shard.checkpoints).map(([workspace, sequence]) => `${workspace}=${sequence}`).join(' ') || '-',
    ]);
    process.stdout.write(`${renderTable([['SHARD', 'ASSIGNED', 'LEASE', 'EPOCH', 'STATE', 'UNREAD', 'UNAPPLIED', 'CHECKPOINTS'], ...rows], '').join('\n')}\n`);
  });
}

async function runDrain(nodeId: string, options: ClusterCommandOptions): Promise<void> {
  await withConnection(options, async (connection) => {
    const { requestAdmin } = await import('../cluster/cluster-node.js');
    const members = (await readView(connection, options.timeoutMs)).members.map((member) => member.nodeId);
    if (!members.includes(nodeId)) {
      throw new UsageError(`node ${nodeId} is not a member of the cluster; its members are ${members.join(', ') || 'none'}`);
    }
    try {
      await requestAdmin(connection, nodeId, { op: 'drain' }, options.timeoutMs);
    } catch (error) {
      throw new CommandFailure(`cannot reach node ${nodeId}: ${(error as Error).message}`, { cause: error });
    }
    process.stderr.write(`rtcdp: node ${nodeId} is draining\n`);

    const deadline = Date.now() + Math.max(options.timeoutMs, 60_000);
    for (;;) {
      const view = await readView(connection, 2_000);
      const member = view.members.some((candidate) => candidate.nodeId === nodeId);
      const leases = view.shardViews.filter((shard) => shard.leaseHolder === nodeId).length;
      if (!member && leases === 0) break;
      if (Date.now() > deadline) throw new CommandFailure(`node ${nodeId} still has ${leases} shard leases after ${Math.max(options.timeoutMs, 60_000)} ms; check its log`);
      process.stderr.write(`rtcdp: waiting for ${nodeId}: ${member ? 'still a member, ' : ''}${leases} shard leases held\n`);
      await sleep(1_000);
    }

    const result = { nodeId, drained: true };
    process.stdout.write(options.output === 'json' ? `${JSON.stringify(result)}\n` : `node ${nodeId} has left the cluster\n`);
  });
}

async function runForget(nodeId: string, options: ForgetCommandOptions): Promise<void> {
  await withConnection(options, async (connection) => {
    // Imported here so that other commands never load the cluster code.
    const { openClusterBucket } = await import('../cluster/cluster-view.js');
    const { forgetNode, NodeRunningError } = await import('../cluster/forget-node.js');
    const { InvalidArgumentError } = await import('../cluster/errors.js');

    process.stderr.write(`rtcdp: checking for ${options.observeMs} ms that node ${nodeId} writes no heartbeat\n`);
    let member;
    try {
      member = await forgetNode(connection, await openClusterBucket(connection), nodeId, { observeMs: options.observeMs, statusTimeoutMs: options.timeoutMs });
    } catch (error) {
      if (error instanceof InvalidArgumentError) throw new UsageError(error.message);
      if (error instanceof NodeRunningError) throw new CommandFailure(error.message, { cause: error });
      throw new CommandFailure((error as Error).message, { cause: error });
    }

    if (options.output === 'json') {
      process.stdout.write(`${JSON.stringify({ forgotten: member }, null, 2)}\n`);
      return;
    }
    process.stdout.write(
      `forgot node ${nodeId} (started ${member.startedAt || 'at an unknown time'}, ${member.heartbeat} heartbeats). ` +
        'The events only it stored are gone: profile events lists it among the departed nodes of the shards it owned.\n',
    );
  });
}
