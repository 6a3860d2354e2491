/**
 * A workspace's definitions compiled for evaluation: one aggregator per computed trait and
 * one compiled condition per segment, built once per set of stored versions and shared by
 * every profile of the workspace.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../../common/logger.js';
import { createComputedTrait, type ComputedTrait } from '../computed-traits/computed-trait.js';
import { ComputedTraitConfigError, resolveComputedTrait } from '../computed-traits/definition.js';
import type { DefinitionVersion } from '../definitions/definition-store.js';
import { SegmentConditionCompiler, type SegmentCondition } from '../definitions/segment-condition.js';
import { compileRuleExpressions, type CompiledExpressions } from '../decision-rules/compiled-rule.js';
import { compileModel, type CompiledModel } from '../scoring/compiled-model.js';
import { compileJourney } from '../journeys/compiled-journey.js';
import { resolveJourney } from '../journeys/journey-definition.js';
import type { CompiledJourney } from '../journeys/journey-step.js';
import { resolveScoringModel } from '../scoring/scoring-model.js';
import { resolveContactPolicy, resolveDecisionRule, type DecisionRuleSettings, type PolicyCap } from '../decision-rules/rule-definition.js';

export interface CompiledTrait {
  name: string;
  version: number;
  /** Hash of the definition's spec (specHash): a profile's state built under another hash starts again. */
  hash: string;
  trait: ComputedTrait;
}

export interface CompiledSegment {
  name: string;
  version: number;
  hash: string;
  condition: SegmentCondition;
}

export interface CompiledRule extends CompiledExpressions {
  name: string;
  version: number;
  settings: DecisionRuleSettings;
}

export class WorkspaceProgram {
  private constructor(
    readonly workspace: string,
    readonly traits: readonly CompiledTrait[],
    readonly segments: readonly CompiledSegment[],
    readonly compiler: SegmentConditionCompiler,
    /** Computed traits that some segment reads, by name: only their expiries need timers. */
    readonly traitsReadBySegments: ReadonlySet<string>,
    readonly rules: readonly CompiledRule[],
    /** The caps of every ContactPolicy of the workspace. */
    readonly contactCaps: readonly PolicyCap[],
    /** The consent traits of every ContactPolicy of the workspace. */
    readonly consentTraits: readonly string[],
    /** The compiler of decision expressions, whose variables include `segments` and `context`. */
    readonly decisionCompiler: SegmentConditionCompiler,
    readonly models: readonly CompiledModel[],
    readonly journeys: readonly CompiledJourney[],
  ) {}

  /** Whether the workspace defines nothing to evaluate. */
  get empty(): boolean {
    return this.traits.length === 0 && this.segments.length === 0 && this.rules.length === 0 && this.models.length === 0 && this.journeys.length === 0;
  }

  /** How long a profile keeps a decision: the longest cap window, cooldown or contact policy window. */
  get decisionHistoryMs(): number {
    const windows = [
      ...this.contactCaps.map((cap) => cap.windowMs),
      ...this.rules.flatMap((rule) => [rule.settings.cooldownMs, ...rule.settings.caps.map((cap) => cap.windowMs)]),
    ];
    return Math.max(0, ...windows);
  }

  /**
   * Compiles the latest stored versions of a workspace, tombstones left out. Every stored
   * version passed validation when it was applied, so a definition that fails to compile
   * here is skipped with an error log rather than stopping the others.
   */
  static compile(workspace: string, versions: readonly DefinitionVersion[], logger: Logger): WorkspaceProgram {
    const traits: CompiledTrait[] = [];
    for (const version of versions.filter((candidate) => candidate.kind === 'ComputedTrait' && !candidate.deleted)) {
      try {
        const definition = resolveComputedTrait({ ...version.spec, name: version.name }, {}, 'spec');
        traits.push({ name: version.name, version: version.version, hash: specHash(version), trait: createComputedTrait(definition) });
      } catch (error) {
        if (!(error instanceof ComputedTraitConfigError)) throw error;
        logger.error({ workspace, kind: version.kind, name: version.name, version: version.version, err: error }, 'stored computed trait does not compile; it is not evaluated');
      }
    }

    const compiler = new SegmentConditionCompiler(traits.map(({ name, trait }) => ({ name, kind: trait.definition.kind })));
    const segments: CompiledSegment[] = [];
    for (const version of versions.filter((candidate) => candidate.kind === 'Segment' && !candidate.deleted)) {
      const compiled = compiler.compile(String(version.spec.condition));
      if (compiled.ok) {
        segments.push({ name: version.name, version: version.version, hash: specHash(version), condition: compiled.condition });
      } else {
        logger.error({ workspace, kind: version.kind, name: version.name, version: version.version, rule: compiled.error.rule }, 'stored segment does not compile; it is not evaluated');
      }
    }

    const decisionCompiler = new SegmentConditionCompiler(
      traits.map(({ name, trait }) => ({ name, kind: trait.definition.kind })),
      { decisionVariables: true },
    );
    const rules = compileRules(workspace, versions, decisionCompiler, logger);
    const policies = versions.filter((version) => version.kind === 'ContactPolicy' && !version.deleted).flatMap((version) => {
      try {
        return [resolveContactPolicy(version.spec)];
      } catch (error) {
        if (!(error instanceof ComputedTraitConfigError)) throw error;
        logger.error({ workspace, kind: version.kind, name: version.name, version: version.version, err: error }, 'stored contact policy is invalid; it is not applied');
        return [];
      }
    });

    const models = compileModels(workspace, versions, compiler, logger);
    const journeys = compileJourneys(workspace, versions, decisionCompiler, logger);
    const read = new Set(segments.flatMap((segment) => segment.condition.computedTraits));
    const contactCaps = policies.flatMap((policy) => policy.caps);
    const consentTraits = [...new Set(policies.flatMap((policy) => (policy.consentTrait === undefined ? [] : [policy.consentTrait])))];
    return new WorkspaceProgram(workspace, traits, segments, compiler, read, rules, contactCaps, consentTraits, decisionCompiler, models, journeys);
  }
}

