/**
 * The operator's view of a cluster: the records in the cluster KV bucket (settings,
 * members, coordinator, assignment, shard leases and checkpoints) and each member's own
 * report of the shards it runs. Reads may be stale by a moment; nothing here decides
 * ownership.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { decode } from '../storage/codec.js';
import { decodeAssignment } from './assignment-watcher.js';
import { CLUSTER_BUCKET, requestAdmin, type ClusterNodeStatus } from './cluster-node.js';
import type { ClusterSettings } from './cluster-settings.js';
import { COORDINATOR_KEY } from './coordinator.js';
import { parseKvLeaseRecord } from './kv-lease.js';
import type { KvEntry } from '../storage/kv-store.js';
import { NatsKvStore } from './kv/nats-kv-store.js';
import { decodeLeaseRecord, leaseEpoch } from './leases/lease-record.js';
import { MEMBER_KEY_PREFIX, parseMemberInfo, type MemberInfo } from './membership.js';
import type { ShardHostStats } from './shard-host.js';
import type { ShardState } from './shard-state.js';

export interface ShardView {
  shard: number;
  /** Node the coordinator assigned the shard to. */
  assignedTo: string | null;
  /** Node named in the lease record, null when released or never taken. The lease may have expired. */
  leaseHolder: string | null;
  leaseEpoch: number | null;
  /** Per workspace, the stream sequence up to which events are in stored snapshots. */
  checkpoints: Record<string, number>;
  /** The hosting node's report, when it sent one. */
  host: ShardHostStats | null;
}

export interface MemberView extends MemberInfo {
  /** The node's own status, or the reason it did not send one. */
  status: ClusterNodeStatus | { error: string };
}

export interface ClusterView {
  shards: number | null;
  createdAt: string | null;
  coordinator: string | null;
  assignmentVersion: number | null;
  members: MemberView[];
  shardViews: ShardView[];
}

/** Reads the cluster's state from NATS, asking every member for its status within `timeoutMs`. */
export async function readClusterView(connection: NatsConnection, timeoutMs: number): Promise<ClusterView> {
  const kv = await openClusterBucket(connection);
  const entries = await kv.list();
  const byKey = new Map(entries.map((entry) => [entry.key, entry]));

  const settingsEntry = byKey.get('settings');
  const settings = settingsEntry === undefined ? null : decode<ClusterSettings>(Buffer.from(settingsEntry.value));
  const coordinatorEntry = byKey.get(COORDINATOR_KEY);
  const assignmentEntry = byKey.get('assignment');
  const assignment = assignmentEntry === undefined ? null : decodeAssignment(assignmentEntry);

  const memberInfos = entries.filter((entry) => entry.key.startsWith(MEMBER_KEY_PREFIX)).map(parseMemberInfo).filter((member): member is MemberInfo => member !== null);
  const members = await Promise.all(memberInfos.map(async (member) => ({ ...member, status: await memberStatus(connection, member.nodeId, timeoutMs) })));

  const hosts = new Map<number, ShardHostStats>();
  for (const member of members) {
    if ('error' in member.status) continue;
    for (const host of member.status.hosted) hosts.set(host.shard, host);
  }

  const shardCount = settings?.shards ?? 0;
  const shardViews = Array.from({ length: shardCount }, (_, shard): ShardView => {
    const lease = leaseOf(byKey.get(`shard.${shard}`));
    const state = byKey.get(`shard-state.${shard}`);
    return {
      shard,
      assignedTo: assignment?.shards.get(shard) ?? null,
      leaseHolder: lease?.holder ?? null,
      leaseEpoch: lease?.epoch ?? null,
      checkpoints: state === undefined ? {} : decode<ShardState>(Buffer.from(state.value)).checkpoints,
      host: hosts.get(shard) ?? null,
    };
  });

  return {
    shards: settings?.shards ?? null,
    createdAt: settings?.createdAt ?? null,
    coordinator: coordinatorEntry === undefined ? null : (parseKvLeaseRecord(coordinatorEntry)?.holder ?? null),
    assignmentVersion: assignment?.version ?? null,
    members: members.sort((a, b) => a.nodeId.localeCompare(b.nodeId)),
    shardViews,
  };
}

async function memberStatus(connection: NatsConnection, nodeId: string, timeoutMs: number): Promise<ClusterNodeStatus | { error: string }> {
  try {
    return await requestAdmin<ClusterNodeStatus>(connection, nodeId, { op: 'status' }, timeoutMs);
  } catch (error) {
    return { error: (error as Error).message };
  }
}

function leaseOf(entry: KvEntry | undefined): { holder: string | null; epoch: number } | null {
  if (entry === undefined) return null;
  try {
    const record = decodeLeaseRecord(entry.value, entry.key, entry.revision);
    return { holder: record.released ? null : record.holder, epoch: leaseEpoch(record, entry.revision) };
  } catch {
    return null;
  }
}

/** Returns the replica count of the existing cluster bucket, so opening it never conflicts with how it was created. */
/** Opens the cluster's KV bucket with the replica count it has; throws when no cluster exists on the server. */
export async function openClusterBucket(connection: NatsConnection): Promise<NatsKvStore> {
  return NatsKvStore.open(connection, { bucket: CLUSTER_BUCKET, replicas: await bucketReplicas(connection) });
}

async function bucketReplicas(connection: NatsConnection): Promise<number> {
  const jsm = await jetstreamManager(connection);
  const info = await jsm.streams.info(`KV_${CLUSTER_BUCKET}`).catch(() => null);
  if (info === null) throw new Error(`no rtcdp cluster found: the KV bucket ${CLUSTER_BUCKET} does not exist on this NATS server`);
  return info.config.num_replicas;
}
