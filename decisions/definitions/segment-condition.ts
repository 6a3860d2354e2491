/**
 * Segment conditions: CEL expressions over a profile, compiled and type-checked once when a
 * Segment is validated.
 *
 * Library: @marcbachmann/cel-js 8.0.0 rather than @bufbuild/cel 0.6.1. `npm run bench -- cel`
 * measured it 2.1 to 4.7 times as fast on four conditions over a 30-field profile
 * (docs/benchmarks.md). Its Environment type-checks an expression against declared variable
 * types and reports the source range of each error. @bufbuild/cel 0.6.1 exports no type
 * checker, so an unknown variable surfaces only when a condition is evaluated. cel-js has no
 * dependencies. @bufbuild/cel runs the cel-spec conformance suite in its own tests, while
 * cel-js documents "most of the CEL spec", so the tests here pin the parts that conditions
 * rely on (test/decisions/segment-condition.test.ts).
 *
 * Variables of a condition:
 * - `traits`: map<string, dyn>, the profile's traits.
 * - `events`: map<string, EventStats>, keyed as the profile counts events: a track event by
 *   its name, page and screen events as "page:NAME" and "screen:NAME", other types by type.
 *   EventStats has `count` (int), `sums` (map<string, double>), `firstSeenMs` and `lastSeenMs` (int).
 * - `eventCount`, `firstSeenMs`, `lastSeenMs`: int.
 * - `nowMs`: int, the evaluation time in ms since the epoch.
 * - `scores`: map<string, double>, the profile's scoring model values (absent until a model has one).
 * - `computed`: the workspace's computed traits by name. count and distinct_count are int and
 *   sum is double. The other kinds are dyn because they are null until an event counts.
 */
import { Environment, ParseError, type ASTNode } from '@marcbachmann/cel-js';
import type { JsonValue } from '../../profiles/event.js';
import type { EventStats, ProfileSnapshot } from '../../profiles/profile.js';
import type { ComputedTraitKind } from '../computed-traits/definition.js';

/** Maximum length of a condition, in characters. */
export const MAX_CONDITION_LENGTH = 4_096;

/** The CEL type of `computed.<name>` per computed trait kind. */
const CEL_TYPE_BY_KIND: Record<ComputedTraitKind, string> = {
  count: 'int',
  distinct_count: 'int',
  sum: 'double',
  average: 'dyn',
  min: 'dyn',
  max: 'dyn',
  first: 'dyn',
  last: 'dyn',
  most_frequent: 'dyn',
};

/** Result types a condition may have. A dyn result, such as `traits.vip`, is accepted because its type is known only at evaluation. */
const CONDITION_TYPES = ['bool', 'dyn'];

/** Result types of a numeric expression, such as a decision rule's priority. */
const NUMBER_TYPES = ['int', 'double', 'dyn'];

/** The value of `events[NAME]` in a condition. Integers are CEL ints, which cel-js represents as bigint. */
export class EventStatsValue {
  readonly count: bigint;
  readonly sums: Record<string, number>;
  readonly firstSeenMs: bigint;
  readonly lastSeenMs: bigint;

  constructor(stats: EventStats) {
    this.count = BigInt(stats.count);
    this.sums = stats.sums;
    this.firstSeenMs = BigInt(stats.firstSeenMs);
    this.lastSeenMs = BigInt(stats.lastSeenMs);
  }
}

/** The computed traits that a condition may refer to. */
export interface ComputedTraitSignature {
  name: string;
  /** Undefined for a trait whose kind is invalid: its value is typed dyn. */
  kind: ComputedTraitKind | undefined;
}

/** A compiled condition. */
export interface SegmentCondition {
  readonly expression: string;
  /** `bool`, or `dyn` when the type depends on a trait's value. */
  readonly resultType: string;
  /** Computed traits that the condition refers to, by name. */
  readonly computedTraits: readonly string[];
  /** Evaluates the condition. Throws the library's EvaluationError, for example on a missing trait. */
  evaluate(activation: ConditionActivation): unknown;
}

