/**
 * Evaluates a workspace's computed traits and segments inside a profile's actor, after each
 * applied event and when a timer is due. Segment membership changes become segment.entered
 * and segment.exited activations on the profile, stored with its next snapshot.
 *
 * Rules:
 * - Every applied event updates every computed trait of the workspace, then every segment
 *   is evaluated again on the new state, at the wall-clock time of the step.
 * - A computed trait's state is kept under the hash of its definition's spec. A profile
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
import type { DecideRequest, EvaluationDue, ProfileEvaluator } from '../../profiles/evaluator.js';
import type { DecisionReceipt } from '../../profiles/decision-state.js';
import { decide, decisionId, decisionVariables, type DecisionRequest } from '../decision-rules/decide.js';
import { advanceJourneys } from '../journeys/journey-step.js';
import { consentRefusal } from '../decision-rules/consent.js';
import type { MergeCause } from '../../profiles/identity-commands.js';
import type { AppliedEvent, ProfileSnapshot, ProfileState } from '../../profiles/profile.js';
import type { DefinitionCatalog } from './definition-catalog.js';
import { computedValuesOf, evaluateSegments, hasCurrentState, mergeComputedStates, syncTraitStates, updateComputedTraits, computeScores } from './profile-evaluation.js';
import type { CompiledSegment, WorkspaceProgram } from './workspace-program.js';

export interface DefinitionEvaluatorOptions {
  catalog: DefinitionCatalog;
  logger: Logger;
}

export interface EvaluatorStats {
  /** Segment evaluations, one per segment and profile step. */
  evaluations: number;
  /** Evaluations whose condition threw or returned a non-boolean. */
  evaluationErrors: number;
  entered: number;
  exited: number;
  /** Decisions made, by Decide calls and by triggers. */
  decisions: number;
  /** decision.made activations. */
  activations: number;
  /** Journey actions taken without an activation because the profile's consent forbids their channel. */
  withheldForConsent: number;
}

export class DefinitionEvaluator implements ProfileEvaluator {
  readonly #catalog: DefinitionCatalog;
  readonly #logger: Logger;
  readonly #stats: EvaluatorStats = { evaluations: 0, evaluationErrors: 0, entered: 0, exited: 0, decisions: 0, activations: 0, withheldForConsent: 0 };
  /** Segment versions whose evaluation error was logged already. */
  readonly #loggedErrors = new Set<string>();

  constructor(options: DefinitionEvaluatorOptions) {
    this.#catalog = options.catalog;
    this.#logger = options.logger.child({ component: 'definition-evaluator' });
  }

  prepare(workspace: string): Promise<void> {
    return this.#catalog.prepare(workspace);
  }

  afterEvent(state: ProfileState, applied: AppliedEvent, nowMs: number): void {
    const program = this.#programFor(state);
    if (program === undefined) return;

    updateComputedTraits(state, program, applied.event);
    const { shard, sequence } = applied.position;
    const cause = { kind: 'event' as const, shard, sequence, messageId: applied.event.messageId };
    this.#evaluate(state, program, nowMs, cause, applied.event);
    if (program.rules.some((rule) => rule.settings.trigger !== undefined)) {
      const context = (applied.event.properties ?? applied.event.traits ?? {}) as Record<string, JsonValue>;
      this.#decide(state, program, { channel: '', context, nowMs, cause, event: applied.event });
    }
  }

  decide(state: ProfileState, request: DecideRequest): DecisionReceipt {
    const program = this.#catalog.program(state.workspace);
    if (program === undefined) throw new Error(`definitions of workspace ${state.workspace} were not prepared`);
    // A retried call (after a lost reply) gets the decision it already made.
    const cause = { kind: 'decide' as const, requestId: request.requestId };
    const id = decisionId(state.profileId, cause);
    const earlier = state.receipts.find((receipt) => receipt.decisionId === id);
    if (earlier !== undefined) return earlier;

    syncTraitStates(state, program);
    return this.#decide(state, program, { channel: request.channel, context: request.context, nowMs: request.nowMs, cause }) as DecisionReceipt;
  }

  /** Decides, and emits decision.made when a rule was chosen outside its control group. */
  #decide(state: ProfileState, program: WorkspaceProgram, request: DecisionRequest): DecisionReceipt | undefined {
    computeScores(state, program, request.nowMs, (model, error) => this.#reportScoreError(state, model, error));
    const computed = computedValuesOf(state, program, request.nowMs);
    const receipt = decide(state, program, request, computed);
    if (receipt === undefined) return undefined;
    this.#stats.decisions += 1;
    const chosen = receipt.chosen;
    if (chosen !== null && !chosen.control) {
      const cause: ActivationCause = request.cause;
      this.#stats.activations += 1;
      state.activations.push({
        id: activationId('decision.made', state.profileId, chosen.rule, cause),
        type: 'decision.made',
        workspace: state.workspace,
        profileId: state.profileId,
        name: chosen.rule,
        definitionVersion: chosen.version,
        atMs: request.nowMs,
        cause,
        action: chosen.action,
        channel: receipt.channel !== '' ? receipt.channel : (program.rules.find((rule) => rule.name === chosen.rule)?.settings.channels?.[0] ?? ''),
      });
    }
    return receipt;
  }

  afterMerge(state: ProfileState, from: ProfileSnapshot, nowMs: number): void {
    const program = this.#programFor(state);
    if (program === undefined) return;

    mergeComputedStates(state, from, program);
    const merge = state.merges.at(-1);
    const cause: ActivationCause = { kind: 'merge', messageId: merge?.messageId ?? '', rule: merge?.rule ?? '' };
    this.#evaluate(state, program, nowMs, cause);
  }

