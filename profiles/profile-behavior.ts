/**
 * Gives the generic actor runtime its customer meaning: how a profile actor loads, applies
 * an event, persists its snapshot with its new history and identifiers, and stores a
 * dead letter.
 */
import type { ActorBehavior } from '../actors/types.js';
import type { Logger } from '../common/logger.js';
import { activationId, type ProfileActivation } from './activation.js';
import type { CustomerEvent } from './event.js';
import { decode, encode } from '../storage/codec.js';
import { keys, prefixEnd } from '../storage/keys.js';
import type { Store, WriteOp } from '../storage/store.js';
import type { ActivationBatch, ActivationSink } from './activation-log.js';
import { isDecideRequest, isEvaluationDue, isIdentityCommandMessage, type ProfileEvaluator, type ProfileMessage } from './evaluator.js';
import type { Identifier } from './identifiers.js';
import {
  commandMessageIds,
  type AbsorbCommand,
  type CheckpointCommand,
  type IdentityCommandMessage,
  type LinkCommand,
  type MergeCause,
  type MergeCommand,
  type OutgoingRecord,
  type RestoreCommand,
  type UnmergeCommand,
} from './identity-commands.js';
import { mergeProfileState } from './profile-merge.js';
import { rebuildUnmerged, splitTargetOf, type UnmergeContext, type UnmergeOutcome } from './profile-unmerge.js';
import { applyEvent, createProfile, fromSnapshot, toSnapshot, type AppliedEvent, type LogPosition, type ProfileLimits, type ProfileSnapshot, type ProfileState, type ProfileView } from './profile.js';

export const DEAD_LETTER_VERSION = 1;

/**
 * Link marks a profile keeps for merges whose absorb has not arrived. A mark is dropped only
 * when a batch merges more profiles than this into one; unmerging those merges then fails.
 */
const MAX_LINK_MARKS = 1_000;

export interface DeadLetterRecord {
  version: number;
  workspace: string;
  profileId: string;
  shard: number;
  sequence: number;
  messageId: string;
  error: string;
  attempts: number;
  failedAt: string;
  payload: Buffer;
}

/**
 * The part of a profile that one persist writes: its snapshot, how many of its unpersisted
 * events, activations and outgoing records, and its next evaluation time.
 */
export interface PersistCapture {
  /** The profile's snapshot, encoded when the persist started. */
  snapshot: Buffer;
  events: number;
  activations: number;
  outgoing: number;
  nextEvaluationMs: number;
}

/**
 * Captures what a persist of `state` starting now writes. The snapshot is encoded now,
 * because the actor goes on applying messages while the persist awaits its writes. A
 * snapshot encoded later would cover events whose history, activations and outgoing
 * records the persist does not write.
 */
export function capturePersist(state: ProfileState): PersistCapture {
  return {
    snapshot: encode(toSnapshot(state)),
    events: state.unpersisted.length,
    activations: state.activations.length,
    outgoing: state.outbox.length,
    nextEvaluationMs: state.nextEvaluationMs,
  };
}

export interface ProfileBehaviorOptions {
  store: Store;
  limits: ProfileLimits;
  logger: Logger;
  /** Evaluates computed traits and segments after each event and timer; without it profiles only aggregate. */
  evaluator?: ProfileEvaluator;
  /** The destination of the activations that persist writes. Required with `evaluator`. */
  activations?: ActivationSink;
  /** Wall clock for evaluations, ms since the epoch. Default Date.now. */
  now?: () => number;
  /**
   * Appends records to other profiles' partitions, resolving once they are durable: the
   * identity commands and forwarded events of a merge. Required for merges to happen.
   */
  send?: (records: OutgoingRecord[]) => Promise<void>;
  /**
   * The normalised identifiers of an event, highest priority first, as identity resolution
   * uses them. Required for unmerges: they decide which side an event belongs to.
   */
  identifiersOf?: (workspace: string, event: CustomerEvent) => Identifier[];
  /** Called before each event is applied; a throw counts as a failure of the handler. For fault-injection tests. */
  beforeApply?: (applied: AppliedEvent, profileId: string) => void;
}

/** Splits an actor key into its workspace and profile id. Workspaces never contain "/". */
export function parseActorKey(key: string): { workspace: string; profileId: string } {
  const slash = key.indexOf('/');
  return { workspace: key.slice(0, slash), profileId: key.slice(slash + 1) };
}

