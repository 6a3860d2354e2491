/**
 * Splitting a merged profile in two again on an operator's request. The survivor
 * rebuilds both profiles by replaying, from the log, what it applied since the merge began
 * (its link command, or the absorb of a merge announced without one):
 *
 * - the survivor starts from the checkpoint it sent at that point, the restored profile from
 *   the state it had when it was merged (carried by the absorb command);
 * - each event goes to the side of its highest-priority identifier that either side holds,
 *   the survivor when neither does. Events the survivor forwarded to a profile split from
 *   it earlier are left out, as they were then;
 * - each later absorb goes to the restored side when its profile is one of the plan's.
 *
 * Synchronous and deterministic like applying an event. Activations the replay produces are
 * dropped: the actors report the change as profile.unmerged and segment transitions from
 * the memberships before the unmerge.
 */
import type { ProfileEvaluator } from './evaluator.js';
import type { CustomerEvent } from './event.js';
import { sameIdentifier, type Identifier } from './identifiers.js';
import { isIdentityCommand, type AbsorbCommand, type CheckpointCommand, type HistoryEntry, type UnmergeCommand } from './identity-commands.js';
import { mergeProfileState } from './profile-merge.js';
import { applyEvent, fromSnapshot, toSnapshot, type ProfileLimits, type ProfileSnapshot, type ProfileState } from './profile.js';

export interface UnmergeContext {
  limits: ProfileLimits;
  evaluator?: ProfileEvaluator;
  /** The normalised identifiers of an event, highest priority first. */
  identifiersOf: (workspace: string, event: CustomerEvent) => Identifier[];
  nowMs: number;
}

export type UnmergeOutcome =
  | {
      ok: true;
      /** The survivor's new state, before its lists of pending writes and its position are carried over. */
      survivor: ProfileState;
      /**
       * The restored profile's state, with the segment memberships and decisions it had when
       * it was merged. The events of the replay are not in its stored history.
       */
      restored: ProfileSnapshot;
      /** Events of the replay that went to each side. */
      survivorEvents: number;
      restoredEvents: number;
    }
  | { ok: false; reason: string };

/** A position before every real one, so the replay applies each record once, whatever its shard. */
const REPLAY_START = { shard: -1, sequence: 0 };

/** Rebuilds the survivor without the restored side, and the restored profile, from `history`. */
export function rebuildUnmerged(current: ProfileState, command: UnmergeCommand, history: readonly HistoryEntry[], context: UnmergeContext): UnmergeOutcome {
  const absorb = history.find((item) => isAbsorbOf(item, command));
  if (absorb === undefined) return { ok: false, reason: `the log has no absorb of ${command.restored} from sequence ${command.sinceSequence}` };
  const checkpoint = history.find((item) => isCheckpointOf(item, command));
  if (checkpoint === undefined) return { ok: false, reason: `the log has no checkpoint of ${command.profileId} from before the merge of ${command.restored}` };

  const absorbed = (absorb.entry as AbsorbCommand).snapshot;
  const survivor = replayStart((checkpoint.entry as CheckpointCommand).snapshot);
  const restored = replayStart(absorbed);
  restored.mergedInto = undefined;
  const sides = { survivor, restored, survivorEvents: 0, restoredEvents: 0 };

  for (const item of history) {
    if (item.position.sequence <= command.sinceSequence || item === absorb) continue;
    const failure = replayOne(item, command, sides, context);
    if (failure !== undefined) return { ok: false, reason: failure };
  }

  // The linking event and events that carried both sides' identifiers listed them on both.
  survivor.identifiers = survivor.identifiers.filter((identifier) => !includesIdentifier(command.restoredIdentifiers, identifier));
  restored.identifiers = restored.identifiers.filter((identifier) => !includesIdentifier(command.survivorIdentifiers, identifier));
  keepDecisions(current, absorbed, survivor);
  survivor.activations = [];
  restored.segments = structuredClone(absorbed.segments);
  restored.decisions = structuredClone(absorbed.decisions);
  restored.receipts = structuredClone(absorbed.receipts);
  return { ok: true, survivor, restored: toSnapshot(restored), survivorEvents: sides.survivorEvents, restoredEvents: sides.restoredEvents };
}

interface Sides {
  survivor: ProfileState;
  restored: ProfileState;
  survivorEvents: number;
  restoredEvents: number;
}

