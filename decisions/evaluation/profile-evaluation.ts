/**
 * One profile's evaluation step against a compiled WorkspaceProgram: updating its computed
 * traits with an event and evaluating its segments. DefinitionEvaluator runs these steps in the
 * profile actors; the definition test runs them on detached copies replayed from history.
 * Each function changes only the state it is given.
 */
import type { ActivationType } from '../../profiles/activation.js';
import type { CustomerEvent, JsonValue } from '../../profiles/event.js';
import type { ProfileSnapshot, ProfileState } from '../../profiles/profile.js';
import type { TraitValue } from '../computed-traits/values.js';
import type { ConditionActivation } from '../definitions/segment-condition.js';
import { createModelState, mergeModelState, scoreOf, updateModelState } from '../scoring/compiled-model.js';
import type { CompiledSegment, CompiledTrait, WorkspaceProgram } from './workspace-program.js';

/** Callbacks through which evaluateSegments reports condition failures and membership changes. */
export interface SegmentStepListener {
  /** A condition threw or returned a non-boolean, so the profile counts as not matching the segment. */
  conditionFailed(segment: CompiledSegment, error: unknown): void;
  /**
   * The profile entered or left a segment, and `state.segments` already shows it.
   * `deleted` marks an exit because the segment is no longer in the program.
   */
  membershipChanged(type: ActivationType, name: string, version: number, deleted: boolean): void;
  /** A scoring model's feature failed to evaluate, so the model has no score on the profile. */
  scoreFailed?(model: string, error: unknown): void;
}

/** Updates every computed trait and scoring model state of the program with an event the profile has applied. */
export function updateComputedTraits(state: ProfileState, program: WorkspaceProgram, event: CustomerEvent): void {
  syncTraitStates(state, program);
  for (const { name, trait } of program.traits) trait.update(state.computed[name].state as never, event);
  for (const model of program.models) updateModelState(model, state.modelStates[model.name].state, event);
}

/**
 * Computes every scoring model's score at `nowMs` into `state.scores`, so segments and rules
 * read current values. A model without a score (a BG/NBD model before the first purchase),
 * or whose feature fails to evaluate, has no entry; `onError` gets the failures.
 */
export function computeScores(state: ProfileState, program: WorkspaceProgram, nowMs: number, onError: (model: string, error: unknown) => void): void {
  const scores: Record<string, number> = {};
  if (program.models.length > 0) {
    const variables = program.compiler.activation(state, computedValuesOf(state, program, nowMs), nowMs);
    for (const model of program.models) {
      try {
        const score = scoreOf(model, state.modelStates[model.name].state, variables, nowMs);
        if (score !== undefined) scores[model.name] = score;
      } catch (error) {
        onError(model.name, error);
      }
    }
  }
  state.scores = scores;
}

/**
 * Evaluates every segment of the program at `nowMs`: a profile is a member exactly when the
 * condition returns true. Updates `state.segments`, drops memberships of segments the
 * program no longer has, and sets `state.nextEvaluationMs`. Call syncTraitStates first
 * unless updateComputedTraits ran since the program last changed.
 */
export function evaluateSegments(state: ProfileState, program: WorkspaceProgram, nowMs: number, listener: SegmentStepListener): void {
  computeScores(state, program, nowMs, (model, error) => listener.scoreFailed?.(model, error));
  const computed: Record<string, JsonValue> = {};
  for (const compiled of program.traits) {
    if (program.traitsReadBySegments.has(compiled.name)) computed[compiled.name] = traitValue(compiled, state.computed[compiled.name].state, nowMs);
  }
  const variables = program.segments.length === 0 ? undefined : program.compiler.activation(state, computed, nowMs);

  for (const segment of program.segments) {
    const member = testCondition(segment, variables as ConditionActivation, listener);
    const membership = Object.hasOwn(state.segments, segment.name) ? state.segments[segment.name] : undefined;

    if (member && membership === undefined) {
      state.segments[segment.name] = { enteredAtMs: nowMs, version: segment.version };
      listener.membershipChanged('segment.entered', segment.name, segment.version, false);
    } else if (!member && membership !== undefined) {
      delete state.segments[segment.name];
      listener.membershipChanged('segment.exited', segment.name, segment.version, false);
    } else if (membership !== undefined) {
      membership.version = segment.version;
    }
  }

  for (const name of Object.keys(state.segments)) {
    if (program.segments.some((segment) => segment.name === name)) continue;
    const { version } = state.segments[name];
    delete state.segments[name];
    listener.membershipChanged('segment.exited', name, version, true);
  }

  state.nextEvaluationMs = nextEvaluationMs(state, program, nowMs);
}

