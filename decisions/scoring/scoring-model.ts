/**
 * Scoring models: a number per profile, recomputed after every event the profile applies and
 * readable by segments and decision rules as `scores.<name>`.
 *
 * - `bgnbd`: the BG/NBD model of Fader, Hardie and Lee (2005) with parameters fitted
 *   elsewhere (for example with the Python `lifetimes` library's BetaGeoFitter on the same
 *   period length). The profile keeps the RFM summary of its purchases (rfm.ts), and the
 *   score is the probability that the customer is still active ("alive") at the evaluation
 *   time, or its complement for `output: probability_churned`.
 * - `logistic`: a logistic regression over CEL features of the profile: the score is
 *   1 / (1 + e^-(intercept + Σ weight × feature)).
 *
 * ```yaml
 * kind: ScoringModel
 * metadata: { name: churn_risk }
 * spec:
 *   model: bgnbd
 *   purchases: { event: Order Completed, property: revenue, periodDays: 7 }
 *   parameters: { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 }
 *   output: probability_churned
 * ```
 */
import { configError, describe, expectObject } from '../computed-traits/definition.js';
import { resolveRfmDefinition, type RfmDefinition, type RfmSummary } from '../computed-traits/rfm.js';

export const MODEL_KINDS = ['bgnbd', 'logistic'] as const;
export const BGNBD_OUTPUTS = ['probability_alive', 'probability_churned', 'expected_purchases'] as const;
export const MAX_FEATURES = 50;
const BGNBD_KEYS = ['model', 'purchases', 'parameters', 'output', 'horizonPeriods'];
/** Maximum horizon of expected_purchases, in periods. */
export const MAX_HORIZON_PERIODS = 10_000;
const LOGISTIC_KEYS = ['model', 'intercept', 'features'];
const PARAMETER_KEYS = ['r', 'alpha', 'a', 'b'];
const FEATURE_KEYS = ['expression', 'weight'];

export interface BgNbdParameters {
  r: number;
  alpha: number;
  a: number;
  b: number;
}

export type ScoringModelSettings =
  | { model: 'bgnbd'; purchases: RfmDefinition; parameters: BgNbdParameters; output: (typeof BGNBD_OUTPUTS)[number]; horizonPeriods: number }
  | { model: 'logistic'; intercept: number; features: ReadonlyArray<{ expression: string; weight: number }> };

/** Validates a ScoringModel's spec. Throws ComputedTraitConfigError with the path under `spec` and the rule. */
export function resolveScoringModel(spec: unknown, path = 'spec'): ScoringModelSettings {
  const model = (spec as { model?: unknown } | null)?.model;
  if (model === 'bgnbd') return resolveBgNbd(spec, path);
  if (model === 'logistic') return resolveLogistic(spec, path);
  throw configError(`${path}.model`, `must be one of ${MODEL_KINDS.join(', ')}, got ${describe(model)}`);
}

function resolveBgNbd(spec: unknown, path: string): ScoringModelSettings {
  const settings = expectObject(spec, path, BGNBD_KEYS);
  if (settings.purchases === undefined) throw configError(`${path}.purchases`, 'is missing. Select the purchase events and their value, such as { event: Order Completed, property: revenue }');
  const purchases = resolveRfmDefinition(settings.purchases, `${path}.purchases`);

  if (settings.parameters === undefined) throw configError(`${path}.parameters`, 'is missing. Give the fitted r, alpha, a and b');
  const raw = expectObject(settings.parameters, `${path}.parameters`, PARAMETER_KEYS);
  const parameters = Object.fromEntries(
    PARAMETER_KEYS.map((key) => {
      const value = raw[key];
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
        throw configError(`${path}.parameters.${key}`, `must be a positive number, got ${describe(value)}`);
      }
      return [key, value];
    }),
  ) as unknown as BgNbdParameters;

  const output = settings.output ?? 'probability_alive';
  if (!(BGNBD_OUTPUTS as readonly unknown[]).includes(output)) {
    throw configError(`${path}.output`, `must be one of ${BGNBD_OUTPUTS.join(', ')}, got ${describe(output)}`);
  }
  const horizonPeriods = settings.horizonPeriods ?? 0;
  if (output === 'expected_purchases') {
    if (Math.abs(parameters.a - 1) < 1e-9) throw configError(`${path}.parameters.a`, `must not be 1 for expected_purchases, where the formula divides by a - 1, got ${parameters.a}`);
    if (typeof horizonPeriods !== 'number' || !Number.isInteger(horizonPeriods) || horizonPeriods < 1 || horizonPeriods > MAX_HORIZON_PERIODS) {
      throw configError(`${path}.horizonPeriods`, `must be an integer from 1 to ${MAX_HORIZON_PERIODS} with expected_purchases, got ${describe(settings.horizonPeriods)}`);
    }
  } else if (settings.horizonPeriods !== undefined) {
    throw configError(`${path}.horizonPeriods`, 'applies only to output expected_purchases');
  }
  return Object.freeze({ model: 'bgnbd', purchases, parameters, output: output as (typeof BGNBD_OUTPUTS)[number], horizonPeriods: horizonPeriods as number });
}

