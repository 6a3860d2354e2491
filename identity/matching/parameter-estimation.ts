/**
 * Estimation of a Fellegi-Sunter model from the data itself, without labels.
 *
 * With u from random pairs (the default), there is one EM run for m per blocking rule, on
 * the candidate pairs that agree on the rule's key, with u fixed. The rule's own fields are
 * left out, because agreement on them is what selected the pairs (Splink's EM training
 * sessions leave out the comparisons of their blocking rule too). Each field's m is the
 * mean over the runs that estimated it. A last EM run on all candidate
 * pairs, with m and u fixed, estimates lambda. A single EM run with u fixed on all pairs
 * tends to explain every candidate pair as a match (lambda near 1). Blocking makes the
 * candidates agree far more often than random pairs do, and fixed u cannot absorb that.
 *
 * With u estimated by EM, one run on all candidate pairs estimates m, u and lambda.
 */
import { throwIfAborted } from '../../common/errors.js';
import type { BlockingRule } from './blocking-rules.js';
import { agreeingRules } from './candidate-pairs.js';
import type { CompiledSchema } from './comparison-schema.js';
import { estimateByEm, type EmResult } from './expectation-maximisation.js';
import { buildModel, probabilitiesOf, type MatchModel } from './fellegi-sunter.js';
import type { MatchingPool } from './matching-pool.js';
import { countLevels, possiblePairs, sampleRandomPairs } from './random-pairs.js';
import type { SharedRecordStore } from './shared-record-store.js';
import { splitIntoTasks } from './task-split.js';
import { ITEMS_PER_YIELD, yieldToEventLoop } from './yield.js';

export type UEstimation = 'random-pairs' | 'em';

/** Candidate pairs as flat record slots, and their patterns, chunk by chunk. */
export interface ComparedPairs {
  pairs: Int32Array[];
  patterns: Float64Array[];
  count: number;
}

export interface EstimationInput {
  pool: MatchingPool;
  compiled: CompiledSchema;
  store: SharedRecordStore;
  candidates: ComparedPairs;
  rules: readonly BlockingRule[];
  /** Numbered keys per rule (candidate-pairs.ts `numberKeys`). */
  keys: readonly Int32Array[];
  recordCount: number;
  leftCount: number | undefined;
  uEstimation: UEstimation;
  randomPairs: number;
  seed: number;
  maxIterations: number;
  signal?: AbortSignal;
  onProgress?: (stage: 'random-pairs' | 'estimate', done: number, total: number) => void;
}

/** One EM run, as the report lists it. */
export interface EmRun {
  /** The blocking rule whose pairs the run used, or "all candidate pairs". */
  pairsFrom: string;
  pairs: number;
  /** Parameters the run estimated, such as "m of surname, dateOfBirth" or "lambda". */
  estimated: string;
  iterations: number;
  converged: boolean;
}

export interface Estimation {
  model: MatchModel;
  uEstimation: UEstimation;
  randomPairs: number;
  runs: EmRun[];
}

/** Minimum candidate pairs agreeing on a rule for an EM run on them. */
const MIN_PAIRS_PER_RUN = 50;
/** Rules that the per-rule runs consider: agreement is kept as a 31-bit mask per pair. */
const MAX_RULES_PER_RUN_MASK = 31;

export async function estimateModel(input: EstimationInput): Promise<Estimation> {
  const allPairs = await countPatterns(input, () => true);
  if (input.uEstimation === 'em') {
    const result = await runEm(input, allPairs.counts, {});
    const model = buildModel(input.compiled.schema, result.m, result.u, result.lambda);
    return { model, uEstimation: 'em', randomPairs: 0, runs: [run('all candidate pairs', allPairs.pairs, 'm, u and lambda', result)] };
  }

  const random = await estimateU(input);
  const runs: EmRun[] = [];
  const mEstimates = input.compiled.schema.fields.map(() => [] as number[][]);
  const sessions = await countPatternsPerRule(input);
  for (const [ruleIndex, session] of sessions.entries()) {
    const ignored = fieldsOfRule(input, input.rules[ruleIndex]);
    const estimable = input.compiled.schema.fields.map((_, f) => f).filter((f) => !ignored.has(f));
    if (session.pairs < MIN_PAIRS_PER_RUN || estimable.length === 0) continue;

    const result = await runEm(input, session.counts, { fixedU: random.u, ignoredFields: ignored });
    for (const f of estimable) mEstimates[f].push(result.m[f]);
    runs.push(run(input.rules[ruleIndex].text, session.pairs, `m of ${estimable.map((f) => input.compiled.schema.fields[f].name).join(', ')}`, result));
  }

  // A field that no rule's pairs could estimate takes its m from one run on all candidate pairs.
  let m = mEstimates.map((estimates) => (estimates.length === 0 ? undefined : meanOf(estimates)));
  if (m.some((fieldM) => fieldM === undefined)) {
    const fallback = await runEm(input, allPairs.counts, { fixedU: random.u });
    const missing = m.flatMap((fieldM, f) => (fieldM === undefined ? [input.compiled.schema.fields[f].name] : []));
    runs.push(run('all candidate pairs', allPairs.pairs, `m of ${missing.join(', ')}`, fallback));
    m = m.map((fieldM, f) => fieldM ?? fallback.m[f]);
  }

  const lambdaRun = await runEm(input, allPairs.counts, { fixedU: random.u, fixedM: m as number[][] });
  runs.push(run('all candidate pairs', allPairs.pairs, 'lambda', lambdaRun));
  const model = buildModel(input.compiled.schema, m as number[][], random.u, lambdaRun.lambda);
  return { model, uEstimation: 'random-pairs', randomPairs: random.pairs, runs };
}