export function actorKey(workspace: string, profileId: string): string {
  return `${workspace}/${profileId}`;
}

export class ProfileBehavior implements ActorBehavior<ProfileState, ProfileMessage> {
  readonly #options: ProfileBehaviorOptions;
  readonly #now: () => number;

  constructor(options: ProfileBehaviorOptions) {
    if (options.evaluator !== undefined && options.activations === undefined) throw new TypeError('ProfileBehavior needs an activation log with an evaluator');
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Readies the workspace's definitions before a profile of it is loaded or created. */
  prepare(workspace: string): Promise<void> {
    return this.#options.evaluator?.prepare(workspace) ?? Promise.resolve();
  }

  async load(key: string): Promise<ProfileState | undefined> {
    const { workspace, profileId } = parseActorKey(key);
    await this.prepare(workspace);
    const stored = await this.#options.store.get(keys.snapshot(workspace, profileId));
    if (stored === null) return undefined;

    const state = fromSnapshot(decode<ProfileSnapshot>(stored));
    await this.rebuildStaleTraits(state);
    return state;
  }

  /**
   * Rebuilds the computed traits that were added or changed since the profile's snapshot
   * from the history in this node's store: every event the snapshot covers, in log order.
   */
  async rebuildStaleTraits(state: ProfileState): Promise<void> {
    const evaluator = this.#options.evaluator;
    const stale = evaluator?.staleTraits(state) ?? [];
    if (evaluator === undefined || stale.length === 0) return;

    const prefix = keys.profileEventPrefix(state.workspace, state.profileId);
    const entries = await this.#options.store.list({ gte: prefix, lt: prefixEnd(prefix) });
    evaluator.rebuildTraits(
      state,
      stale,
      entries.map((entry) => decode<CustomerEvent>(entry.value)),
    );
    this.#options.logger.debug({ workspace: state.workspace, profileId: state.profileId, traits: stale, events: entries.length }, 'rebuilt computed traits from history');
  }

  create(key: string): ProfileState {
    const { workspace, profileId } = parseActorKey(key);
    return createProfile(workspace, profileId);
  }

  handle(state: ProfileState, message: ProfileMessage): ProfileState {
    if (isEvaluationDue(message)) {
      this.#options.evaluator?.onDue(state, message, this.#now());
      return state;
    }
    if (isDecideRequest(message)) {
      const evaluator = this.#options.evaluator;
      if (evaluator === undefined) throw new TypeError('a Decide request reached a profile behavior without an evaluator');
      message.reply(evaluator.decide(state, message));
      return state;
    }

    if (isIdentityCommandMessage(message)) return this.#applyCommand(state, message);
    if (state.mergedInto !== undefined) {
      this.#forward(state, message, state.mergedInto);
      return state;
    }
    const split = state.splits.length === 0 ? undefined : this.#splitOf(state, message.event);
    if (split !== undefined) {
      this.#forward(state, message, split);
      return state;
    }

    this.#options.beforeApply?.(message, state.profileId);
    const changed = applyEvent(state, message, this.#options.limits);

    if (changed) this.#options.evaluator?.afterEvent(state, message, this.#now());
    return state;
  }

  /**
   * Applies an identity command and returns the new state. Merge: this profile becomes a
   * tombstone and sends its state to the survivor. Absorb: it takes in the state of one merged
   * into it. Unmerge: it splits off a profile it absorbed. Restore: a tombstone lives again.
   */
  #applyCommand(state: ProfileState, message: IdentityCommandMessage): ProfileState {
    const { command, position } = message;
    // A replay from an older checkpoint delivers commands this profile already applied.
    if (position.sequence <= state.lastApplied.sequence && position.shard === state.lastApplied.shard) return state;
    state.lastApplied = position;
    switch (command.command) {
      case 'merge':
        this.#becomeTombstone(state, command);
        return state;
      case 'absorb':
        this.#absorb(state, command, message);
        return state;
      case 'link':
        this.#markLink(state, command, position);
        return state;
      case 'checkpoint':
        return state;
      case 'unmerge':
        return this.#unmerge(state, command, message);
      case 'restore':
        return this.#restore(state, command, message);
    }
  }

  #becomeTombstone(state: ProfileState, command: MergeCommand): void {
    const { workspace, profileId } = state;
    if (state.mergedInto !== undefined && state.mergedInto !== command.into) {
      this.#options.logger.error({ workspace, profileId, mergedInto: state.mergedInto, into: command.into }, 'merge command for a profile already merged elsewhere; ignored');
      return;
    }

    // A crash between the send and the snapshot write repeats the command, which sends the
    // state again. The survivor ignores a profile it has already absorbed.
    state.mergedInto = command.into;
    const absorb: AbsorbCommand = { command: 'absorb', profileId: command.into, from: profileId, snapshot: toSnapshot(state), cause: command.cause };
    state.outbox.push({ workspace, profileId: command.into, messageId: commandMessageIds.absorb(profileId, command.into, command.cause.messageId), entry: absorb });
    this.#options.logger.info({ workspace, profileId, into: command.into, messageId: command.cause.messageId }, 'profile merged into another');
  }

