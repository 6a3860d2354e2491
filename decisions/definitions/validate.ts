/**
 * Validation of a set of definition files as one unit: every document's envelope and spec,
 * unique names per kind, and segment conditions against the computed traits that the
 * workspace will have once the set is applied.
 */
import type { JsonObject } from '../../profiles/event.js';
import { COMPUTED_TRAIT_KINDS, ComputedTraitConfigError, describe, resolveComputedTrait, type ComputedTraitDefinition, type ComputedTraitKind } from '../computed-traits/definition.js';
import { contentHash, sortKeys } from './canonical.js';
import type { DefinitionVersion } from './definition-store.js';
import { memberPath, parseDefinitionFiles, type DefinitionDocument, type DefinitionKind, type SourceFile } from './document.js';
import { STORED_DEFINITION_FILE, type DefinitionIssue } from './issues.js';
import { SegmentConditionCompiler, type ComputedTraitSignature, type SegmentCondition } from './segment-condition.js';
import { compileRuleExpressions } from '../decision-rules/compiled-rule.js';
import { compileModelFeatures } from '../scoring/compiled-model.js';
import { resolveJourney, type JourneySettings } from '../journeys/journey-definition.js';
import { compileJourneyConditions } from '../journeys/compiled-journey.js';
import { resolveScoringModel, type ScoringModelSettings } from '../scoring/scoring-model.js';
import { resolveContactPolicy, resolveDecisionRule, type ContactPolicySettings, type DecisionRuleSettings } from '../decision-rules/rule-definition.js';

const SEGMENT_KEYS = ['condition'];

/** A definition of the set that passed validation. */
export interface ValidatedDefinition {
  kind: DefinitionKind;
  name: string;
  description: string;
  /** The spec as written, with sorted keys. */
  spec: JsonObject;
  contentHash: string;
  /** The document's file and its path `documents[INDEX]`. */
  source: { file: string; path: string };
  /** Set for a ComputedTrait. */
  computedTrait?: ComputedTraitDefinition;
  /** Set for a Segment. */
  condition?: SegmentCondition;
  /** Set for a DecisionRule. */
  decisionRule?: DecisionRuleSettings;
  /** Set for a ContactPolicy. */
  contactPolicy?: ContactPolicySettings;
  /** Set for a ScoringModel. */
  scoringModel?: ScoringModelSettings;
  /** Set for a Journey. */
  journey?: JourneySettings;
}

export interface ValidationOptions {
  /** The workspace of the caller's write key. */
  workspace: string;
  /** The latest stored version of each definition of the workspace, tombstones left out. */
  current: readonly DefinitionVersion[];
  /** Whether stored definitions that the set does not contain will be deleted. */
  prune: boolean;
}

export interface ValidationResult {
  /** The valid definitions of the set, in file order. Only usable when `issues` is empty. */
  definitions: ValidatedDefinition[];
  /** Every problem found, ordered by file and line; stored definitions last. */
  issues: DefinitionIssue[];
}

