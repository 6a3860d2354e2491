/**
 * Compiles a journey's conditions (entry condition, exitWhen, branch conditions) with the
 * decision compiler. Validation and the per-workspace program share it, so a stored journey
 * compiles the same way it validated.
 */
import type { SegmentCondition, SegmentConditionCompiler } from '../definitions/segment-condition.js';
import { journeyExpressions, type JourneySettings } from './journey-definition.js';
import type { CompiledJourney } from './journey-step.js';

/** Compiles every condition; returns the first failure with its path under `spec`, or undefined. */
export function compileJourneyConditions(settings: JourneySettings, compiler: SegmentConditionCompiler): { path: string; rule: string } | undefined {
  for (const { path, expression } of journeyExpressions(settings)) {
    const compiled = compiler.compile(expression);
    if (!compiled.ok) return { path, rule: compiled.error.rule };
  }
  return undefined;
}

/** Compiles a validated journey; throws TypeError when a condition no longer compiles. */
export function compileJourney(name: string, version: number, hash: string, settings: JourneySettings, compiler: SegmentConditionCompiler): CompiledJourney {
  const conditions = new Map<string, SegmentCondition>();
  for (const { path, expression } of journeyExpressions(settings)) {
    const compiled = compiler.compile(expression);
    if (!compiled.ok) throw new TypeError(`${path} ${compiled.error.rule}`);
    conditions.set(path, compiled.condition);
  }
  return { name, version, hash, settings, conditions };
}