function resolveLogistic(spec: unknown, path: string): ScoringModelSettings {
  const settings = expectObject(spec, path, LOGISTIC_KEYS);
  const intercept = settings.intercept ?? 0;
  if (typeof intercept !== 'number' || !Number.isFinite(intercept)) throw configError(`${path}.intercept`, `must be a finite number, got ${describe(intercept)}`);

  const features = settings.features;
  if (!Array.isArray(features) || features.length === 0 || features.length > MAX_FEATURES) {
    throw configError(`${path}.features`, `must be a list of 1 to ${MAX_FEATURES} features, such as [{ expression: 'double(eventCount)', weight: 0.1 }], got ${describe(features)}`);
  }
  const resolved = features.map((item, i) => {
    const feature = expectObject(item, `${path}.features[${i}]`, FEATURE_KEYS);
    if (typeof feature.expression !== 'string' || feature.expression.trim() === '') {
      throw configError(`${path}.features[${i}].expression`, `must be a numeric CEL expression as a string, got ${describe(feature.expression)}`);
    }
    if (typeof feature.weight !== 'number' || !Number.isFinite(feature.weight)) {
      throw configError(`${path}.features[${i}].weight`, `must be a finite number, got ${describe(feature.weight)}`);
    }
    return Object.freeze({ expression: feature.expression, weight: feature.weight });
  });
  return Object.freeze({ model: 'logistic', intercept, features: resolved });
}

/**
 * Returns the BG/NBD probability that a customer with this RFM summary is alive at the end
 * of the observation. It is 1 without repeat purchases. Otherwise it is
 * 1 / (1 + a / (b + x - 1) × ((alpha + T) / (alpha + t_x))^(r + x)), where x is the
 * frequency, t_x the recency and T the age, in periods.
 */
export function probabilityAlive(parameters: BgNbdParameters, summary: RfmSummary): number {
  const { r, alpha, a, b } = parameters;
  const x = summary.frequency;
  if (x === 0) return 1;

  // In logarithms, because (r + x) can be large enough for the power to overflow.
  const logRatio = (r + x) * (Math.log(alpha + summary.T) - Math.log(alpha + summary.recency));
  return 1 / (1 + (a / (b + x - 1)) * Math.exp(logRatio));
}

/**
 * Returns the BG/NBD expected number of purchases in the next `t` periods of a customer with
 * this RFM summary (equation 10 of Fader, Hardie and Lee, 2005):
 * (a + b + x - 1) / (a - 1) × [1 - ((α + T) / (α + T + t))^(r + x) × 2F1(r + x, b + x; a + b + x - 1; t / (α + T + t))]
 * divided by 1 + [x > 0] × a / (b + x - 1) × ((α + T) / (α + t_x))^(r + x). Needs a ≠ 1;
 * with a < 1 both factors of the numerator are negative and the result is still the expectation.
 */
export function expectedPurchases(parameters: BgNbdParameters, summary: RfmSummary, t: number): number {
  const { r, alpha, a, b } = parameters;
  const x = summary.frequency;
  const z = t / (alpha + summary.T + t);
  const power = Math.exp((r + x) * (Math.log(alpha + summary.T) - Math.log(alpha + summary.T + t)));
  const numerator = ((a + b + x - 1) / (a - 1)) * (1 - power * hypergeometric2F1(r + x, b + x, a + b + x - 1, z));
  const denominator = x > 0 ? 1 + (a / (b + x - 1)) * Math.exp((r + x) * (Math.log(alpha + summary.T) - Math.log(alpha + summary.recency))) : 1;
  return numerator / denominator;
}

/** Terms of the 2F1 series summed at most; the series converges geometrically in z. */
const MAX_SERIES_TERMS = 100_000;

/**
 * Returns the Gauss hypergeometric function 2F1(a, b; c; z) for 0 <= z < 1 by its power
 * series, summed until a term no longer changes the sum.
 */
export function hypergeometric2F1(a: number, b: number, c: number, z: number): number {
  if (!(z >= 0 && z < 1)) throw new RangeError(`2F1 is summed for 0 <= z < 1 only, got z = ${z}`);
  let term = 1;
  let sum = 1;
  for (let n = 0; n < MAX_SERIES_TERMS; n++) {
    term *= (((a + n) * (b + n)) / ((c + n) * (n + 1))) * z;
    const next = sum + term;
    if (next === sum) return sum;
    sum = next;
  }
  return sum;
}

/** Returns 1 / (1 + e^-z), without overflow for large |z|. */
export function sigmoid(z: number): number {
  if (z >= 0) return 1 / (1 + Math.exp(-z));
  const e = Math.exp(z);
  return e / (1 + e);
}
