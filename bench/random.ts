/**
 * Seeded random numbers for the load generator, so a run with the same seed sends the
 * same customers and property values.
 */

/** Creates a mulberry32 generator: uniform floats in [0, 1) from a 32-bit seed. */
export function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * Samples ranks 0..n-1 with probability proportional to 1 / (rank + 1)^exponent, by binary
 * search in the cumulative distribution. Rank 0 is the most frequent customer.
 */
export class ZipfSampler {
  readonly #cdf: Float64Array;
  readonly #random: () => number;

  constructor(n: number, exponent: number, random: () => number) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`Zipf population must be a positive integer, received ${n}`);
    if (!(exponent >= 0)) throw new RangeError(`Zipf exponent must be at least 0, received ${exponent}`);

    this.#random = random;
    this.#cdf = new Float64Array(n);

    let sum = 0;
    for (let rank = 0; rank < n; rank++) {
      sum += 1 / Math.pow(rank + 1, exponent);
      this.#cdf[rank] = sum;
    }
    for (let rank = 0; rank < n; rank++) this.#cdf[rank] /= sum;
  }

  /** Probability of `rank`, for reporting how skewed the load is. */
  probability(rank: number): number {
    return rank === 0 ? this.#cdf[0] : this.#cdf[rank] - this.#cdf[rank - 1];
  }

  next(): number {
    const u = this.#random();
    let low = 0;
    let high = this.#cdf.length - 1;

    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.#cdf[middle] < u) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}
