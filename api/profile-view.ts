import type { CustomerEvent } from '../profiles/event.js';
import type { ProfileView } from '../profiles/profile.js';
import { decode } from '../storage/codec.js';
import type { Profile } from '../proto/gen/rtcdp/v1/profile.js';
import { eventToProto } from './convert.js';

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Converts a profile, as a query returns it, to the Profile message. */
export function profileToProto(snapshot: ProfileView): Profile {
  const events: Profile['events'] = {};
  for (const [name, stats] of Object.entries(snapshot.events)) {
    events[name] = { count: stats.count, sums: { ...stats.sums }, firstSeen: iso(stats.firstSeenMs), lastSeen: iso(stats.lastSeenMs) };
  }

  return {
    profileId: snapshot.profileId,
    identifiers: snapshot.identifiers.map((identifier) => ({ ...identifier })),
    traits: { ...snapshot.traits },
    events,
    eventCount: snapshot.eventCount,
    // A profile whose every event was skipped as already applied has no event times.
    firstSeen: snapshot.eventCount === 0 ? '' : iso(snapshot.firstSeenMs),
    lastSeen: snapshot.eventCount === 0 ? '' : iso(snapshot.lastSeenMs),
    recentEvents: snapshot.recent.map((payload) => eventToProto(decode<CustomerEvent>(payload))),
    lastApplied: { shard: snapshot.lastApplied.shard, sequence: snapshot.lastApplied.sequence },
    computedTraits: { ...snapshot.computedValues },
    scores: { ...snapshot.scores },
    journeys: Object.fromEntries(
      Object.entries(snapshot.journeys).map(([name, position]) => [
        name,
        { step: position.step, definitionVersion: position.version, enteredAt: iso(position.enteredAtMs), waitUntil: position.waitUntilMs === 0 ? '' : iso(position.waitUntilMs) },
      ]),
    ),
    segments: Object.fromEntries(
      Object.entries(snapshot.segments).map(([name, membership]) => [name, { enteredAt: iso(membership.enteredAtMs), definitionVersion: membership.version }]),
    ),
    merges: snapshot.merges.map((merge) => ({ profileId: merge.profileId, messageId: merge.messageId, rule: merge.rule, mergedAt: iso(merge.atMs), mergedVia: merge.via ?? '' })),
  };
}