/** Compiles the stored decision rules, sorted by name; one that no longer compiles is skipped with an error log. */
function compileRules(workspace: string, versions: readonly DefinitionVersion[], compiler: SegmentConditionCompiler, logger: Logger): CompiledRule[] {
  const rules: CompiledRule[] = [];
  for (const version of versions.filter((candidate) => candidate.kind === 'DecisionRule' && !candidate.deleted)) {
    const fields = { workspace, kind: version.kind, name: version.name, version: version.version };
    let settings: DecisionRuleSettings;
    try {
      settings = resolveDecisionRule(version.spec, version.name);
    } catch (error) {
      if (!(error instanceof ComputedTraitConfigError)) throw error;
      logger.error({ ...fields, err: error }, 'stored decision rule is invalid; it is not evaluated');
      continue;
    }

    const compiled = compileRuleExpressions(settings, compiler);
    if (compiled.ok) rules.push({ name: version.name, version: version.version, settings, ...compiled.expressions });
    else logger.error({ ...fields, path: compiled.path, rule: compiled.rule }, 'stored decision rule does not compile; it is not evaluated');
  }
  return rules.sort(byName);
}

/** Compiles the stored scoring models, sorted by name; one that no longer compiles is skipped with an error log. */
function compileModels(workspace: string, versions: readonly DefinitionVersion[], compiler: SegmentConditionCompiler, logger: Logger): CompiledModel[] {
  const models: CompiledModel[] = [];
  for (const version of versions.filter((candidate) => candidate.kind === 'ScoringModel' && !candidate.deleted)) {
    try {
      models.push(compileModel(version.name, version.version, specHash(version), resolveScoringModel(version.spec), compiler));
    } catch (error) {
      if (!(error instanceof ComputedTraitConfigError) && !(error instanceof TypeError)) throw error;
      logger.error({ workspace, kind: version.kind, name: version.name, version: version.version, err: error }, 'stored scoring model does not compile; it is not evaluated');
    }
  }
  return models.sort(byName);
}

/** Compiles the stored journeys, sorted by name; one that no longer compiles is skipped with an error log. */
function compileJourneys(workspace: string, versions: readonly DefinitionVersion[], compiler: SegmentConditionCompiler, logger: Logger): CompiledJourney[] {
  const journeys: CompiledJourney[] = [];
  for (const version of versions.filter((candidate) => candidate.kind === 'Journey' && !candidate.deleted)) {
    try {
      journeys.push(compileJourney(version.name, version.version, specHash(version), resolveJourney(version.spec), compiler));
    } catch (error) {
      if (!(error instanceof ComputedTraitConfigError) && !(error instanceof TypeError)) throw error;
      logger.error({ workspace, kind: version.kind, name: version.name, version: version.version, err: error }, 'stored journey does not compile; it is not evaluated');
    }
  }
  return journeys.sort(byName);
}

/**
 * Returns the hash that a profile's state of a definition is kept under: the SHA-256 of its
 * spec, whose keys the store keeps sorted. Unlike the content hash it leaves out the
 * description, so editing only the description keeps every profile's state.
 */
function specHash(version: DefinitionVersion): string {
  return createHash('sha256').update(JSON.stringify(version.spec)).digest('hex');
}

function byName(a: { name: string }, b: { name: string }): number {
  if (a.name === b.name) return 0;
  return a.name < b.name ? -1 : 1;
}
