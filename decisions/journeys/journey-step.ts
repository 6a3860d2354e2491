/**
 * Moves a profile through the workspace's journeys, inside its actor, after each event and
 * when a timer is due:
 * - A profile not in a journey enters it when the event matches its entry and the entry
 *   condition is true, or when this evaluation put it in the entry segment. A journey
 *   without `reentry` is entered once.
 * - A profile in a journey leaves it when `exitWhen` is true.
 * - Then it advances from its step. An action step emits journey.action and goes on. A
 *   branch goes to the first branch whose `when` is true or that has none. A wait step
 *   stops the profile until its time is up, which the durable timer covers. A waitFor step
 *   stops it until a matching event arrives after the step began (then the next step) or
 *   its timeout passes (then `onTimeout`).
 * - After the last step, or a branch to `end`, the journey is completed.
 * A journey whose definition changed keeps its profiles at the step of the same name, and
 * lets go of those whose step no longer exists.
 */
import { matchesFilter } from '../computed-traits/definition.js';
import type { ConditionActivation, SegmentCondition } from '../definitions/segment-condition.js';
import type { ActivationType } from '../../profiles/activation.js';
import type { CustomerEvent } from '../../profiles/event.js';
import type { JourneyPosition, ProfileState } from '../../profiles/profile.js';
import { END_STEP, MAX_STEPS, type JourneySettings, type JourneyStep } from './journey-definition.js';

export interface CompiledJourney {
  name: string;
  version: number;
  hash: string;
  settings: JourneySettings;
  /** Compiled conditions by their path under `spec`, as journeyExpressions lists them. */
  conditions: ReadonlyMap<string, SegmentCondition>;
}

export interface JourneyListener {
  /** The profile entered, left, completed or acted in the journey `name` at `version` of its definition. */
  changed(type: ActivationType, name: string, version: number, detail: { step?: string; action?: string; channel?: string }): void;
  conditionFailed(journey: CompiledJourney, path: string, error: unknown): void;
}

export interface JourneyTrigger {
  /** The event being applied; undefined for a timer or a decision. */
  event: CustomerEvent | undefined;
  /** Segments this evaluation put the profile in. */
  enteredSegments: ReadonlySet<string>;
}

/** Steps a profile may take in one evaluation, so a branch loop cannot spin forever. */
const MAX_TRANSITIONS = MAX_STEPS * 2;

/** Advances the profile in every journey and returns the earliest wait end, or 0 when none. */
export function advanceJourneys(
  state: ProfileState,
  journeys: readonly CompiledJourney[],
  nowMs: number,
  trigger: JourneyTrigger,
  variables: ConditionActivation,
  listener: JourneyListener,
): number {
  for (const name of Object.keys(state.journeys)) {
    if (!journeys.some((journey) => journey.name === name)) finish(state, name, state.journeys[name].version, nowMs, 'journey.exited', listener);
  }

  let nextWakeMs = 0;
  for (const journey of journeys) {
    const position = positionIn(state, journey, nowMs, trigger, variables, listener);
    if (position === undefined) continue;

    advance(state, journey, position, nowMs, trigger, variables, listener);
    const waiting = state.journeys[journey.name]?.waitUntilMs ?? 0;
    if (waiting > 0 && (nextWakeMs === 0 || waiting < nextWakeMs)) nextWakeMs = waiting;
  }
  return nextWakeMs;
}

/** Returns the profile's position in the journey after entries and exits, or undefined when it is not in it. */
function positionIn(
  state: ProfileState,
  journey: CompiledJourney,
  nowMs: number,
  trigger: JourneyTrigger,
  variables: ConditionActivation,
  listener: JourneyListener,
): JourneyPosition | undefined {
  const current = Object.hasOwn(state.journeys, journey.name) ? state.journeys[journey.name] : undefined;
  if (current === undefined) {
    if (!journey.settings.reentry && Object.hasOwn(state.finishedJourneys, journey.name)) return undefined;
    if (!entersNow(journey, trigger, variables, listener)) return undefined;

    const entered: JourneyPosition = { hash: journey.hash, version: journey.version, step: journey.settings.steps[0].name, waitUntilMs: 0, enteredAtMs: nowMs };
    state.journeys[journey.name] = entered;
    listener.changed('journey.entered', journey.name, journey.version, {});
    return entered;
  }

  if (current.hash !== journey.hash) {
    if (!journey.settings.steps.some((step) => step.name === current.step)) {
      finish(state, journey.name, current.version, nowMs, 'journey.exited', listener);
      return undefined;
    }
    current.hash = journey.hash;
    current.version = journey.version;
  }

  if (holds(journey, 'spec.exitWhen', variables, listener)) {
    finish(state, journey.name, journey.version, nowMs, 'journey.exited', listener);
    return undefined;
  }
  return current;
}

