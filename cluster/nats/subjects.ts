/**
 * Names in NATS. Events of a workspace's shard go to one subject of the event stream, so
 * the shard's owner reads them in stream order with one filter (`rtcdp.events.*.<shard>`).
 * Workspace names are lowercase letters, digits, "_" and "-", which are valid subject tokens.
 */
import type { PartitionId } from '../../storage/event-log.js';

export const EVENT_STREAM = 'RTCDP_EVENTS';
const EVENT_PREFIX = 'rtcdp.events';

export function eventSubject(partition: PartitionId): string {
  return `${EVENT_PREFIX}.${partition.workspace}.${partition.shard}`;
}

/** Returns the subject filter that matches every workspace's events on one shard. */
export function shardEventFilter(shard: number): string {
  return `${EVENT_PREFIX}.*.${shard}`;
}

export const ALL_EVENTS_FILTER = `${EVENT_PREFIX}.>`;

/** Splits an event subject into its partition; null when it is not one. */
export function parseEventSubject(subject: string): PartitionId | null {
  const parts = subject.split('.');
  if (parts.length !== 4 || `${parts[0]}.${parts[1]}` !== EVENT_PREFIX) return null;

  const shard = Number(parts[3]);
  if (!Number.isSafeInteger(shard) || shard < 0) return null;
  return { workspace: parts[2], shard };
}

/** Returns the JetStream message id that deduplicates an event, because messageIds are unique per workspace. */
export function eventMessageId(workspace: string, messageId: string): string {
  return `${workspace}:${messageId}`;
}
