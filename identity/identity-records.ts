/**
 * The records of the identity graph and their keys. Keys are valid NATS KV keys, so the
 * same records live in a JetStream KV bucket (cluster mode) and in RocksDB (embedded):
 * identifier values and profile ids are hashed, and each record carries them in full.
 */
import { createHash } from 'node:crypto';
import type { Identifier } from '../profiles/identifiers.js';
import { decode, encode } from '../storage/codec.js';

export const IDENTITY_RECORD_VERSION = 1;

/** The rule that made two profiles one. */
export type MergeRule =
  /** An event carried identifiers of both profiles. */
  | 'shared-identifier'
  /** An operator approved a quarantined link. */
  | 'approved-link'
  /** The fuzzy matcher scored the two profiles' person traits above its auto-merge threshold. */
  | 'fuzzy-match';

/** The event and rule behind a link or a merge. */
export interface LinkCause {
  /** messageId of the event that made the link; for an approved link, the quarantine id, `@` and the approval time (ms). */
  messageId: string;
  rule: MergeRule;
  /** Wall-clock time of the link, ms since the epoch. */
  atMs: number;
}

/** An identifier's profile: the profile it was first linked to, and how. */
export interface IdentifierRecord extends LinkCause {
  version: number;
  identifier: Identifier;
  profileId: string;
  /** An identifier the profile already held that the event carried as well; absent when the event started the profile. */
  via?: Identifier;
}

/** A merge as the surviving profile records it. */
export interface MergeEntry extends LinkCause {
  /** The profile merged in. */
  profileId: string;
  /** The event's identifiers that belonged to the merged profile, and those that belonged to the survivor. */
  from: Identifier[];
  into: Identifier[];
}

/** An operator's unmerge as the survivor records it: enough to rebuild the unmerge plan after a crash. */
export interface UnmergeEntry {
  /** Unique id of the unmerge (22 URL-safe characters). */
  id: string;
  /** The profile restored. */
  profileId: string;
  /** `profileId` first, then the survivor's later merges that moved with it. */
  profiles: string[];
  /** messageId of the merge undone. */
  mergeMessageId: string;
  /** Wall-clock time of the unmerge, ms since the epoch. */
  atMs: number;
  /** Whether the unmerge command is in the event log. */
  announced: boolean;
  /** The merge undone, as the survivor recorded it. */
  merge: MergeEntry;
  /** The survivor's merge entries of the other profiles in `profiles`, which the restored profile took over. */
  movedMerges: MergeEntry[];
  restoredIdentifiers: Identifier[];
  survivorIdentifiers: Identifier[];
}

/**
 * A profile of the graph. The optional fields were added after version 1 without a version
 * change: a record without them reads as having none.
 */
export interface ProfileRecord {
  version: number;
  profileId: string;
  /** When the graph created the profile, ms since the epoch: the older profile wins a merge between equals. */
  createdAtMs: number;
  /** Every identifier linked to the profile, including those of profiles merged into it. */
  identifiers: Identifier[];
  /** Profiles merged into this one, oldest first. An unmerge removes the entries of the profiles it restores. */
  merges: MergeEntry[];
  /** Set when the profile was merged into another: that profile, and why. */
  mergedInto?: LinkCause & { profileId: string };
  /** Whether the merge command for `mergedInto` is in the event log. */
  mergeAnnounced?: boolean;
  /**
   * Profiles that an operator unmerged from this one, or this one from: they merge again only
   * through an approved link. A merge's survivor takes the union of the lists of both sides.
   */
  separatedFrom?: string[];
  /** The unmerges made on this profile as the survivor, oldest first. */
  unmerges?: UnmergeEntry[];
  /** When an unmerge last restored this profile from the one it was merged into, ms since the epoch. */
  restoredAtMs?: number;
}

export type QuarantineReason =
  /** The link would give a profile more values of a type than its maxPerProfile. */
  | 'PER_PROFILE_LIMIT'
  /** The link would merge two profiles holding different values of a merge-protected type. */
  | 'MERGE_PROTECTED'
  /** The fuzzy matcher scored the two profiles' person traits in its review band. */
  | 'FUZZY_MATCH'
  /** The link would merge two profiles that an operator unmerged. */
  | 'UNMERGED';

export type QuarantineStatus = 'pending' | 'approved' | 'rejected';

/** A link the graph did not make, kept for an operator to approve or reject. */
export interface QuarantineRecord {
  version: number;
  id: string;
  workspace: string;
  /** The event's identifier that the link concerns; absent for a fuzzy match, which concerns two profiles. */
  identifier?: Identifier;
  /** The profile the event was applied to. */
  profileId: string;
  /** The profile `identifier` belongs to, when the link would have merged two profiles. */
  otherProfileId?: string;
  reason: QuarantineReason;
  message: string;
  messageId: string;
  atMs: number;
  status: QuarantineStatus;
  decidedAtMs?: number;
  /** FUZZY_MATCH: the matcher's probability that the two profiles are one person. */
  probability?: number;
}

export const identityKeys = {
  identifier: (workspace: string, identifier: Identifier) => `i.${workspace}.${digest(`${identifier.type}\u0000${identifier.value}`)}`,
  profile: (workspace: string, profileId: string) => `p.${workspace}.${digest(profileId)}`,
  quarantine: (workspace: string, id: string) => `q.${workspace}.${id}`,
  quarantinePrefix: (workspace: string) => `q.${workspace}.`,
  /** Rewritten by every unmerge of the workspace, so other nodes know their cached records may be stale. */
  unmergeEpoch: (workspace: string) => `u.${workspace}`,
};

/**
 * Returns the stable id of a quarantined link: the same link between the same profiles
 * always gives the same id, whichever event carried it, so it is filed once and a decision
 * on it holds for later events too.
 */
export function quarantineId(scope: string, identifier: Identifier, otherProfileId: string | undefined): string {
  return digest(`${scope}\u0000${identifier.type}\u0000${identifier.value}\u0000${otherProfileId ?? ''}`).slice(0, 22);
}

/**
 * Returns the id of an unmerge: the survivor, the restored profile, the time of the merge
 * undone and the survivor's count of earlier unmerges tell apart every unmerge of a pair.
 */
export function unmergeId(survivorId: string, restoredId: string, mergeAtMs: number, earlierUnmerges: number): string {
  return digest(`unmerge\u0000${survivorId}\u0000${restoredId}\u0000${mergeAtMs}\u0000${earlierUnmerges}`).slice(0, 22);
}

/** Returns the URL-safe SHA-256 of `text`: 43 letters, digits, `-` and `_`. */
function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url');
}

export function encodeRecord(record: IdentifierRecord | ProfileRecord | QuarantineRecord): Uint8Array {
  return encode(record);
}

export function decodeRecord<T extends IdentifierRecord | ProfileRecord | QuarantineRecord>(value: Uint8Array): T {
  return decode<T>(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
}

export { sameIdentifier } from '../profiles/identifiers.js';

export function describeIdentifier(identifier: Identifier): string {
  return `${identifier.type} ${JSON.stringify(identifier.value)}`;
}
