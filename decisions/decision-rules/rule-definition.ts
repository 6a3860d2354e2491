/**
 * Decision rules and contact policies as a workspace declares them, validated once into the
 * settings that decide.ts trusts. Expressions (eligibility, priority, trigger condition)
 * are compiled by the caller, which has the workspace's computed traits.
 *
 * ```yaml
 * kind: DecisionRule
 * metadata: { name: upgrade_offer }
 * spec:
 *   action: show_upgrade_banner       # what Decide returns; default: the rule's name
 *   channels: [web, app]              # the channels it serves; default: every channel
 *   trigger: { event: Order Completed, condition: 'context.revenue > 100.0' }   # optional
 *   eligibility: 'computed.orders_30d >= 2'
 *   priority: 'computed.ltv * 0.1'    # higher wins; default 0
 *   caps: [{ max: 1, window: { days: 7 } }]
 *   cooldown: { hours: 24 }
 *   controlGroupPercent: 10
 * ```
 */
import { configError, describe, expectObject, MS_PER_DAY, MS_PER_HOUR, resolveEventFilter, type EventFilter } from '../computed-traits/definition.js';

export const RULE_KEYS = ['action', 'channels', 'trigger', 'eligibility', 'priority', 'caps', 'cooldown', 'controlGroupPercent'];
export const CONTACT_POLICY_KEYS = ['caps', 'consentTrait'];
const TRIGGER_KEYS = ['event', 'page', 'screen', 'type', 'condition'];
const CAP_KEYS = ['max', 'window'];
const POLICY_CAP_KEYS = ['max', 'window', 'channel'];
const DURATION_KEYS = ['days', 'hours', 'minutes'];

const MS_PER_MINUTE = 60_000;
const UNIT_MS = { days: MS_PER_DAY, hours: MS_PER_HOUR, minutes: MS_PER_MINUTE };
/** Maximum cap window or cooldown: 365 days. A profile drops decisions older than its longest window. */
export const MAX_DURATION_MS = 365 * MS_PER_DAY;
export const MAX_CAPS = 10;
export const MAX_CAP_COUNT = 1_000;
/** At most half of the profiles can be held out as a control group. */
export const MAX_CONTROL_GROUP_PERCENT = 50;
const NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;
const NAME_RULE = 'must be 1 to 64 letters, digits, "_", ".", ":" or "-" starting with a letter';

export interface FrequencyCap {
  max: number;
  windowMs: number;
}

export interface PolicyCap extends FrequencyCap {
  /** The channel the cap counts; null counts decisions on every channel. */
  channel: string | null;
}

export interface RuleTrigger {
  filter: EventFilter;
  /** CEL condition over the profile with the event's properties as `context`; undefined for none. */
  condition: string | undefined;
}

/** A validated decision rule. */
export interface DecisionRuleSettings {
  action: string;
  /** null serves every channel. */
  channels: readonly string[] | null;
  trigger: RuleTrigger | undefined;
  eligibility: string | undefined;
  priority: string | undefined;
  caps: readonly FrequencyCap[];
  /** 0 for none. */
  cooldownMs: number;
  controlGroupPercent: number;
}

export interface ContactPolicySettings {
  caps: readonly PolicyCap[];
  /**
   * The profile trait with the consent: false forbids every channel, and an object maps
   * channel names to booleans, where false forbids that channel. Undefined for none.
   */
  consentTrait: string | undefined;
}

/** Validates a DecisionRule's spec. Throws ComputedTraitConfigError with the path and the rule. */
export function resolveDecisionRule(spec: unknown, name: string, path = 'spec'): DecisionRuleSettings {
  const rule = expectObject(spec, path, RULE_KEYS);

  const action = rule.action === undefined ? name : resolveName(rule.action, `${path}.action`);
  const channels = rule.channels === undefined ? null : resolveChannels(rule.channels, `${path}.channels`);
  const trigger = rule.trigger === undefined ? undefined : resolveTrigger(rule.trigger, `${path}.trigger`);
  const eligibility = optionalExpression(rule.eligibility, `${path}.eligibility`);
  const priority = optionalExpression(rule.priority, `${path}.priority`);
  const caps = rule.caps === undefined ? [] : resolveCaps(rule.caps, `${path}.caps`, CAP_KEYS).map(({ max, windowMs }) => ({ max, windowMs }));
  const cooldownMs = rule.cooldown === undefined ? 0 : resolveDuration(rule.cooldown, `${path}.cooldown`);
  const controlGroupPercent = rule.controlGroupPercent === undefined ? 0 : resolvePercent(rule.controlGroupPercent, `${path}.controlGroupPercent`);

  return Object.freeze({ action, channels, trigger, eligibility, priority, caps, cooldownMs, controlGroupPercent });
}

