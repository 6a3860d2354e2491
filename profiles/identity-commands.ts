/**
 * Log records that carry out a merge between profile actors. The identity graph decides a
 * merge before the event that proves it enters the log. The actors then move the state
 * through the log itself, so a merge survives crashes and handoffs like any event:
 *
 * 1. A `merge` command in the losing profile's partition. Its actor becomes a tombstone
 *    that points to the survivor, and sends its state there as an `absorb` command.
 * 2. The survivor's actor applies `absorb`: it merges the state into its own.
 * 3. Events that still reach the tombstone are forwarded to the survivor's partition.
 *
 * With the merge command, a `link` command goes to the survivor's partition, ahead of the
 * event that proved the merge. The survivor applies it by sending its state from just before
 * to its own partition, as a `checkpoint` command. An operator's unmerge uses both:
 *
 * 4. An `unmerge` command in the survivor's partition. Its actor rebuilds itself from the
 *    checkpoint and the records of its partition since the absorb, leaving out the events
 *    and profiles that belong to the restored side, and rebuilds the restored profile from
 *    the absorbed state and those events. It sends that state on as a `restore` command, and
 *    from then on forwards events of the restored side's identifiers there.
 * 5. The restored profile's actor, a tombstone until then, applies `restore` and lives again.
 *
 * Each of these records has a log messageId derived from the profiles and the original
 * messageId, so sending one again after a crash appends nothing new, and the actors also
 * ignore a command they have already applied.
 */
import type { CustomerEvent } from './event.js';
import type { Identifier } from './identifiers.js';
import type { LogPosition, ProfileSnapshot } from './profile.js';

/** The event and rule that made two profiles one, as the identity graph recorded them. */
export interface MergeCause {
  messageId: string;
  rule: string;
  atMs: number;
}

export interface MergeCommand {
  command: 'merge';
  /** The profile that is merged away: the actor that receives the command. */
  profileId: string;
  into: string;
  cause: MergeCause;
}

export interface AbsorbCommand {
  command: 'absorb';
  /** The survivor: the actor that receives the command. */
  profileId: string;
  /** The profile merged in, and its state when it became a tombstone. */
  from: string;
  snapshot: ProfileSnapshot;
  cause: MergeCause;
}

/**
 * The mark in the survivor's partition where a merge begins: the events after it may belong
 * to the merged profile. The survivor sends a checkpoint of its state when it applies it.
 */
export interface LinkCommand {
  command: 'link';
  /** The survivor: the actor that receives the command. */
  profileId: string;
  /** The profile merged into it. */
  from: string;
  cause: MergeCause;
}

/** The survivor's state just before a merge of `before` began, kept in its partition for an unmerge. */
export interface CheckpointCommand {
  command: 'checkpoint';
  /** The survivor: the actor that receives the command, which ignores it. */
  profileId: string;
  before: string;
  snapshot: ProfileSnapshot;
  cause: MergeCause;
}

/** An operator's split of `restored` from the survivor, as the identity graph planned it. */
export interface UnmergeCommand {
  command: 'unmerge';
  /** The survivor: the actor that receives the command. */
  profileId: string;
  restored: string;
  /** `restored` and the profiles that go back with it because they joined through its identifiers. */
  profiles: string[];
  restoredIdentifiers: Identifier[];
  survivorIdentifiers: Identifier[];
  /** Sequence of the survivor's partition where the merge began (its link command, or the absorb): the rebuild replays from there. */
  sinceSequence: number;
  /** messageId of the merge's cause, which its link, checkpoint and absorb commands carry. */
  mergeMessageId: string;
  /** messageId is the unmerge's id; rule is `operator-unmerge`. */
  cause: MergeCause;
}

/** The rebuilt state of a profile that an unmerge restores. */
export interface RestoreCommand {
  command: 'restore';
  /** The restored profile: the actor that receives the command. */
  profileId: string;
  /** The survivor it was split from. */
  from: string;
  /** The rebuilt state; absent when the survivor could not read its history, and the profile returns to its state as merged. */
  snapshot?: ProfileSnapshot;
  cause: MergeCause;
}

export type IdentityCommand = MergeCommand | AbsorbCommand | LinkCommand | CheckpointCommand | UnmergeCommand | RestoreCommand;

/** An entry of the event log: a customer event, with the profile it was resolved to, or an identity command. */
export type LogEntry = CustomerEvent | IdentityCommand;

/** An identity command read from the log, as a profile actor receives it. */
export interface IdentityCommandMessage {
  kind: 'identity-command';
  command: IdentityCommand;
  position: LogPosition;
  /**
   * For an unmerge: the records of the survivor's partition from `sinceSequence` up to the
   * command, which the node reads from the log before it delivers the command.
   */
  history?: HistoryEntry[];
  /** For an unmerge whose history the log no longer contains: why. */
  historyError?: string;
}

/** A record of a partition, decoded, as an unmerge replays it. */
export interface HistoryEntry {
  position: LogPosition;
  entry: LogEntry;
  payload: Buffer;
}

export function isIdentityCommand(entry: LogEntry): entry is IdentityCommand {
  return (entry as Partial<IdentityCommand>).command !== undefined;
}

/** A record a profile actor sends to another profile's partition. The node picks the shard. */
export interface OutgoingRecord {
  workspace: string;
  /** The profile that receives it. */
  profileId: string;
  /** The log's deduplication key. */
  messageId: string;
  entry: LogEntry;
}

export const commandMessageIds = {
  // A merge's ids name its cause too, so the same two profiles can merge again after an unmerge.
  merge: (loser: string, winner: string, cause: string) => `rtcdp:merge:${loser}:${winner}:${cause}`,
  absorb: (from: string, into: string, cause: string) => `rtcdp:absorb:${from}:${into}:${cause}`,
  forward: (into: string, messageId: string) => `rtcdp:forward:${into}:${messageId}`,
  link: (from: string, survivor: string, cause: string) => `rtcdp:link:${from}:${survivor}:${cause}`,
  checkpoint: (before: string, survivor: string, cause: string) => `rtcdp:checkpoint:${before}:${survivor}:${cause}`,
  unmerge: (id: string) => `rtcdp:unmerge:${id}`,
  restore: (id: string) => `rtcdp:restore:${id}`,
};

/** The rule an unmerge's cause names. */
export const UNMERGE_RULE = 'operator-unmerge';