  #absorb(state: ProfileState, command: AbsorbCommand, message: IdentityCommandMessage): void {
    const { workspace, profileId } = state;
    if (state.mergedInto !== undefined) {
      // This profile was merged onward meanwhile: the state goes to its survivor too.
      const onward: AbsorbCommand = { ...command, profileId: state.mergedInto };
      state.outbox.push({ workspace, profileId: state.mergedInto, messageId: commandMessageIds.absorb(command.from, state.mergedInto, command.cause.messageId), entry: onward });
      return;
    }
    // A profile counts as absorbed when it came in directly or inside another absorbed one:
    // after a crash, a tombstone can pass on a state whose events already arrived that way.
    if (state.merges.some((merge) => merge.profileId === command.from)) return;

    const nowMs = this.#now();
    const began = this.#mergeStart(state, command, message);
    // A profile split off earlier and merged again: its events stop being forwarded to it.
    state.splits = state.splits.filter((split) => split.profileId !== command.from);
    mergeProfileState(state, command.snapshot, this.#options.limits);
    const { messageId, rule, atMs } = command.cause;
    state.merges.push({ profileId: command.from, messageId, rule, atMs, absorbedAtMs: nowMs, position: began });
    for (const inner of command.snapshot.merges) {
      if (!state.merges.some((merge) => merge.profileId === inner.profileId)) state.merges.push({ ...inner, via: inner.via ?? command.from });
    }
    if (this.#options.activations !== undefined) state.activations.push(mergedActivation(state, command, nowMs));
    this.#options.evaluator?.afterMerge(state, command.snapshot, nowMs);
    this.#options.logger.info({ workspace, profileId, from: command.from, messageId: command.cause.messageId }, 'profile absorbed a merged profile');
  }

  /**
   * Marks where a merge into this profile begins, before any event that the merge routes here,
   * and sends a checkpoint of the state so far for an unmerge to start from.
   */
  #markLink(state: ProfileState, command: LinkCommand, position: LogPosition): void {
    const { from, cause } = command;
    if (state.linkMarks.some((mark) => mark.from === from && mark.messageId === cause.messageId)) return;
    state.outbox.push(checkpointRecord(state, from, cause));
    state.linkMarks.push({ from, messageId: cause.messageId, position });
    // Marks of merges whose absorb never came (a merge decided twice) are dropped, oldest first.
    if (state.linkMarks.length > MAX_LINK_MARKS) state.linkMarks.shift();
  }

