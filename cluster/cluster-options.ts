/**
 * Options of a cluster node, validated once. Cluster-wide settings (the shard count) are
 * stored in NATS by the first node and read by every later one; the rest is per node.
 */
import type { IdentitySettings, IdentitySettingsInput } from '../identity/identity-settings.js';
import type { OnlineMatchingSettings } from '../identity/online-matching.js';
import { resolveProfileLimits, resolveWorkspaceIdentity } from './node-options.js';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { ActorSystemOptions } from '../actors/types.js';
import { ConfigError } from '../common/errors.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { DEFAULT_PROFILE_LIMITS, type ProfileLimits } from '../profiles/profile.js';
import { resolveEventLimits, type EventLimits } from '../profiles/validation.js';

export interface ClusterNodeOptions {
  /** NATS server URLs, such as `nats://127.0.0.1:4222`. Required. */
  servers: string[];
  /** This node's id: 1 to 64 of A-Z, a-z, 0-9, "_" and "-". Default: the host name and a random suffix. */
  nodeId?: string;
  /** Directory of the node's RocksDB database (profile history and identifiers). Required. */
  dataDir: string;
  /** Address where clients reach this node's gRPC server, stored in its membership record. Default "none". */
  grpcAddress?: string;
  /** Virtual shards, used only by the node that creates the cluster. Default 16. */
  shards?: number;
  /** Servers that keep a copy of the event stream and the KV buckets: 1, 3 or 5. Default 1; production needs 3. */
  replicas?: number;
  /** Events being published but not yet acknowledged by JetStream, node-wide, before ingestion fails with OVERLOADED. Default 50,000. */
  maxInFlightEvents?: number;
  /** How long an append waits for JetStream's acknowledgement. Default 5,000 ms. */
  publishTimeoutMs?: number;
  /**
   * How long JetStream drops a resent messageId. Default 120,000 ms (2 minutes). A later
   * resend is stored again but not applied while its profile remembers the messageId
   * (`profileLimits.recentMessageIds` and `messageIdRetentionMs`, by default 1,000 and 7 days).
   */
  duplicateWindowMs?: number;
  /** How long the event stream keeps events. Default 604,800,000 ms (7 days). */
  streamMaxAgeMs?: number;
  /** How often each shard's checkpoints are written. Default 1,000 ms. */
  checkpointIntervalMs?: number;
  /** Time between sweeps of each hosted shard's durable timer index for due profile evaluations. Default 1,000 ms. */
  evaluationTimerIntervalMs?: number;
  /** How long the activation stream keeps activations. Default 604,800,000 ms (7 days). */
  activationRetentionMs?: number;
  /** How long a query waits, moves between nodes included, before it fails. Default 10,000 ms. */
  queryTimeoutMs?: number;
  /** How long a shard handoff may take before the rest is left to the next owner. Default 10,000 ms. */
  handoffTimeoutMs?: number;
  /** Records a shard takes from the stream ahead of applying them. Default 10,000. */
  maxPendingRecordsPerShard?: number;
  /** Shard lease length. Default 5,000 ms. */
  leaseTtlMs?: number;
  /** Time between lease renewals. Default 1,000 ms. */
  leaseRenewIntervalMs?: number;
  /** Time between membership heartbeats. Default 1,000 ms. */
  heartbeatIntervalMs?: number;
  /** A member whose heartbeat has not changed for this long is gone. Default 4,000 ms. */
  memberTimeoutMs?: number;
  /** How long the member list must stay unchanged after a member joined before shards move to it. A member that leaves does not wait. Default 2,000 ms. */
  rebalanceStableForMs?: number;
  /** Shards moving between nodes at the same time, at most. Default 2. */
  maxConcurrentMoves?: number;
  eventLimits?: Partial<EventLimits>;
  profileLimits?: Partial<ProfileLimits>;
  /** Identity settings of every workspace without its own entry in `workspaceIdentity`. Default: the built-in defaults. */
  identity?: IdentitySettingsInput;
  /** Identity settings per workspace name; each replaces `identity` for its workspace. */
  workspaceIdentity?: Record<string, IdentitySettingsInput>;
  /** Fuzzy matching of live profiles by person traits, in worker threads of every node. Default: off. */
  matching?: OnlineMatchingSettings;
  actors?: ActorSystemOptions;
  logger?: Logger;
}

export type ResolvedClusterNodeOptions = Required<Omit<ClusterNodeOptions, 'eventLimits' | 'profileLimits' | 'actors' | 'grpcAddress' | 'identity' | 'workspaceIdentity' | 'matching'>> & {
  matching?: OnlineMatchingSettings;
  /** The validated identity settings of a workspace. */
  identitySettings: (workspace: string) => IdentitySettings;
  grpcAddress: string;
  eventLimits: EventLimits;
  profileLimits: ProfileLimits;
  actors: ActorSystemOptions;
};

