/**
 * The `matching` scenario: fuzzy person matching in Piscina workers. It measures pair
 * comparisons per second on random pairs of FEBRL records. It then runs batch matching end
 * to end (blocking, comparison, estimation, scoring) on FEBRL 4, FEBRL 3, Splink fake_1000
 * and, when its path is given, Splink historical 50k, with precision, recall and F1 against
 * the ground truth. During every run it samples the main thread's event loop delay. The run
 * passes when FEBRL 4 reaches F1 0.98. Speed and delay are reported against their goals.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import path from 'node:path';
import { silentLogger } from '../common/logger.js';
import { runBatchMatch, type BatchMatchResult } from '../identity/matching/batch-match.js';
import type { PresetName } from '../identity/matching/column-mapping.js';
import { createSchema, type ComparisonSchema } from '../identity/matching/comparison-schema.js';
import { weightOf, type MatchModel } from '../identity/matching/fellegi-sunter.js';
import { comparisonsPerSecond } from '../identity/matching/match-report.js';
import { MatchingPool, type MatchingPoolStats } from '../identity/matching/matching-pool.js';
import { sampleRandomPairs } from '../identity/matching/random-pairs.js';
import { readRecordFile } from '../identity/matching/record-files.js';
import { renderScoreChart } from '../identity/matching/score-chart.js';
import { SharedRecordStore } from '../identity/matching/shared-record-store.js';
import { writeChart, type RunContext } from './context.js';
import { formatCount, machineInfo, printColumns, printTable, progress, type MachineInfo } from './report.js';
import { renderBarChart } from './svg-chart.js';

export interface MatchingOptions {
  workers: number;
  pairsPerTask: number;
  /** Random pairs compared in each round of the throughput measurement. */
  throughputPairs: number;
  /** Rounds of the throughput measurement; the table shows the median round. */
  throughputRounds: number;
  /** Directory with febrl/ and splink-fake-1000/, as data/ of the repository. */
  dataDir: string;
  /** Path of historical_figures_with_errors_50k.csv, or undefined to skip it. */
  splink50k?: string;
}

/** Goals of the scenario. */
const F1_GOAL = 0.98;
const COMPARISONS_PER_SECOND_GOAL = 1_000_000;
const DELAY_P99_GOAL_MS = 10;
/** Interval of the event loop delay timer. The histogram records whole intervals, so it is subtracted. */
const DELAY_RESOLUTION_MS = 1;

interface DelaySummary {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  samples: number;
}

interface ThroughputRound {
  pairs: number;
  seconds: number;
  comparisonsPerSecond: number;
  delay: DelaySummary;
  pool: MatchingPoolStats;
}

interface DatasetRun {
  name: string;
  /** Bar label of the F1 chart. */
  label: string;
  mode: BatchMatchResult['mode'];
  records: number;
  candidatePairs: number;
  comparisons: number;
  comparisonsPerSecond: number;
  precision: number;
  recall: number;
  f1: number;
  bestF1: number;
  blockingRecall: number;
  /** Reading the files and matching them. */
  seconds: number;
  /** Event loop delay while matching ran, file reading excluded. */
  delay: DelaySummary;
}

export interface MatchingResult {
  passed: boolean;
  machine: MachineInfo;
  options: MatchingOptions;
  /** The median round of the throughput measurement, by comparisons per second. */
  throughput: ThroughputRound;
  throughputRounds: ThroughputRound[];
  datasets: DatasetRun[];
  charts: string[];
}

export async function runMatching(context: RunContext, options: MatchingOptions): Promise<MatchingResult> {
  const pool = new MatchingPool({ logger: silentLogger(), workers: options.workers, pairsPerTask: options.pairsPerTask });
  await pool.start();
  try {
    const throughputRounds = await measureThroughput(pool, options);
    const throughput = [...throughputRounds].sort((x, y) => x.comparisonsPerSecond - y.comparisonsPerSecond)[Math.floor(throughputRounds.length / 2)];
    const datasets: DatasetRun[] = [];
    const febrl = (file: string) => path.join(options.dataDir, 'febrl', file);

    const febrl4Files = [febrl('dataset4a.csv'), febrl('dataset4b.csv')];
    const febrl4 = await runDataset(pool, 'FEBRL 4 (4a × 4b)', 'FEBRL 4', febrl4Files, 'febrl');
    datasets.push(febrl4.run);
    const febrl3 = await runDataset(pool, 'FEBRL 3', 'FEBRL 3', [febrl('dataset3.csv')], 'febrl');
    datasets.push(febrl3.run);
    datasets.push((await runDataset(pool, 'FEBRL 4, parameters from FEBRL 3', 'FEBRL 4, FEBRL 3 model', febrl4Files, 'febrl', febrl3.result.model)).run);
    datasets.push((await runDataset(pool, 'FEBRL 4, one-to-one', 'FEBRL 4, one-to-one', febrl4Files, 'febrl', undefined, true)).run);
    datasets.push((await runDataset(pool, 'Splink fake_1000', 'Splink 1000', [path.join(options.dataDir, 'splink-fake-1000', 'fake_1000.csv')], 'splink')).run);
    if (options.splink50k !== undefined) datasets.push((await runDataset(pool, 'Splink historical 50k', 'Splink 50k', [options.splink50k], 'splink')).run);

    const charts = await writeCharts(context, febrl4.result, datasets);
    printResults(throughput, throughputRounds, datasets, options);
    const passed = febrl4.run.f1 >= F1_GOAL;
    return { passed, machine: machineInfo(), options, throughput, throughputRounds, datasets, charts };
  } finally {
    await pool.close();
  }
}