  afterUnmerge(state: ProfileState, unmerge: MergeCause, nowMs: number): void {
    const program = this.#programFor(state);
    if (program === undefined) return;

    syncTraitStates(state, program);
    this.#evaluate(state, program, nowMs, { kind: 'merge', messageId: unmerge.messageId, rule: unmerge.rule });
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
    return computedValuesOf(snapshot, this.#catalog.program(snapshot.workspace), nowMs);
  }

  stats(): EvaluatorStats {
    return { ...this.#stats };
  }

  /** Returns the workspace's program, or undefined when the profile has nothing to evaluate or undo. */
  #programFor(state: ProfileState): WorkspaceProgram | undefined {
    const program = this.#catalog.program(state.workspace);
    if (program === undefined) {
      this.#logger.error({ workspace: state.workspace, profileId: state.profileId }, 'definitions of the workspace were not prepared; the profile is not evaluated');
      return undefined;
    }
    if (program.empty && isEmpty(state.computed) && isEmpty(state.segments) && isEmpty(state.journeys) && state.nextEvaluationMs === 0) return undefined;
    return program;
  }

  #evaluate(state: ProfileState, program: WorkspaceProgram, nowMs: number, cause: ActivationCause, event?: CustomerEvent): void {
    this.#stats.evaluations += program.segments.length;
    const before = new Set(Object.keys(state.segments));
    evaluateSegments(state, program, nowMs, {
      conditionFailed: (segment, error) => this.#reportError(state, segment, error),
      scoreFailed: (model, error) => this.#reportScoreError(state, model, error),
      membershipChanged: (type, name, version, deleted) => this.#emit(state, type, name, version, nowMs, deleted ? { kind: 'definition', version } : cause),
    });
    if (program.journeys.length > 0 || !isEmpty(state.journeys)) this.#advanceJourneys(state, program, nowMs, cause, event, before);
  }

  /** Moves the profile through the journeys, and wakes it again when its earliest wait ends. */
  #advanceJourneys(state: ProfileState, program: WorkspaceProgram, nowMs: number, cause: ActivationCause, event: CustomerEvent | undefined, segmentsBefore: Set<string>): void {
    const enteredSegments = new Set(Object.keys(state.segments).filter((name) => !segmentsBefore.has(name)));
    const context = (event?.properties ?? event?.traits ?? {}) as Record<string, JsonValue>;
    const variables = decisionVariables(state, program, computedValuesOf(state, program, nowMs), nowMs, context);

    const wakeMs = advanceJourneys(state, program.journeys, nowMs, { event, enteredSegments }, variables, {
      changed: (type, name, version, detail) => {
        // An action on a channel that the profile's consent forbids is taken without an activation.
        if (type === 'journey.action' && consentRefusal(state, program.consentTraits, detail.channel ?? '') !== undefined) {
          this.#stats.withheldForConsent += 1;
          return;
        }
        this.#emit(state, type, name, version, nowMs, cause, detail);
      },
      conditionFailed: (journey, path, error) => this.#reportJourneyError(state, journey.name, path, error),
    });
    if (wakeMs > 0 && (state.nextEvaluationMs === 0 || wakeMs < state.nextEvaluationMs)) state.nextEvaluationMs = wakeMs;
  }

  #reportJourneyError(state: ProfileState, journey: string, path: string, error: unknown): void {
    this.#reportOnce(`journey:${journey}:${path}`, state, { journey, path, err: error }, 'journey condition failed on a profile and counts as false');
  }

  #reportError(state: ProfileState, segment: CompiledSegment, error: unknown): void {
    this.#reportOnce(
      `segment:${segment.name}@${segment.version}`,
      state,
      { segment: segment.name, version: segment.version, err: error },
      'segment condition failed on a profile and counts as false',
    );
  }

  #reportScoreError(state: ProfileState, model: string, error: unknown): void {
    this.#reportOnce(`model:${model}`, state, { model, err: error }, 'scoring model failed on a profile, which then has no score');
  }

  /**
   * Counts an evaluation error, and logs the first one of each workspace and `what` with the
   * profile id. Later ones of the same kind are only counted, so a broken definition cannot
   * flood the log.
   */
  #reportOnce(what: string, state: ProfileState, fields: Record<string, unknown>, message: string): void {
    this.#stats.evaluationErrors += 1;
    const key = `${state.workspace}/${what}`;
    if (this.#loggedErrors.has(key)) return;
    this.#loggedErrors.add(key);
    this.#logger.warn({ workspace: state.workspace, profileId: state.profileId, ...fields }, `${message}; later failures of the same kind are counted, not logged`);
  }

  #emit(
    state: ProfileState,
    type: ActivationType,
    name: string,
    version: number,
    nowMs: number,
    cause: ActivationCause,
    detail: { step?: string; action?: string; channel?: string } = {},
  ): void {
    if (type === 'segment.entered') this.#stats.entered += 1;
    if (type === 'segment.exited') this.#stats.exited += 1;
    // Two actions of one journey in one evaluation differ by their step.
    const idName = detail.step === undefined ? name : `${name}.${detail.step}`;
    state.activations.push({
      id: activationId(type, state.profileId, idName, cause),
      type,
      workspace: state.workspace,
      profileId: state.profileId,
      name,
      definitionVersion: version,
      atMs: nowMs,
      cause,
      ...detail,
    });
  }
}

function isEmpty(record: object): boolean {
  for (const _ in record) return false;
  return true;
}
