/**
 * The Fellegi-Sunter model of record linkage. For each comparison field and level, `m` is
 * the probability of that level when the two records are the same person and `u` when they
 * are not. A pair's match weight is log2 of its Bayes factor, the sum over its fields of
 * log2(m / u), with missing fields contributing 0. Adding the prior weight
 * log2(lambda / (1 - lambda)) and applying the logistic function in base 2 gives the
 * probability that the pair is a match.
 */
import { LEVEL_LABELS, type FieldKind } from './comparators.js';
import { createSchema, type ComparisonSchema } from './comparison-schema.js';

export const MODEL_VERSION = 1;

export interface LevelParameters {
  readonly label: string;
  readonly m: number;
  readonly u: number;
}

export interface FieldParameters {
  readonly name: string;
  readonly kind: FieldKind;
  /** Levels 1 and up. Level 0 (missing) has no parameters. */
  readonly levels: readonly LevelParameters[];
}

/** Parameters of a Fellegi-Sunter model, as report.json stores them and `--model` reads them. */
export interface MatchModel {
  readonly version: typeof MODEL_VERSION;
  readonly fields: readonly FieldParameters[];
  /** Prior probability that a candidate pair is a match. */
  readonly lambda: number;
}

/** Smallest m or u kept, so that no level has an infinite weight. */
export const MIN_PROBABILITY = 1e-6;

/** Weights of a model laid out for scoring: weights[field][level], 0 for level 0. */
export interface ModelWeights {
  readonly fields: readonly Float64Array[];
  readonly prior: number;
}

export function weightsOf(model: MatchModel): ModelWeights {
  const fields = model.fields.map((field) => {
    const weights = new Float64Array(field.levels.length + 1);
    field.levels.forEach((level, index) => {
      weights[index + 1] = Math.log2(level.m / level.u);
    });
    return weights;
  });
  return { fields, prior: Math.log2(model.lambda / (1 - model.lambda)) };
}

/** Flattens weights for a worker task: field f's level l is at offsets[f] + l. */
export function flattenWeights(weights: ModelWeights): { values: Float64Array; offsets: Int32Array } {
  const offsets = new Int32Array(weights.fields.length);
  let total = 0;
  weights.fields.forEach((field, index) => {
    offsets[index] = total;
    total += field.length;
  });
  const values = new Float64Array(total);
  weights.fields.forEach((field, index) => values.set(field, offsets[index]));
  return { values, offsets };
}

/** Probability of a match given the match weight including the prior. */
export function probabilityOf(weight: number): number {
  return 1 / (1 + 2 ** -weight);
}

/** Match weight, prior included, at which the probability equals `probability`. */
export function weightOf(probability: number): number {
  return Math.log2(probability / (1 - probability));
}

/** Returns the comparison schema that a model's fields describe. */
export function schemaOf(model: MatchModel): ComparisonSchema {
  return createSchema(model.fields.map((field) => field.name));
}

/** Builds a model of a schema from per-field level probabilities (index 0 unused). */
export function buildModel(schema: ComparisonSchema, m: readonly (readonly number[])[], u: readonly (readonly number[])[], lambda: number): MatchModel {
  const fields = schema.fields.map((field, f): FieldParameters => ({
    name: field.name,
    kind: field.kind,
    levels: LEVEL_LABELS[field.kind].map((label, index) => ({ label, m: m[f][index + 1], u: u[f][index + 1] })),
  }));
  return { version: MODEL_VERSION, fields, lambda };
}

/**
 * Turns level counts into probabilities per field, level 0 excluded. Each level gets
 * `pseudoCount` added first, and no probability falls below MIN_PROBABILITY.
 */
export function probabilitiesOf(counts: readonly (readonly number[])[], pseudoCount: number): number[][] {
  return counts.map((levels) => {
    const total = levels.slice(1).reduce((sum, count) => sum + count + pseudoCount, 0);
    const probabilities = levels.map((count, level) => (level === 0 || total === 0 ? 0 : (count + pseudoCount) / total));
    return clampAndNormalise(probabilities);
  });
}

/** Clamps levels 1 and up to at least MIN_PROBABILITY and makes them sum to 1. */
export function clampAndNormalise(probabilities: number[]): number[] {
  const levels = probabilities.length - 1;
  if (levels <= 0) return probabilities;
  const clamped = probabilities.map((value, level) => (level === 0 ? 0 : Math.max(MIN_PROBABILITY, Number.isFinite(value) ? value : 0)));
  const sum = clamped.reduce((total, value) => total + value, 0);
  return clamped.map((value) => value / sum);
}