/** Compares random pairs of the FEBRL 4 records, with every FEBRL field, as fast as the pool takes them, in rounds. */
async function measureThroughput(pool: MatchingPool, options: MatchingOptions): Promise<ThroughputRound[]> {
  const files = await Promise.all(['dataset4a.csv', 'dataset4b.csv'].map((file) => readRecordFile(path.join(options.dataDir, 'febrl', file), { preset: 'febrl' })));
  const persons = files.flatMap((file) => file.persons);
  const fields = ['givenName', 'surname', 'dateOfBirth', 'streetNumber', 'addressLine1', 'addressLine2', 'city', 'postcode', 'state', 'identifier:soc_sec_id'];
  const schema = createSchema(fields);
  const prepared = await pool.prepare(persons, schema.identifierNames, []);
  const store = new SharedRecordStore();
  for (const encoded of prepared.encoded) store.append(encoded);

  const pairs = sampleRandomPairs(options.throughputPairs, persons.length, 1);
  // Warm-up: every worker decodes every record once and its comparison code gets optimised.
  await pool.compare({ store, pairs: pairs.subarray(0, Math.min(pairs.length, 400_000)), schema });

  const rounds: ThroughputRound[] = [];
  for (let round = 1; round <= options.throughputRounds; round++) {
    progress(`round ${round}: comparing ${formatCount(options.throughputPairs)} random pairs with ${options.workers} workers`);
    rounds.push(await measureRound(pool, options, store, schema, pairs));
  }
  return rounds;
}

async function measureRound(pool: MatchingPool, options: MatchingOptions, store: SharedRecordStore, schema: ComparisonSchema, pairs: Int32Array): Promise<ThroughputRound> {
  const before = pool.stats();
  const delay = startDelayMonitor();
  const started = performance.now();
  const chunkPairs = options.pairsPerTask * options.workers;
  const pending: Array<Promise<unknown>> = [];
  for (let offset = 0; offset < options.throughputPairs; offset += chunkPairs) {
    pending.push(pool.compare({ store, pairs: pairs.subarray(offset * 2, Math.min(options.throughputPairs, offset + chunkPairs) * 2), schema }));
    if (pending.length >= 4) await pending.shift();
  }
  await Promise.all(pending);
  const seconds = (performance.now() - started) / 1_000;
  const after = pool.stats();

  return {
    pairs: options.throughputPairs,
    seconds,
    comparisonsPerSecond: options.throughputPairs / seconds,
    delay: stopDelayMonitor(delay),
    pool: { ...after, prepareTasks: 0, recordsPrepared: 0, compareTasks: after.compareTasks - before.compareTasks, pairsCompared: after.pairsCompared - before.pairsCompared },
  };
}

async function runDataset(pool: MatchingPool, name: string, label: string, files: string[], preset: PresetName, model?: MatchModel, oneToOne = false): Promise<{ run: DatasetRun; result: BatchMatchResult }> {
  progress(`matching ${name}`);
  const started = performance.now();
  const sets = await Promise.all(files.map((file) => readRecordFile(file, { preset })));
  // The delay is sampled while matching runs, after the CSV files have been read.
  const delay = startDelayMonitor();
  const result = await runBatchMatch({ pool, files: sets, model, oneToOne });
  const seconds = (performance.now() - started) / 1_000;
  const evaluation = result.evaluation;
  if (evaluation === undefined) throw new Error(`${name} has no ground truth`);

  const run: DatasetRun = {
    name,
    label,
    mode: result.mode,
    records: sets.reduce((sum, set) => sum + set.persons.length, 0),
    candidatePairs: result.blocking.candidatePairs,
    comparisons: result.comparisons,
    comparisonsPerSecond: comparisonsPerSecond(result),
    precision: evaluation.precision,
    recall: evaluation.recall,
    f1: evaluation.f1,
    bestF1: result.decisions.bestThreshold?.f1 ?? 0,
    blockingRecall: evaluation.blockingRecall,
    seconds,
    delay: stopDelayMonitor(delay),
  };
  progress(`${name}: F1 ${run.f1.toFixed(4)} in ${seconds.toFixed(2)} s`);
  return { run, result };
}

