/**
 * A dry run of a definition change on stored profiles. Each sampled profile's history is
 * replayed on a fresh profile under the current definitions and under the proposed ones,
 * and both are evaluated at the same time. The comparison shows which profiles would
 * enter or exit each segment and which computed trait values would change.
 *
 * Replay rules:
 * - Events are applied in log order with the profile code (applyEvent) and the evaluation
 *   steps of the actors (profile-evaluation.ts). Segments are evaluated once, after the
 *   last event, at `nowMs`: membership depends only on the state at evaluation time, so
 *   evaluating after every event as the actors do would give the same members at more cost.
 * - At most `maxHistoryEvents` events of a profile are replayed, the oldest first; the
 *   comparison counts and names the profiles whose history was cut.
 * - The work yields to the event loop between profiles and every YIELD_EVERY_EVENTS events.
 */
import { decide } from '../decision-rules/decide.js';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { throwIfAborted } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { JsonValue } from '../../profiles/event.js';
import type { StoredProfile } from '../../profiles/profile-history.js';
import { applyEvent, createProfile, type AppliedEvent, type ComputedTraitEntry, type ProfileLimits, type ProfileState } from '../../profiles/profile.js';
import type { DefinitionChange, DefinitionResult } from '../definitions/definition-registry.js';
import type { DefinitionVersion } from '../definitions/definition-store.js';
import type { DefinitionIssue } from '../definitions/issues.js';
import { computedValuesOf, evaluateSegments, syncTraitStates, updateComputedTraits } from './profile-evaluation.js';
import { WorkspaceProgram } from './workspace-program.js';

/** Profiles tested when the request names no count and no identifiers. */
export const DEFAULT_TEST_PROFILES = 100;
/** Maximum number of profiles one test replays. */
export const MAX_TEST_PROFILES = 10_000;
/** Events of one profile's history replayed at most, by default. */
export const DEFAULT_MAX_HISTORY_EVENTS = 100_000;
/** Example profiles reported per segment. */
export const MAX_SEGMENT_EXAMPLES = 20;
/** Profiles named among those whose history was cut. */
export const MAX_CUT_EXAMPLES = 20;
const YIELD_EVERY_EVENTS = 1_000;

/** The source of the sampled profiles and of their histories. */
export interface ProfileHistorySource {
  /** The profiles to test, in the order the comparison reports them. */
  profiles(): AsyncIterable<StoredProfile> | Iterable<StoredProfile>;
  /** The profile's stored events in log order, oldest first. The test stops reading at its cap. */
  events(profile: StoredProfile): AsyncIterable<AppliedEvent>;
}

export interface DefinitionComparisonOptions {
  /** The latest stored versions, tombstones left out. */
  current: readonly DefinitionVersion[];
  /** The latest versions once the proposed apply is stored, tombstones left out. */
  proposed: readonly DefinitionVersion[];
  source: ProfileHistorySource;
  limits: ProfileLimits;
  /** Evaluation time of both replays, ms since the epoch. */
  nowMs: number;
  logger: Logger;
  /** Events of one profile's history replayed at most. Default DEFAULT_MAX_HISTORY_EVENTS. */
  maxHistoryEvents?: number;
  /** Stops the test between two profiles; the call rejects with AbortedError. */
  signal?: AbortSignal;
}

export type SegmentTransition = 'entered' | 'exited';

export interface SegmentExample {
  profileId: string;
  transition: SegmentTransition;
  /** Every computed trait's value under the current definitions. */
  computedBefore: Record<string, JsonValue>;
  /** Every computed trait's value under the proposed definitions. */
  computedAfter: Record<string, JsonValue>;
}

export interface SegmentComparison {
  name: string;
  change: DefinitionChange;
  /** The stored version; 0 when the segment is not stored yet. */
  versionBefore: number;
  /** The version after the apply; 0 when the apply deletes the segment. */
  versionAfter: number;
  membersBefore: number;
  membersAfter: number;
  entered: number;
  exited: number;
  /** Profiles whose membership is the same before and after, members or not. */
  unchanged: number;
  /** Profiles on which the condition threw or returned a non-boolean, which counts as not a member. */
  evaluationErrorsBefore: number;
  evaluationErrorsAfter: number;
  /**
   * Profiles whose stored snapshot has another membership than the replay under the current
   * definitions. A pending timer, a trait changed while the profile was in memory or a
   * condition that reads `nowMs` can each explain one.
   */
  storedMismatches: number;
  /** Up to MAX_SEGMENT_EXAMPLES profiles that enter or exit, in the order they were tested. */
  examples: SegmentExample[];
}

export interface ComputedTraitComparison {
  name: string;
  change: DefinitionChange;
  versionBefore: number;
  versionAfter: number;
  /** Profiles whose value differs. For a trait that only one side has, every profile counts. */
  valuesChanged: number;
}

