/**
 * Batch matching for backfills: one file is deduplicated, two files are linked. The steps
 * are preparation and blocking keys (in the workers), candidate pairs, their comparison (in
 * the workers), u from random pairs, m and lambda by EM on the candidate pairs, then scores,
 * decisions and, with ground truth, precision and recall. The main thread yields to its
 * event loop between chunks of work of a few thousand records or pairs each.
 */
import { throwIfAborted, ConfigError } from '../../common/errors.js';
import { DEFAULT_BLOCKING_RULES, expandRules, type BlockingRule } from './blocking-rules.js';
import { CandidatePairs, numberOf, type BlockingSummary } from './candidate-pairs.js';
import { compileSchema, createSchema, IDENTIFIER_FIELD_PREFIX, type ComparisonSchema } from './comparison-schema.js';
import { decidePairs, type PairDecisions } from './pair-decisions.js';
import { RecordInputError } from './errors.js';
import { countTruePairs, evaluatePairs, type PairEvaluation } from './evaluation.js';
import { schemaOf, type MatchModel } from './fellegi-sunter.js';
import { resolveThresholds, integerOption, type MatchThresholds } from './matching-options.js';
import type { MatchingPool } from './matching-pool.js';
import { PERSON_TEXT_FIELDS } from './person.js';
import { estimateModel, type ComparedPairs, type Estimation, type UEstimation } from './parameter-estimation.js';
import type { RecordSet } from './record-files.js';
import { SharedRecordStore } from './shared-record-store.js';
import { ITEMS_PER_YIELD, yieldToEventLoop } from './yield.js';

export interface BatchMatchOptions {
  pool: MatchingPool;
  /** One file to deduplicate, or two to link. */
  files: readonly RecordSet[];
  /** Blocking rules as text (blocking-rules.ts). Default DEFAULT_BLOCKING_RULES, limited to the mapped fields. */
  blockingRules?: readonly string[];
  /** Blocks with more records produce no pairs. Default 1,000. */
  maxBlockSize?: number;
  thresholds?: Partial<MatchThresholds>;
  /** Parameters to score with instead of estimating them. */
  model?: MatchModel;
  /** Source of u: random pairs (default) or EM along with m. */
  uEstimation?: UEstimation;
  /** Random pairs compared to estimate u. Default 200,000, or every pair when there are fewer. */
  randomPairs?: number;
  /** Default 200. */
  maxEmIterations?: number;
  /** Seed of the random pairs. Default 1. */
  seed?: number;
  /** Linkage only: each record matches at most one record of the other file, the pair of highest probability. */
  oneToOne?: boolean;
  onProgress?: (progress: BatchProgress) => void;
  signal?: AbortSignal;
}

export type BatchStage = 'prepare' | 'compare' | 'random-pairs' | 'estimate' | 'score';

export interface BatchProgress {
  stage: BatchStage;
  done: number;
  total: number;
}

export interface BatchMatchResult {
  mode: 'deduplication' | 'linkage';
  files: Array<{ file: string; records: number }>;
  schema: ComparisonSchema;
  blockingRules: string[];
  maxBlockSize: number;
  blocking: BlockingSummary & { candidatePairs: number };
  /** The EM runs behind the model, or undefined when the model was given. */
  estimation: Estimation | undefined;
  model: MatchModel;
  thresholds: MatchThresholds;
  decisions: PairDecisions;
  evaluation: PairEvaluation | undefined;
  /** Pairs compared in the workers: candidate pairs plus random pairs. */
  comparisons: number;
  /** Time of each stage. `estimate` includes the random pairs. */
  timingsMs: Record<Exclude<BatchStage, 'random-pairs'> | 'total', number>;
}

