/**
 * A customer profile and how one event changes it. Everything here is synchronous and
 * deterministic, so replaying the same events from the same snapshot gives the same state.
 */
import type { CustomerEvent, JsonObject, JsonValue } from './event.js';
import type { ProfileActivation } from './activation.js';
import type { DecisionReceipt, DecisionRecord } from './decision-state.js';
import type { MergeCause, OutgoingRecord } from './identity-commands.js';
import { forEachIdentifier, type Identifier } from './identifiers.js';
import { hasMessageId, rememberMessageId } from './message-ids.js';
import { decode } from '../storage/codec.js';

/**
 * Version 2 added `computed`, `segments` and `nextEvaluationMs`, version 3 `decisions` and
 * `receipts`, version 4 `scores` and `modelStates`, version 5 `journeys` and
 * `finishedJourneys`, version 6 `merges` and `mergedInto`, version 7 `splits` and
 * `linkMarks`, version 8 `recentMessageIdsTimestampMs` and `recentMessageIdsReceivedMs`. An
 * older snapshot loads with the missing fields empty.
 */
export const PROFILE_SNAPSHOT_VERSION = 8;

export interface EventStats {
  count: number;
  /** Sum of each numeric top-level property seen on this event name. */
  sums: Record<string, number>;
  firstSeenMs: number;
  lastSeenMs: number;
}

export interface LogPosition {
  shard: number;
  sequence: number;
}

/** What is persisted in a snapshot. */
export interface ProfileSnapshot {
  version: number;
  workspace: string;
  profileId: string;
  identifiers: Identifier[];
  traits: Record<string, JsonValue>;
  /** Event time (ms) of the event that set each trait, for last-writer-wins. */
  traitTimesMs: Record<string, number>;
  /** Per event name: track events by `event`, page and screen by "page:NAME" / "screen:NAME", others by type. */
  events: Record<string, EventStats>;
  eventCount: number;
  /** Earliest and latest event time applied; meaningless while `eventCount` is 0. */
  firstSeenMs: number;
  lastSeenMs: number;
  /**
   * The most recent events by log order, newest first, as the msgpack payloads the log
   * stored: a snapshot copies them as bytes instead of encoding each event again.
   */
  recent: Buffer[];
  lastApplied: LogPosition;
  /** messageIds of recent events, oldest event time first, which the profile does not apply again (see message-ids.ts). */
  recentMessageIds: string[];
  /** The event time of each event of `recentMessageIds`, ms since the epoch. */
  recentMessageIdsTimestampMs: number[];
  /** When the node received each event of `recentMessageIds`, ms since the epoch. */
  recentMessageIdsReceivedMs: number[];
  /**
   * The state of each computed trait, by name, with the hash of the definition's spec it
   * was built under. The decisions code owns what `state` holds.
   */
  computed: Record<string, ComputedTraitEntry>;
  /** The segments the profile is in, by name. */
  segments: Record<string, SegmentMembership>;
  /** When the profile must be evaluated again without a new event (ms since the epoch); 0 for never. */
  nextEvaluationMs: number;
  /** Decisions within the longest cap, cooldown or contact policy window, oldest first. */
  decisions: DecisionRecord[];
  /** Receipts of the most recent decisions, oldest first. */
  receipts: DecisionReceipt[];
  /** The latest value of each scoring model, by name. */
  scores: Record<string, number>;
  /** The state a scoring model keeps between events (a BG/NBD model's RFM summary), by model name. */
  modelStates: Record<string, ComputedTraitEntry>;
  /** The journeys the profile is in, by name. */
  journeys: Record<string, JourneyPosition>;
  /** When the profile last finished or left each journey, for journeys without re-entry. */
  finishedJourneys: Record<string, number>;
  /** Profiles whose state was merged into this one, in the order it absorbed them. */
  merges: AbsorbedProfile[];
  /** Set once the profile was merged into another: the survivor, which receives its events from then on. */
  mergedInto?: string;
  /** Profiles an operator split from this one; events of their identifiers that still arrive here are forwarded to them. */
  splits: ProfileSplit[];
  /** Merges whose link command this profile applied and whose absorb has not arrived yet. */
  linkMarks: LinkMark[];
}

