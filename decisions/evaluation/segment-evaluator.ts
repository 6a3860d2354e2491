/**
 * Evaluates a workspace's computed traits and segments inside a profile's actor, after each
 * applied event and when a timer is due. Segment membership changes become segment.entered
 * and segment.exited activations on the profile, stored with its next snapshot.
 *
 * Rules:
 * - Every applied event updates every computed trait of the workspace, then every segment
 *   is evaluated again on the new state, at the wall-clock time of the step.
 * - A computed trait's state is kept under the content hash of its definition. A profile
 *   loaded after its trait was added or changed has the trait rebuilt from its stored
 *   history (rebuildTraits). A profile that is in memory when the definition changes starts
 *   the trait again empty at its next event, and counts only events from then on.
 *   NOTE: such a profile's value stays partial until the profile is passivated and loaded again.
 * - Windowed traits change value with time alone. The profile's `nextEvaluationMs` is the
 *   earliest expiry among the traits that some segment reads, and a durable timer evaluates
 *   the profile again then, so an exit caused by time fires without a new event.
 * - A condition that throws (such as `traits.plan` on a profile without that trait) or
 *   returns something other than a boolean counts as false. The first such error of each
 *   segment version is logged, and `stats().evaluationErrors` counts them all.
 * - A segment whose definition was deleted is left: each member gets segment.exited at its
 *   next evaluation.
 */
import type { Logger } from '../../common/logger.js';
import { activationId, type ActivationCause, type ActivationType } from '../../profiles/activation.js';
import type { CustomerEvent, JsonValue } from '../../profiles/event.js';
import type { EvaluationDue, ProfileEvaluator } from '../../profiles/evaluator.js';
import type { AppliedEvent, ProfileSnapshot, ProfileState } from '../../profiles/profile.js';
import type { TraitValue } from '../computed-traits/values.js';
import type { ConditionActivation } from '../definitions/segment-condition.js';
import type { DefinitionCatalog } from './definition-catalog.js';
import type { CompiledSegment, CompiledTrait, WorkspaceProgram } from './workspace-program.js';

export interface SegmentEvaluatorOptions {
  catalog: DefinitionCatalog;
  logger: Logger;
}

export interface SegmentEvaluatorStats {
  /** Segment evaluations, one per segment and profile step. */
  evaluations: number;
  /** Evaluations whose condition threw or returned a non-boolean. */
  evaluationErrors: number;
  entered: number;
  exited: number;
}

export class SegmentEvaluator implements ProfileEvaluator {
  readonly #catalog: DefinitionCatalog;
  readonly #logger: Logger;
  readonly #stats: SegmentEvaluatorStats = { evaluations: 0, evaluationErrors: 0, entered: 0, exited: 0 };
  /** Segment versions whose evaluation error was logged already. */
  readonly #loggedErrors = new Set<string>();

  constructor(options: SegmentEvaluatorOptions) {
    this.#catalog = options.catalog;
    this.#logger = options.logger.child({ component: 'segment-evaluator' });
  }

  prepare(workspace: string): Promise<void> {
    return this.#catalog.prepare(workspace);
  }

  afterEvent(state: ProfileState, applied: AppliedEvent, nowMs: number): void {
    const program = this.#programFor(state);
    if (program === undefined) return;

    syncTraitStates(state, program);
    for (const { name, trait } of program.traits) trait.update(state.computed[name].state as never, applied.event);

    const { shard, sequence } = applied.position;
    this.#evaluate(state, program, nowMs, { kind: 'event', shard, sequence, messageId: applied.event.messageId });
  }

  onDue(state: ProfileState, due: EvaluationDue, nowMs: number): void {
    // A timer can arrive twice, or after an event already moved the evaluation time.
    const dueMs = state.nextEvaluationMs;
    if (dueMs === 0 || dueMs > nowMs || dueMs !== due.dueMs) return;

    const program = this.#programFor(state);
    if (program === undefined) {
      state.nextEvaluationMs = 0;
      return;
    }
    syncTraitStates(state, program);
    this.#evaluate(state, program, nowMs, { kind: 'timer', dueMs });
  }

  staleTraits(state: ProfileState): string[] {
    const program = this.#catalog.program(state.workspace);
    if (program === undefined || state.eventCount === 0) return [];
    return program.traits.filter((compiled) => !hasCurrentState(state, compiled)).map((compiled) => compiled.name);
  }

  rebuildTraits(state: ProfileState, names: readonly string[], events: Iterable<CustomerEvent>): void {
    const program = this.#catalog.program(state.workspace);
    const traits = (program?.traits ?? []).filter((compiled) => names.includes(compiled.name));
    for (const { name, hash, trait } of traits) state.computed[name] = { hash, state: trait.createState() };
    for (const event of events) {
      for (const { name, trait } of traits) trait.update(state.computed[name].state as never, event);
    }
  }