/**
 * Estimates u from random pairs, compared in chunks like the candidate pairs. Each level
 * gets one pseudo-pair, so a level that no random pair reached has u of about 1 / pairs
 * rather than 0.
 */
async function estimateU(input: EstimationInput): Promise<{ u: number[][]; pairs: number }> {
  const { pool, signal, compiled, store } = input;
  const count = Math.min(input.randomPairs, possiblePairs(input.recordCount, input.leftCount));
  const pairs = sampleRandomPairs(count, input.recordCount, input.seed, input.leftCount);
  const chunkPairs = pool.settings.pairsPerTask * pool.settings.workers;
  const patternCounts = new Map<number, number>();
  const pending: Array<Promise<void>> = [];
  let done = 0;
  let compared = 0;
  input.onProgress?.('random-pairs', 0, count);

  for (const size of splitIntoTasks(count, chunkPairs)) {
    const chunk = pairs.subarray(done * 2, (done + size) * 2);
    done += size;
    pending.push(
      pool.compare({ store, pairs: chunk, schema: compiled.schema, signal }).then((result) => {
        // A result has at most twice pairsPerTask patterns per worker, a few milliseconds of counting.
        for (const pattern of result.patterns) patternCounts.set(pattern, (patternCounts.get(pattern) ?? 0) + 1);
        compared += size;
        input.onProgress?.('random-pairs', compared, count);
      }),
    );
    if (pending.length >= 4) await pending.shift();
  }
  await Promise.all(pending);
  return { u: probabilitiesOf(countLevels(compiled, patternCounts), 1), pairs: count };
}

interface PatternCounts {
  counts: Map<number, number>;
  pairs: number;
}

async function countPatterns(input: EstimationInput, include: (a: number, b: number) => boolean): Promise<PatternCounts> {
  const counts = new Map<number, number>();
  let pairs = 0;
  for (let chunk = 0; chunk < input.candidates.patterns.length; chunk++) {
    throwIfAborted(input.signal, 'estimating match parameters');
    const slots = input.candidates.pairs[chunk];
    const patterns = input.candidates.patterns[chunk];
    for (let i = 0; i < patterns.length; i++) {
      if (i % ITEMS_PER_YIELD === ITEMS_PER_YIELD - 1) await yieldToEventLoop();
      if (!include(slots[2 * i], slots[2 * i + 1])) continue;
      counts.set(patterns[i], (counts.get(patterns[i]) ?? 0) + 1);
      pairs++;
    }
    await yieldToEventLoop();
  }
  return { counts, pairs };
}

/** Counts the patterns of the candidate pairs that agree on each rule's key, for the first 31 rules. */
async function countPatternsPerRule(input: EstimationInput): Promise<PatternCounts[]> {
  const ruleCount = Math.min(input.rules.length, MAX_RULES_PER_RUN_MASK);
  const sessions = Array.from({ length: ruleCount }, (): PatternCounts => ({ counts: new Map(), pairs: 0 }));
  for (let chunk = 0; chunk < input.candidates.patterns.length; chunk++) {
    const slots = input.candidates.pairs[chunk];
    const patterns = input.candidates.patterns[chunk];
    for (let i = 0; i < patterns.length; i++) {
      if (i % ITEMS_PER_YIELD === ITEMS_PER_YIELD - 1) await yieldToEventLoop();
      const mask = agreeingRules(input.keys, slots[2 * i], slots[2 * i + 1]);
      for (let rule = 0; rule < ruleCount; rule++) {
        if ((mask & (1 << rule)) === 0) continue;
        const session = sessions[rule];
        session.counts.set(patterns[i], (session.counts.get(patterns[i]) ?? 0) + 1);
        session.pairs++;
      }
    }
    await yieldToEventLoop();
  }
  return sessions;
}

function fieldsOfRule(input: EstimationInput, rule: BlockingRule): Set<number> {
  const names = input.compiled.schema.fields.map((field) => field.name);
  return new Set(rule.parts.map((part) => names.indexOf(part.field)).filter((index) => index !== -1));
}

function runEm(input: EstimationInput, counts: ReadonlyMap<number, number>, options: { fixedU?: number[][]; fixedM?: number[][]; ignoredFields?: ReadonlySet<number> }): Promise<EmResult> {
  return estimateByEm(counts, input.compiled, {
    ...options,
    maxIterations: input.maxIterations,
    onIteration: (iteration) => input.onProgress?.('estimate', iteration, input.maxIterations),
  });
}

function run(pairsFrom: string, pairs: number, estimated: string, result: EmResult): EmRun {
  return { pairsFrom, pairs, estimated, iterations: result.iterations, converged: result.converged };
}

/** Mean of probability vectors, level by level. */
function meanOf(vectors: readonly (readonly number[])[]): number[] {
  return vectors[0].map((_, level) => vectors.reduce((sum, vector) => sum + vector[level], 0) / vectors.length);
}