export async function runBatchMatch(options: BatchMatchOptions): Promise<BatchMatchResult> {
  const started = performance.now();
  const timingsMs: BatchMatchResult['timingsMs'] = { prepare: 0, compare: 0, estimate: 0, score: 0, total: 0 };
  const { pool, files, signal } = options;
  if (files.length < 1 || files.length > 2) throw new RangeError(`batch matching takes one or two files, received ${files.length}`);
  const thresholds = resolveThresholds(options.thresholds);
  const maxBlockSize = integerOption('maxBlockSize', options.maxBlockSize, 1_000, 2, 10_000_000);
  const leftCount = files.length === 2 ? files[0].persons.length : undefined;
  const entities = entitiesOf(files);

  const schema = options.model === undefined ? createSchema(comparedFields(files)) : schemaOfModel(options.model, files);
  const compiled = compileSchema(schema);
  const rules = expandRules(options.blockingRules ?? DEFAULT_BLOCKING_RULES, schema.fields.map((field) => field.name));
  if (rules.length === 0) throw new ConfigError(`no blocking rule applies to the mapped fields (${schema.fields.map((field) => field.name).join(', ')}). Add a rule on those fields`);

  let stageStart = performance.now();
  const persons = files.flatMap((file) => file.persons);
  options.onProgress?.({ stage: 'prepare', done: 0, total: persons.length });
  const prepared = await pool.prepare(persons, schema.identifierNames, rules, signal);
  const store = await fillStore(prepared.encoded);
  options.onProgress?.({ stage: 'prepare', done: persons.length, total: persons.length });
  timingsMs.prepare = performance.now() - stageStart;

  stageStart = performance.now();
  const keys = await keysByRule(prepared.keys, rules.length, persons.length);
  const blocks = await CandidatePairs.create({ keys, leftCount, maxBlockSize });
  const candidates = await compareCandidates(options, blocks, store, schema);
  timingsMs.compare = performance.now() - stageStart;

  stageStart = performance.now();
  const estimation = options.model === undefined ? await estimateModel({
    pool,
    compiled,
    store,
    candidates,
    rules,
    keys,
    recordCount: persons.length,
    leftCount,
    uEstimation: options.uEstimation ?? 'random-pairs',
    randomPairs: integerOption('randomPairs', options.randomPairs, 200_000, 1_000, 100_000_000),
    seed: options.seed ?? 1,
    maxIterations: integerOption('maxEmIterations', options.maxEmIterations, 200, 1, 100_000),
    signal,
    onProgress: (stage, done, total) => options.onProgress?.({ stage, done, total }),
  }) : undefined;
  const model = estimation?.model ?? (options.model as MatchModel);
  timingsMs.estimate = performance.now() - stageStart;

  stageStart = performance.now();
  throwIfAborted(signal, 'batch matching');
  const allIds = files.flatMap((file) => file.ids);
  const truePairs = entities === undefined ? 0 : countTruePairs(entities, leftCount);
  const decisions = await decidePairs({
    compiled,
    model,
    thresholds,
    candidates,
    ids: allIds,
    entities,
    truePairs,
    leftCount,
    oneToOne: options.oneToOne === true && leftCount !== undefined,
    onProgress: (done, total) => options.onProgress?.({ stage: 'score', done, total }),
  });
  const evaluation = entities === undefined ? undefined : evaluatePairs({ truePairs, truePairsInCandidates: decisions.truePairsInCandidates, predictedPairs: decisions.matches.length, truePositives: decisions.trueMatches });
  timingsMs.score = performance.now() - stageStart;
  timingsMs.total = performance.now() - started;

  return {
    mode: leftCount === undefined ? 'deduplication' : 'linkage',
    files: files.map((file) => ({ file: file.file, records: file.persons.length })),
    schema,
    blockingRules: rules.map((rule: BlockingRule) => rule.text),
    maxBlockSize,
    blocking: { ...blocks.summary, candidatePairs: candidates.count },
    estimation,
    model,
    thresholds,
    decisions,
    evaluation,
    comparisons: candidates.count + (estimation?.randomPairs ?? 0),
    timingsMs,
  };
}

/** Fields mapped in every file, in PersonRecord order, identifier fields last. */
function comparedFields(files: readonly RecordSet[]): string[] {
  const mapped = files.map((file) => new Set(file.mapping.fields.keys()));
  const common = [...mapped[0]].filter((field) => mapped.every((fields) => fields.has(field)));
  const ordered = PERSON_TEXT_FIELDS.filter((field) => common.includes(field)) as string[];
  const identifiers = common.filter((field) => field.startsWith(IDENTIFIER_FIELD_PREFIX)).sort();
  const fields = [...ordered, ...identifiers];
  if (fields.length === 0) throw new RecordInputError(`the files ${files.map((file) => file.file).join(' and ')} have no mapped field in common. Map the same fields in both with --column`);
  return fields;
}

