/**
 * The decision state of a profile: the recent decisions that frequency caps, cooldowns and
 * the contact policy count, and a receipt per decision that explains it.
 * The decisions code fills them in; they are plain data so the snapshot stores them as is.
 */
import type { JsonValue } from './event.js';

/** One decision that caps and cooldowns count. */
export interface DecisionRecord {
  rule: string;
  action: string;
  /** '' when the decision had no channel. */
  channel: string;
  atMs: number;
  /** The profile was in the rule's control group, so the action was withheld. */
  control: boolean;
}

/** The reason a rule was or was not chosen. */
export type CandidateOutcome =
  | 'chosen'
  | 'control_group'
  | 'lower_priority'
  | 'not_eligible'
  | 'evaluation_failed'
  | 'capped'
  | 'cooldown'
  | 'contact_policy'
  | 'no_consent';

export interface DecisionCandidate {
  rule: string;
  version: number;
  outcome: CandidateOutcome;
  /** The priority, or null when it was not evaluated. */
  priority: number | null;
  /** The cap, cooldown, policy or error behind the outcome; '' when there is nothing to add. */
  detail: string;
}

export type DecisionCause = { kind: 'decide'; requestId: string } | { kind: 'event'; shard: number; sequence: number; messageId: string };

/** The explanation of one decision: every rule considered, and the outcome of each. */
export interface DecisionReceipt {
  decisionId: string;
  atMs: number;
  channel: string;
  cause: DecisionCause;
  /** The Decide call's context, or the triggering event's properties. */
  context: Record<string, JsonValue>;
  /** The rule chosen, or null when no rule was. */
  chosen: { rule: string; version: number; action: string; control: boolean; priority: number } | null;
  /** The chosen candidate first, then the others by priority, highest first, then those without one by name. */
  candidates: DecisionCandidate[];
}
