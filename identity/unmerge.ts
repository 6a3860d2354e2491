/**
 * The rules of an operator's unmerge that need no store: which identifiers and profiles go
 * back to the restored profile, and which profiles stay apart afterwards. The identity graph
 * reads the records these functions take and writes what they return.
 */
import type { Identifier } from '../profiles/identifiers.js';
import type { ProfileRecord } from './identity-records.js';

/** An identifier of the survivor and the link its identifier record holds. */
export interface IdentifierLink {
  identifier: Identifier;
  /** The profile the identifier's record names. For an identifier without a record, the profile it would have started. */
  profileId: string;
  via?: Identifier;
}

export interface UnmergeSplitInput {
  survivor: ProfileRecord;
  /** Index in `survivor.merges` of the merge undone. */
  mergeIndex: number;
  /** One link per identifier of the survivor, in the survivor's order. */
  links: IdentifierLink[];
  /** Per profile: every profile merged into it, directly or through others. Needed for the merged profile and each later merge of the survivor. */
  subtrees: Map<string, string[]>;
}

export interface UnmergeSplit {
  /** The merged profile first, then the survivor's later merges that move with it, in the order they joined. */
  profiles: string[];
  restoredIdentifiers: Identifier[];
  survivorIdentifiers: Identifier[];
}

/**
 * Splits a survivor's identifiers for an unmerge. The restored side starts with every
 * identifier whose record names the merged profile or a profile merged into it. It then
 * takes every identifier linked to the survivor (or to a profile that moves) through a `via`
 * identifier of the restored side. A later merge of the survivor whose event found the
 * survivor only through restored identifiers (`into`, non-empty) moves too, with its
 * identifiers. Both steps repeat until nothing changes, so the split depends only on the
 * records.
 */
export function splitForUnmerge(input: UnmergeSplitInput): UnmergeSplit {
  const { survivor, mergeIndex, links, subtrees } = input;
  const mergedId = survivor.merges[mergeIndex].profileId;
  const profiles = [mergedId];
  const owners = new Set([mergedId, ...(subtrees.get(mergedId) ?? [])]);
  const restored = new Set<string>();

  const claim = (): void => {
    for (const link of links) if (owners.has(link.profileId)) restored.add(identifierKey(link.identifier));

    const viaOwners = new Set([survivor.profileId, ...profiles]);
    let changed = true;
    while (changed) {
      changed = false;
      for (const link of links) {
        const key = identifierKey(link.identifier);
        if (restored.has(key) || link.via === undefined || !viaOwners.has(link.profileId) || !restored.has(identifierKey(link.via))) continue;
        restored.add(key);
        changed = true;
      }
    }
  };
  claim();

  const later = survivor.merges.slice(mergeIndex + 1);
  let joined = true;
  while (joined) {
    joined = false;
    for (const entry of later) {
      if (profiles.includes(entry.profileId)) continue;
      if (entry.into.length === 0 || !entry.into.every((identifier) => restored.has(identifierKey(identifier)))) continue;

      profiles.push(entry.profileId);
      for (const profileId of [entry.profileId, ...(subtrees.get(entry.profileId) ?? [])]) owners.add(profileId);
      claim();
      joined = true;
    }
  }

  return {
    profiles,
    restoredIdentifiers: survivor.identifiers.filter((identifier) => restored.has(identifierKey(identifier))),
    survivorIdentifiers: survivor.identifiers.filter((identifier) => !restored.has(identifierKey(identifier))),
  };
}

/**
 * Returns whether an operator unmerged the two profiles: either record's `separatedFrom`
 * names the other or a profile merged directly into the other.
 */
export function separated(a: ProfileRecord, b: ProfileRecord): boolean {
  const membersA = membersOf(a);
  const membersB = membersOf(b);
  return (a.separatedFrom ?? []).some((profileId) => membersB.includes(profileId)) || (b.separatedFrom ?? []).some((profileId) => membersA.includes(profileId));
}

/**
 * Returns the `separatedFrom` of the survivor of a merge between `records`: the union of
 * their lists, without the profiles the merge joins, because an approved merge ends their
 * separation.
 */
export function separationAfterMerge(records: ProfileRecord[]): string[] {
  const members = records.flatMap(membersOf);
  const union = [...new Set(records.flatMap((record) => record.separatedFrom ?? []))];
  return union.filter((profileId) => !members.includes(profileId));
}

/** Returns `record`'s `separatedFrom` without `other` and the profiles merged directly into it. */
export function separationWithout(record: ProfileRecord, other: ProfileRecord): string[] {
  const members = membersOf(other);
  return (record.separatedFrom ?? []).filter((profileId) => !members.includes(profileId));
}

/** Returns a copy of `record` with `separatedFrom` set, or left out when empty. */
export function withSeparatedFrom(record: ProfileRecord, separatedFrom: string[]): ProfileRecord {
  const copy: ProfileRecord = { ...record, separatedFrom };
  if (separatedFrom.length === 0) delete copy.separatedFrom;
  return copy;
}

/**
 * Returns the profile and those merged directly into it: a separation names one of them, and
 * merges carry it to their survivors.
 * NOTE: a separation that names a profile merged two or more levels deep into the other side
 * is not seen, so an event can merge such profiles again without approval.
 */
function membersOf(record: ProfileRecord): string[] {
  return [record.profileId, ...record.merges.map((merge) => merge.profileId)];
}

function identifierKey(identifier: Identifier): string {
  return `${identifier.type}\u0000${identifier.value}`;
}
