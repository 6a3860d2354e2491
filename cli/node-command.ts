/**
 * `rtcdp node`: runs one node of a cluster on NATS, with its gRPC server, until SIGINT or
 * SIGTERM (which hand its shards off first) or an admin drain request.
 */
import { mkdir } from 'node:fs/promises';
import type { Command } from 'commander';
import { createLogger } from '../common/logger.js';
import type { EventLimits } from '../profiles/validation.js';
import { assertGrpcPortFree, collectLimit, CommandFailure, EVENT_LIMIT_HELP, LOG_LEVELS, UsageError, collectWriteKey, parseChoice, parseHostPort, parseInteger, waitForStopSignal } from './common.js';
import { NODE_ID_PATTERN } from '../cluster/coordination-options.js';
import { readWebhookDestinations, WEBHOOKS_HELP } from './webhook-options.js';
import { addMatchingOptions, IDENTITY_HELP, readIdentitySettings, readMatchingSettings, type MatchingCommandOptions } from './identity-options.js';

interface NodeCommandOptions {
  nats: string[];
  nodeId?: string;
  data: string;
  host: string;
  grpcPort: number;
  advertise?: string;
  shards: number;
  replicas: number;
  writeKey?: Map<string, string>;
  logLevel: string;
  maxResident: number;
  drainTimeoutMs: number;
  leaseTtlMs?: number;
  leaseRenewIntervalMs?: number;
  heartbeatIntervalMs?: number;
  memberTimeoutMs?: number;
  rebalanceStableForMs?: number;
  checkpointIntervalMs?: number;
  handoffTimeoutMs?: number;
  queryTimeoutMs?: number;
  webhooks?: string;
  webhookLeaseTtlMs?: number;
  webhookLeaseRenewIntervalMs?: number;
  identity?: string;
  limit?: Partial<EventLimits>;
}

export function addNodeCommand(program: Command): void {
  const command = program
    .command('node')
    .description(
      'Run one node of an rtcdp cluster coordinated over NATS JetStream, with the gRPC API, until SIGINT or SIGTERM. ' +
        'On either signal the node hands its shards to the other nodes before it exits. Without --write-key, calls ' +
        'without a write key use workspace "default".',
    )
    .requiredOption('--nats <url...>', 'NATS server URLs, such as nats://127.0.0.1:4222 (several for a NATS cluster)')
    .option('--node-id <id>', 'node id, 1-64 of A-Z, a-z, 0-9, "_" and "-" (default: the host name and a random suffix)', parseNodeId)
    .option('--data <dir>', 'directory of the node\'s RocksDB database, created when missing', '.rtcdp-node')
    .option('--host <host>', 'IP address or host name the gRPC server listens on', '127.0.0.1')
    .option('--grpc-port <port>', 'TCP port of the gRPC server, 0 for any free port', parseInteger('--grpc-port', 0, 65535), 50051)
    .option('--advertise <host:port>', 'gRPC address other hosts use to reach this node (default: the address it listens on)', parseHostPort('--advertise'))
    .option('--shards <count>', 'virtual shards; used only when this node creates the cluster, which stores the count in NATS', parseInteger('--shards', 1, 4096), 16)
    .option('--replicas <count>', 'NATS servers that keep a copy of events and snapshots: 1, 3 or 5 (3 in production)', parseReplicas, 1)
    .option('--write-key <key=workspace>', 'accept write key KEY for workspace WORKSPACE (repeatable; default: none)', collectWriteKey)
    .option('--log-level <level>', `log level on stderr, one of ${LOG_LEVELS.join(', ')}. RTCDP_LOG_LEVEL overrides it`, parseChoice('--log-level', LOG_LEVELS), 'info')
    .option('--max-resident <profiles>', 'profiles kept in memory per shard; the least recently used are passivated above it', parseInteger('--max-resident', 1, 100_000_000), 100_000)
    .option('--drain-timeout-ms <ms>', 'how long a stopping node waits for its shards to move before it hands off the rest directly', parseInteger('--drain-timeout-ms', 1_000, 3_600_000), 30_000)
    .option('--lease-ttl-ms <ms>', 'how long a shard lease lasts after its last renewal (default: 5000)', parseInteger('--lease-ttl-ms', 100, 3_600_000))
    .option('--lease-renew-interval-ms <ms>', 'time between shard lease renewals (default: 1000)', parseInteger('--lease-renew-interval-ms', 10, 3_600_000))
    .option('--heartbeat-interval-ms <ms>', 'time between membership heartbeats (default: 1000)', parseInteger('--heartbeat-interval-ms', 10, 3_600_000))
    .option('--member-timeout-ms <ms>', 'how long a member\'s heartbeat may stay unchanged before the others count it as gone (default: 4000)', parseInteger('--member-timeout-ms', 10, 3_600_000))
    .option('--rebalance-stable-for-ms <ms>', 'how long the member list must stay unchanged after a node joined before shards move to it; shards of a node that left move at once (default: 2000)', parseInteger('--rebalance-stable-for-ms', 0, 3_600_000))
    .option('--checkpoint-interval-ms <ms>', 'time between writes of each shard\'s checkpoints (default: 1000)', parseInteger('--checkpoint-interval-ms', 10, 3_600_000))
    .option('--handoff-timeout-ms <ms>', 'how long one shard handoff may take before the next owner replays the rest from the log (default: 10000)', parseInteger('--handoff-timeout-ms', 100, 3_600_000))
    .option('--query-timeout-ms <ms>', 'how long a profile query waits, shard moves included, before it fails (default: 10000)', parseInteger('--query-timeout-ms', 100, 3_600_000))
    .option('--webhooks <file>', `${WEBHOOKS_HELP}. The nodes given a destination share its cursor and dead letters in NATS, and one of them at a time delivers it`)
    .option('--webhook-lease-ttl-ms <ms>', 'how long a webhook destination\'s delivery lease lasts after its last renewal, so how long a dead node\'s destinations wait for another node (default: 10000)', parseInteger('--webhook-lease-ttl-ms', 100, 3_600_000))
    .option('--webhook-lease-renew-interval-ms <ms>', 'time between renewals of the webhook delivery leases, at most (ttl - stall margin) / 2 (default: 2000)', parseInteger('--webhook-lease-renew-interval-ms', 10, 3_600_000))
    .option('--identity <file>', `${IDENTITY_HELP}. Give every node of a cluster the same file`)
    .option('--limit <name=value>', `${EVENT_LIMIT_HELP}. Give every node of a cluster the same limits`, collectLimit);
  addMatchingOptions(command)
    .addHelpText('after', '\nExample:\n  rtcdp node --nats nats://127.0.0.1:4222 --node-id n1 --data .rtcdp-n1 --grpc-port 50051')
    .action((options: NodeCommandOptions & MatchingCommandOptions) => runNode(options));
}

