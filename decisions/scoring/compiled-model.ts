/**
 * Compiles a scoring model's feature expressions and computes its score on a profile.
 * Validation and the per-workspace program share the compile step, so a stored model
 * compiles the same way it validated.
 */
import { createRfmState, mergeRfm, rfmSummary, updateRfm, type RfmState } from '../computed-traits/rfm.js';
import type { ConditionActivation, SegmentCondition, SegmentConditionCompiler } from '../definitions/segment-condition.js';
import type { CustomerEvent } from '../../profiles/event.js';
import { describeValue } from '../decision-rules/decide.js';
import { expectedPurchases, probabilityAlive, sigmoid, type ScoringModelSettings } from './scoring-model.js';

export interface CompiledModel {
  name: string;
  version: number;
  hash: string;
  settings: ScoringModelSettings;
  /** The compiled features of a logistic model, parallel to `settings.features`; empty for bgnbd. */
  features: readonly SegmentCondition[];
}

/** Compiles a logistic model's features; returns the first failure with its path under `spec`, or undefined. */
export function compileModelFeatures(settings: ScoringModelSettings, compiler: SegmentConditionCompiler): { path: string; rule: string } | undefined {
  if (settings.model !== 'logistic') return undefined;
  for (const [i, feature] of settings.features.entries()) {
    const compiled = compiler.compileNumber(feature.expression);
    if (!compiled.ok) return { path: `spec.features[${i}].expression`, rule: compiled.error.rule };
  }
  return undefined;
}

/** Compiles a validated model; throws when a feature no longer compiles. */
export function compileModel(name: string, version: number, hash: string, settings: ScoringModelSettings, compiler: SegmentConditionCompiler): CompiledModel {
  const features =
    settings.model === 'logistic'
      ? settings.features.map((feature, i) => {
          const compiled = compiler.compileNumber(feature.expression);
          if (!compiled.ok) throw new TypeError(`spec.features[${i}].expression ${compiled.error.rule}`);
          return compiled.condition;
        })
      : [];
  return { name, version, hash, settings, features };
}

/** Returns the state a model keeps between events: the RFM summary for bgnbd, nothing for logistic. */
export function createModelState(model: CompiledModel): RfmState | null {
  return model.settings.model === 'bgnbd' ? createRfmState() : null;
}

/** Applies one event to a model's state. */
export function updateModelState(model: CompiledModel, state: unknown, event: CustomerEvent): void {
  if (model.settings.model === 'bgnbd') updateRfm(model.settings.purchases, state as RfmState, event);
}

/**
 * Adds the state that `from` keeps for a model to `into`'s, for a merge of two profiles of
 * the same person. Both must be states of this model, from createModelState. A bgnbd model
 * merges the RFM summaries (see mergeRfm). A logistic model keeps no state: its features
 * read the profile, so the merged profile's traits give its score. `from` is not changed.
 */
export function mergeModelState(model: CompiledModel, into: unknown, from: unknown): void {
  if (model.settings.model === 'bgnbd') mergeRfm(into as RfmState, from as RfmState);
}

/**
 * Returns the model's score at `nowMs`, or undefined when it has none: a bgnbd model before
 * the first purchase. Throws when a logistic feature fails to evaluate.
 */
export function scoreOf(model: CompiledModel, state: unknown, variables: ConditionActivation, nowMs: number): number | undefined {
  const settings = model.settings;
  if (settings.model === 'bgnbd') {
    const summary = rfmSummary(settings.purchases, state as RfmState, nowMs);
    if (summary === null) return undefined;
    if (settings.output === 'expected_purchases') return expectedPurchases(settings.parameters, summary, settings.horizonPeriods);
    const alive = probabilityAlive(settings.parameters, summary);
    return settings.output === 'probability_alive' ? alive : 1 - alive;
  }

  let z = settings.intercept;
  settings.features.forEach((feature, i) => {
    const value = model.features[i].evaluate(variables);
    const number = typeof value === 'bigint' ? Number(value) : value;
    if (typeof number !== 'number' || !Number.isFinite(number)) throw new TypeError(`feature ${i} evaluated to ${describeValue(value)}, not a finite number`);
    z += feature.weight * number;
  });
  return sigmoid(z);
}
