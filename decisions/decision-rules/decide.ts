/**
 * The next-best-action decision for one profile, made inside its actor so that the caps it
 * checks and the decision it records are one serial step: two requests can never both pass
 * a cap of one.
 *
 * For each candidate rule (those that serve the channel, or, for an event, those whose
 * trigger matches it), in order:
 * 1. eligibility: the rule's condition must hold on the profile;
 * 2. frequency caps: fewer than `max` decisions of the rule within each cap's window;
 * 3. cooldown: no decision of the rule within `cooldown`;
 * 4. priority: evaluated for the eligible ones; the highest wins, ties by rule name;
 * 5. contact policy: the profile's consent traits must allow the winner's channel, and the
 *    winner must leave every workspace cap (on its channel or on all channels) under its
 *    `max`. Otherwise the next one is tried.
 * The profile is in a rule's control group when a hash of the rule and profile id falls
 * under `controlGroupPercent`: the decision is recorded, and counts for caps, but its
 * action is withheld. A rule whose expression fails to evaluate is skipped with the error
 * in the receipt.
 */
import { matchesFilter } from '../computed-traits/definition.js';
import type { ConditionActivation } from '../definitions/segment-condition.js';
import type { CustomerEvent, JsonValue } from '../../profiles/event.js';
import type { DecisionCandidate, DecisionCause, DecisionReceipt, DecisionRecord } from '../../profiles/decision-state.js';
import type { ProfileState } from '../../profiles/profile.js';
import type { CompiledRule, WorkspaceProgram } from '../evaluation/workspace-program.js';
import { consentRefusal } from './consent.js';

/** Receipts a profile keeps. */
export const RECEIPTS_KEPT = 20;
/** Decisions a profile keeps for its caps at most, whatever the windows. */
export const DECISIONS_KEPT = 1_000;

export interface DecisionRequest {
  /** '' when the request names no channel. */
  channel: string;
  context: Record<string, JsonValue>;
  nowMs: number;
  cause: DecisionCause;
  /** For a decision triggered by an event: only rules whose trigger matches it are candidates. */
  event?: CustomerEvent;
}

interface Candidate {
  rule: CompiledRule;
  result: DecisionCandidate;
}

/**
 * Decides for a profile and records the decision and its receipt on the state. Returns the
 * receipt, or undefined for an event that triggers no rule.
 */
export function decide(state: ProfileState, program: WorkspaceProgram, request: DecisionRequest, computed: Record<string, JsonValue>): DecisionReceipt | undefined {
  const rules = program.rules.filter((rule) => isCandidate(rule, request));
  if (rules.length === 0 && request.event !== undefined) return undefined;

  const variables = decisionVariables(state, program, computed, request.nowMs, request.context);

  const candidates = rules.map((rule) => ({ rule, result: evaluate(state, rule, request, variables) }));
  const eligible = candidates.filter((candidate) => candidate.result.outcome === 'lower_priority').sort(byPriority);
  const chosen = eligible.find((candidate) => passesContactPolicy(state, program, channelOf(candidate.rule, request), request.nowMs, candidate));

  if (chosen !== undefined) record(state, program, chosen, request);
  const receipt = receiptOf(state, request, chosen, candidates);
  state.receipts.push(receipt);
  if (state.receipts.length > RECEIPTS_KEPT) state.receipts.splice(0, state.receipts.length - RECEIPTS_KEPT);
  return receipt;
}

/** Builds the variables of decision and journey expressions: a segment condition's, plus `segments` and `context`. */
export function decisionVariables(
  state: ProfileState,
  program: WorkspaceProgram,
  computed: Record<string, JsonValue>,
  nowMs: number,
  context: Record<string, JsonValue>,
): ConditionActivation {
  return {
    ...program.decisionCompiler.activation(state, computed, nowMs),
    segments: Object.fromEntries(Object.keys(state.segments).map((name) => [name, true])),
    context,
  };
}

function isCandidate(rule: CompiledRule, request: DecisionRequest): boolean {
  const { channels, trigger } = rule.settings;
  if (request.event !== undefined) return trigger !== undefined && matchesFilter(trigger.filter, request.event);
  return request.channel === '' || channels === null || channels.includes(request.channel);
}

/** Runs steps 1 to 4 for one rule; an eligible rule comes back as lower_priority until one is chosen. */
function evaluate(state: ProfileState, rule: CompiledRule, request: DecisionRequest, variables: ConditionActivation): DecisionCandidate {
  const result: DecisionCandidate = { rule: rule.name, version: rule.version, outcome: 'not_eligible', priority: null, detail: '' };
  try {
    if (request.event !== undefined && rule.triggerCondition !== undefined && rule.triggerCondition.evaluate(variables) !== true) {
      return { ...result, detail: 'trigger condition is false' };
    }
    if (rule.eligibility !== undefined && rule.eligibility.evaluate(variables) !== true) return result;
  } catch (error) {
    return { ...result, outcome: 'evaluation_failed', detail: errorText(error) };
  }

  const blocked = capOrCooldown(state, rule, request.nowMs);
  if (blocked !== undefined) return { ...result, ...blocked };

  try {
    return { ...result, outcome: 'lower_priority', priority: priorityOf(rule, variables) };
  } catch (error) {
    return { ...result, outcome: 'evaluation_failed', detail: errorText(error) };
  }
}