/** Validates a set of files as one apply into `options.workspace`. */
export function validateDefinitionSet(files: readonly SourceFile[], options: ValidationOptions): ValidationResult {
  const parsed = parseDefinitionFiles(files, options.workspace);
  const issues = [...parsed.issues];
  const documents = withoutRepeatedNames(parsed.documents, issues);

  const validated = new Map<DefinitionDocument, ValidatedDefinition>();
  const segments: DefinitionDocument[] = [];
  const rules: Array<{ document: DefinitionDocument; settings: DecisionRuleSettings }> = [];
  const models: Array<{ document: DefinitionDocument; settings: ScoringModelSettings }> = [];
  const journeys: Array<{ document: DefinitionDocument; settings: JourneySettings }> = [];
  // Every ComputedTrait of the set counts as defined, an invalid one too, so a segment that
  // refers to it gets no second issue. A trait whose kind is unknown is typed dyn.
  const computedInSet = new Map<string, ComputedTraitKind | undefined>();

  for (const document of documents) {
    if (document.kind === 'ComputedTrait') {
      const trait = validateComputedTrait(document, issues);
      computedInSet.set(document.name, trait?.kind ?? kindOf(document.spec));
      if (trait !== undefined) validated.set(document, { ...validatedBase(document), computedTrait: trait });
    } else if (document.kind === 'DecisionRule') {
      const settings = validateSpec(document, issues, (spec) => resolveDecisionRule(spec, document.name));
      if (settings !== undefined) rules.push({ document, settings });
    } else if (document.kind === 'Journey') {
      const settings = validateSpec(document, issues, (spec) => resolveJourney(spec));
      if (settings !== undefined) journeys.push({ document, settings });
    } else if (document.kind === 'ScoringModel') {
      const settings = validateSpec(document, issues, (spec) => resolveScoringModel(spec));
      if (settings !== undefined) models.push({ document, settings });
    } else if (document.kind === 'ContactPolicy') {
      const policy = validateSpec(document, issues, (spec) => resolveContactPolicy(spec));
      if (policy !== undefined) validated.set(document, { ...validatedBase(document), contactPolicy: policy });
    } else if (validateSegmentShape(document, issues)) {
      segments.push(document);
    }
  }

  const retained = options.prune ? [] : options.current.filter((stored) => !documents.some((document) => sameDefinition(document, stored)));
  const signatures = computedTraitsAfterApply(computedInSet, retained);
  // As with computed traits, an invalid Segment or ScoringModel of the set counts as defined.
  const segmentsAfter = namesAfterApply('Segment', documents, retained);
  const defined = { segments: segmentsAfter, scores: namesAfterApply('ScoringModel', documents, retained) };
  const compiler = new SegmentConditionCompiler(signatures, { defined });
  const featureCompiler = new SegmentConditionCompiler(signatures, { defined: { ...defined, scoresReadable: false } });
  const decisionCompiler = new SegmentConditionCompiler(signatures, { decisionVariables: true, defined });

  for (const document of segments) {
    const compiled = compiler.compile(document.spec.condition as string);
    if (compiled.ok) validated.set(document, { ...validatedBase(document), condition: compiled.condition });
    else issues.push(document.location.issue('spec.condition', compiled.error.rule));
  }

  for (const { document, settings } of models) {
    const failed = compileModelFeatures(settings, featureCompiler);
    if (failed === undefined) validated.set(document, { ...validatedBase(document), scoringModel: settings });
    else issues.push(document.location.issue(failed.path, failed.rule));
  }

  // A journey that enters on a segment needs that segment after the apply, or no profile ever enters.
  for (const { document, settings } of journeys) {
    const entry = settings.entry;
    if (entry.kind === 'segment' && !segmentsAfter.has(entry.segment)) {
      const known = segmentsAfter.size === 0 ? 'The workspace has no segments after this apply' : `The segments after this apply are ${[...segmentsAfter].sort().join(', ')}`;
      issues.push(document.location.issue('spec.entry.segment', `names segment ${JSON.stringify(entry.segment)}, which the workspace will not have after this apply. ${known}`));
      continue;
    }
    const failed = compileJourneyConditions(settings, decisionCompiler);
    if (failed === undefined) validated.set(document, { ...validatedBase(document), journey: settings });
    else issues.push(document.location.issue(failed.path, failed.rule));
  }

  for (const { document, settings } of rules) {
    const compiled = compileRuleExpressions(settings, decisionCompiler);
    if (compiled.ok) validated.set(document, { ...validatedBase(document), decisionRule: settings });
    else issues.push(document.location.issue(compiled.path, compiled.rule));
  }

  // A stored Segment that the set keeps can stop compiling when a computed trait changes kind.
  const storedIssues: DefinitionIssue[] = [];
  for (const stored of retained.filter((version) => version.kind === 'Segment')) {
    const compiled = compiler.compile(String(stored.spec.condition));
    if (!compiled.ok) {
      storedIssues.push({
        file: STORED_DEFINITION_FILE,
        path: `Segment ${stored.name} (version ${stored.version}) spec.condition`,
        rule: `${compiled.error.rule}. It would break with the computed traits of this apply: include the Segment in the apply with a condition that fits them`,
        line: 0,
        column: 0,
      });
    }
  }

  const definitions = documents.flatMap((document) => validated.get(document) ?? []);
  return { definitions, issues: [...sortIssues(issues, files), ...storedIssues] };
}

/** Returns the names of the definitions of `kind` that the workspace has after the apply: those of the set and those it keeps. */
function namesAfterApply(kind: string, documents: readonly DefinitionDocument[], retained: ReadonlyArray<{ kind: string; name: string }>): Set<string> {
  return new Set([...documents, ...retained].filter((definition) => definition.kind === kind).map((definition) => definition.name));
}

