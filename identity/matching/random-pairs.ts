/**
 * Random record pairs, for estimating u: almost every random pair is two different people,
 * so the share of random pairs at each level estimates that level's u. Splink estimates u
 * from a sample of pairs in the same way.
 */
import { decodePattern, type CompiledSchema } from './comparison-schema.js';

/**
 * Draws `count` pairs of distinct records with a seeded generator (mulberry32). With
 * `leftCount`, each pair has a left record (below leftCount) and a right one. Without it,
 * a pair is any two of the `recordCount` records. Pairs may repeat.
 */
export function sampleRandomPairs(count: number, recordCount: number, seed: number, leftCount?: number): Int32Array {
  const random = mulberry32(seed);
  const pairs = new Int32Array(count * 2);
  for (let i = 0; i < count; i++) {
    let a: number;
    let b: number;
    if (leftCount === undefined) {
      a = Math.floor(random() * recordCount);
      b = Math.floor(random() * (recordCount - 1));
      if (b >= a) b++;
    } else {
      a = Math.floor(random() * leftCount);
      b = leftCount + Math.floor(random() * (recordCount - leftCount));
    }
    pairs[2 * i] = a;
    pairs[2 * i + 1] = b;
  }
  return pairs;
}

/** Number of distinct pairs that sampleRandomPairs could draw. */
export function possiblePairs(recordCount: number, leftCount?: number): number {
  if (leftCount === undefined) return (recordCount * (recordCount - 1)) / 2;
  return leftCount * (recordCount - leftCount);
}

/** Counts the pairs at each level of each field, counts[field][level], from the number of pairs of each pattern. */
export function countLevels(compiled: CompiledSchema, patternCounts: ReadonlyMap<number, number>): number[][] {
  const counts = compiled.schema.fields.map((field) => new Array<number>(field.levels).fill(0));
  const levels = new Uint8Array(compiled.radices.length);
  for (const [pattern, pairs] of patternCounts) {
    decodePattern(compiled, pattern, levels);
    for (let f = 0; f < levels.length; f++) counts[f][levels[f]] += pairs;
  }
  return counts;
}

/** A small, fast seeded generator of uniform numbers in [0, 1) (Tommy Ettinger's mulberry32). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