  /**
   * Returns where the merge that `command` completes began in this profile's partition: its
   * link mark, or, for a merge announced without one, this absorb, whose checkpoint is sent now.
   */
  #mergeStart(state: ProfileState, command: AbsorbCommand, message: IdentityCommandMessage): LogPosition {
    const index = state.linkMarks.findIndex((mark) => mark.from === command.from && mark.messageId === command.cause.messageId);
    if (index !== -1) return state.linkMarks.splice(index, 1)[0].position;
    state.outbox.push(checkpointRecord(state, command.from, command.cause));
    return message.position;
  }

  /**
   * Splits off a profile this one absorbed: rebuilds both from the history the node attached
   * to the command, takes the survivor's new state, and sends the restored one its state.
   * Without that history (the log no longer contains it) the survivor keeps its state, the
   * restored profile returns to its state as merged, and an error names what is missing.
   */
  #unmerge(state: ProfileState, command: UnmergeCommand, message: IdentityCommandMessage): ProfileState {
    const { workspace, profileId } = state;
    const nowMs = this.#now();
    const identifiersOf = this.#options.identifiersOf;
    if (identifiersOf === undefined) throw new TypeError('an unmerge reached a profile behavior without identifiersOf');

    const outcome = this.#rebuild(state, command, message, { limits: this.#options.limits, evaluator: this.#options.evaluator, identifiersOf, nowMs });
    let next = state;
    let restored: ProfileSnapshot | undefined;
    if (outcome.ok) {
      next = carryPending(outcome.survivor, state, message);
      restored = outcome.restored;
      next.segments = state.segments;
      this.#options.evaluator?.afterUnmerge(next, command.cause, nowMs);
      this.#options.logger.info({ workspace, profileId, restored: command.restored, unmergeId: command.cause.messageId, survivorEvents: outcome.survivorEvents, restoredEvents: outcome.restoredEvents }, 'profile unmerged');
    } else {
      next.merges = next.merges.filter((merge) => !command.profiles.includes(merge.profileId));
      this.#options.logger.error({ workspace, profileId, restored: command.restored, unmergeId: command.cause.messageId, reason: outcome.reason }, 'unmerge could not rebuild the profiles; the survivor keeps its state');
    }

    next.splits = [...next.splits.filter((split) => split.profileId !== command.restored), { id: command.cause.messageId, profileId: command.restored, identifiers: command.restoredIdentifiers, keptIdentifiers: command.survivorIdentifiers, atMs: command.cause.atMs }];
    const restore: RestoreCommand = { command: 'restore', profileId: command.restored, from: profileId, ...(restored === undefined ? {} : { snapshot: restored }), cause: command.cause };
    next.outbox.push({ workspace, profileId: command.restored, messageId: commandMessageIds.restore(command.cause.messageId), entry: restore });
    if (this.#options.activations !== undefined) next.activations.push(unmergedActivation(next, command.restored, command.cause, nowMs));
    return next;
  }

  /** Rebuilds both sides of an unmerge, or returns why the survivor cannot. */
  #rebuild(state: ProfileState, command: UnmergeCommand, message: IdentityCommandMessage, context: UnmergeContext): UnmergeOutcome {
    if (state.mergedInto !== undefined) return { ok: false, reason: `the survivor was merged into ${state.mergedInto} meanwhile` };
    if (message.history === undefined) return { ok: false, reason: message.historyError ?? 'the node read no history for it' };
    return rebuildUnmerged(state, command, message.history, context);
  }

  /** Brings a tombstone back to life with the state an unmerge rebuilt for it, or with its own. */
  #restore(state: ProfileState, command: RestoreCommand, message: IdentityCommandMessage): ProfileState {
    const { workspace, profileId } = state;
    if (state.mergedInto !== command.from) {
      this.#options.logger.error({ workspace, profileId, mergedInto: state.mergedInto, from: command.from }, 'restore command for a profile not merged into its sender; ignored');
      return state;
    }

    const nowMs = this.#now();
    const next = command.snapshot === undefined ? state : carryPending(fromSnapshot(structuredClone(command.snapshot)), state, message);
    next.mergedInto = undefined;
    this.#options.evaluator?.afterUnmerge(next, command.cause, nowMs);
    if (this.#options.activations !== undefined) next.activations.push(unmergedActivation(next, command.from, command.cause, nowMs));
    this.#options.logger.info({ workspace, profileId, from: command.from, unmergeId: command.cause.messageId }, 'profile restored by an unmerge');
    return next;
  }

  /** Returns the profile an unmerge split off that an event belongs to, or undefined when it is this profile's. */
  #splitOf(state: ProfileState, event: CustomerEvent): string | undefined {
    const identifiers = this.#options.identifiersOf?.(state.workspace, event);
    return identifiers === undefined ? undefined : splitTargetOf(state, identifiers);
  }

  /** Sends an event on to another profile's partition (the survivor of a tombstone, or a profile split off), once per log position. */
  #forward(state: ProfileState, applied: AppliedEvent, into: string): void {
    const { position, event } = applied;
    if (position.sequence <= state.lastApplied.sequence && position.shard === state.lastApplied.shard) return;
    state.lastApplied = position;

    const entry = { ...event, profileId: into };
    state.outbox.push({ workspace: state.workspace, profileId: into, messageId: commandMessageIds.forward(into, event.messageId), entry });
  }

  /**
   * Persists a profile in the next batch when it produced activations, so downstream
   * systems get them within milliseconds, when it has records for other profiles, so a
   * merge completes without waiting, or when it made a decision, so a crash cannot forget it.
   * A timer that fired and left a new due time persists too, because the timer index lists
   * the new time only after the snapshot write, and the next one may be due within seconds.
   */
  persistSoon(state: ProfileState, message: ProfileMessage): boolean {
    if (state.activations.length > 0 || state.outbox.length > 0 || isDecideRequest(message)) return true;
    return isEvaluationDue(message) && state.nextEvaluationMs !== state.indexedEvaluationMs;
  }

  /** Returns a copy of the profile for a query, with each computed trait's value now. */
  view(state: ProfileState): ProfileView {
    const snapshot = structuredClone(toSnapshot(state));
    return { ...snapshot, computedValues: this.#options.evaluator?.computedValues(snapshot, this.#now()) ?? {} };
  }

  /**
   * Sends each profile's outgoing records, then writes its snapshot, its events applied
   * since the last snapshot, its timer and its activations in one batch, with `extraOps`.
   * What each profile's write covers is captured when the call starts, or passed as
   * `captured` by a caller that captured it earlier and wrote the same part elsewhere first
   * (and sent the records, when `sent`). The lists are cut by the captured counts only
   * after the write, because the actor may apply more events while the write is in flight.
   */
  async persist(snapshots: Array<{ key: string; state: ProfileState }>, extraOps: WriteOp[] = [], captured?: PersistCapture[], sent = false): Promise<void> {
    const ops: WriteOp[] = [...extraOps];
    const covered = snapshots.map(({ state }, i) => ({ state, ...(captured?.[i] ?? capturePersist(state)) }));
    // Without records to send, the write batch is built before the first await, so the
    // actor runtime's timing of this call includes that work.
    if (!sent && covered.some(({ outgoing }) => outgoing > 0)) await this.sendOutgoing(covered);
    const activations = covered.flatMap(({ state, activations: count }) => state.activations.slice(0, count));

    for (const { state, snapshot, events, nextEvaluationMs } of covered) {
      ops.push({ type: 'put', key: keys.snapshot(state.workspace, state.profileId), value: snapshot });
      for (const event of state.unpersisted.slice(0, events)) {
        ops.push({ type: 'put', key: keys.profileEvent(state.workspace, state.profileId, event.sequence), value: event.payload });
      }
      ops.push(...timerOps(state, nextEvaluationMs));
    }
    const batch = activations.length === 0 ? undefined : await this.#prepareActivations(activations);
    ops.push(...(batch?.ops ?? []));

    try {
      await this.#options.store.write(ops);
    } finally {
      if (batch !== undefined) this.#options.activations?.settle(batch);
    }

    for (const { state, events, activations: count, outgoing, nextEvaluationMs } of covered) {
      state.unpersisted.splice(0, events);
      state.activations.splice(0, count);
      state.outbox.splice(0, outgoing);
      state.indexedEvaluationMs = nextEvaluationMs;
    }
  }

  /**
   * Sends the outgoing records a persist covers, before its snapshots are written. A crash
   * before the write leaves the messages that produced them after the profile's last
   * snapshot, so they are applied again on restart and send the same records, which the log
   * deduplicates by messageId. Sending after the write instead would lose them: the replay
   * skips messages the snapshot already covers.
   */
  async sendOutgoing(covered: Array<{ state: ProfileState; outgoing: number }>): Promise<void> {
    const records = covered.flatMap(({ state, outgoing }) => state.outbox.slice(0, outgoing));
    if (records.length === 0) return;

    const send = this.#options.send;
    if (send === undefined) throw new TypeError('a profile has records for other profiles but the behavior has no send function');
    await send(records);
  }

  #prepareActivations(activations: ProfileActivation[]): Promise<ActivationBatch> {
    const log = this.#options.activations;
    if (log === undefined) throw new TypeError('a profile produced activations but the behavior has no activation log');
    return log.prepare(activations);
  }

  async deadLetter(key: string, message: ProfileMessage, error: unknown, attempts: number): Promise<void> {
    const { workspace, profileId } = parseActorKey(key);
    if (isDecideRequest(message)) {
      this.#options.logger.error({ workspace, profileId, requestId: message.requestId, attempts, err: error }, 'decision failed');
      return;
    }
    if (isEvaluationDue(message)) {
      // The timer stays in the index, so the evaluation is tried again on the next sweep.
      this.#options.logger.error({ workspace, profileId, dueMs: message.dueMs, attempts, err: error }, 'due evaluation failed');
      return;
    }
    const { position } = message;
    const command = isIdentityCommandMessage(message) ? message.command : undefined;
    const record: DeadLetterRecord = {
      version: DEAD_LETTER_VERSION,
      workspace,
      profileId,
      shard: position.shard,
      sequence: position.sequence,
      messageId: command === undefined ? (message as AppliedEvent).event.messageId : `${command.command} command (${command.cause.messageId})`,
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
      attempts,
      failedAt: new Date().toISOString(),
      payload: command === undefined ? (message as AppliedEvent).payload : encode(command),
    };

    await this.#options.store.write([{ type: 'put', key: keys.deadLetter(workspace, profileId, position.sequence), value: encode(record) }], { sync: true });
    this.#options.logger.warn({ workspace, profileId, shard: record.shard, sequence: record.sequence, messageId: record.messageId, attempts, err: error }, 'event moved to dead letters');
  }
}