/** The start of a merge into this profile in its partition. */
export interface LinkMark {
  /** The profile being merged in. */
  from: string;
  /** The merge cause's messageId. */
  messageId: string;
  position: LogPosition;
}

/** A profile merged into this one, and the event and rule that proved them the same person. */
export interface AbsorbedProfile extends MergeCause {
  profileId: string;
  /** When this profile absorbed the other's state, ms since the epoch. */
  absorbedAtMs: number;
  /**
   * The position in this profile's partition where the merge began (its link command, or the
   * absorb when none came first), which an unmerge replays from. Absent on merges older than unmerge.
   */
  position?: LogPosition;
  /** For a profile merged into another that was merged into this one in turn: that other profile. */
  via?: string;
}

/** A profile split from this one by an unmerge. */
export interface ProfileSplit {
  /** The unmerge's id. */
  id: string;
  profileId: string;
  /** The identifiers that went with it, and those that stayed, as the identity graph split them. */
  identifiers: Identifier[];
  keptIdentifiers: Identifier[];
  atMs: number;
}

export interface JourneyPosition {
  /** Content hash and version of the journey's definition the profile follows. */
  hash: string;
  version: number;
  /** The step the profile is at. */
  step: string;
  /** While at a wait step: when the wait ends (ms since the epoch); 0 otherwise. */
  waitUntilMs: number;
  enteredAtMs: number;
}

export interface ComputedTraitEntry {
  hash: string;
  state: unknown;
}

export interface SegmentMembership {
  /** Evaluation time at which the profile entered, ms since the epoch. */
  enteredAtMs: number;
  /** Version of the segment's definition that admitted the profile. */
  version: number;
}

/** A profile as a query returns it: its snapshot and the value of each computed trait at the query's time. */
export interface ProfileView extends ProfileSnapshot {
  computedValues: Record<string, JsonValue>;
}

/** An applied event that is not yet in the stored history. */
export interface UnpersistedEvent {
  sequence: number;
  payload: Buffer;
}

export interface ProfileState extends ProfileSnapshot {
  /** Applied events not yet in the profile's stored history; written with the next snapshot. */
  unpersisted: UnpersistedEvent[];
  /** Activation messages produced since the last snapshot; written to the activation log with it. */
  activations: ProfileActivation[];
  /** The `nextEvaluationMs` under which the stored timer index lists the profile; 0 for none. */
  indexedEvaluationMs: number;
  /** Cluster mode: KV revision of the shared snapshot this state was loaded from or last written to. */
  snapshotRevision?: number;
  /** Records for other profiles' partitions (identity commands, forwarded events), sent with the next snapshot. */
  outbox: OutgoingRecord[];
}

export interface ProfileLimits {
  /** Events kept in `recent`. */
  recentEvents: number;
  /** messageIds kept in `recentMessageIds`, at most: those of the events with the latest event times. */
  recentMessageIds: number;
  /** How long after its event was received a messageId may be dropped, in ms. With 0, ids are kept whatever their age. */
  messageIdRetentionMs: number;
  /** Distinct numeric properties summed per event name; later ones are not summed. */
  summedPropertiesPerEvent: number;
  /** Distinct event names counted; events with further names count under "(other)". */
  eventNames: number;
  /** Identifiers kept per profile. */
  identifiers: number;
}

export const DEFAULT_PROFILE_LIMITS: ProfileLimits = {
  recentEvents: 10,
  recentMessageIds: 32,
  messageIdRetentionMs: 0,
  summedPropertiesPerEvent: 32,
  eventNames: 500,
  identifiers: 100,
};

export function createProfile(workspace: string, profileId: string): ProfileState {
  return {
    version: PROFILE_SNAPSHOT_VERSION,
    workspace,
    profileId,
    identifiers: [],
    traits: Object.create(null),
    traitTimesMs: Object.create(null),
    events: Object.create(null),
    eventCount: 0,
    firstSeenMs: 0,
    lastSeenMs: 0,
    recent: [],
    lastApplied: { shard: 0, sequence: 0 },
    recentMessageIds: [],
    recentMessageIdsTimestampMs: [],
    recentMessageIdsReceivedMs: [],
    computed: Object.create(null),
    segments: Object.create(null),
    nextEvaluationMs: 0,
    decisions: [],
    receipts: [],
    scores: Object.create(null),
    modelStates: Object.create(null),
    journeys: Object.create(null),
    finishedJourneys: Object.create(null),
    merges: [],
    splits: [],
    linkMarks: [],
    unpersisted: [],
    activations: [],
    indexedEvaluationMs: 0,
    outbox: [],
  };
}

