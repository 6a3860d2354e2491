/**
 * Estimation of Fellegi-Sunter parameters by expectation-maximisation (Winkler 1988) on the
 * candidate pairs themselves, without labels. Pairs are reduced to their level patterns and
 * counts first, so one iteration costs patterns × fields, not pairs × fields. Fields are
 * assumed conditionally independent given match status, as the model itself assumes.
 */
import { clampAndNormalise } from './fellegi-sunter.js';
import { decodePattern, type CompiledSchema } from './comparison-schema.js';

export interface EmOptions {
  /** Default 200. */
  maxIterations?: number;
  /** Stop when no m, u or lambda moves by more than this in an iteration. Default 1e-6. */
  tolerance?: number;
  /** u per field and level, kept fixed (estimated from random pairs). Without it, EM estimates u too. */
  fixedU?: readonly (readonly number[])[];
  /** m per field and level, kept fixed, so that only lambda (and u unless fixed) is estimated. */
  fixedM?: readonly (readonly number[])[];
  /**
   * Fields left out of the estimation, as if missing in every pair. A blocking rule's own
   * fields agree in every pair it produces, so those pairs carry no information about their
   * m. Their m stays at its starting value.
   */
  ignoredFields?: ReadonlySet<number>;
  /** Starting m and u, when they are not fixed. Default: m favours agreement, u disagreement. */
  initialM?: readonly (readonly number[])[];
  initialU?: readonly (readonly number[])[];
  /** Starting lambda. Default 0.1. */
  initialLambda?: number;
  /** Called after each iteration. The estimation yields to the event loop every `yieldEveryIterations`. */
  onIteration?: (iteration: number, change: number) => void;
  /** Default 1. */
  yieldEveryIterations?: number;
}

export interface EmResult {
  /** m[field][level], level 0 unused (0). */
  m: number[][];
  u: number[][];
  lambda: number;
  iterations: number;
  converged: boolean;
  /** Largest parameter change in the last iteration. */
  lastChange: number;
}

/** Estimates m, u (unless fixed) and lambda from pattern counts. */
export async function estimateByEm(patternCounts: ReadonlyMap<number, number>, compiled: CompiledSchema, options: EmOptions = {}): Promise<EmResult> {
  const maxIterations = options.maxIterations ?? 200;
  const tolerance = options.tolerance ?? 1e-6;
  const yieldEvery = options.yieldEveryIterations ?? 1;
  const fieldCount = compiled.radices.length;
  const { levels, counts } = decodeAll(patternCounts, compiled, options.ignoredFields);

  const startM = options.fixedM ?? options.initialM;
  const startU = options.fixedU ?? options.initialU;
  let m = startM?.map((levelsOfField) => [...levelsOfField]) ?? compiled.schema.fields.map((field) => initialM(field.levels));
  let u = startU?.map((levelsOfField) => [...levelsOfField]) ?? compiled.schema.fields.map((field) => initialU(field.levels));
  let lambda = options.initialLambda ?? 0.1;

  let iteration = 0;
  let change = Number.POSITIVE_INFINITY;
  while (iteration < maxIterations && change > tolerance) {
    const step = iterate(levels, counts, fieldCount, m, u, lambda);
    const nextM = options.fixedM === undefined ? step.matchCounts.map((fieldCounts, f) => (options.ignoredFields?.has(f) ? m[f] : clampAndNormalise(fieldCounts))) : m;
    const nextU = options.fixedU === undefined ? step.nonMatchCounts.map((fieldCounts, f) => (options.ignoredFields?.has(f) ? u[f] : clampAndNormalise(fieldCounts))) : u;
    change = Math.max(Math.abs(step.lambda - lambda), largestChange(m, nextM), largestChange(u, nextU));

    m = nextM;
    u = nextU;
    lambda = Math.min(1 - 1e-9, Math.max(1e-9, step.lambda));
    iteration++;
    options.onIteration?.(iteration, change);
    if (iteration % yieldEvery === 0) await new Promise((resolve) => setImmediate(resolve));
  }

  return { m, u, lambda, iterations: iteration, converged: change <= tolerance, lastChange: change };
}

interface Step {
  matchCounts: number[][];
  nonMatchCounts: number[][];
  lambda: number;
}

/** Runs one E step and returns the sums of the M step: expected level counts among matches and non-matches. */
function iterate(levels: Uint8Array, counts: Float64Array, fieldCount: number, m: number[][], u: number[][], lambda: number): Step {
  const matchCounts = m.map((field) => new Array<number>(field.length).fill(0));
  const nonMatchCounts = u.map((field) => new Array<number>(field.length).fill(0));
  let expectedMatches = 0;
  let total = 0;

  for (let p = 0; p < counts.length; p++) {
    let pMatch = lambda;
    let pNonMatch = 1 - lambda;
    const base = p * fieldCount;
    for (let f = 0; f < fieldCount; f++) {
      const level = levels[base + f];
      if (level === 0) continue;
      pMatch *= m[f][level];
      pNonMatch *= u[f][level];
    }

    const matchShare = pMatch / (pMatch + pNonMatch);
    const matchWeight = counts[p] * matchShare;
    const nonMatchWeight = counts[p] - matchWeight;
    for (let f = 0; f < fieldCount; f++) {
      const level = levels[base + f];
      if (level === 0) continue;
      matchCounts[f][level] += matchWeight;
      nonMatchCounts[f][level] += nonMatchWeight;
    }
    expectedMatches += matchWeight;
    total += counts[p];
  }

  return { matchCounts, nonMatchCounts, lambda: total === 0 ? lambda : expectedMatches / total };
}

/** Decodes every pattern into its levels, with the ignored fields set to level 0 (missing). */
function decodeAll(patternCounts: ReadonlyMap<number, number>, compiled: CompiledSchema, ignoredFields: ReadonlySet<number> | undefined): { levels: Uint8Array; counts: Float64Array } {
  const fieldCount = compiled.radices.length;
  const levels = new Uint8Array(patternCounts.size * fieldCount);
  const counts = new Float64Array(patternCounts.size);
  const scratch = new Uint8Array(fieldCount);
  let index = 0;
  for (const [pattern, count] of patternCounts) {
    decodePattern(compiled, pattern, scratch);
    for (const field of ignoredFields ?? []) scratch[field] = 0;
    levels.set(scratch, index * fieldCount);
    counts[index] = count;
    index++;
  }
  return { levels, counts };
}

/** Starting m: 0.9 for exact agreement, the rest halving from level to level. */
function initialM(levelCount: number): number[] {
  const m = [0, 0.9];
  for (let level = 2; level < levelCount; level++) m.push(0.1 / 2 ** (level - 1));
  return clampAndNormalise(m);
}

/** Starting u: most non-matches disagree, few agree exactly. */
function initialU(levelCount: number): number[] {
  const u = [0];
  for (let level = 1; level < levelCount; level++) u.push(level === levelCount - 1 ? 0.9 : 0.1 / 2 ** (levelCount - 1 - level));
  return clampAndNormalise(u);
}

function largestChange(before: readonly (readonly number[])[], after: readonly (readonly number[])[]): number {
  let largest = 0;
  for (let f = 0; f < before.length; f++) {
    for (let level = 1; level < before[f].length; level++) largest = Math.max(largest, Math.abs(before[f][level] - after[f][level]));
  }
  return largest;
}