/** A scoring model's scores on the tested profiles under the current definitions and after the apply. */
export interface ScoreComparison {
  name: string;
  change: DefinitionChange;
  versionBefore: number;
  versionAfter: number;
  /** Profiles with a score under the current definitions, and after the apply. */
  scoredBefore: number;
  scoredAfter: number;
  /** Profiles whose score differs, or that have a score on one side only. */
  valuesChanged: number;
  /** Mean score over the profiles with one, or null when none has. */
  meanBefore: number | null;
  meanAfter: number | null;
  /** Profiles on which a feature failed to evaluate, so the model has no score. */
  evaluationErrorsBefore: number;
  evaluationErrorsAfter: number;
  /** The message of the first such failure, preferring one after the apply, or null when none failed. */
  errorExample: string | null;
}

/** How often a decision rule would be chosen for the tested profiles by a Decide call without a channel. */
export interface RuleComparison {
  name: string;
  change: DefinitionChange;
  versionBefore: number;
  versionAfter: number;
  /** Tested profiles for which the rule is chosen under the current definitions, and after the apply. */
  chosenBefore: number;
  chosenAfter: number;
}

export interface DefinitionComparison {
  nowMs: number;
  profilesTested: number;
  eventsReplayed: number;
  maxHistoryEvents: number;
  /** Profiles with more events than maxHistoryEvents, of which only the oldest were replayed. */
  historyCut: number;
  /** Up to MAX_CUT_EXAMPLES of those profiles. */
  historyCutExamples: string[];
  /** Every segment of either side, sorted by name. */
  segments: SegmentComparison[];
  /** Every computed trait of either side, sorted by name. */
  computedTraits: ComputedTraitComparison[];
  /** Every scoring model of either side, sorted by name. */
  scores: ScoreComparison[];
  /** Every decision rule of either side, sorted by name. Each profile is decided for as if it had no decision yet. */
  rules: RuleComparison[];
  /** Tested profiles whose chosen rule (or none) differs after the apply. */
  decisionsChanged: number;
}

/** The outcome of a test: the validation issues, or what the apply would store and the comparison. */
export interface DefinitionTestReport {
  /** Empty when the set is valid. Nothing was evaluated when it is not. */
  issues: DefinitionIssue[];
  /** The changes an apply would make, as ApplyOutcome.results. Empty when `issues` is not. */
  results: DefinitionResult[];
  /** Undefined when `issues` is not empty. */
  comparison: DefinitionComparison | undefined;
}

/** One side of the comparison: a program and the replayed state's computed traits under it. */
interface Side {
  program: WorkspaceProgram;
  computed: Record<string, ComputedTraitEntry>;
  modelStates: Record<string, ComputedTraitEntry>;
}

/** The results of one profile's replay on one side. */
interface Outcome {
  members: Set<string>;
  failed: Set<string>;
  values: Record<string, JsonValue>;
  /** Each scoring model's score, for the models that have one. */
  scores: Record<string, number>;
  /** Scoring models whose features failed to evaluate, with the error's message. */
  failedScores: Map<string, string>;
  /** The rule a Decide call without a channel would choose, or null. */
  chosen: string | null;
}

/**
 * Replays every profile of `options.source` under both sets of definitions and compares the
 * results. Rejects with AbortedError when `options.signal` aborts, and with the source's
 * error when the store cannot be read.
 */
export async function compareDefinitions(workspace: string, options: DefinitionComparisonOptions): Promise<DefinitionComparison> {
  const before = WorkspaceProgram.compile(workspace, options.current, options.logger);
  const after = WorkspaceProgram.compile(workspace, options.proposed, options.logger);
  const maxHistoryEvents = options.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
  const tally = new ComparisonTally(options, before, after);

  for await (const profile of options.source.profiles()) {
    throwIfAborted(options.signal, 'definition test');
    const sides: [Side, Side] = [
      { program: before, computed: Object.create(null), modelStates: Object.create(null) },
      { program: after, computed: Object.create(null), modelStates: Object.create(null) },
    ];
    const replay = await replayHistory(workspace, profile, sides, options, maxHistoryEvents);
    tally.add(profile, evaluate(replay.state, sides[0], options.nowMs), evaluate(replay.state, sides[1], options.nowMs), replay);
    await yieldToEventLoop();
  }
  return tally.result(maxHistoryEvents);
}

/**
 * Applies the profile's history to one fresh profile. The profile code's part of the state
 * (traits, counts, identifiers) is the same under both sets of definitions, so it is applied
 * once, and each side keeps its own computed trait states.
 */