export interface ConditionActivation {
  /** Decision expressions only: the segments the profile is in, each mapped to true. */
  segments?: Record<string, boolean>;
  /** Decision expressions only: the Decide call's context, or the triggering event's properties. */
  context?: Record<string, JsonValue>;
  traits: Record<string, JsonValue>;
  events: Record<string, EventStatsValue>;
  /** The profile's scoring model values by name. */
  scores: Record<string, number>;
  eventCount: bigint;
  firstSeenMs: bigint;
  lastSeenMs: bigint;
  nowMs: bigint;
  computed: Record<string, JsonValue | bigint>;
}

/** Compile error of a condition. `line` and `column` are 1-based positions in the expression, 0 when unknown. */
export interface ConditionError {
  rule: string;
  line: number;
  column: number;
}

export type CompileResult = { ok: true; condition: SegmentCondition } | { ok: false; error: ConditionError };

/**
 * Compiles conditions for one workspace. Building the environment registers the workspace's
 * computed traits as the fields of `computed`, so create one per set of computed traits and
 * reuse it for every condition of that set.
 */
export class SegmentConditionCompiler {
  readonly #environment: Environment;
  readonly #computedTraits: ReadonlyMap<string, ComputedTraitKind | undefined>;
  readonly #defined: DefinedNames | undefined;
  /** Whether expressions have the `segments` variable, which only decision expressions do. */
  readonly #segmentsReadable: boolean;

  /**
   * `decisionVariables` adds the variables of decision rule expressions: `segments`
   * (map<string, bool>, the profile's segments) and `context` (map<string, dyn>). With
   * `defined`, an expression that names a segment or scoring model outside it fails to
   * compile, as one that names an unknown computed trait always does.
   */
  constructor(computedTraits: readonly ComputedTraitSignature[], options: { decisionVariables?: boolean; defined?: DefinedNames } = {}) {
    this.#computedTraits = new Map(computedTraits.map((trait) => [trait.name, trait.kind]));
    this.#defined = options.defined;
    this.#segmentsReadable = options.decisionVariables === true;
    const computedFields = Object.fromEntries(computedTraits.map((trait) => [trait.name, trait.kind === undefined ? 'dyn' : CEL_TYPE_BY_KIND[trait.kind]]));

    let environment = new Environment({ unlistedVariablesAreDyn: false })
      .registerType('EventStats', {
        ctor: EventStatsValue,
        fields: { count: 'int', sums: 'map<string, double>', firstSeenMs: 'int', lastSeenMs: 'int' },
      })
      .registerType('ComputedTraits', { fields: computedFields })
      .registerVariable('traits', 'map<string, dyn>')
      .registerVariable('events', 'map<string, EventStats>')
      .registerVariable('eventCount', 'int')
      .registerVariable('firstSeenMs', 'int')
      .registerVariable('lastSeenMs', 'int')
      .registerVariable('nowMs', 'int')
      .registerVariable('computed', 'ComputedTraits')
      .registerVariable('scores', 'map<string, double>');
    if (options.decisionVariables) {
      environment = environment.registerVariable('segments', 'map<string, bool>').registerVariable('context', 'map<string, dyn>');
    }
    this.#environment = environment;
  }

  /**
   * Builds the variables of a condition from a profile and its computed trait values.
   * Integers of int-typed variables become bigint, as CEL ints are in cel-js; a computed
   * trait typed double or dyn stays a number even when its value is whole.
   */
  activation(profile: ProfileSnapshot, computed: Record<string, JsonValue>, nowMs: number): ConditionActivation {
    const events: Record<string, EventStatsValue> = {};
    for (const [name, stats] of Object.entries(profile.events)) events[name] = new EventStatsValue(stats);

    const computedValues: Record<string, JsonValue | bigint> = {};
    for (const [name, value] of Object.entries(computed)) {
      const kind = this.#computedTraits.get(name);
      const isInt = kind !== undefined && CEL_TYPE_BY_KIND[kind] === 'int';
      computedValues[name] = isInt && typeof value === 'number' ? BigInt(value) : value;
    }

    return {
      traits: profile.traits,
      events,
      scores: profile.scores,
      eventCount: BigInt(profile.eventCount),
      firstSeenMs: BigInt(profile.firstSeenMs),
      lastSeenMs: BigInt(profile.lastSeenMs),
      nowMs: BigInt(nowMs),
      computed: computedValues,
    };
  }