/** Moves the profile's entry in the timer index from the stored evaluation time to `nextEvaluationMs`. */
function timerOps(state: ProfileState, nextEvaluationMs: number): WriteOp[] {
  if (nextEvaluationMs === state.indexedEvaluationMs) return [];

  const { workspace, profileId } = state;
  const shard = state.lastApplied.shard;
  const ops: WriteOp[] = [];
  if (state.indexedEvaluationMs !== 0) ops.push({ type: 'del', key: keys.evaluationTimer(workspace, shard, state.indexedEvaluationMs, profileId) });
  if (nextEvaluationMs !== 0) ops.push({ type: 'put', key: keys.evaluationTimer(workspace, shard, nextEvaluationMs, profileId), value: '' });
  return ops;
}

/** Builds the record of the survivor's state just before a merge of `from` began, for its own partition. */
function checkpointRecord(state: ProfileState, from: string, cause: MergeCause): OutgoingRecord {
  const { workspace, profileId } = state;
  const entry: CheckpointCommand = { command: 'checkpoint', profileId, before: from, snapshot: structuredClone(toSnapshot(state)), cause };
  return { workspace, profileId, messageId: commandMessageIds.checkpoint(from, profileId, cause.messageId), entry };
}

/**
 * Gives a rebuilt state what the actor's current one still has to write or send (history,
 * activations, outgoing records, the timer it is listed under) and the command's position.
 */