async function replayHistory(workspace: string, profile: StoredProfile, sides: readonly Side[], options: DefinitionComparisonOptions, maxEvents: number) {
  const state = createProfile(workspace, profile.profileId);
  let events = 0;
  let cut = false;

  for await (const applied of options.source.events(profile)) {
    if (events === maxEvents) {
      cut = true;
      break;
    }
    events += 1;
    const changed = applyEvent(state, applied, options.limits);
    // A detached state is never persisted, so it keeps nothing for a snapshot write.
    state.unpersisted.length = 0;
    if (changed) {
      for (const side of sides) {
        state.computed = side.computed;
        state.modelStates = side.modelStates;
        updateComputedTraits(state, side.program, applied.event);
      }
    }
    if (events % YIELD_EVERY_EVENTS === 0) await yieldToEventLoop();
  }
  return { state, events, cut };
}

/** Evaluates one side's segments on a copy of the replayed state with that side's computed traits. */
function evaluate(replayed: ProfileState, side: Side, nowMs: number): Outcome {
  const state: ProfileState = {
    ...replayed,
    computed: side.computed,
    modelStates: side.modelStates,
    segments: Object.create(null),
    activations: [],
    nextEvaluationMs: 0,
    decisions: [],
    receipts: [],
  };
  syncTraitStates(state, side.program);

  const failed = new Set<string>();
  const failedScores = new Map<string, string>();
  evaluateSegments(state, side.program, nowMs, {
    conditionFailed: (segment) => failed.add(segment.name),
    scoreFailed: (model, error) => failedScores.set(model, error instanceof Error ? error.message : String(error)),
    membershipChanged: () => {},
  });
  const values = computedValuesOf(state, side.program, nowMs);
  // evaluateSegments computed the scores; decide() below computes them again from the same state.
  const scores = { ...state.scores };
  const receipt = side.program.rules.length === 0 ? undefined : decide(state, side.program, { channel: '', context: {}, nowMs, cause: { kind: 'decide', requestId: 'definition-test' } }, values);
  return { members: new Set(Object.keys(state.segments)), failed, values, scores, failedScores, chosen: receipt?.chosen?.rule ?? null };
}

/** Accumulates the per-profile outcomes into the comparison. */
class ComparisonTally {
  readonly #segments = new Map<string, SegmentComparison>();
  readonly #traits = new Map<string, ComputedTraitComparison>();
  readonly #scores = new Map<string, ScoreComparison>();
  /** Per scoring model, the sums of its scores before and after, for the means. */
  readonly #scoreSums = new Map<string, { before: number; after: number }>();
  readonly #rules = new Map<string, RuleComparison>();
  #decisionsChanged = 0;
  readonly #cutExamples: string[] = [];
  #profiles = 0;
  #events = 0;
  #cut = 0;

