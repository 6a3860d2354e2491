/**
 * The hook through which a profile actor evaluates the workspace's definitions (computed
 * traits, segments) after each change. The decisions code implements it; the profile code
 * only calls it, so profiles/ does not depend on decisions/.
 */
import type { DecisionReceipt } from './decision-state.js';
import type { CustomerEvent, JsonValue } from './event.js';
import type { IdentityCommandMessage, MergeCause } from './identity-commands.js';
import type { AppliedEvent, ProfileSnapshot, ProfileState } from './profile.js';

/** A timer's message to a profile: its `nextEvaluationMs` has passed, so evaluate it again. */
export interface EvaluationDue {
  kind: 'evaluation-due';
  /** The `nextEvaluationMs` the timer was set for. */
  dueMs: number;
}

/**
 * A Decide call for a profile: the actor decides in its serial step and calls `reply` with
 * the receipt. A restarted actor applies the request again from its journal, with the same
 * `nowMs`, so it reaches the same decision. `reply` is then called a second time, which a
 * promise's resolve ignores.
 */
export interface DecideRequest {
  kind: 'decide';
  /** Unique per call; part of the decision id. */
  requestId: string;
  /** '' for none. */
  channel: string;
  context: Record<string, JsonValue>;
  nowMs: number;
  reply: (receipt: DecisionReceipt) => void;
}

/** A message to a profile actor: an event or identity command from the log, a due evaluation, or a Decide call. */
export type ProfileMessage = AppliedEvent | IdentityCommandMessage | EvaluationDue | DecideRequest;

export function isEvaluationDue(message: ProfileMessage): message is EvaluationDue {
  return (message as Partial<EvaluationDue>).kind === 'evaluation-due';
}

export function isDecideRequest(message: ProfileMessage): message is DecideRequest {
  return (message as Partial<DecideRequest>).kind === 'decide';
}

export function isIdentityCommandMessage(message: ProfileMessage): message is IdentityCommandMessage {
  return (message as Partial<IdentityCommandMessage>).kind === 'identity-command';
}

export interface ProfileEvaluator {
  /** Readies what the other calls need for a workspace. The actor calls it before it loads or creates a profile. */
  prepare(workspace: string): Promise<void>;

  /**
   * Updates the profile's computed traits with an event it has just applied, evaluates its
   * segments, appends the resulting activations to `state.activations` and sets
   * `state.nextEvaluationMs`. Synchronous, like the rest of the actor's step.
   */
  afterEvent(state: ProfileState, applied: AppliedEvent, nowMs: number): void;

  /**
   * Merges the computed traits and scoring model states of `from`, a profile just merged
   * into `state`, then evaluates segments, journeys and scores again, like afterEvent.
   * `state` already has the merged identifiers, traits and counters.
   */
  afterMerge(state: ProfileState, from: ProfileSnapshot, nowMs: number): void;

  /**
   * Evaluates segments, journeys and scores of a profile that an unmerge rebuilt, whose
   * `segments` still hold its memberships from before, so the changes become activations
   * caused by the unmerge.
   */
  afterUnmerge(state: ProfileState, unmerge: MergeCause, nowMs: number): void;

  /** Evaluates the profile's segments again because time passed; does nothing before `state.nextEvaluationMs`. */
  onDue(state: ProfileState, due: EvaluationDue, nowMs: number): void;

  /**
   * Returns the computed traits whose state on a loaded profile is missing or was built
   * under another version of their definition, so the actor can rebuild them from the
   * profile's stored history.
   */
  staleTraits(state: ProfileState): string[];

  /** Rebuilds the named traits from scratch from `events`, the profile's history in log order. */
  rebuildTraits(state: ProfileState, names: readonly string[], events: Iterable<CustomerEvent>): void;

  /** Decides the next best action for the profile, records it on the state and returns its receipt. */
  decide(state: ProfileState, request: DecideRequest): DecisionReceipt;

  /** Returns the value of each computed trait of the profile at `nowMs`, for a query. */
  computedValues(snapshot: ProfileSnapshot, nowMs: number): Record<string, JsonValue>;
}