const NODE_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * JetStream stops recognising a messageId after its duplicate window, so each profile
 * remembers the messageIds of its 1,000 events with the latest event times among those
 * received within 7 days, and skips a resend of one.
 */
const CLUSTER_PROFILE_LIMITS: ProfileLimits = { ...DEFAULT_PROFILE_LIMITS, recentMessageIds: 1_000, messageIdRetentionMs: 7 * 24 * 3_600_000 };

export function resolveClusterNodeOptions(options: ClusterNodeOptions): ResolvedClusterNodeOptions {
  if (!Array.isArray(options.servers) || options.servers.length === 0 || options.servers.some((url) => typeof url !== 'string' || url === '')) {
    throw new ConfigError(`servers must list at least one NATS URL, received ${JSON.stringify(options.servers)}`);
  }
  if (typeof options.dataDir !== 'string' || options.dataDir === '') {
    throw new ConfigError(`dataDir must be a non-empty path, received ${JSON.stringify(options.dataDir)}`);
  }
  const nodeId = options.nodeId ?? defaultNodeId();
  if (!NODE_ID_PATTERN.test(nodeId)) {
    throw new ConfigError(`nodeId must be 1-64 characters of A-Z, a-z, 0-9, "_" or "-", received ${JSON.stringify(nodeId)}`);
  }
  const replicas = options.replicas ?? 1;
  if (![1, 3, 5].includes(replicas)) throw new ConfigError(`replicas must be 1, 3 or 5, received ${replicas}`);

  const resolved: ResolvedClusterNodeOptions = {
    servers: options.servers,
    nodeId,
    dataDir: options.dataDir,
    grpcAddress: options.grpcAddress ?? 'none',
    shards: integer('shards', options.shards ?? 16, 1, 4_096),
    replicas,
    maxInFlightEvents: integer('maxInFlightEvents', options.maxInFlightEvents ?? 50_000),
    publishTimeoutMs: integer('publishTimeoutMs', options.publishTimeoutMs ?? 5_000),
    duplicateWindowMs: integer('duplicateWindowMs', options.duplicateWindowMs ?? 120_000, 1_000),
    streamMaxAgeMs: integer('streamMaxAgeMs', options.streamMaxAgeMs ?? 7 * 24 * 3_600_000, 60_000),
    checkpointIntervalMs: integer('checkpointIntervalMs', options.checkpointIntervalMs ?? 1_000),
    evaluationTimerIntervalMs: integer('evaluationTimerIntervalMs', options.evaluationTimerIntervalMs ?? 1_000),
    activationRetentionMs: integer('activationRetentionMs', options.activationRetentionMs ?? 7 * 24 * 3_600_000, 60_000),
    queryTimeoutMs: integer('queryTimeoutMs', options.queryTimeoutMs ?? 10_000),
    handoffTimeoutMs: integer('handoffTimeoutMs', options.handoffTimeoutMs ?? 10_000),
    maxPendingRecordsPerShard: integer('maxPendingRecordsPerShard', options.maxPendingRecordsPerShard ?? 10_000, 2),
    leaseTtlMs: integer('leaseTtlMs', options.leaseTtlMs ?? 5_000),
    leaseRenewIntervalMs: integer('leaseRenewIntervalMs', options.leaseRenewIntervalMs ?? 1_000),
    heartbeatIntervalMs: integer('heartbeatIntervalMs', options.heartbeatIntervalMs ?? 1_000),
    memberTimeoutMs: integer('memberTimeoutMs', options.memberTimeoutMs ?? 4_000),
    rebalanceStableForMs: integer('rebalanceStableForMs', options.rebalanceStableForMs ?? 2_000, 0),
    maxConcurrentMoves: integer('maxConcurrentMoves', options.maxConcurrentMoves ?? 2),
    eventLimits: resolveEventLimits(options.eventLimits),
    identitySettings: resolveWorkspaceIdentity(options.identity, options.workspaceIdentity),
    matching: options.matching,
    profileLimits: resolveProfileLimits(options.profileLimits, CLUSTER_PROFILE_LIMITS),
    actors: { snapshotIntervalMs: 5_000, snapshotEveryMessages: 500, ...options.actors },
    logger: options.logger ?? silentLogger(),
  };
  if (resolved.duplicateWindowMs > resolved.streamMaxAgeMs) {
    throw new ConfigError(`duplicateWindowMs (${resolved.duplicateWindowMs}) must not be longer than streamMaxAgeMs (${resolved.streamMaxAgeMs})`);
  }
  return resolved;
}

function integer(name: string, value: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, received ${value}`);
  }
  return value;
}

function defaultNodeId(): string {
  const host = hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 48) || 'node';
  return `${host}-${randomBytes(3).toString('hex')}`;
}
