/**
 * The tasks that run in the matching workers, as plain functions so that tests can call
 * them in-process. score-worker.ts is the Piscina entry point that dispatches to them.
 */
import { blockingKey, parseBlockingRule } from './blocking-rules.js';
import { comparePattern, compileSchema, decodePattern, type CompiledSchema, type ComparisonSchema } from './comparison-schema.js';
import type { PersonRecord, PreparedPerson } from './person.js';
import { preparePerson } from './prepare.js';
import { decodePerson, encodePerson } from './record-codec.js';
import { RecordStoreReader, type RecordStoreView } from './shared-record-store.js';

/** Prepares records and computes their blocking keys. */
export interface PrepareTask {
  kind: 'prepare';
  persons: PersonRecord[];
  identifierNames: string[];
  /** Blocking rules as text, already expanded (no `identifier:*`). */
  rules: string[];
}

export interface PrepareResult {
  /** One record-codec string per person. */
  encoded: string[];
  /** keys[i * rules.length + r]: the key of person i under rule r, or ''. */
  keys: string[];
}

/** Compares pairs of records and, when weights are given, scores them. */
export interface CompareTask {
  kind: 'compare';
  schema: ComparisonSchema;
  store: RecordStoreView;
  /** Flat `[a0, b0, a1, b1, ...]` slots of the store. */
  pairs: Int32Array;
  /** Flattened weights (fellegi-sunter.ts `flattenWeights`), to return each pair's match weight. */
  weights?: { values: Float64Array; offsets: Int32Array };
}

export interface CompareResult {
  /** The level pattern of each pair (comparison-schema.ts). */
  patterns: Float64Array;
  /** The match weight of each pair without the prior, when the task has weights. */
  weights?: Float64Array;
}

export type MatchingTask = PrepareTask | CompareTask;

export function runPrepareTask(task: PrepareTask): PrepareResult {
  const rules = task.rules.map(parseBlockingRule);
  const encoded: string[] = [];
  const keys: string[] = [];
  for (const person of task.persons) {
    const prepared = preparePerson(person, task.identifierNames);
    encoded.push(encodePerson(prepared));
    for (const rule of rules) keys.push(blockingKey(rule, prepared, task.identifierNames));
  }
  return { encoded, keys };
}

let cachedSchema: { key: string; compiled: CompiledSchema } | undefined;

/**
 * The decoded records of the store that the last task used. A task of another store
 * replaces them, so a pool should serve one store at a time.
 */
let cachedStore: { reader: RecordStoreReader; records: (PreparedPerson | undefined)[] } | undefined;

export function runCompareTask(task: CompareTask): CompareResult {
  const compiled = compiledSchemaOf(task.schema);
  const records = recordsOf(task.store);
  const pairCount = task.pairs.length / 2;
  const patterns = new Float64Array(pairCount);
  for (let i = 0; i < pairCount; i++) {
    patterns[i] = comparePattern(compiled, records.get(task.pairs[2 * i]), records.get(task.pairs[2 * i + 1]));
  }
  if (task.weights === undefined) return { patterns };
  return { patterns, weights: scorePatterns(compiled, patterns, task.weights) };
}

/** Sums the weights of each pattern's levels. */
export function scorePatterns(compiled: CompiledSchema, patterns: Float64Array, weights: { values: Float64Array; offsets: Int32Array }): Float64Array {
  const scores = new Float64Array(patterns.length);
  const levels = new Uint8Array(compiled.radices.length);
  for (let i = 0; i < patterns.length; i++) {
    decodePattern(compiled, patterns[i], levels);
    let score = 0;
    for (let f = 0; f < levels.length; f++) score += weights.values[weights.offsets[f] + levels[f]];
    scores[i] = score;
  }
  return scores;
}

/** Returns a reader of the task's store that decodes each record once per worker. */
function recordsOf(view: RecordStoreView): { get(slot: number): PreparedPerson } {
  if (cachedStore?.reader.id !== view.id) cachedStore = { reader: new RecordStoreReader(view), records: [] };
  const store = cachedStore;
  store.reader.update(view);
  const records = store.records;
  return {
    get(slot) {
      // Filling the array up to the slot keeps its elements fast where a sparse write would make it a dictionary.
      while (records.length <= slot) records.push(undefined);
      let record = records[slot];
      if (record === undefined) {
        record = decodePerson(store.reader.read(slot));
        records[slot] = record;
      }
      return record;
    },
  };
}

/** Compiles the task's schema, reusing the last one when the fields are the same. */
function compiledSchemaOf(schema: ComparisonSchema): CompiledSchema {
  const key = `${schema.fields.map((field) => field.name).join(',')}/${schema.identifierNames.join(',')}`;
  if (cachedSchema?.key !== key) cachedSchema = { key, compiled: compileSchema(schema) };
  return cachedSchema.compiled;
}