  /** Compiles a boolean condition. */
  compile(expression: string): CompileResult {
    return this.#compile(expression, CONDITION_TYPES, 'a boolean expression', 'traits.plan == "pro"');
  }

  /** Compiles a numeric expression (int, double, or dyn known only at evaluation). */
  compileNumber(expression: string): CompileResult {
    return this.#compile(expression, NUMBER_TYPES, 'a numeric expression', 'computed.ltv * 0.1');
  }

  /**
   * Returns the computed traits, segments and scoring models that the expression names and
   * the workspace will not have, by kind. Segments and scores count only where the
   * expression can read them, so that a condition that reads them where it cannot fails
   * with that reason instead of with the names the workspace has.
   */
  #danglingReferences(root: ASTNode): DanglingReferences[] {
    const dangling: DanglingReferences[] = [];
    const check = (variable: string, definitionKind: string, known: ReadonlySet<string>) => {
      const missing = firstOfEachName(namedReferences(root, variable).filter((reference) => !known.has(reference.name)));
      if (missing.length > 0) dangling.push({ references: missing, definitionKind, defined: [...known] });
    };

    check('computed', 'computed trait', new Set(this.#computedTraits.keys()));
    if (this.#defined !== undefined) {
      if (this.#segmentsReadable) check('segments', 'segment', this.#defined.segments);
      if (this.#defined.scoresReadable !== false) check('scores', 'scoring model', this.#defined.scores);
    }
    return dangling;
  }

  #compile(expression: string, resultTypes: readonly string[], expected: string, example: string): CompileResult {
    if (expression.trim() === '') return failure(`must be a non-empty CEL expression, such as ${example}`);
    if (expression.length > MAX_CONDITION_LENGTH) {
      return failure(`must be at most ${MAX_CONDITION_LENGTH} characters, got ${expression.length}`);
    }

    let program: ReturnType<Environment['parse']>;
    try {
      program = this.#environment.parse(expression);
    } catch (error) {
      if (error instanceof ParseError) return celFailure(expression, error);
      throw error;
    }

    const references = namedReferences(program.ast, 'computed');
    const dangling = this.#danglingReferences(program.ast);
    if (dangling.length > 0) return undefinedReferences(expression, dangling);
    const scoreRead = this.#defined?.scoresReadable === false ? scoresRead(program.ast) : undefined;
    if (scoreRead !== undefined) {
      const position = positionOf(expression, scoreRead.offset);
      const read = scoreRead.name === undefined ? 'reads scores' : `reads scoring model ${JSON.stringify(scoreRead.name)}`;
      return failure(
        `${read}${at(position)}, but a scoring model's features cannot read scores: every model is computed from the same profile state, before any of them has its new score`,
        position,
      );
    }

    const checked = program.check();
    if (!checked.valid) return celFailure(expression, checked.error);
    const resultType = checked.type ?? 'dyn';
    if (!resultTypes.includes(resultType)) {
      return failure(`must be ${expected}, but its type is ${resultType}`, { line: 1, column: 1 });
    }

    const names = [...new Set(references.map((reference) => reference.name))].sort();
    return { ok: true, condition: { expression, resultType, computedTraits: names, evaluate: (activation) => program(activation) } };
  }
}

/** The segments and scoring models a workspace has after an apply, which its expressions may name. */
export interface DefinedNames {
  segments: ReadonlySet<string>;
  scores: ReadonlySet<string>;
  /** False for a scoring model's features, which cannot read scores. Default true. */
  scoresReadable?: boolean;
}

interface NamedReference {
  name: string;
  /** Offset of the name in the expression. */
  offset: number;
}

/** CEL's comprehension macros, which bind a variable to each list element or map key: `m.exists(k, ...)` and the like. */
const KEY_MACROS = new Set(['all', 'exists', 'exists_one', 'filter', 'map']);

/**
 * Finds `VARIABLE.NAME`, `VARIABLE["NAME"]` and `"NAME" in VARIABLE` in a parsed
 * expression, where VARIABLE is a map or message keyed by definition name. Inside a macro
 * over VARIABLE, such as `VARIABLE.exists(k, k == "NAME")`, a string that the key is compared
 * with (`==`, `!=`, or `in` a list) names a definition too. Where a macro binds a variable of
 * the same name, as in `list.exists(VARIABLE, "NAME" in VARIABLE)`, that name refers to the
 * macro's variable, so the macro's body is skipped.
 */
function namedReferences(root: ASTNode, variable: string): NamedReference[] {
  const references: NamedReference[] = [];
  walkAst(root, (node) => {
    const args = node.args as unknown;
    if (Array.isArray(args) && isIdentifier(args[0], variable)) {
      if (node.op === '.' && typeof args[1] === 'string') references.push({ name: args[1], offset: args[0].end + 1 });
      if (node.op === '[]' && isStringValue(args[1])) references.push({ name: args[1].args, offset: args[1].start });
    }
    if (node.op === 'in' && Array.isArray(args) && isStringValue(args[0]) && isIdentifier(args[1], variable)) {
      references.push({ name: args[0].args, offset: args[0].start });
    }
    const key = keyMacroVariable(node, variable);
    if (key !== undefined) references.push(...comparedStrings(args, key));
    return partsOutsideBinding(node, variable) ?? args;
  });
  return references;
}

/**
 * Calls `onNode` for every AST node in `root`, parents first. It returns what to search
 * below the node: its arguments, or fewer parts to leave a scope out.
 */
function walkAst(root: unknown, onNode: (node: ASTNode) => unknown): void {
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      node.forEach(visit);
      return;
    }
    if (isAstNode(node)) visit(onNode(node));
  };
  visit(root);
}