function schemaOfModel(model: MatchModel, files: readonly RecordSet[]): ComparisonSchema {
  for (const field of model.fields) {
    const file = files.find((candidate) => !candidate.mapping.fields.has(field.name));
    if (file !== undefined) throw new RecordInputError(`--model compares ${field.name}, which --file ${file.file} does not map. Map it with --column ${field.name}=COLUMN`);
  }
  return schemaOf(model);
}

function entitiesOf(files: readonly RecordSet[]): string[] | undefined {
  const withTruth = files.filter((file) => file.entities !== undefined);
  if (withTruth.length === 0) return undefined;
  const without = files.find((file) => file.entities === undefined);
  if (without !== undefined) throw new RecordInputError(`--file ${without.file} has no ground truth while ${withTruth[0].file} has. Give --truth or --truth-from-id for both files, or neither`);
  return files.flatMap((file) => file.entities as string[]);
}

/** Turns the record-major keys of the preparation tasks into numbered keys (candidate-pairs.ts `numberKeys`), one array per rule. */
async function keysByRule(keys: readonly string[], ruleCount: number, recordCount: number): Promise<Int32Array[]> {
  const byRule: Int32Array[] = [];
  for (let rule = 0; rule < ruleCount; rule++) {
    const numbers = new Map<string, number>();
    const ruleKeys = new Int32Array(recordCount);
    for (let record = 0; record < recordCount; record++) {
      if (record % ITEMS_PER_YIELD === ITEMS_PER_YIELD - 1) await yieldToEventLoop();
      const key = keys[record * ruleCount + rule];
      ruleKeys[record] = key === '' ? -1 : numberOf(numbers, key);
    }
    byRule.push(ruleKeys);
  }
  return byRule;
}

async function fillStore(encoded: readonly string[]): Promise<SharedRecordStore> {
  const store = new SharedRecordStore();
  for (let start = 0; start < encoded.length; start += ITEMS_PER_YIELD) {
    for (let index = start; index < Math.min(encoded.length, start + ITEMS_PER_YIELD); index++) store.append(encoded[index]);
    await yieldToEventLoop();
  }
  return store;
}

/**
 * Compares every candidate pair. Chunks of candidate pairs go to the pool while the next
 * chunk is generated, up to a few chunks ahead of the workers. Each full chunk is held back
 * until the next one is ready, so that a short last chunk joins it and no task is small.
 */
async function compareCandidates(options: BatchMatchOptions, blocks: CandidatePairs, store: SharedRecordStore, schema: ComparisonSchema): Promise<ComparedPairs> {
  const { pool, signal } = options;
  const chunkPairs = pool.settings.pairsPerTask * pool.settings.workers;
  const candidates: ComparedPairs = { pairs: [], patterns: [], count: 0 };
  const pending: Array<Promise<void>> = [];
  const total = blocks.summary.pairsBeforeDeduplication;
  let compared = 0;
  let previousChunk: Int32Array | undefined;
  let buffer: Int32Array[] = [];
  let buffered = 0;

  const submit = (pairs: Int32Array) => {
    const slot = candidates.pairs.length;
    candidates.pairs.push(pairs);
    candidates.patterns.push(new Float64Array(0));
    candidates.count += pairs.length / 2;
    pending.push(
      pool.compare({ store, pairs, schema, signal }).then((result) => {
        candidates.patterns[slot] = result.patterns;
        compared += pairs.length / 2;
        options.onProgress?.({ stage: 'compare', done: compared, total: Math.max(total, compared) });
      }),
    );
  };

  for (const chunk of blocks.chunks(ITEMS_PER_YIELD)) {
    throwIfAborted(signal, 'comparing candidate pairs');
    buffer.push(chunk);
    buffered += chunk.length / 2;
    if (buffered >= chunkPairs) {
      if (previousChunk !== undefined) submit(previousChunk);
      previousChunk = concatenatePairs(buffer);
      buffer = [];
      buffered = 0;
    }
    // Keeps at most three chunks beyond the one being generated, so memory stays bounded.
    if (pending.length >= 4) await pending.shift();
    else await yieldToEventLoop();
  }

  const rest = concatenatePairs(previousChunk === undefined ? buffer : [previousChunk, ...buffer]);
  if (rest.length > 0) submit(rest);
  await Promise.all(pending);
  return candidates;
}

function concatenatePairs(chunks: readonly Int32Array[]): Int32Array {
  if (chunks.length === 1) return chunks[0];
  const joined = new Int32Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    joined.set(chunk, offset);
    offset += chunk.length;
  }
  return joined;
}