function startDelayMonitor(): IntervalHistogram {
  const histogram = monitorEventLoopDelay({ resolution: DELAY_RESOLUTION_MS });
  histogram.enable();
  return histogram;
}

function stopDelayMonitor(histogram: IntervalHistogram): DelaySummary {
  histogram.disable();
  const excess = (nanoseconds: number) => Math.max(0, nanoseconds / 1e6 - DELAY_RESOLUTION_MS);
  return { p50Ms: excess(histogram.percentile(50)), p99Ms: excess(histogram.percentile(99)), maxMs: excess(histogram.max), samples: histogram.count };
}

function printResults(throughput: ThroughputRound, rounds: readonly ThroughputRound[], datasets: readonly DatasetRun[], options: MatchingOptions): void {
  const goal = (met: boolean) => (met ? 'met' : 'NOT MET');
  printTable(`Pair comparisons, ${options.workers} workers, random pairs of FEBRL 4 records, 10 fields (median of ${rounds.length} rounds)`, [
    ['rounds, comparisons/s', rounds.map((round) => formatCount(round.comparisonsPerSecond)).join(', ')],
    ['pairs', formatCount(throughput.pairs)],
    ['time', `${throughput.seconds.toFixed(2)} s`],
    ['comparisons/s', `${formatCount(throughput.comparisonsPerSecond)} (goal ${formatCount(COMPARISONS_PER_SECOND_GOAL)}: ${goal(throughput.comparisonsPerSecond >= COMPARISONS_PER_SECOND_GOAL)})`],
    ['tasks', `${formatCount(throughput.pool.compareTasks)}, ${formatCount(throughput.pool.smallestCompareTask)} to ${formatCount(throughput.pool.largestCompareTask)} pairs each`],
    ['event loop delay p50', `${throughput.delay.p50Ms.toFixed(2)} ms`],
    ['event loop delay p99', `${throughput.delay.p99Ms.toFixed(2)} ms (goal under ${DELAY_P99_GOAL_MS} ms: ${goal(throughput.delay.p99Ms < DELAY_P99_GOAL_MS)})`],
    ['event loop delay max', `${throughput.delay.maxMs.toFixed(2)} ms`],
  ]);

  const header = ['DATA SET', 'MODE', 'RECORDS', 'CANDIDATES', 'PRECISION', 'RECALL', 'F1', 'BEST F1', 'BLOCKING RECALL', 'TIME', 'COMPARISONS/S', 'DELAY P50', 'DELAY P99', 'DELAY MAX'];
  const rows = datasets.map((run) => [
    run.name,
    run.mode,
    formatCount(run.records),
    formatCount(run.candidatePairs),
    run.precision.toFixed(4),
    run.recall.toFixed(4),
    run.f1.toFixed(4),
    run.bestF1.toFixed(4),
    run.blockingRecall.toFixed(4),
    `${run.seconds.toFixed(2)} s`,
    formatCount(run.comparisonsPerSecond),
    `${run.delay.p50Ms.toFixed(2)} ms`,
    `${run.delay.p99Ms.toFixed(2)} ms`,
    `${run.delay.maxMs.toFixed(2)} ms`,
  ]);
  printColumns(`Batch matching end to end, parameters by EM on each data set unless noted (FEBRL 4 goal F1 ${F1_GOAL})`, header, rows);
}

async function writeCharts(context: RunContext, febrl4: BatchMatchResult, datasets: readonly DatasetRun[]): Promise<string[]> {
  const scores = renderScoreChart({
    title: 'FEBRL 4: match weights of the candidate pairs',
    histogram: febrl4.decisions.histogram,
    markers: [{ weight: weightOf(febrl4.thresholds.minMatchProbability), label: `match threshold ${febrl4.thresholds.minMatchProbability}` }],
  });
  // The lowest bars come first, so that the goal line's label at the left stays readable.
  const bars = [...datasets].sort((x, y) => x.f1 - y.f1).map((run) => ({ label: run.label, value: run.f1, valueLabel: run.f1.toFixed(4) }));
  const f1 = renderBarChart({
    title: 'Person matching: F1 end to end, blocking included',
    yLabel: 'F1',
    bars,
    referenceLine: { value: F1_GOAL, label: `goal ${F1_GOAL} (FEBRL 4)` },
    width: 900,
    height: 400,
  });
  const files = [await writeChart(context, 'matching-febrl4-scores.svg', scores), await writeChart(context, 'matching-f1.svg', f1)];
  return files.filter((file): file is string => file !== null);
}
