/**
 * The identity graph's cache of records it read or wrote, so resolving an event of a known
 * person reads nothing from the store. Both kinds of record can change on another node: a
 * profile record on every merge, and an identifier's record when an unmerge repoints it
 * from the survivor to the restored profile. So a cached copy is used only where a stale one
 * costs at most a retry or a forward. A retry follows a compare-and-set that fails, or a
 * survivor that does not list the identifier that led to it. A forward sends an event routed
 * to a profile merged or unmerged meanwhile on from that profile's actor.
 * Each map keeps at most `maxEntries`, dropping the oldest insertions first.
 */
import type { Identifier } from '../profiles/identifiers.js';
import type { ProfileRecord } from './identity-records.js';

export interface CachedProfile {
  record: ProfileRecord;
  revision: number;
}

export class RecordCache {
  readonly #maxEntries: number;
  readonly #identifiers = new Map<string, string>();
  readonly #profiles = new Map<string, CachedProfile>();

  constructor(maxEntries: number) {
    this.#maxEntries = maxEntries;
  }

  /** Returns the profile id an identifier's record names, when cached. */
  identifier(workspace: string, identifier: Identifier): string | undefined {
    return this.#identifiers.get(identifierKey(workspace, identifier));
  }

  setIdentifier(workspace: string, identifier: Identifier, profileId: string): void {
    bounded(this.#identifiers, identifierKey(workspace, identifier), profileId, this.#maxEntries);
  }

  forgetIdentifier(workspace: string, identifier: Identifier): void {
    this.#identifiers.delete(identifierKey(workspace, identifier));
  }

  profile(workspace: string, profileId: string): CachedProfile | undefined {
    return this.#profiles.get(profileKey(workspace, profileId));
  }

  setProfile(workspace: string, profileId: string, profile: CachedProfile): void {
    bounded(this.#profiles, profileKey(workspace, profileId), profile, this.#maxEntries);
  }

  /** Forgets every record, such as after an unmerge on another node repointed some. */
  clear(): void {
    this.#identifiers.clear();
    this.#profiles.clear();
  }

  forgetProfile(workspace: string, profileId: string): void {
    this.#profiles.delete(profileKey(workspace, profileId));
  }
}

/** Cache keys are the plain text, which is cheaper than the hashed keys of the store. */
function identifierKey(workspace: string, identifier: Identifier): string {
  return `${workspace}\u0000${identifier.type}\u0000${identifier.value}`;
}

function profileKey(workspace: string, profileId: string): string {
  return `${workspace}\u0000${profileId}`;
}

function bounded<V>(map: Map<string, V>, key: string, value: V, maxEntries: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > maxEntries) map.delete(map.keys().next().value!);
}
