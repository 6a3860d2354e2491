/**
 * Activation messages: the outcomes of a profile's evaluation that downstream systems
 * receive, such as a profile entering or leaving a segment. A profile produces them while it applies an event
 * or a timer and keeps them with its unpersisted state. The next snapshot write stores them
 * in the activation log in the same batch, so an activation is stored exactly when the state
 * change that caused it is.
 */

export const ACTIVATION_TYPES = [
  'segment.entered',
  'segment.exited',
  'decision.made',
  'journey.entered',
  'journey.action',
  'journey.exited',
  'journey.completed',
  'profile.merged',
  'profile.unmerged',
] as const;
export type ActivationType = (typeof ACTIVATION_TYPES)[number];

/** The reason a profile produced an activation. */
export type ActivationCause =
  | { kind: 'event'; shard: number; sequence: number; messageId: string }
  | { kind: 'timer'; dueMs: number }
  | { kind: 'definition'; version: number }
  | { kind: 'decide'; requestId: string }
  /**
   * profile.merged: the event (or approved quarantined link) that proved two profiles one
   * person, and the rule. profile.unmerged, and the segment transitions an unmerge causes:
   * the unmerge's id, and the rule `operator-unmerge`.
   */
  | { kind: 'merge'; messageId: string; rule: string };

export interface ProfileActivation {
  /**
   * Stable id: the profile, the definition, the type and the cause. A replay of the same
   * events after a crash produces the same ids, so a consumer can deduplicate on it.
   */
  id: string;
  type: ActivationType;
  workspace: string;
  profileId: string;
  /**
   * The segment, decision rule or journey the activation is about; for profile.merged, the
   * profile merged in; for profile.unmerged, the profile it was split from.
   */
  name: string;
  definitionVersion: number;
  /** decision.made and journey.action: the action and its channel ('' for none). */
  action?: string;
  channel?: string;
  /** journey.action: the journey step that took the action. */
  step?: string;
  /** Evaluation time, ms since the epoch. */
  atMs: number;
  cause: ActivationCause;
}

/** Builds the stable id of an activation. */
export function activationId(type: ActivationType, profileId: string, name: string, cause: ActivationCause): string {
  return `${type}:${name}:${causeText(cause)}:${profileId}`;
}

function causeText(cause: ActivationCause): string {
  if (cause.kind === 'event') return `event:${cause.shard}:${cause.sequence}`;
  if (cause.kind === 'timer') return `timer:${cause.dueMs}`;
  if (cause.kind === 'decide') return `decide:${cause.requestId}`;
  if (cause.kind === 'merge') return `merge:${cause.messageId}`;
  return `definition:${cause.version}`;
}