function testCondition(segment: CompiledSegment, variables: ConditionActivation, listener: SegmentStepListener): boolean {
  let result: unknown;
  try {
    result = segment.condition.evaluate(variables);
  } catch (error) {
    listener.conditionFailed(segment, error);
    return false;
  }
  if (typeof result === 'boolean') return result;

  listener.conditionFailed(segment, new TypeError(`the condition returned ${result === null ? 'null' : typeof result}, not a boolean`));
  return false;
}

/** Returns the value of each computed trait of the program on the profile at `nowMs`. */
export function computedValuesOf(snapshot: ProfileSnapshot, program: WorkspaceProgram | undefined, nowMs: number): Record<string, JsonValue> {
  const values: Record<string, JsonValue> = {};
  for (const compiled of program?.traits ?? []) values[compiled.name] = traitValue(compiled, traitStateOf(snapshot, compiled), nowMs);
  return values;
}

/**
 * Merges the computed trait and scoring model states of `from`, a profile merged into
 * `state`, so each is as if one profile had applied both profiles' events.
 * NOTE: a state `from` built under another version of a definition than `state`'s current
 * one is dropped, so the merged value misses those events until the profile is rebuilt.
 */
export function mergeComputedStates(state: ProfileState, from: ProfileSnapshot, program: WorkspaceProgram): void {
  syncTraitStates(state, program);
  for (const { name, hash, trait } of program.traits) {
    const other = Object.hasOwn(from.computed, name) ? from.computed[name] : undefined;
    if (other?.hash === hash) trait.merge(state.computed[name].state as never, other.state as never);
  }
  for (const model of program.models) {
    const other = Object.hasOwn(from.modelStates, model.name) ? from.modelStates[model.name] : undefined;
    if (other?.hash === model.hash) mergeModelState(model, state.modelStates[model.name].state, other.state);
  }
}

/** Starts the state of each trait that is new or whose definition changed, and drops those of deleted traits. */
export function syncTraitStates(state: ProfileState, program: WorkspaceProgram): void {
  for (const { name, hash, trait } of program.traits) {
    const entry = Object.hasOwn(state.computed, name) ? state.computed[name] : undefined;
    if (entry === undefined || entry.hash !== hash) state.computed[name] = { hash, state: trait.createState() };
  }
  for (const name of Object.keys(state.computed)) {
    if (!program.traits.some((compiled) => compiled.name === name)) delete state.computed[name];
  }
  for (const model of program.models) {
    const entry = Object.hasOwn(state.modelStates, model.name) ? state.modelStates[model.name] : undefined;
    if (entry === undefined || entry.hash !== model.hash) state.modelStates[model.name] = { hash: model.hash, state: createModelState(model) };
  }
  for (const name of Object.keys(state.modelStates)) {
    if (!program.models.some((model) => model.name === name)) delete state.modelStates[name];
  }
}

export function hasCurrentState(snapshot: ProfileSnapshot, compiled: CompiledTrait): boolean {
  return Object.hasOwn(snapshot.computed, compiled.name) && snapshot.computed[compiled.name].hash === compiled.hash;
}

/** Returns a trait's state on the profile, or an empty one when the profile has none under the current definition. */
function traitStateOf(snapshot: ProfileSnapshot, compiled: CompiledTrait): unknown {
  return hasCurrentState(snapshot, compiled) ? snapshot.computed[compiled.name].state : compiled.trait.createState();
}

/**
 * Reads a trait's value at `nowMs`, or at the earliest time the state allows when the
 * profile has events dated after `nowMs` beyond the trait's allowed skew.
 */
export function traitValue(compiled: CompiledTrait, state: unknown, nowMs: number): TraitValue {
  const trait = compiled.trait;
  return trait.value(state as never, Math.max(nowMs, trait.minQueryTimeMs(state as never)));
}

/** Returns the earliest expiry of the traits that segments read, or 0 when none expires. */
function nextEvaluationMs(state: ProfileState, program: WorkspaceProgram, nowMs: number): number {
  let next = Number.POSITIVE_INFINITY;
  for (const { name, trait } of program.traits) {
    if (!program.traitsReadBySegments.has(name)) continue;
    const traitState = state.computed[name].state as never;
    const expiry = trait.nextExpiryMs(traitState, Math.max(nowMs, trait.minQueryTimeMs(traitState)));
    if (expiry !== null && expiry < next) next = expiry;
  }
  return next === Number.POSITIVE_INFINITY ? 0 : next;
}
