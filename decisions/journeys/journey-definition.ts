/**
 * Journeys as a workspace declares them: an entry (an event or entering a segment), an
 * optional exit condition, and steps that wait, branch and act. Validated once; the CEL
 * conditions are compiled by the caller with the decision variables (`segments`, `context`).
 *
 * ```yaml
 * kind: Journey
 * metadata: { name: cart_recovery }
 * spec:
 *   entry: { event: Cart Abandoned }            # or { segment: at_risk }
 *   exitWhen: 'events["Order Completed"].count > 0'
 *   steps:
 *     - { name: pause, wait: { hours: 1 } }
 *     - { name: check, branch: [{ when: '"recent_buyer" in segments', goto: end }, { goto: email }] }
 *     - { name: email, action: send_cart_email, channel: email }
 * ```
 */
import { configError, describe, expectObject, resolveEventFilter, type EventFilter } from '../computed-traits/definition.js';
import { resolveDuration } from '../decision-rules/rule-definition.js';

export const JOURNEY_KEYS = ['entry', 'exitWhen', 'reentry', 'steps'];
const ENTRY_KEYS = ['event', 'page', 'screen', 'type', 'segment', 'condition'];
const STEP_KEYS = ['name', 'wait', 'waitFor', 'branch', 'action', 'channel'];
const WAIT_FOR_KEYS = ['event', 'page', 'screen', 'type', 'condition', 'timeout', 'onTimeout'];
const BRANCH_KEYS = ['when', 'goto'];
/** The target of a branch that ends the journey. */
export const END_STEP = 'end';
export const MAX_STEPS = 100;
const NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;
const NAME_RULE = 'must be 1 to 64 letters, digits, "_", ".", ":" or "-" starting with a letter';

export type JourneyEntry = { kind: 'event'; filter: EventFilter; condition: string | undefined } | { kind: 'segment'; segment: string };

export type JourneyStep =
  | { name: string; kind: 'wait'; waitMs: number }
  | { name: string; kind: 'waitFor'; filter: EventFilter; condition: string | undefined; timeoutMs: number; onTimeout: string }
  | { name: string; kind: 'branch'; branches: ReadonlyArray<{ when: string | undefined; goto: string }> }
  | { name: string; kind: 'action'; action: string; channel: string };

export interface JourneySettings {
  entry: JourneyEntry;
  exitWhen: string | undefined;
  /** Whether a profile that finished or left the journey may enter it again. */
  reentry: boolean;
  steps: readonly JourneyStep[];
}

/** Validates a Journey's spec. Throws ComputedTraitConfigError with the path under `spec` and the rule. */
export function resolveJourney(spec: unknown, path = 'spec'): JourneySettings {
  const journey = expectObject(spec, path, JOURNEY_KEYS);
  if (journey.entry === undefined) throw configError(`${path}.entry`, 'is missing. Give an event, such as { event: Cart Abandoned }, or a segment, such as { segment: at_risk }');
  const entry = resolveEntry(journey.entry, `${path}.entry`);
  const exitWhen = optionalExpression(journey.exitWhen, `${path}.exitWhen`);

  const reentry = journey.reentry ?? false;
  if (typeof reentry !== 'boolean') throw configError(`${path}.reentry`, `must be true or false, got ${describe(reentry)}`);

  const steps = resolveSteps(journey.steps, `${path}.steps`);
  return Object.freeze({ entry, exitWhen, reentry, steps });
}

function resolveEntry(value: unknown, path: string): JourneyEntry {
  const entry = expectObject(value, path, ENTRY_KEYS);
  if (entry.segment !== undefined) {
    const others = ENTRY_KEYS.filter((key) => key !== 'segment' && entry[key] !== undefined);
    if (others.length > 0) throw configError(`${path}.${others[0]}`, 'cannot be combined with segment. An entry is an event or a segment');
    if (typeof entry.segment !== 'string' || !NAME.test(entry.segment)) throw configError(`${path}.segment`, `${NAME_RULE}, got ${describe(entry.segment)}`);
    return Object.freeze({ kind: 'segment', segment: entry.segment });
  }

  const filter = resolveEventFilter(entry, path);
  if (filter.type === undefined && filter.name === undefined) {
    throw configError(path, 'must select events with one of event, page, screen or type, or name a segment');
  }
  return Object.freeze({ kind: 'event', filter, condition: optionalExpression(entry.condition, `${path}.condition`) });
}

function resolveSteps(value: unknown, path: string): JourneyStep[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_STEPS) {
    throw configError(path, `must be a list of 1 to ${MAX_STEPS} steps, got ${describe(value)}`);
  }

  const steps = value.map((item, i) => resolveStep(item, `${path}[${i}]`));
  const names = new Map<string, number>();
  steps.forEach((step, i) => {
    if (step.name === END_STEP) throw configError(`${path}[${i}].name`, `cannot be "${END_STEP}", which a branch uses to end the journey`);
    const earlier = names.get(step.name);
    if (earlier !== undefined) throw configError(`${path}[${i}].name`, `repeats step ${JSON.stringify(step.name)} of ${path}[${earlier}]`);
    names.set(step.name, i);
  });

  const checkTarget = (target: string, targetPath: string) => {
    if (target !== END_STEP && !names.has(target)) throw configError(targetPath, `names no step of the journey. Use a step name or "${END_STEP}"`);
  };
  steps.forEach((step, i) => {
    if (step.kind === 'waitFor') checkTarget(step.onTimeout, `${path}[${i}].waitFor.onTimeout`);
    if (step.kind === 'branch') step.branches.forEach((branch, j) => checkTarget(branch.goto, `${path}[${i}].branch[${j}].goto`));
  });
  return steps;
}