function carryPending(rebuilt: ProfileState, current: ProfileState, message: IdentityCommandMessage): ProfileState {
  rebuilt.unpersisted = current.unpersisted;
  rebuilt.activations = current.activations;
  rebuilt.outbox = current.outbox;
  rebuilt.indexedEvaluationMs = current.indexedEvaluationMs;
  rebuilt.snapshotRevision = current.snapshotRevision;
  rebuilt.lastApplied = message.position;
  return rebuilt;
}

function unmergedActivation(state: ProfileState, other: string, cause: MergeCause, nowMs: number): ProfileActivation {
  const activationCause = { kind: 'merge' as const, messageId: cause.messageId, rule: cause.rule };
  return {
    id: activationId('profile.unmerged', state.profileId, other, activationCause),
    type: 'profile.unmerged',
    workspace: state.workspace,
    profileId: state.profileId,
    name: other,
    definitionVersion: 0,
    atMs: nowMs,
    cause: activationCause,
  };
}

function mergedActivation(state: ProfileState, command: AbsorbCommand, nowMs: number): ProfileActivation {
  const cause = { kind: 'merge' as const, messageId: command.cause.messageId, rule: command.cause.rule };
  return {
    id: activationId('profile.merged', state.profileId, command.from, cause),
    type: 'profile.merged',
    workspace: state.workspace,
    profileId: state.profileId,
    name: command.from,
    definitionVersion: 0,
    atMs: nowMs,
    cause,
  };
}