/**
 * Returns the parts of `node` outside the scope of the variable `name` that it binds: the
 * receiver of a comprehension macro, or the receiver and initial value of `cel.bind`.
 * Returns undefined when `node` binds no variable of that name.
 */
function partsOutsideBinding(node: ASTNode, name: string): unknown[] | undefined {
  const args = node.args as unknown;
  if (node.op !== 'rcall' || !Array.isArray(args) || !Array.isArray(args[2])) return undefined;

  const [bound, initial] = args[2] as unknown[];
  if (!isIdentifier(bound, name)) return undefined;
  if (KEY_MACROS.has(args[0] as string)) return [args[1]];
  if (args[0] === 'bind' && isIdentifier(args[1], 'cel')) return [args[1], initial];
  return undefined;
}

/**
 * Returns the first read of `scores` in a parsed expression: the first scoring model it
 * names, else the first use of the variable without a name, such as `scores.size()` or
 * `scores.exists(m, scores[m] > 0.5)`. Returns undefined when it does not read `scores`.
 */
function scoresRead(root: ASTNode): { name?: string; offset: number } | undefined {
  const named = namedReferences(root, 'scores')[0];
  if (named !== undefined) return named;

  const offset = identifierOffsets(root, 'scores')[0];
  return offset === undefined ? undefined : { offset };
}

/** Returns the offsets of the identifier `name` in a parsed expression, outside the macros that bind a variable of that name. */
function identifierOffsets(root: ASTNode, name: string): number[] {
  const offsets: number[] = [];
  walkAst(root, (node) => {
    if (isIdentifier(node, name)) offsets.push(node.start);
    return partsOutsideBinding(node, name) ?? node.args;
  });
  return offsets;
}

/** Returns the name of the key variable when `node` is a macro over `variable`'s keys. */
function keyMacroVariable(node: ASTNode, variable: string): string | undefined {
  const args = node.args as unknown;
  if (node.op !== 'rcall' || !Array.isArray(args) || !KEY_MACROS.has(args[0] as string) || !isIdentifier(args[1], variable)) return undefined;

  const [key] = Array.isArray(args[2]) ? (args[2] as unknown[]) : [];
  return isAstNode(key) && key.op === 'id' && typeof key.args === 'string' ? key.args : undefined;
}

/**
 * Finds the strings that the key variable `key` is compared with in a macro's body. A macro
 * or `cel.bind` nested in it that names its own variable `key` hides the outer one, so only
 * its parts outside that binding are searched.
 */