function capOrCooldown(state: ProfileState, rule: CompiledRule, nowMs: number): Pick<DecisionCandidate, 'outcome' | 'detail'> | undefined {
  const ofRule = state.decisions.filter((decision) => decision.rule === rule.name);
  for (const cap of rule.settings.caps) {
    const count = ofRule.filter((decision) => decision.atMs > nowMs - cap.windowMs).length;
    if (count >= cap.max) return { outcome: 'capped', detail: `${count} of at most ${cap.max} in ${duration(cap.windowMs)}` };
  }

  const last = ofRule.at(-1);
  const cooldownMs = rule.settings.cooldownMs;
  if (cooldownMs > 0 && last !== undefined && last.atMs > nowMs - cooldownMs) {
    return { outcome: 'cooldown', detail: `cooling down until ${new Date(last.atMs + cooldownMs).toISOString()}` };
  }
  return undefined;
}

function priorityOf(rule: CompiledRule, variables: ConditionActivation): number {
  if (rule.priority === undefined) return 0;
  const value = rule.priority.evaluate(variables);
  const priority = typeof value === 'bigint' ? Number(value) : value;
  if (typeof priority !== 'number' || !Number.isFinite(priority)) throw new TypeError(`priority evaluated to ${describeValue(value)}, not a finite number`);
  return priority;
}

/** Formats a CEL result for a message: strings quoted, other values as JSON where possible. */
export function describeValue(value: unknown): string {
  if (typeof value === 'bigint') return `${value}`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function byPriority(a: Candidate, b: Candidate): number {
  return (b.result.priority ?? 0) - (a.result.priority ?? 0) || (a.rule.name < b.rule.name ? -1 : 1);
}

/** Checks the profile's consent and the workspace's contact caps for the channel; marks the candidate when they block it. */
function passesContactPolicy(state: ProfileState, program: WorkspaceProgram, channel: string, nowMs: number, candidate: Candidate): boolean {
  const refusal = consentRefusal(state, program.consentTraits, channel);
  if (refusal !== undefined) {
    candidate.result = { ...candidate.result, outcome: 'no_consent', detail: refusal };
    return false;
  }

  for (const cap of program.contactCaps) {
    if (cap.channel !== null && cap.channel !== channel) continue;
    const count = state.decisions.filter((decision) => decision.atMs > nowMs - cap.windowMs && (cap.channel === null || decision.channel === cap.channel)).length;
    if (count >= cap.max) {
      const scope = cap.channel === null ? 'on all channels' : `on channel ${cap.channel}`;
      candidate.result = { ...candidate.result, outcome: 'contact_policy', detail: `${count} of at most ${cap.max} decisions ${scope} in ${duration(cap.windowMs)}` };
      return false;
    }
  }
  return true;
}

/** Returns the channel a decision counts on: the request's, else the rule's first, else none. */
function channelOf(rule: CompiledRule, request: DecisionRequest): string {
  return request.channel !== '' ? request.channel : (rule.settings.channels?.[0] ?? '');
}

function record(state: ProfileState, program: WorkspaceProgram, chosen: Candidate, request: DecisionRequest): void {
  const control = inControlGroup(chosen.rule, state.profileId);
  chosen.result = { ...chosen.result, outcome: control ? 'control_group' : 'chosen' };

  const decision: DecisionRecord = { rule: chosen.rule.name, action: chosen.rule.settings.action, channel: channelOf(chosen.rule, request), atMs: request.nowMs, control };
  state.decisions.push(decision);
  const keepAfterMs = request.nowMs - program.decisionHistoryMs;
  const firstKept = state.decisions.findIndex((kept) => kept.atMs > keepAfterMs);
  state.decisions.splice(0, firstKept === -1 ? state.decisions.length : Math.max(firstKept, state.decisions.length - DECISIONS_KEPT));
}

function receiptOf(state: ProfileState, request: DecisionRequest, chosen: Candidate | undefined, candidates: Candidate[]): DecisionReceipt {
  const group = (candidate: Candidate): number => {
    if (candidate === chosen) return 0;
    return candidate.result.priority === null ? 2 : 1;
  };
  const sorted = [...candidates].sort((a, b) => group(a) - group(b) || byPriority(a, b));
  return {
    decisionId: decisionId(state.profileId, request.cause),
    atMs: request.nowMs,
    // A triggered decision names no channel; it counts on the chosen rule's.
    channel: chosen === undefined ? request.channel : channelOf(chosen.rule, request),
    cause: request.cause,
    context: request.context,
    chosen:
      chosen === undefined
        ? null
        : {
            rule: chosen.rule.name,
            version: chosen.rule.version,
            action: chosen.rule.settings.action,
            control: chosen.result.outcome === 'control_group',
            priority: chosen.result.priority ?? 0,
          },
    candidates: sorted.map((candidate) => candidate.result),
  };
}

export function decisionId(profileId: string, cause: DecisionCause): string {
  return cause.kind === 'decide' ? `decide:${cause.requestId}:${profileId}` : `event:${cause.shard}:${cause.sequence}:${profileId}`;
}

/**
 * Places a profile in a rule's control group by FNV-1a of "RULE:PROFILE", so the same
 * profile is always in or out of the same rule's control group, on every node.
 */
export function inControlGroup(rule: CompiledRule, profileId: string): boolean {
  const percent = rule.settings.controlGroupPercent;
  if (percent <= 0) return false;
  return (fnv1a(`${rule.name}:${profileId}`) % 10_000) / 100 < percent;
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

function duration(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000} d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  return `${ms / 60_000} min`;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message.split('\n')[0] : String(error);
}