/** Applies one record of the survivor's partition to the side it belongs to. Returns the reason when it cannot. */
function replayOne(item: HistoryEntry, command: UnmergeCommand, sides: Sides, context: UnmergeContext): string | undefined {
  const { entry, position } = item;
  if (entry.profileId !== command.profileId) return undefined;

  if (!isIdentityCommand(entry)) {
    const identifiers = context.identifiersOf(sides.survivor.workspace, entry);
    if (splitTargetOf(sides.survivor, identifiers) !== undefined) return undefined;
    const toRestored = belongsToRestored(identifiers, command);
    const target = toRestored ? sides.restored : sides.survivor;
    const applied = { event: entry, position, payload: item.payload };
    if (applyEvent(target, applied, context.limits)) context.evaluator?.afterEvent(target, applied, context.nowMs);
    if (toRestored) sides.restoredEvents += 1;
    else sides.survivorEvents += 1;
    return undefined;
  }

  if (entry.command === 'checkpoint' || entry.command === 'link') return undefined;
  if (entry.command !== 'absorb') return `the survivor applied a ${entry.command} command at sequence ${position.sequence} after the merge, which a replay cannot undo`;
  const target = command.profiles.includes(entry.from) ? sides.restored : sides.survivor;
  absorbInto(target, entry, position, context);
  return undefined;
}

/** Merges an absorbed profile's state into `target`, as the actor did when it applied the absorb. */
function absorbInto(target: ProfileState, command: AbsorbCommand, position: HistoryEntry['position'], context: UnmergeContext): void {
  if (target.merges.some((merge) => merge.profileId === command.from)) return;
  mergeProfileState(target, command.snapshot, context.limits);
  const { messageId, rule, atMs } = command.cause;
  target.merges.push({ profileId: command.from, messageId, rule, atMs, absorbedAtMs: context.nowMs, position });
  for (const inner of command.snapshot.merges) {
    if (!target.merges.some((merge) => merge.profileId === inner.profileId)) target.merges.push({ ...inner, via: inner.via ?? command.from });
  }
  target.lastApplied = position;
  context.evaluator?.afterMerge(target, command.snapshot, context.nowMs);
}

/**
 * Returns whether an event belongs to the restored side: whether, of its identifiers that
 * either side contains, the highest-priority one is the restored side's. An event with none
 * of them stays with the survivor.
 */
export function belongsToRestored(identifiers: readonly Identifier[], split: { restoredIdentifiers: readonly Identifier[]; survivorIdentifiers: readonly Identifier[] }): boolean {
  for (const identifier of identifiers) {
    if (includesIdentifier(split.restoredIdentifiers, identifier)) return true;
    if (includesIdentifier(split.survivorIdentifiers, identifier)) return false;
  }
  return false;
}

/**
 * Returns the profile split from `state` by an earlier unmerge that an event with these
 * identifiers belongs to, or undefined when it belongs to `state`. The latest split comes
 * first, and the identifiers the profile lists now count for it, as in the graph's resolution.
 */
export function splitTargetOf(state: ProfileSnapshot, identifiers: readonly Identifier[]): string | undefined {
  for (let i = state.splits.length - 1; i >= 0; i--) {
    const split = state.splits[i];
    const kept = [...split.keptIdentifiers, ...state.identifiers];
    if (belongsToRestored(identifiers, { restoredIdentifiers: split.identifiers, survivorIdentifiers: kept })) return split.profileId;
  }
  return undefined;
}

/**
 * Keeps the survivor's decisions less those the restored profile brought in, so caps count
 * each person's own contacts. Decisions the replay made again are dropped.
 */
function keepDecisions(current: ProfileState, absorbed: ProfileSnapshot, survivor: ProfileState): void {
  const theirs = [...absorbed.decisions];
  survivor.decisions = current.decisions.filter((decision) => {
    const index = theirs.findIndex((other) => other.atMs === decision.atMs && other.rule === decision.rule && other.action === decision.action && other.channel === decision.channel);
    if (index === -1) return true;
    theirs.splice(index, 1);
    return false;
  });
  const theirReceipts = new Set(absorbed.receipts.map((receipt) => receipt.decisionId));
  survivor.receipts = current.receipts.filter((receipt) => !theirReceipts.has(receipt.decisionId));
}

function replayStart(snapshot: ProfileSnapshot): ProfileState {
  const state = fromSnapshot(structuredClone(snapshot));
  state.lastApplied = REPLAY_START;
  return state;
}

function isAbsorbOf(item: HistoryEntry, command: UnmergeCommand): boolean {
  const { entry, position } = item;
  if (position.sequence < command.sinceSequence || !isIdentityCommand(entry) || entry.command !== 'absorb') return false;
  return entry.from === command.restored && entry.profileId === command.profileId && entry.cause.messageId === command.mergeMessageId;
}

function isCheckpointOf(item: HistoryEntry, command: UnmergeCommand): boolean {
  const { entry } = item;
  if (!isIdentityCommand(entry) || entry.command !== 'checkpoint') return false;
  return entry.before === command.restored && entry.profileId === command.profileId && entry.cause.messageId === command.mergeMessageId;
}

function includesIdentifier(identifiers: readonly Identifier[], identifier: Identifier): boolean {
  return identifiers.some((known) => sameIdentifier(known, identifier));
}
