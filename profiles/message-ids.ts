/**
 * The messageIds a profile remembers, so that an event delivered to it twice is applied
 * once. The embedded event log already rejects a messageId it stored within its dedup
 * window, so there the profile keeps a few ids as a second guard. JetStream stops
 * recognising a messageId once its duplicate window (minutes) has passed, so in cluster mode
 * the profile's ids keep a later resend from being counted twice, and it keeps more of them.
 *
 * The ids are kept in event-time order, oldest first, each with its event time and the time
 * the node received it. At most `recentMessageIds` are kept: those of the events with the
 * latest event times. So a resent file whose customer has more events than that counts
 * again only its oldest events, because an old id applied again cannot push out a newer
 * one. Ids received more than `messageIdRetentionMs` before the newest one are dropped.
 * The three arrays are in the snapshot, so the ids move with the profile when its shard
 * moves to another node.
 */
import { upperBound } from '../common/sorted.js';
import type { ProfileLimits, ProfileSnapshot } from './profile.js';

/** Above this many ids, lookups go through a Set instead of a scan of the array. */
const SCAN_LIMIT = 32;

/** Set indexes of long id arrays, built on the first lookup and dropped with the array. */
const indexes = new WeakMap<string[], Set<string>>();

type MessageIdFields = Pick<ProfileSnapshot, 'recentMessageIds' | 'recentMessageIdsReceivedMs' | 'recentMessageIdsTimestampMs'>;

/** A remembered id with its event time and receive time, in ms since the epoch. */
export interface MessageIdEntry {
  id: string;
  timestampMs: number;
  receivedMs: number;
}

/** Returns whether the profile remembers `messageId`. */
export function hasMessageId(profile: MessageIdFields, messageId: string): boolean {
  const ids = profile.recentMessageIds;
  if (ids.length <= SCAN_LIMIT) return ids.includes(messageId);
  return indexOf(ids).has(messageId);
}

/** Records an applied event's messageId and drops the ids that fall outside the limits. */
export function rememberMessageId(profile: MessageIdFields, entry: MessageIdEntry, limits: ProfileLimits): void {
  const times = profile.recentMessageIdsTimestampMs;
  const at = upperBound(times, entry.timestampMs);
  if (profile.recentMessageIds.length >= limits.recentMessageIds && at === 0) return;

  profile.recentMessageIds.splice(at, 0, entry.id);
  times.splice(at, 0, entry.timestampMs);
  profile.recentMessageIdsReceivedMs.splice(at, 0, entry.receivedMs);
  indexes.get(profile.recentMessageIds)?.add(entry.id);

  const excess = profile.recentMessageIds.length - limits.recentMessageIds;
  if (excess > 0) removeOldest(profile, excess);
  if (limits.messageIdRetentionMs > 0) dropExpired(profile, entry.receivedMs - limits.messageIdRetentionMs);
}

/**
 * Joins the ids of a merged profile into the survivor's, so an event of the merged profile
 * that reaches the survivor again is still recognised. An id both profiles applied keeps its
 * latest receive time.
 * NOTE: an id in both lists means that both profiles applied the event. A resend between the
 * merge's link and its absorb causes that, and the absorbed counts then include it twice.
 */
export function mergeMessageIds(into: MessageIdFields, from: MessageIdFields, limits: ProfileLimits): void {
  const byId = new Map<string, MessageIdEntry>();
  for (const entry of [...entriesOf(into), ...entriesOf(from)]) {
    const known = byId.get(entry.id);
    if (known === undefined || known.receivedMs < entry.receivedMs) byId.set(entry.id, entry);
  }

  const joined = [...byId.values()].sort((a, b) => a.timestampMs - b.timestampMs);
  const newestReceivedMs = Math.max(0, ...joined.map((entry) => entry.receivedMs));
  const cutoffMs = limits.messageIdRetentionMs > 0 ? newestReceivedMs - limits.messageIdRetentionMs : -Infinity;
  const remembered = joined.slice(Math.max(0, joined.length - limits.recentMessageIds)).filter((entry) => entry.receivedMs >= cutoffMs);

  into.recentMessageIds = remembered.map((entry) => entry.id);
  into.recentMessageIdsTimestampMs = remembered.map((entry) => entry.timestampMs);
  into.recentMessageIdsReceivedMs = remembered.map((entry) => entry.receivedMs);
}

function removeOldest(profile: MessageIdFields, count: number): void {
  const index = indexes.get(profile.recentMessageIds);
  if (index !== undefined) for (let i = 0; i < count; i++) index.delete(profile.recentMessageIds[i]);
  profile.recentMessageIds.splice(0, count);
  profile.recentMessageIdsTimestampMs.splice(0, count);
  profile.recentMessageIdsReceivedMs.splice(0, count);
}

/** Drops the ids received before `cutoffMs`, which may sit anywhere in event-time order. */
function dropExpired(profile: MessageIdFields, cutoffMs: number): void {
  if (!profile.recentMessageIdsReceivedMs.some((receivedMs) => receivedMs < cutoffMs)) return;

  const entries = entriesOf(profile);
  const remembered = entries.filter((entry) => entry.receivedMs >= cutoffMs);
  const index = indexes.get(profile.recentMessageIds);
  if (index !== undefined) for (const entry of entries) if (entry.receivedMs < cutoffMs) index.delete(entry.id);
  profile.recentMessageIds.length = 0;
  profile.recentMessageIdsTimestampMs.length = 0;
  profile.recentMessageIdsReceivedMs.length = 0;
  for (const entry of remembered) {
    profile.recentMessageIds.push(entry.id);
    profile.recentMessageIdsTimestampMs.push(entry.timestampMs);
    profile.recentMessageIdsReceivedMs.push(entry.receivedMs);
  }
}

function entriesOf(fields: MessageIdFields): MessageIdEntry[] {
  return fields.recentMessageIds.map((id, i) => ({ id, timestampMs: fields.recentMessageIdsTimestampMs[i], receivedMs: fields.recentMessageIdsReceivedMs[i] }));
}

function indexOf(ids: string[]): Set<string> {
  let index = indexes.get(ids);
  if (index === undefined) {
    index = new Set(ids);
    indexes.set(ids, index);
  }
  return index;
}
