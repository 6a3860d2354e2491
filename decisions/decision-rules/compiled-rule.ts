/**
 * Compiles a decision rule's expressions (trigger condition, eligibility, priority) with a
 * compiler that has the decision variables `segments` and `context`. Validation and the
 * per-workspace program share it, so a stored rule compiles the same way it validated.
 */
import type { SegmentCondition, SegmentConditionCompiler } from '../definitions/segment-condition.js';
import type { DecisionRuleSettings } from './rule-definition.js';

export interface CompiledExpressions {
  triggerCondition: SegmentCondition | undefined;
  eligibility: SegmentCondition | undefined;
  priority: SegmentCondition | undefined;
}

export type RuleCompileResult = { ok: true; expressions: CompiledExpressions } | { ok: false; path: string; rule: string };

/** Compiles every expression of a rule; the first that fails is returned with its path under `spec`. */
export function compileRuleExpressions(settings: DecisionRuleSettings, compiler: SegmentConditionCompiler): RuleCompileResult {
  const expressions: CompiledExpressions = { triggerCondition: undefined, eligibility: undefined, priority: undefined };
  const parts: Array<[keyof CompiledExpressions, string, string | undefined, 'bool' | 'number']> = [
    ['triggerCondition', 'spec.trigger.condition', settings.trigger?.condition, 'bool'],
    ['eligibility', 'spec.eligibility', settings.eligibility, 'bool'],
    ['priority', 'spec.priority', settings.priority, 'number'],
  ];

  for (const [field, path, expression, type] of parts) {
    if (expression === undefined) continue;
    const compiled = type === 'bool' ? compiler.compile(expression) : compiler.compileNumber(expression);
    if (!compiled.ok) return { ok: false, path, rule: compiled.error.rule };
    expressions[field] = compiled.condition;
  }
  return { ok: true, expressions };
}
