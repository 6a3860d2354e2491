/**
 * Pairwise evaluation against ground truth: two records are a true pair when they have the
 * same entity. Recall counts every true pair of the input, so pairs that blocking never
 * produced count as missed.
 */

export interface PairEvaluation {
  /** True pairs in the whole input, whether or not blocking produced them. */
  truePairs: number;
  /** True pairs among the candidate pairs. */
  truePairsInCandidates: number;
  predictedPairs: number;
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  precision: number;
  recall: number;
  f1: number;
  /** Share of the true pairs that blocking produced: the highest recall any threshold can reach. */
  blockingRecall: number;
}

/**
 * Counts the true pairs of the input. Deduplication (no `leftCount`) counts pairs within
 * each entity. Linkage counts pairs of a left and a right record of the same entity.
 */
export function countTruePairs(entities: readonly string[], leftCount?: number): number {
  const left = new Map<string, number>();
  const right = new Map<string, number>();
  entities.forEach((entity, record) => {
    const side = leftCount === undefined || record < leftCount ? left : right;
    side.set(entity, (side.get(entity) ?? 0) + 1);
  });

  let pairs = 0;
  if (leftCount === undefined) {
    for (const count of left.values()) pairs += (count * (count - 1)) / 2;
  } else {
    for (const [entity, count] of left) pairs += count * (right.get(entity) ?? 0);
  }
  return pairs;
}

export function evaluatePairs(counts: { truePairs: number; truePairsInCandidates: number; predictedPairs: number; truePositives: number }): PairEvaluation {
  const { truePairs, truePairsInCandidates, predictedPairs, truePositives } = counts;
  const falsePositives = predictedPairs - truePositives;
  const falseNegatives = truePairs - truePositives;
  const precision = predictedPairs === 0 ? 0 : truePositives / predictedPairs;
  const recall = truePairs === 0 ? 0 : truePositives / truePairs;
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  const blockingRecall = truePairs === 0 ? 0 : truePairsInCandidates / truePairs;
  return { truePairs, truePairsInCandidates, predictedPairs, truePositives, falsePositives, falseNegatives, precision, recall, f1, blockingRecall };
}

/** The threshold of highest F1 that a sweep found, with its precision and recall. */
export interface BestThreshold {
  /** Match weight, prior included, at or above which pairs are matches. */
  weight: number;
  probability: number;
  precision: number;
  recall: number;
  f1: number;
}

/** Width of the sweep's bins, in match weight units. */
const SWEEP_STEP = 0.25;

/**
 * Finds the match weight threshold of highest F1 in steps of 0.25, from counts of true and
 * false candidate pairs per step. It ignores the one-to-one constraint of a linkage.
 */
export class ThresholdSweep {
  readonly #trueCounts = new Map<number, number>();
  readonly #falseCounts = new Map<number, number>();

  add(weight: number, isTrue: boolean): void {
    const bin = Math.floor(weight / SWEEP_STEP);
    const counts = isTrue ? this.#trueCounts : this.#falseCounts;
    counts.set(bin, (counts.get(bin) ?? 0) + 1);
  }

  best(truePairs: number): BestThreshold | undefined {
    const bins = [...new Set([...this.#trueCounts.keys(), ...this.#falseCounts.keys()])].sort((x, y) => y - x);
    let best: BestThreshold | undefined;
    let truePositives = 0;
    let predicted = 0;
    for (const bin of bins) {
      truePositives += this.#trueCounts.get(bin) ?? 0;
      predicted += (this.#trueCounts.get(bin) ?? 0) + (this.#falseCounts.get(bin) ?? 0);
      const { precision, recall, f1 } = evaluatePairs({ truePairs, truePairsInCandidates: 0, predictedPairs: predicted, truePositives });
      if (best === undefined || f1 > best.f1) {
        const weight = bin * SWEEP_STEP;
        best = { weight, probability: 1 / (1 + 2 ** -weight), precision, recall, f1 };
      }
    }
    return best;
  }
}