  computedValues(snapshot: ProfileSnapshot, nowMs: number): Record<string, JsonValue> {
    const program = this.#catalog.program(snapshot.workspace);
    const values: Record<string, JsonValue> = {};
    for (const compiled of program?.traits ?? []) values[compiled.name] = traitValue(compiled, traitStateOf(snapshot, compiled), nowMs);
    return values;
  }

  stats(): SegmentEvaluatorStats {
    return { ...this.#stats };
  }

  /** Returns the workspace's program, or undefined when the profile has nothing to evaluate or undo. */
  #programFor(state: ProfileState): WorkspaceProgram | undefined {
    const program = this.#catalog.program(state.workspace);
    if (program === undefined) {
      this.#logger.error({ workspace: state.workspace, profileId: state.profileId }, 'definitions of the workspace were not prepared; the profile is not evaluated');
      return undefined;
    }
    if (program.empty && isEmpty(state.computed) && isEmpty(state.segments) && state.nextEvaluationMs === 0) return undefined;
    return program;
  }

  #evaluate(state: ProfileState, program: WorkspaceProgram, nowMs: number, cause: ActivationCause): void {
    const computed: Record<string, JsonValue> = {};
    for (const compiled of program.traits) {
      if (program.traitsReadBySegments.has(compiled.name)) computed[compiled.name] = traitValue(compiled, state.computed[compiled.name].state, nowMs);
    }
    const variables = program.segments.length === 0 ? undefined : program.compiler.activation(state, computed, nowMs);

    for (const segment of program.segments) {
      const member = this.#test(state, segment, variables as ConditionActivation);
      const membership = Object.hasOwn(state.segments, segment.name) ? state.segments[segment.name] : undefined;

      if (member && membership === undefined) {
        state.segments[segment.name] = { enteredAtMs: nowMs, version: segment.version };
        this.#emit(state, 'segment.entered', segment.name, segment.version, nowMs, cause);
      } else if (!member && membership !== undefined) {
        delete state.segments[segment.name];
        this.#emit(state, 'segment.exited', segment.name, segment.version, nowMs, cause);
      } else if (membership !== undefined) {
        membership.version = segment.version;
      }
    }

    for (const name of Object.keys(state.segments)) {
      if (program.segments.some((segment) => segment.name === name)) continue;
      const { version } = state.segments[name];
      delete state.segments[name];
      this.#emit(state, 'segment.exited', name, version, nowMs, { kind: 'definition', version });
    }

    state.nextEvaluationMs = nextEvaluationMs(state, program, nowMs);
  }

  #test(state: ProfileState, segment: CompiledSegment, variables: ConditionActivation): boolean {
    this.#stats.evaluations += 1;
    let result: unknown;
    try {
      result = segment.condition.evaluate(variables);
    } catch (error) {
      this.#reportError(state, segment, error);
      return false;
    }
    if (typeof result === 'boolean') return result;

    this.#reportError(state, segment, new TypeError(`the condition returned ${result === null ? 'null' : typeof result}, not a boolean`));
    return false;
  }

  #reportError(state: ProfileState, segment: CompiledSegment, error: unknown): void {
    this.#stats.evaluationErrors += 1;
    const key = `${state.workspace}/${segment.name}@${segment.version}`;
    if (this.#loggedErrors.has(key)) return;
    this.#loggedErrors.add(key);
    this.#logger.warn(
      { workspace: state.workspace, profileId: state.profileId, segment: segment.name, version: segment.version, err: error },
      'segment condition failed on a profile and counts as false; later failures of this segment version are counted, not logged',
    );
  }

  #emit(state: ProfileState, type: ActivationType, name: string, version: number, nowMs: number, cause: ActivationCause): void {
    if (type === 'segment.entered') this.#stats.entered += 1;
    else this.#stats.exited += 1;
    state.activations.push({
      id: activationId(type, state.profileId, name, cause),
      type,
      workspace: state.workspace,
      profileId: state.profileId,
      name,
      definitionVersion: version,
      atMs: nowMs,
      cause,
    });
  }
}

/** Starts the state of each trait that is new or whose definition changed, and drops those of deleted traits. */
function syncTraitStates(state: ProfileState, program: WorkspaceProgram): void {
  for (const { name, hash, trait } of program.traits) {
    const entry = Object.hasOwn(state.computed, name) ? state.computed[name] : undefined;
    if (entry === undefined || entry.hash !== hash) state.computed[name] = { hash, state: trait.createState() };
  }
  for (const name of Object.keys(state.computed)) {
    if (!program.traits.some((compiled) => compiled.name === name)) delete state.computed[name];
  }
}

function hasCurrentState(snapshot: ProfileSnapshot, compiled: CompiledTrait): boolean {
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
function traitValue(compiled: CompiledTrait, state: unknown, nowMs: number): TraitValue {
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

function isEmpty(record: object): boolean {
  for (const _ in record) return false;
  return true;
}