  constructor(
    private readonly options: DefinitionComparisonOptions,
    before: WorkspaceProgram,
    after: WorkspaceProgram,
  ) {
    for (const [name, versions] of pairVersions(options.current, options.proposed, 'Segment')) {
      this.#segments.set(name, { name, ...versions, membersBefore: 0, membersAfter: 0, entered: 0, exited: 0, unchanged: 0, evaluationErrorsBefore: 0, evaluationErrorsAfter: 0, storedMismatches: 0, examples: [] });
    }
    for (const [name, versions] of pairVersions(options.current, options.proposed, 'ComputedTrait')) {
      this.#traits.set(name, { name, ...versions, valuesChanged: 0 });
    }
    for (const [name, versions] of pairVersions(options.current, options.proposed, 'ScoringModel')) {
      this.#scores.set(name, { name, ...versions, scoredBefore: 0, scoredAfter: 0, valuesChanged: 0, meanBefore: null, meanAfter: null, evaluationErrorsBefore: 0, evaluationErrorsAfter: 0, errorExample: null });
      this.#scoreSums.set(name, { before: 0, after: 0 });
    }
    for (const [name, versions] of pairVersions(options.current, options.proposed, 'DecisionRule')) {
      this.#rules.set(name, { name, ...versions, chosenBefore: 0, chosenAfter: 0 });
    }
    // A stored definition that no longer compiles is left out of its program, and so of the comparison.
    const compiled = new Set([...before.segments, ...after.segments].map((segment) => segment.name));
    for (const name of this.#segments.keys()) if (!compiled.has(name)) this.#segments.delete(name);
  }

  add(profile: StoredProfile, before: Outcome, after: Outcome, replay: { events: number; cut: boolean }): void {
    this.#profiles += 1;
    this.#events += replay.events;
    if (replay.cut) {
      this.#cut += 1;
      if (this.#cutExamples.length < MAX_CUT_EXAMPLES) this.#cutExamples.push(profile.profileId);
    }

    for (const segment of this.#segments.values()) this.#addSegment(segment, profile, before, after);
    for (const trait of this.#traits.values()) {
      if (!sameValue(before.values[trait.name], after.values[trait.name])) trait.valuesChanged += 1;
    }
    for (const score of this.#scores.values()) this.#addScore(score, before, after);
    const chosenBefore = before.chosen === null ? undefined : this.#rules.get(before.chosen);
    const chosenAfter = after.chosen === null ? undefined : this.#rules.get(after.chosen);
    if (chosenBefore !== undefined) chosenBefore.chosenBefore += 1;
    if (chosenAfter !== undefined) chosenAfter.chosenAfter += 1;
    if (before.chosen !== after.chosen) this.#decisionsChanged += 1;
  }

  #addScore(score: ScoreComparison, before: Outcome, after: Outcome): void {
    const sums = this.#scoreSums.get(score.name)!;
    const valueBefore = Object.hasOwn(before.scores, score.name) ? before.scores[score.name] : undefined;
    const valueAfter = Object.hasOwn(after.scores, score.name) ? after.scores[score.name] : undefined;
    if (valueBefore !== undefined) {
      score.scoredBefore += 1;
      sums.before += valueBefore;
    }
    if (valueAfter !== undefined) {
      score.scoredAfter += 1;
      sums.after += valueAfter;
    }
    if (before.failedScores.has(score.name)) score.evaluationErrorsBefore += 1;
    if (after.failedScores.has(score.name)) score.evaluationErrorsAfter += 1;
    score.errorExample ??= after.failedScores.get(score.name) ?? before.failedScores.get(score.name) ?? null;
    if (!Object.is(valueBefore, valueAfter)) score.valuesChanged += 1;
  }

  #addSegment(segment: SegmentComparison, profile: StoredProfile, before: Outcome, after: Outcome): void {
    const wasMember = before.members.has(segment.name);
    const isMember = after.members.has(segment.name);
    if (wasMember) segment.membersBefore += 1;
    if (isMember) segment.membersAfter += 1;
    if (before.failed.has(segment.name)) segment.evaluationErrorsBefore += 1;
    if (after.failed.has(segment.name)) segment.evaluationErrorsAfter += 1;
    if (segment.versionBefore !== 0 && Object.hasOwn(profile.snapshot.segments, segment.name) !== wasMember) segment.storedMismatches += 1;

    if (wasMember === isMember) {
      segment.unchanged += 1;
      return;
    }
    const transition: SegmentTransition = isMember ? 'entered' : 'exited';
    segment[transition] += 1;
    if (segment.examples.length < MAX_SEGMENT_EXAMPLES) {
      segment.examples.push({ profileId: profile.profileId, transition, computedBefore: before.values, computedAfter: after.values });
    }
  }

  result(maxHistoryEvents: number): DefinitionComparison {
    return {
      nowMs: this.options.nowMs,
      profilesTested: this.#profiles,
      eventsReplayed: this.#events,
      maxHistoryEvents,
      historyCut: this.#cut,
      historyCutExamples: this.#cutExamples,
      segments: [...this.#segments.values()],
      computedTraits: [...this.#traits.values()],
      scores: [...this.#scores.values()].map((score) => {
        const sums = this.#scoreSums.get(score.name)!;
        return { ...score, meanBefore: score.scoredBefore === 0 ? null : sums.before / score.scoredBefore, meanAfter: score.scoredAfter === 0 ? null : sums.after / score.scoredAfter };
      }),
      rules: [...this.#rules.values()],
      decisionsChanged: this.#decisionsChanged,
    };
  }
}

/** Pairs the versions of one kind on both sides by name, sorted by name, with the change between them. */
function pairVersions(current: readonly DefinitionVersion[], proposed: readonly DefinitionVersion[], kind: DefinitionVersion['kind']) {
  const before = new Map(current.filter((version) => version.kind === kind).map((version) => [version.name, version]));
  const after = new Map(proposed.filter((version) => version.kind === kind).map((version) => [version.name, version]));
  const names = [...new Set([...before.keys(), ...after.keys()])].sort();

  return names.map((name): [string, { change: DefinitionChange; versionBefore: number; versionAfter: number }] => {
    const stored = before.get(name);
    const next = after.get(name);
    let change: DefinitionChange = 'updated';
    if (stored === undefined) change = 'created';
    else if (next === undefined) change = 'deleted';
    else if (stored.contentHash === next.contentHash) change = 'unchanged';
    return [name, { change, versionBefore: stored?.version ?? 0, versionAfter: next?.version ?? 0 }];
  });
}

/** Compares two trait values; a trait missing on one side (undefined) differs from every value. */
function sameValue(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return Object.is(a, b);
  return JSON.stringify(a) === JSON.stringify(b);
}
