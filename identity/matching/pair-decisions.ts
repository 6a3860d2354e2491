/**
 * Scores compared candidate pairs with a model and sorts them into matches (at least
 * minMatchProbability), suggestions to review (at least minReviewProbability) and the rest.
 */
import { decodePattern, type CompiledSchema } from './comparison-schema.js';
import { probabilityOf, weightsOf, type MatchModel, type ModelWeights } from './fellegi-sunter.js';
import type { MatchThresholds } from './matching-options.js';
import { ThresholdSweep, type BestThreshold } from './evaluation.js';
import type { ComparedPairs } from './parameter-estimation.js';
import { ScoreHistogramBuilder, type ScoreHistogram } from './score-histogram.js';
import { ITEMS_PER_YIELD, yieldToEventLoop } from './yield.js';

export interface DecidedPair {
  readonly a: string;
  readonly b: string;
  /** Match weight with the prior: log2 of the odds that the pair is a match. */
  readonly weight: number;
  readonly probability: number;
  /** Whether the ground truth has the two records as one entity, when it is known. */
  readonly trueMatch: boolean | undefined;
}

export interface PairDecisions {
  matches: DecidedPair[];
  reviews: DecidedPair[];
  /** True pairs among the candidate pairs (0 without ground truth). */
  truePairsInCandidates: number;
  trueMatches: number;
  trueReviews: number;
  /** Matches dropped because a record already had a more probable match (oneToOne). */
  droppedByOneToOne: number;
  histogram: ScoreHistogram;
  /** With ground truth, the threshold of highest F1 over the candidate pairs. */
  bestThreshold: BestThreshold | undefined;
}

export interface DecideOptions {
  compiled: CompiledSchema;
  model: MatchModel;
  thresholds: MatchThresholds;
  candidates: ComparedPairs;
  ids: readonly string[];
  entities: readonly string[] | undefined;
  /** True pairs in the whole input, for the recall of the threshold sweep. */
  truePairs: number;
  leftCount: number | undefined;
  oneToOne: boolean;
  onProgress?: (done: number, total: number) => void;
}

interface SlotPair {
  a: number;
  b: number;
  weight: number;
}

export async function decidePairs(options: DecideOptions): Promise<PairDecisions> {
  const { candidates, entities, thresholds } = options;
  const weightOfPattern = patternWeights(options.compiled, weightsOf(options.model));
  const sweep = new ThresholdSweep();
  const histogram = new ScoreHistogramBuilder(entities === undefined ? ['predicted matches', 'other candidate pairs'] : ['true matches', 'non-matches']);
  const matchWeight = Math.log2(thresholds.minMatchProbability / (1 - thresholds.minMatchProbability));
  const reviewWeight = Math.log2(thresholds.minReviewProbability / (1 - thresholds.minReviewProbability));
  let matches: SlotPair[] = [];
  const reviews: SlotPair[] = [];
  let truePairsInCandidates = 0;
  let done = 0;

  for (let chunk = 0; chunk < candidates.pairs.length; chunk++) {
    const pairs = candidates.pairs[chunk];
    const patterns = candidates.patterns[chunk];
    for (let i = 0; i < patterns.length; i++) {
      if (i % ITEMS_PER_YIELD === ITEMS_PER_YIELD - 1) await yieldToEventLoop();
      const a = pairs[2 * i];
      const b = pairs[2 * i + 1];
      const weight = weightOfPattern(patterns[i]);
      const isTrue = entities !== undefined && entities[a] === entities[b];
      if (isTrue) truePairsInCandidates++;
      if (entities !== undefined) sweep.add(weight, isTrue);
      if (weight >= matchWeight) matches.push({ a, b, weight });
      else if (weight >= reviewWeight) reviews.push({ a, b, weight });
      const inFirstGroup = entities === undefined ? weight >= matchWeight : isTrue;
      histogram.add(weight, inFirstGroup ? 0 : 1);
    }
    done += patterns.length;
    options.onProgress?.(done, candidates.count);
    await yieldToEventLoop();
  }

  const before = matches.length;
  if (options.oneToOne) matches = keepOneToOne(matches);
  const decided = (pair: SlotPair) => toDecided(pair, options.ids, entities);
  const matchList = matches.map(decided);
  const reviewList = reviews.map(decided);
  return {
    matches: matchList,
    reviews: reviewList,
    truePairsInCandidates,
    trueMatches: matchList.filter((pair) => pair.trueMatch === true).length,
    trueReviews: reviewList.filter((pair) => pair.trueMatch === true).length,
    droppedByOneToOne: before - matches.length,
    histogram: histogram.build(),
    bestThreshold: entities === undefined ? undefined : sweep.best(options.truePairs),
  };
}

/** Returns a function from pattern to match weight with the prior, computing each pattern's weight once. */
function patternWeights(compiled: CompiledSchema, weights: ModelWeights): (pattern: number) => number {
  const cache = new Map<number, number>();
  const levels = new Uint8Array(compiled.radices.length);
  return (pattern) => {
    let weight = cache.get(pattern);
    if (weight === undefined) {
      decodePattern(compiled, pattern, levels);
      weight = weights.prior;
      for (let f = 0; f < levels.length; f++) weight += weights.fields[f][levels[f]];
      cache.set(pattern, weight);
    }
    return weight;
  };
}

/** Keeps the most probable match of each record, greedily from the highest weight down. */
function keepOneToOne(matches: SlotPair[]): SlotPair[] {
  const sorted = [...matches].sort((x, y) => y.weight - x.weight);
  const matched = new Set<number>();
  const best: SlotPair[] = [];
  for (const pair of sorted) {
    if (matched.has(pair.a) || matched.has(pair.b)) continue;
    matched.add(pair.a);
    matched.add(pair.b);
    best.push(pair);
  }
  return best;
}

function toDecided(pair: SlotPair, ids: readonly string[], entities: readonly string[] | undefined): DecidedPair {
  return {
    a: ids[pair.a],
    b: ids[pair.b],
    weight: pair.weight,
    probability: probabilityOf(pair.weight),
    trueMatch: entities === undefined ? undefined : entities[pair.a] === entities[pair.b],
  };
}