function entersNow(journey: CompiledJourney, trigger: JourneyTrigger, variables: ConditionActivation, listener: JourneyListener): boolean {
  const entry = journey.settings.entry;
  if (entry.kind === 'segment') return trigger.enteredSegments.has(entry.segment);
  if (trigger.event === undefined || !matchesFilter(entry.filter, trigger.event)) return false;
  return entry.condition === undefined || holds(journey, 'spec.entry.condition', variables, listener);
}

function advance(
  state: ProfileState,
  journey: CompiledJourney,
  position: JourneyPosition,
  nowMs: number,
  trigger: JourneyTrigger,
  variables: ConditionActivation,
  listener: JourneyListener,
): void {
  const steps = journey.settings.steps;
  // Conditions see the same state throughout one evaluation, so coming back to a step that
  // does not wait repeats the same path forever: the profile leaves the journey instead.
  const visited = new Set<string>();
  for (let transitions = 0; transitions < MAX_TRANSITIONS; transitions++) {
    const index = steps.findIndex((step) => step.name === position.step);
    const step = steps[index];
    if (visited.has(step.name) && step.kind !== 'wait' && step.kind !== 'waitFor') {
      listener.conditionFailed(journey, 'spec.steps', new RangeError(`step ${step.name} came round again without a wait in between; the profile leaves the journey`));
      finish(state, journey.name, journey.version, nowMs, 'journey.exited', listener);
      return;
    }
    visited.add(step.name);
    const next = nextStep(journey, step, index, position, nowMs, trigger, variables, listener);
    // Only the step that waited for the event may take it; the steps after it see it as passed.
    trigger = { ...trigger, event: undefined };
    if (next === 'stay') return;
    if (next === END_STEP) {
      finish(state, journey.name, journey.version, nowMs, 'journey.completed', listener);
      return;
    }
    position.step = next;
  }
  // Only a journey of more than MAX_TRANSITIONS steps in a row without a wait gets here.
  listener.conditionFailed(journey, 'spec.steps', new RangeError(`the profile took ${MAX_TRANSITIONS} steps in one evaluation; it goes on at the next evaluation`));
}

/** Runs one step and returns the name of the next, END_STEP, or 'stay' while waiting. */
function nextStep(
  journey: CompiledJourney,
  step: JourneyStep,
  index: number,
  position: JourneyPosition,
  nowMs: number,
  trigger: JourneyTrigger,
  variables: ConditionActivation,
  listener: JourneyListener,
): string {
  const following = journey.settings.steps[index + 1]?.name ?? END_STEP;
  if (step.kind === 'waitFor') {
    if (position.waitUntilMs === 0) {
      position.waitUntilMs = nowMs + step.timeoutMs;
      return 'stay';
    }
    const arrived = trigger.event !== undefined && matchesFilter(step.filter, trigger.event) && (step.condition === undefined || holds(journey, `spec.steps[${index}].waitFor.condition`, variables, listener));
    if (arrived) {
      position.waitUntilMs = 0;
      return following;
    }
    if (nowMs < position.waitUntilMs) return 'stay';
    position.waitUntilMs = 0;
    return step.onTimeout;
  }
  if (step.kind === 'wait') {
    if (position.waitUntilMs === 0) position.waitUntilMs = nowMs + step.waitMs;
    if (nowMs < position.waitUntilMs) return 'stay';
    position.waitUntilMs = 0;
    return following;
  }
  if (step.kind === 'action') {
    listener.changed('journey.action', journey.name, journey.version, { step: step.name, action: step.action, channel: step.channel });
    return following;
  }

  const taken = step.branches.findIndex((branch, j) => branch.when === undefined || holds(journey, `spec.steps[${index}].branch[${j}].when`, variables, listener));
  return taken === -1 ? following : step.branches[taken].goto;
}

function finish(state: ProfileState, name: string, version: number, nowMs: number, type: 'journey.exited' | 'journey.completed', listener: JourneyListener): void {
  delete state.journeys[name];
  state.finishedJourneys[name] = nowMs;
  listener.changed(type, name, version, {});
}

/** Evaluates a compiled condition; one that fails counts as false, reported to the listener. */
function holds(journey: CompiledJourney, path: string, variables: ConditionActivation, listener: JourneyListener): boolean {
  const condition = journey.conditions.get(path);
  if (condition === undefined) return false;
  try {
    return condition.evaluate(variables) === true;
  } catch (error) {
    listener.conditionFailed(journey, path, error);
    return false;
  }
}
