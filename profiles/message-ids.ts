/**
 * The messageIds a profile remembers, so that an event delivered to it twice is applied
 * once. The embedded event log already rejects a messageId it stored within its dedup
 * window, so there the profile keeps a few ids as a second guard. JetStream stops
 * recognising a messageId once its duplicate window (minutes) has passed, so in cluster mode
 * the profile's ids keep a later resend from being counted twice, and it keeps more of them.
 *
 * Ids are kept oldest first, each with the time the node received its event. The newest
 * `recentMessageIds` are kept, less those received more than `messageIdRetentionMs` before
 * the newest one. Both arrays are in the snapshot, so the ids move with the profile when its
 * shard moves to another node.
 */
import type { ProfileLimits, ProfileSnapshot } from './profile.js';

/** Above this many ids, lookups go through a Set instead of a scan of the array. */
const SCAN_LIMIT = 32;

/** Set indexes of long id arrays, built on the first lookup and dropped with the array. */
const indexes = new WeakMap<string[], Set<string>>();

type MessageIdFields = Pick<ProfileSnapshot, 'recentMessageIds' | 'recentMessageIdsReceivedMs'>;

/** Returns whether the profile remembers `messageId`. */
export function hasMessageId(profile: MessageIdFields, messageId: string): boolean {
  const ids = profile.recentMessageIds;
  if (ids.length <= SCAN_LIMIT) return ids.includes(messageId);
  return indexOf(ids).has(messageId);
}

/** Records an applied event's messageId and drops the ids that fall outside the limits. */
export function rememberMessageId(profile: MessageIdFields, messageId: string, receivedMs: number, limits: ProfileLimits): void {
  const ids = profile.recentMessageIds;
  const times = profile.recentMessageIdsReceivedMs;
  ids.push(messageId);
  times.push(receivedMs);
  indexes.get(ids)?.add(messageId);

  const cutoffMs = limits.messageIdRetentionMs > 0 ? receivedMs - limits.messageIdRetentionMs : -Infinity;
  let drop = Math.max(0, ids.length - limits.recentMessageIds);
  while (drop < ids.length - 1 && times[drop] < cutoffMs) drop += 1;
  if (drop === 0) return;

  const index = indexes.get(ids);
  if (index !== undefined) for (let i = 0; i < drop; i++) index.delete(ids[i]);
  ids.splice(0, drop);
  times.splice(0, drop);
}

/**
 * Joins the ids of a merged profile into the survivor's, ordered by receive time, so an
 * event of the merged profile that reaches the survivor again is still recognised.
 */
export function mergeMessageIds(into: MessageIdFields, from: MessageIdFields, limits: ProfileLimits): void {
  const entries = new Map<string, number>();
  const add = (fields: MessageIdFields) => fields.recentMessageIds.forEach((id, i) => entries.set(id, Math.max(entries.get(id) ?? -Infinity, fields.recentMessageIdsReceivedMs[i])));
  add(into);
  add(from);

  const joined = [...entries].sort((a, b) => a[1] - b[1]);
  const newestMs = joined.length > 0 ? joined[joined.length - 1][1] : 0;
  const cutoffMs = limits.messageIdRetentionMs > 0 ? newestMs - limits.messageIdRetentionMs : -Infinity;
  const kept = joined.slice(Math.max(0, joined.length - limits.recentMessageIds)).filter(([, receivedMs]) => receivedMs >= cutoffMs);

  into.recentMessageIds = kept.map(([id]) => id);
  into.recentMessageIdsReceivedMs = kept.map(([, receivedMs]) => receivedMs);
}

function indexOf(ids: string[]): Set<string> {
  let index = indexes.get(ids);
  if (index === undefined) {
    index = new Set(ids);
    indexes.set(ids, index);
  }
  return index;
}
