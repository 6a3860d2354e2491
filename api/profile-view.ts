import type { CustomerEvent } from '../profiles/event.js';
import type { ProfileSnapshot } from '../profiles/profile.js';
import { decode } from '../storage/codec.js';
import type { Profile } from '../proto/gen/rtcdp/v1/profile.js';
import { eventToProto } from './convert.js';

function isoOrEmpty(ms: number): string {
  return ms === 0 ? '' : new Date(ms).toISOString();
}

/** Converts a profile snapshot to the Profile message. */
export function profileToProto(snapshot: ProfileSnapshot): Profile {
  const events: Profile['events'] = {};
  for (const [name, stats] of Object.entries(snapshot.events)) {
    events[name] = { count: stats.count, sums: { ...stats.sums }, firstSeen: isoOrEmpty(stats.firstSeenMs), lastSeen: isoOrEmpty(stats.lastSeenMs) };
  }

  return {
    profileId: snapshot.profileId,
    identifiers: snapshot.identifiers.map((identifier) => ({ ...identifier })),
    traits: { ...snapshot.traits },
    events,
    eventCount: snapshot.eventCount,
    firstSeen: isoOrEmpty(snapshot.firstSeenMs),
    lastSeen: isoOrEmpty(snapshot.lastSeenMs),
    recentEvents: snapshot.recent.map((payload) => eventToProto(decode<CustomerEvent>(payload))),
    lastApplied: { shard: snapshot.lastApplied.shard, sequence: snapshot.lastApplied.sequence },
  };
}