export interface AppliedEvent {
  event: CustomerEvent;
  position: LogPosition;
  /** The event as stored in the log, kept for the profile's history. */
  payload: Buffer;
}

/**
 * Applies one event. An event at or before `lastApplied`, or with a messageId the profile
 * has just seen, is skipped, so replaying the log after a restart changes nothing.
 * Returns whether the event changed the profile.
 */
export function applyEvent(profile: ProfileState, applied: AppliedEvent, limits: ProfileLimits): boolean {
  const { event, position } = applied;
  if (position.sequence <= profile.lastApplied.sequence && position.shard === profile.lastApplied.shard) return false;
  if (hasMessageId(profile, event.messageId)) {
    profile.lastApplied = position;
    return false;
  }

  applyIdentifiers(profile, event, limits);
  applyTraits(profile, event.context?.traits, event.timestampMs);
  if (event.type === 'identify' || event.type === 'group') applyTraits(profile, event.traits, event.timestampMs);
  applyCounts(profile, event, limits);
  remember(profile, applied, limits);
  return true;
}

/** Adds the event's identifiers: those identity resolution recorded on it, else its raw fields. */
function applyIdentifiers(profile: ProfileState, event: CustomerEvent, limits: ProfileLimits): void {
  const add = (type: string, value: string) => {
    if (profile.identifiers.length >= limits.identifiers || hasIdentifier(profile, type, value)) return;
    profile.identifiers.push({ type, value });
  };
  if (event.identifiers === undefined) forEachIdentifier(event, add);
  else for (const { type, value } of event.identifiers) add(type, value);
}

function hasIdentifier(profile: ProfileState, type: string, value: string): boolean {
  for (const known of profile.identifiers) if (known.value === value && known.type === type) return true;
  return false;
}

/** Last writer wins by event time: a late event never overwrites a newer value. */
function applyTraits(profile: ProfileState, traits: JsonObject | undefined, timestampMs: number): void {
  if (traits === undefined) return;
  for (const name of Object.keys(traits)) {
    const setAtMs = profile.traitTimesMs[name];
    if (setAtMs !== undefined && setAtMs > timestampMs) continue;
    profile.traits[name] = traits[name];
    profile.traitTimesMs[name] = timestampMs;
  }
}

function applyCounts(profile: ProfileState, event: CustomerEvent, limits: ProfileLimits): void {
  // Event times may be 0 or negative (1970 and before), so the first event sets both bounds.
  profile.eventCount += 1;
  const first = profile.eventCount === 1;
  if (first || event.timestampMs < profile.firstSeenMs) profile.firstSeenMs = event.timestampMs;
  if (first || event.timestampMs > profile.lastSeenMs) profile.lastSeenMs = event.timestampMs;

  const stats = statsFor(profile, eventName(event), event.timestampMs, limits);
  stats.count += 1;
  if (event.timestampMs < stats.firstSeenMs) stats.firstSeenMs = event.timestampMs;
  if (event.timestampMs > stats.lastSeenMs) stats.lastSeenMs = event.timestampMs;

  const properties = event.properties;
  if (properties === undefined) return;
  for (const name of Object.keys(properties)) {
    const value = properties[name];
    if (typeof value !== 'number') continue;
    if (stats.sums[name] === undefined && Object.keys(stats.sums).length >= limits.summedPropertiesPerEvent) continue;
    stats.sums[name] = (stats.sums[name] ?? 0) + value;
  }
}

function statsFor(profile: ProfileState, name: string, timestampMs: number, limits: ProfileLimits): EventStats {
  let key = name;
  if (profile.events[key] === undefined && Object.keys(profile.events).length >= limits.eventNames) key = '(other)';
  profile.events[key] ??= { count: 0, sums: Object.create(null), firstSeenMs: timestampMs, lastSeenMs: timestampMs };
  return profile.events[key];
}