/** Checks the node id before the node starts, so that an invalid id is a usage error (exit 2). */
function parseNodeId(value: string): string {
  if (!NODE_ID_PATTERN.test(value)) {
    throw new UsageError(`invalid --node-id ${JSON.stringify(value)}: expected 1-64 characters of A-Z, a-z, 0-9, "_" and "-"`);
  }
  return value;
}

/** Accepts the replica counts that the cluster accepts for its streams and KV buckets: 1, 3 or 5. */
function parseReplicas(value: string): number {
  const replicas = parseChoice('--replicas', ['1', '3', '5'])(value);
  return Number(replicas);
}

async function runNode(options: NodeCommandOptions & MatchingCommandOptions): Promise<void> {
  const webhooks = await readWebhookDestinations(options.webhooks);
  const identity = await readIdentitySettings(options.identity);
  const matching = await readMatchingSettings(options);
  await assertGrpcPortFree(options.host, options.grpcPort, '--grpc-port');
  await mkdir(options.data, { recursive: true });
  // Imported here so that commands that only talk to a server never load RocksDB.
  const { startClusterProcess } = await import('../api/cluster.js');
  const logger = createLogger({ level: options.logLevel });

  let started;
  try {
    started = await startClusterProcess({
      servers: options.nats,
      nodeId: options.nodeId,
      dataDir: options.data,
      host: options.host,
      port: options.grpcPort,
      advertiseAddress: options.advertise,
      shards: options.shards,
      replicas: options.replicas,
      devMode: options.writeKey === undefined,
      writeKeys: options.writeKey,
      actors: { maxResidentActors: options.maxResident },
      eventLimits: options.limit,
      drainTimeoutMs: options.drainTimeoutMs,
      leaseTtlMs: options.leaseTtlMs,
      leaseRenewIntervalMs: options.leaseRenewIntervalMs,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      memberTimeoutMs: options.memberTimeoutMs,
      rebalanceStableForMs: options.rebalanceStableForMs,
      checkpointIntervalMs: options.checkpointIntervalMs,
      handoffTimeoutMs: options.handoffTimeoutMs,
      queryTimeoutMs: options.queryTimeoutMs,
      webhooks,
      webhookLeaseTtlMs: options.webhookLeaseTtlMs,
      webhookLeaseRenewIntervalMs: options.webhookLeaseRenewIntervalMs,
      ...identity,
      matching,
      logger,
    });
  } catch (error) {
    throw new CommandFailure(`failed to start the node with --nats ${options.nats.join(' ')}: ${(error as Error).message}`, { cause: error });
  }
  process.stdout.write(`rtcdp node ${started.node.nodeId} listening on ${started.address}\n`);

  const signal = await Promise.race([waitForStopSignal(), started.stopped.then(() => null)]);
  if (signal !== null) {
    process.stderr.write(`rtcdp: received ${signal}, handing shards off\n`);
    await started.stop();
  } else {
    process.stderr.write('rtcdp: drained on request, stopping\n');
  }
  process.stderr.write(`rtcdp: node ${started.node.nodeId} stopped\n`);
  process.exitCode = 0;
}