/** Drops each document whose kind and name an earlier document of the set already has, with an issue. */
function withoutRepeatedNames(documents: DefinitionDocument[], issues: DefinitionIssue[]): DefinitionDocument[] {
  const first = new Map<string, DefinitionDocument>();
  return documents.filter((document) => {
    const key = `${document.kind}/${document.name}`;
    const earlier = first.get(key);
    if (earlier === undefined) {
      first.set(key, document);
      return true;
    }
    issues.push(
      document.location.issue(
        'metadata.name',
        `repeats ${document.kind} ${JSON.stringify(document.name)} of ${earlier.location.file} ${earlier.location.path}. Give each ${document.kind} of a workspace its own name`,
      ),
    );
    return false;
  });
}

/** Validates a spec with `resolve`, which throws ComputedTraitConfigError naming the path under `spec` and the rule. */
function validateSpec<T>(document: DefinitionDocument, issues: DefinitionIssue[], resolve: (spec: JsonObject) => T): T | undefined {
  try {
    return resolve(document.spec);
  } catch (error) {
    if (!(error instanceof ComputedTraitConfigError)) throw error;
    issues.push(document.location.issue(error.path, error.rule));
    return undefined;
  }
}

/** Validates a ComputedTrait's spec with the same rules as resolveComputedTraits. */
function validateComputedTrait(document: DefinitionDocument, issues: DefinitionIssue[]): ComputedTraitDefinition | undefined {
  if (Object.hasOwn(document.spec, 'name')) {
    issues.push(document.location.issue('spec.name', 'is not a setting of a ComputedTrait: its name is metadata.name. Remove spec.name'));
    return undefined;
  }

  try {
    return resolveComputedTrait({ ...document.spec, name: document.name }, {}, 'spec');
  } catch (error) {
    if (!(error instanceof ComputedTraitConfigError)) throw error;
    issues.push(document.location.issue(error.path, error.rule));
    return undefined;
  }
}

/** Checks a Segment's spec keys and the type of its condition; the condition compiles later. */
function validateSegmentShape(document: DefinitionDocument, issues: DefinitionIssue[]): boolean {
  const count = issues.length;
  for (const key of Object.keys(document.spec)) {
    if (!SEGMENT_KEYS.includes(key)) issues.push(document.location.issue(memberPath('spec', key), `is not a setting of a Segment. The settings are ${SEGMENT_KEYS.join(', ')}`));
  }

  const condition = document.spec.condition;
  if (condition === undefined) issues.push(document.location.issue('spec.condition', 'is missing. Give a CEL expression over the profile, such as traits.plan == "pro"'));
  else if (typeof condition !== 'string') issues.push(document.location.issue('spec.condition', `must be a CEL expression as a string, got ${describe(condition)}`));
  return issues.length === count;
}

function validatedBase(document: DefinitionDocument): ValidatedDefinition {
  const content = { kind: document.kind, name: document.name, description: document.description, spec: sortKeys(document.spec) };
  return { ...content, contentHash: contentHash(content), source: { file: document.location.file, path: document.location.path } };
}

/** Lists the computed traits of the workspace after the apply: those of the set, and the stored ones that the set keeps. */
function computedTraitsAfterApply(inSet: ReadonlyMap<string, ComputedTraitKind | undefined>, retained: readonly DefinitionVersion[]): ComputedTraitSignature[] {
  const signatures: ComputedTraitSignature[] = [...inSet].map(([name, kind]) => ({ name, kind }));
  for (const stored of retained) {
    if (stored.kind === 'ComputedTrait') signatures.push({ name: stored.name, kind: kindOf(stored.spec) });
  }
  return signatures;
}

/** Returns the spec's kind when it is a known computed trait kind, else undefined. */
function kindOf(spec: JsonObject): ComputedTraitKind | undefined {
  return (COMPUTED_TRAIT_KINDS as readonly unknown[]).includes(spec.kind) ? (spec.kind as ComputedTraitKind) : undefined;
}

function sameDefinition(document: DefinitionDocument, stored: DefinitionVersion): boolean {
  return document.kind === stored.kind && document.name === stored.name;
}

/**
 * Orders issues by the files' order in the set, then by line. Issues without a line come first
 * in their file, and issues on one line keep the order in which validation found them.
 */
function sortIssues(issues: DefinitionIssue[], files: readonly SourceFile[]): DefinitionIssue[] {
  const fileOrder = new Map(files.map((file, index) => [file.name, index]));
  return issues
    .map((issue, index) => ({ issue, index }))
    .sort((a, b) => {
      const byFile = (fileOrder.get(a.issue.file) ?? 0) - (fileOrder.get(b.issue.file) ?? 0);
      if (byFile !== 0) return byFile;
      return a.issue.line - b.issue.line || a.index - b.index;
    })
    .map(({ issue }) => issue);
}

