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
 * Each of these records has a log messageId derived from the profiles and the original
 * messageId, so sending one again after a crash appends nothing new, and the actors also
 * ignore a command they have already applied.
 */
import type { CustomerEvent } from './event.js';
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

export type IdentityCommand = MergeCommand | AbsorbCommand;

/** An entry of the event log: a customer event, with the profile it was resolved to, or an identity command. */
export type LogEntry = CustomerEvent | IdentityCommand;

/** An identity command read from the log, as a profile actor receives it. */
export interface IdentityCommandMessage {
  kind: 'identity-command';
  command: IdentityCommand;
  position: LogPosition;
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
  merge: (loser: string, winner: string) => `rtcdp:merge:${loser}:${winner}`,
  absorb: (from: string, into: string) => `rtcdp:absorb:${from}:${into}`,
  forward: (into: string, messageId: string) => `rtcdp:forward:${into}:${messageId}`,
};
