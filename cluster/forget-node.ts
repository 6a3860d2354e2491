/**
 * Removing a node that is gone for good from the cluster's member list. A node that leaves
 * gracefully (drain, SIGTERM) deletes its own `member.<node>` key. One that crashed and never
 * runs again leaves the key behind, so every node keeps listing it as absent: queries of
 * profile histories wait for it and name it as unavailable, and `cluster status` waits for
 * its report. Forgetting deletes the key, only after checking that the node is not running.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { RtcdpError } from '../common/errors.js';
import { KvConflictError, type KvStore } from '../storage/kv-store.js';
import { requestAdmin } from './cluster-node.js';
import { InvalidArgumentError } from './errors.js';
import { MEMBER_KEY_PREFIX, memberKey, parseMemberInfo, type MemberInfo } from './membership.js';

export interface ForgetNodeOptions {
  /** How long the member key must stay unchanged before it is deleted, in ms: longer than the nodes' heartbeat interval. */
  observeMs: number;
  /** How long the node has to respond to a status request, in ms. A node that responds is running. */
  statusTimeoutMs: number;
}

/** A node that was to be forgotten is still running: it responded to a status request, or wrote a heartbeat. */
export class NodeRunningError extends RtcdpError {
  readonly code = 'NODE_RUNNING';
}

/**
 * Deletes the member key of `nodeId` and returns the member record it held. Throws
 * InvalidArgumentError when the node has no member key, and NodeRunningError when the node
 * responds to a status request, or its key changes while it is observed or before the delete.
 */
export async function forgetNode(connection: NatsConnection, kv: KvStore, nodeId: string, options: ForgetNodeOptions): Promise<MemberInfo> {
  const key = memberKey(nodeId);
  const before = await kv.get(key);
  if (before === null) throw new InvalidArgumentError(`node ${nodeId} is not in the member list; its members are ${(await memberIds(kv)).join(', ') || 'none'}`);

  if (await respondsToStatus(connection, nodeId, options.statusTimeoutMs)) {
    throw new NodeRunningError(`node ${nodeId} is running: it responded to a status request. Stop it with rtcdp cluster drain ${nodeId} instead`);
  }

  await sleep(options.observeMs);
  const after = await kv.get(key);
  if (after === null) throw new InvalidArgumentError(`node ${nodeId} left the member list by itself while it was observed`);
  if (after.revision !== before.revision) throw new NodeRunningError(`node ${nodeId} is running: it wrote a heartbeat within the last ${options.observeMs} ms`);

  try {
    await kv.delete(key, after.revision);
  } catch (error) {
    if (error instanceof KvConflictError) throw new NodeRunningError(`node ${nodeId} is running: its member key changed just before the delete`);
    throw error;
  }
  return parseMemberInfo(after) ?? { nodeId, incarnation: '', grpcAddress: '', startedAt: '', heartbeat: 0 };
}

async function respondsToStatus(connection: NatsConnection, nodeId: string, timeoutMs: number): Promise<boolean> {
  try {
    await requestAdmin(connection, nodeId, { op: 'status' }, timeoutMs);
    return true;
  } catch {
    return false;
  }
}

async function memberIds(kv: KvStore): Promise<string[]> {
  const entries = await kv.list(MEMBER_KEY_PREFIX);
  return entries.map((entry) => entry.key.slice(MEMBER_KEY_PREFIX.length)).sort();
}