function comparedStrings(body: unknown, key: string): NamedReference[] {
  const found: NamedReference[] = [];
  walkAst(body, (node) => {
    const outside = partsOutsideBinding(node, key);
    if (outside !== undefined) return outside;

    const args = node.args as unknown;
    if ((node.op === '==' || node.op === '!=') && Array.isArray(args)) {
      const [left, right] = args as unknown[];
      if (isIdentifier(left, key) && isStringValue(right)) found.push({ name: right.args, offset: right.start });
      if (isStringValue(left) && isIdentifier(right, key)) found.push({ name: left.args, offset: left.start });
    }
    if (node.op === 'in' && Array.isArray(args) && isIdentifier(args[0], key) && isAstNode(args[1]) && args[1].op === 'list' && Array.isArray(args[1].args)) {
      for (const item of args[1].args as unknown[]) if (isStringValue(item)) found.push({ name: item.args, offset: item.start });
    }
    return args;
  });
  return found;
}

function isIdentifier(node: unknown, name: string): node is ASTNode {
  return isAstNode(node) && node.op === 'id' && node.args === name;
}

function isStringValue(node: unknown): node is ASTNode & { args: string } {
  return isAstNode(node) && node.op === 'value' && typeof node.args === 'string';
}

/** Names of one kind of definition that an expression refers to and the workspace will not have. */
interface DanglingReferences {
  /** The first reference of each missing name, in the order of the expression. */
  references: NamedReference[];
  definitionKind: string;
  /** The names of that kind the workspace will have. */
  defined: string[];
}

/** Keeps the first reference of each name. */
function firstOfEachName(references: readonly NamedReference[]): NamedReference[] {
  const first = new Map<string, NamedReference>();
  for (const reference of references) {
    if (!first.has(reference.name)) first.set(reference.name, reference);
  }
  return [...first.values()];
}

/**
 * Returns the failure of an expression that names definitions the workspace will not have:
 * every missing name with its position, and per kind the names the workspace will have.
 * The failure's position is that of the first missing name.
 */
function undefinedReferences(expression: string, dangling: readonly DanglingReferences[]): CompileResult {
  const sentences = dangling.map(({ references, definitionKind, defined }, index) => {
    const names = references.map((reference) => `${JSON.stringify(reference.name)}${at(positionOf(expression, reference.offset))}`);
    const subject = references.length === 1 ? `${definitionKind} ${names[0]}, which is` : `${definitionKind}s ${names.slice(0, -1).join(', ')} and ${names.at(-1)}, which are`;
    const known = defined.length === 0 ? `The workspace has no ${definitionKind}s after this apply` : `The ${definitionKind}s after this apply are ${[...defined].sort().join(', ')}`;
    return `${index === 0 ? 'refers to' : 'It also refers to'} ${subject} not defined. ${known}`;
  });
  return failure(sentences.join('. '), positionOf(expression, dangling[0].references[0].offset));
}

function isAstNode(value: unknown): value is ASTNode {
  return typeof value === 'object' && value !== null && 'op' in value && 'args' in value && typeof (value as { start?: unknown }).start === 'number';
}

function failure(rule: string, position: { line: number; column: number } = { line: 0, column: 0 }): CompileResult {
  return { ok: false, error: { rule, ...position } };
}

/** Turns a cel-js error into a failure with the error's first line and its position in the expression. */
function celFailure(expression: string, error: { summary?: string; message: string; range?: { start: number } } | undefined): CompileResult {
  const summary = error?.summary ?? error?.message.split('\n')[0] ?? 'unknown error';
  const position = positionOf(expression, error?.range?.start ?? 0);
  return failure(`is not a valid CEL expression: ${summary}${at(position)}`, position);
}

function at(position: { line: number; column: number }): string {
  return ` (at line ${position.line}, column ${position.column} of the condition)`;
}

/** Converts an offset in the expression to a 1-based line and column. */
function positionOf(expression: string, offset: number): { line: number; column: number } {
  const before = expression.slice(0, Math.max(0, Math.min(offset, expression.length)));
  const lines = before.split('\n');
  return { line: lines.length, column: lines[lines.length - 1].length + 1 };
}
