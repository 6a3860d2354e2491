/**
 * One page of a person's event history: the stored history of a profile joined with the
 * histories of the profiles merged into it. Each history is a source, listed newest first
 * by its own log sequence. Sequences of different profiles come from different partitions
 * and cannot be compared, so a k-way merge interleaves the sources. Of the sources' next
 * events it takes the one received last, and on equal receive times the one of the lower
 * profile id. Each source keeps its own order even where receive times from different
 * nodes disagree with it. The merge depends only on the position in each source, so a
 * page resumes exactly where the previous one stopped.
 */
import type { CustomerEvent } from './event.js';
import { receivedMs, type AbsorbedProfile } from './profile.js';
import type { StoredEvent } from './profile-history.js';
import { decode } from '../storage/codec.js';

/** The position of a listing in each source: profile id to the sequence that its next events are below. */
export type HistoryCursors = Map<string, number>;

/** The events of one source that a page may list. */
export interface HistorySource {
  profileId: string;
  /** The sequence this page's events of the source are below; Infinity on the first page. */
  before: number;
  /** Newest first by sequence, all below `before`: at least pageSize + 1 of them when the source has that many. */
  events: readonly StoredEvent[];
}

export interface HistoryPage {
  /** Newest first, each with `profileId` set to the profile whose history contains it. */
  events: CustomerEvent[];
  /** The cursor of every source that has events left after the page; empty after the last page. */
  next: HistoryCursors;
}

/** A source during the merge: how many of its events the page listed, and its next one decoded. */
interface Head {
  source: HistorySource;
  listed: number;
  next: CustomerEvent | undefined;
  nextReceivedMs: number;
}

/** Returns the ids of the profiles merged into a profile, directly or through another, once each and in the order it absorbed them. */
export function mergedProfileIds(profileId: string, merges: readonly AbsorbedProfile[]): string[] {
  const ids = merges.map((merge) => merge.profileId).filter((id) => id !== profileId);
  return [...new Set(ids)];
}

/**
 * Returns the newest `limit` events of `events`, newest first, each sequence once. A source
 * read from two places (an actor's unpersisted events and the stored history, or the parts
 * that several nodes stored) lists an event persisted between the two reads in both.
 */
export function newestDistinct(events: readonly StoredEvent[], limit: number): StoredEvent[] {
  const bySequence = new Map<number, StoredEvent>();
  for (const event of events) {
    if (!bySequence.has(event.sequence)) bySequence.set(event.sequence, event);
  }
  return [...bySequence.values()].sort((a, b) => b.sequence - a.sequence).slice(0, limit);
}

/** Takes up to `pageSize` events from the sources by the k-way merge, and returns them with the cursors of the next page. */
export function mergeHistoryPage(sources: readonly HistorySource[], pageSize: number): HistoryPage {
  const heads = sources.map((source) => advance({ source, listed: 0, next: undefined, nextReceivedMs: 0 }));

  const events: CustomerEvent[] = [];
  while (events.length < pageSize) {
    const head = newestHead(heads);
    if (head === undefined) break;
    events.push(head.next as CustomerEvent);
    head.listed += 1;
    advance(head);
  }

  return { events, next: nextCursors(heads) };
}

/** Decodes the source's next event, or clears it when the page listed every event it was given. */
function advance(head: Head): Head {
  const stored = head.source.events[head.listed];
  if (stored === undefined) {
    head.next = undefined;
    return head;
  }

  const event = decode<CustomerEvent>(Buffer.from(stored.payload));
  event.profileId = head.source.profileId;
  head.next = event;
  head.nextReceivedMs = receivedMs(event);
  return head;
}

/** Returns the head whose next event was received last, the lower profile id on a tie, or undefined when every source is done. */
function newestHead(heads: readonly Head[]): Head | undefined {
  let newest: Head | undefined;
  for (const head of heads) {
    if (head.next === undefined) continue;
    if (newest === undefined || comesFirst(head, newest)) newest = head;
  }
  return newest;
}

function comesFirst(head: Head, other: Head): boolean {
  if (head.nextReceivedMs !== other.nextReceivedMs) return head.nextReceivedMs > other.nextReceivedMs;
  return head.source.profileId < other.source.profileId;
}

/**
 * Returns the cursor of each source with an event the page did not list. The cursor is the
 * sequence of the last event listed from it, the cursor it came with when the page listed
 * none, or one above its next event on a first page. A source that the page listed every
 * given event of is done, because it was given pageSize + 1 events whenever it had them.
 */
function nextCursors(heads: readonly Head[]): HistoryCursors {
  const next: HistoryCursors = new Map();
  for (const { source, listed } of heads) {
    if (listed >= source.events.length) continue;
    if (listed > 0) next.set(source.profileId, source.events[listed - 1].sequence);
    else if (Number.isFinite(source.before)) next.set(source.profileId, source.before);
    else next.set(source.profileId, source.events[0].sequence + 1);
  }
  return next;
}
