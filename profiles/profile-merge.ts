/**
 * Merging the state of a profile that identity resolution proved to be the same person
 * into the surviving profile. Synchronous and deterministic, like applying an event:
 * traits by last writer wins on event time, counters added, recent events and messageIds
 * joined, decisions and journeys of both kept. Computed traits, scores and segments are
 * the evaluator's part (ProfileEvaluator.afterMerge).
 */
import { decode } from '../storage/codec.js';
import type { CustomerEvent } from './event.js';
import type { EventStats, ProfileLimits, ProfileSnapshot, ProfileState } from './profile.js';
import { mergeMessageIds } from './message-ids.js';

/** Merges `from` into `into`. `from` is left unchanged. */
export function mergeProfileState(into: ProfileState, from: ProfileSnapshot, limits: ProfileLimits): void {
  mergeIdentifiers(into, from, limits);
  mergeTraits(into, from);
  mergeCounts(into, from, limits);
  mergeRecent(into, from, limits);
  mergeDecisions(into, from);
  mergeJourneys(into, from);
}

function mergeIdentifiers(into: ProfileState, from: ProfileSnapshot, limits: ProfileLimits): void {
  for (const identifier of from.identifiers) {
    if (into.identifiers.length >= limits.identifiers) return;
    if (into.identifiers.some((known) => known.type === identifier.type && known.value === identifier.value)) continue;
    into.identifiers.push({ ...identifier });
  }
}

/** Last writer wins by event time; on equal times the survivor's value stays. */
function mergeTraits(into: ProfileState, from: ProfileSnapshot): void {
  for (const name of Object.keys(from.traits)) {
    const setAtMs = into.traitTimesMs[name];
    const otherAtMs = from.traitTimesMs[name] ?? Number.NEGATIVE_INFINITY;
    if (setAtMs !== undefined && setAtMs >= otherAtMs) continue;
    into.traits[name] = structuredClone(from.traits[name]);
    into.traitTimesMs[name] = otherAtMs;
  }
}

function mergeCounts(into: ProfileState, from: ProfileSnapshot, limits: ProfileLimits): void {
  if (from.eventCount === 0) return;
  if (into.eventCount === 0) {
    into.firstSeenMs = from.firstSeenMs;
    into.lastSeenMs = from.lastSeenMs;
  } else {
    into.firstSeenMs = Math.min(into.firstSeenMs, from.firstSeenMs);
    into.lastSeenMs = Math.max(into.lastSeenMs, from.lastSeenMs);
  }
  into.eventCount += from.eventCount;

  for (const [name, stats] of Object.entries(from.events)) {
    let key = name;
    if (into.events[key] === undefined && Object.keys(into.events).length >= limits.eventNames) key = '(other)';
    const target = into.events[key];
    if (target === undefined) {
      into.events[key] = { ...stats, sums: { ...stats.sums } };
      continue;
    }
    mergeStats(target, stats, limits);
  }
}

function mergeStats(into: EventStats, from: EventStats, limits: ProfileLimits): void {
  into.count += from.count;
  into.firstSeenMs = Math.min(into.firstSeenMs, from.firstSeenMs);
  into.lastSeenMs = Math.max(into.lastSeenMs, from.lastSeenMs);
  for (const [name, sum] of Object.entries(from.sums)) {
    if (into.sums[name] === undefined && Object.keys(into.sums).length >= limits.summedPropertiesPerEvent) continue;
    into.sums[name] = (into.sums[name] ?? 0) + sum;
  }
}

/**
 * Joins the recent events of both, newest event time first, and their messageIds, so an
 * event of the merged profile that reaches the survivor again is still recognised.
 */
function mergeRecent(into: ProfileState, from: ProfileSnapshot, limits: ProfileLimits): void {
  const timeOf = (payload: Buffer) => decode<CustomerEvent>(payload).timestampMs;
  const joined = [...into.recent.map((payload) => ({ payload, timeMs: timeOf(payload) })), ...from.recent.map((payload) => ({ payload: Buffer.from(payload), timeMs: timeOf(payload) }))];
  joined.sort((a, b) => b.timeMs - a.timeMs);
  into.recent = joined.slice(0, limits.recentEvents).map((entry) => entry.payload);

  mergeMessageIds(into, from, limits);
}

/** Keeps the decisions of both within their windows, so caps count every contact with the person. */
function mergeDecisions(into: ProfileState, from: ProfileSnapshot): void {
  into.decisions = [...into.decisions, ...structuredClone(from.decisions)].sort((a, b) => a.atMs - b.atMs);
  into.receipts = [...into.receipts, ...structuredClone(from.receipts)].sort((a, b) => a.atMs - b.atMs);
}

/** Keeps the survivor's journey positions, and takes the merged profile's in journeys the survivor is not in. */
function mergeJourneys(into: ProfileState, from: ProfileSnapshot): void {
  for (const [name, position] of Object.entries(from.journeys)) {
    if (into.journeys[name] === undefined) into.journeys[name] = { ...position };
  }
  for (const [name, atMs] of Object.entries(from.finishedJourneys)) {
    into.finishedJourneys[name] = Math.max(into.finishedJourneys[name] ?? atMs, atMs);
  }
}
