/**
 * Histogram of match weights (prior included) in bins of one unit, split into two groups:
 * true matches and non-matches when ground truth is known, else predicted matches and the
 * rest.
 */

export interface ScoreHistogram {
  /** Lower edge of each bin. Bin i contains the weights in [edges[i], edges[i] + 1). */
  edges: number[];
  /** Name of each group, such as "true matches". */
  groups: [string, string];
  counts: [number[], number[]];
}

/** Weights beyond ±60 are counted in the outermost bins. FEBRL 4's true links reach about 85. */
const WEIGHT_LIMIT = 60;

export class ScoreHistogramBuilder {
  readonly #counts: [Map<number, number>, Map<number, number>] = [new Map(), new Map()];

  constructor(readonly groups: [string, string]) {}

  add(weight: number, group: 0 | 1): void {
    const bin = Math.floor(Math.max(-WEIGHT_LIMIT, Math.min(WEIGHT_LIMIT - 1, weight)));
    const counts = this.#counts[group];
    counts.set(bin, (counts.get(bin) ?? 0) + 1);
  }

  build(): ScoreHistogram {
    const bins = [...this.#counts[0].keys(), ...this.#counts[1].keys()];
    if (bins.length === 0) return { edges: [], groups: this.groups, counts: [[], []] };
    const first = Math.min(...bins);
    const last = Math.max(...bins);
    const edges = Array.from({ length: last - first + 1 }, (_, index) => first + index);
    const counts = this.#counts.map((group) => edges.map((edge) => group.get(edge) ?? 0)) as [number[], number[]];
    return { edges, groups: this.groups, counts };
  }
}