function resolveStep(value: unknown, path: string): JourneyStep {
  const step = expectObject(value, path, STEP_KEYS);
  if (typeof step.name !== 'string' || !NAME.test(step.name)) throw configError(`${path}.name`, `${NAME_RULE}, got ${describe(step.name)}`);
  const name = step.name;

  const kinds = ['wait', 'waitFor', 'branch', 'action'].filter((key) => step[key] !== undefined);
  if (kinds.length !== 1) throw configError(path, 'must have exactly one of wait, waitFor, branch and action');
  if (step.channel !== undefined && kinds[0] !== 'action') throw configError(`${path}.channel`, 'applies only to an action step');

  if (kinds[0] === 'wait') return Object.freeze({ name, kind: 'wait', waitMs: resolveDuration(step.wait, `${path}.wait`) });
  if (kinds[0] === 'waitFor') return resolveWaitFor(name, step.waitFor, `${path}.waitFor`);
  if (kinds[0] === 'action') {
    if (typeof step.action !== 'string' || !NAME.test(step.action)) throw configError(`${path}.action`, `${NAME_RULE}, got ${describe(step.action)}`);
    const channel = step.channel ?? '';
    if (typeof channel !== 'string' || (channel !== '' && !NAME.test(channel))) throw configError(`${path}.channel`, `${NAME_RULE}, got ${describe(channel)}`);
    return Object.freeze({ name, kind: 'action', action: step.action, channel });
  }

  if (!Array.isArray(step.branch) || step.branch.length === 0) {
    throw configError(`${path}.branch`, `must be a list of { when, goto }, the last one usually without when, got ${describe(step.branch)}`);
  }
  const branches = step.branch.map((item, j) => {
    const branch = expectObject(item, `${path}.branch[${j}]`, BRANCH_KEYS);
    if (typeof branch.goto !== 'string' || branch.goto === '') throw configError(`${path}.branch[${j}].goto`, `must name a step or "${END_STEP}", got ${describe(branch.goto)}`);
    return Object.freeze({ when: optionalExpression(branch.when, `${path}.branch[${j}].when`), goto: branch.goto });
  });
  return Object.freeze({ name, kind: 'branch', branches });
}

/** Reads a step that waits for a matching event, and goes to `onTimeout` when none comes within `timeout`. */
function resolveWaitFor(name: string, value: unknown, path: string): JourneyStep {
  const waitFor = expectObject(value, path, WAIT_FOR_KEYS);
  const filter = resolveEventFilter(waitFor, path);
  if (filter.type === undefined && filter.name === undefined) throw configError(path, 'must select events with one of event, page, screen or type, such as { event: Order Completed }');
  if (waitFor.timeout === undefined) throw configError(`${path}.timeout`, 'is missing. Give how long to wait, such as { days: 3 }');

  const timeoutMs = resolveDuration(waitFor.timeout, `${path}.timeout`);
  const onTimeout = waitFor.onTimeout ?? END_STEP;
  if (typeof onTimeout !== 'string' || onTimeout === '') throw configError(`${path}.onTimeout`, `must name a step or "${END_STEP}", got ${describe(onTimeout)}`);
  return Object.freeze({ name, kind: 'waitFor', filter, condition: optionalExpression(waitFor.condition, `${path}.condition`), timeoutMs, onTimeout });
}

function optionalExpression(value: unknown, path: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.trim() === '') throw configError(path, `must be a CEL expression as a non-empty string, got ${describe(value)}`);
  return value;
}

/** Lists the CEL expressions of a journey with their paths under `spec`, for compiling. */
export function journeyExpressions(settings: JourneySettings): Array<{ path: string; expression: string }> {
  const expressions: Array<{ path: string; expression: string }> = [];
  if (settings.entry.kind === 'event' && settings.entry.condition !== undefined) expressions.push({ path: 'spec.entry.condition', expression: settings.entry.condition });
  if (settings.exitWhen !== undefined) expressions.push({ path: 'spec.exitWhen', expression: settings.exitWhen });
  settings.steps.forEach((step, i) => {
    if (step.kind === 'waitFor' && step.condition !== undefined) expressions.push({ path: `spec.steps[${i}].waitFor.condition`, expression: step.condition });
    if (step.kind !== 'branch') return;
    step.branches.forEach((branch, j) => {
      if (branch.when !== undefined) expressions.push({ path: `spec.steps[${i}].branch[${j}].when`, expression: branch.when });
    });
  });
  return expressions;
}