/** Returns the name an event is counted under. */
export function eventName(event: CustomerEvent): string {
  if (event.type === 'track') return event.event ?? 'track';
  if ((event.type === 'page' || event.type === 'screen') && event.name !== undefined) return `${event.type}:${event.name}`;
  return event.type;
}

function remember(profile: ProfileState, applied: AppliedEvent, limits: ProfileLimits): void {
  profile.lastApplied = applied.position;

  profile.recent.unshift(ownCopy(applied.payload));
  if (profile.recent.length > limits.recentEvents) profile.recent.length = limits.recentEvents;

  rememberMessageId(profile, { id: applied.event.messageId, timestampMs: applied.event.timestampMs, receivedMs: receivedMs(applied.event) }, limits);

  profile.unpersisted.push({ sequence: applied.position.sequence, payload: applied.payload });
}

/** Returns the event's receive time in ms, or its event time when it has no valid receive time. */
export function receivedMs(event: CustomerEvent): number {
  const ms = Date.parse(event.receivedAt);
  return Number.isFinite(ms) ? ms : event.timestampMs;
}

/**
 * Copies a payload into memory of its own. Encoded payloads are views into an encoder's
 * shared 8 KiB buffer, and keeping one alive in a profile would keep that whole buffer alive.
 */
function ownCopy(payload: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(payload.length);
  payload.copy(copy);
  return copy;
}

/** Returns the persisted part of a profile. */
export function toSnapshot(profile: ProfileState): ProfileSnapshot {
  const {
    unpersisted: _unpersisted,
    activations: _activations,
    indexedEvaluationMs: _indexedEvaluationMs,
    snapshotRevision: _snapshotRevision,
    outbox: _outbox,
    ...snapshot
  } = profile;
  return snapshot;
}

export function fromSnapshot(stored: ProfileSnapshot): ProfileState {
  const snapshot = upgradeSnapshot(stored);
  return { ...snapshot, unpersisted: [], activations: [], indexedEvaluationMs: snapshot.nextEvaluationMs, outbox: [] };
}

/** Brings a snapshot of an earlier version to the current layout. */
function upgradeSnapshot(snapshot: ProfileSnapshot): ProfileSnapshot {
  if (snapshot.version === PROFILE_SNAPSHOT_VERSION) return snapshot;
  if (snapshot.version >= 1 && snapshot.version < PROFILE_SNAPSHOT_VERSION) {
    const older = snapshot as Partial<ProfileSnapshot>;
    return {
      ...snapshot,
      version: PROFILE_SNAPSHOT_VERSION,
      computed: older.computed ?? Object.create(null),
      segments: older.segments ?? Object.create(null),
      nextEvaluationMs: older.nextEvaluationMs ?? 0,
      decisions: older.decisions ?? [],
      receipts: older.receipts ?? [],
      scores: older.scores ?? Object.create(null),
      modelStates: older.modelStates ?? Object.create(null),
      journeys: older.journeys ?? Object.create(null),
      finishedJourneys: older.finishedJourneys ?? Object.create(null),
      merges: older.merges ?? [],
      splits: older.splits ?? [],
      linkMarks: older.linkMarks ?? [],
      recentMessageIdsTimestampMs: older.recentMessageIdsTimestampMs ?? snapshot.recentMessageIds.map(() => snapshot.firstSeenMs),
      recentMessageIdsReceivedMs: older.recentMessageIdsReceivedMs ?? assumedReceiveTimes(snapshot),
    };
  }
  throw new RangeError(`profile snapshot version ${snapshot.version} is not supported; expected 1 to ${PROFILE_SNAPSHOT_VERSION}`);
}

/**
 * Gives the messageIds of a snapshot older than version 8 the latest receive time of its
 * stored recent events. The ids' events were received at or before the newest of them, so
 * they are kept at least as long as their real times would keep them. Their event times are
 * taken as the profile's first, so newer ids push them out first.
 */
function assumedReceiveTimes(snapshot: ProfileSnapshot): number[] {
  const receiveTimes = snapshot.recent.map((payload) => receivedMs(decode<CustomerEvent>(payload)));
  const receivedAtMs = receiveTimes.length === 0 ? snapshot.lastSeenMs : Math.max(...receiveTimes);
  return snapshot.recentMessageIds.map(() => receivedAtMs);
}