/** Validates a ContactPolicy's spec: caps per profile over every rule, on one channel or all. */
export function resolveContactPolicy(spec: unknown, path = 'spec'): ContactPolicySettings {
  const policy = expectObject(spec, path, CONTACT_POLICY_KEYS);
  if (policy.caps === undefined && policy.consentTrait === undefined) {
    throw configError(path, 'must set caps, such as [{ max: 3, window: { days: 7 } }], or consentTrait, or both');
  }

  const caps = policy.caps === undefined ? [] : resolveCaps(policy.caps, `${path}.caps`, POLICY_CAP_KEYS);
  const consentTrait = policy.consentTrait;
  if (consentTrait !== undefined && (typeof consentTrait !== 'string' || consentTrait === '' || consentTrait.length > 256)) {
    throw configError(`${path}.consentTrait`, `must be the name of a trait, such as consent, got ${describe(consentTrait)}`);
  }
  return Object.freeze({ caps, consentTrait: consentTrait as string | undefined });
}

function resolveName(value: unknown, path: string): string {
  if (typeof value !== 'string' || !NAME.test(value)) throw configError(path, `${NAME_RULE}, got ${describe(value)}`);
  return value;
}

function resolveChannels(value: unknown, path: string): string[] {
  if (!Array.isArray(value) || value.length === 0) throw configError(path, `must be a non-empty list of channel names, such as [web, app], got ${describe(value)}`);
  const channels = value.map((channel, i) => resolveName(channel, `${path}[${i}]`));
  const repeated = channels.findIndex((channel, i) => channels.indexOf(channel) !== i);
  if (repeated >= 0) throw configError(`${path}[${repeated}]`, `repeats channel ${JSON.stringify(channels[repeated])}`);
  return channels;
}

function resolveTrigger(value: unknown, path: string): RuleTrigger {
  const trigger = expectObject(value, path, TRIGGER_KEYS);
  const filter = resolveEventFilter(trigger, path);
  if (filter.type === undefined && filter.name === undefined) {
    throw configError(path, 'must select events with one of event, page, screen or type, such as { event: Order Completed }');
  }
  return Object.freeze({ filter, condition: optionalExpression(trigger.condition, `${path}.condition`) });
}

function optionalExpression(value: unknown, path: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.trim() === '') throw configError(path, `must be a CEL expression as a non-empty string, got ${describe(value)}`);
  return value;
}

function resolveCaps(value: unknown, path: string, keys: readonly string[]): PolicyCap[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_CAPS) {
    throw configError(path, `must be a list of 1 to ${MAX_CAPS} caps, such as [{ max: 1, window: { days: 7 } }], got ${describe(value)}`);
  }
  return value.map((item, i) => {
    const capPath = `${path}[${i}]`;
    const cap = expectObject(item, capPath, keys);
    const max = cap.max;
    if (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > MAX_CAP_COUNT) {
      throw configError(`${capPath}.max`, `must be an integer from 1 to ${MAX_CAP_COUNT}, got ${describe(max)}`);
    }
    if (cap.window === undefined) throw configError(`${capPath}.window`, 'is missing. Give the window the cap counts over, such as { days: 7 }');
    const windowMs = resolveDuration(cap.window, `${capPath}.window`);
    const channel = cap.channel === undefined ? null : resolveName(cap.channel, `${capPath}.channel`);
    return Object.freeze({ max, windowMs, channel });
  });
}

/** Reads `{ days }`, `{ hours }` or `{ minutes }` (exactly one, a positive integer) as ms, at most 365 days. */
export function resolveDuration(value: unknown, path: string): number {
  const duration = expectObject(value, path, DURATION_KEYS);
  const set = DURATION_KEYS.filter((key) => duration[key] !== undefined);
  if (set.length !== 1) throw configError(path, 'must set exactly one of days, hours and minutes, such as { hours: 24 }');

  const unit = set[0];
  const amount = duration[unit];
  const unitMs = UNIT_MS[unit as keyof typeof UNIT_MS];
  const max = MAX_DURATION_MS / unitMs;
  if (typeof amount !== 'number' || !Number.isInteger(amount) || amount < 1 || amount > max) {
    throw configError(`${path}.${unit}`, `must be an integer from 1 to ${max}, got ${describe(amount)}`);
  }
  return amount * unitMs;
}

function resolvePercent(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_CONTROL_GROUP_PERCENT) {
    throw configError(path, `must be a number from 0 to ${MAX_CONTROL_GROUP_PERCENT}, got ${describe(value)}`);
  }
  return value;
}
