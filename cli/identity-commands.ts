/**
 * `rtcdp identity match`: batch person matching for backfills. One --file is deduplicated,
 * two are linked. The command prints a summary on stdout, progress on stderr, and writes
 * report.json, report.md, pairs.csv and score-distribution.svg to --report.
 */
import os from 'node:os';
import path from 'node:path';
import { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { ConfigError } from '../common/errors.js';
import { createLogger } from '../common/logger.js';
import { DEFAULT_BLOCKING_RULES, parseBlockingRule } from '../identity/matching/blocking-rules.js';
import { runBatchMatch, type BatchMatchResult, type BatchProgress, type BatchStage } from '../identity/matching/batch-match.js';
import { isFieldName, PRESETS, PRESET_NAMES, type PresetName } from '../identity/matching/column-mapping.js';
import { RecordInputError } from '../identity/matching/errors.js';
import { comparisonsPerSecond, writeMatchReport } from '../identity/matching/match-report.js';
import { DEFAULT_THRESHOLDS, MAX_WORKERS, MIN_PAIRS_PER_TASK } from '../identity/matching/matching-options.js';
import { MatchingPool } from '../identity/matching/matching-pool.js';
import { readModelFile } from '../identity/matching/model-file.js';
import type { UEstimation } from '../identity/matching/parameter-estimation.js';
import { readRecordFile } from '../identity/matching/record-files.js';
import { LOG_LEVELS, UsageError, parseChoice, parseInteger } from './common.js';

interface MatchCommandOptions {
  file: string[];
  report: string;
  preset: PresetName;
  column?: Map<string, string>;
  idColumn?: string;
  truth?: string;
  truthFromId?: string;
  groundTruth: boolean;
  matchThreshold: number;
  reviewThreshold: number;
  blockOn?: string[];
  maxBlockSize: number;
  uFrom: UEstimation;
  randomPairs: number;
  maxEmIterations: number;
  seed: number;
  model?: string;
  oneToOne: boolean;
  workers?: number;
  pairsPerTask: number;
  progress: boolean;
  logLevel: string;
}

const STAGE_NAMES: Readonly<Record<BatchStage, string>> = {
  prepare: 'preparing records',
  compare: 'comparing candidate pairs',
  'random-pairs': 'comparing random pairs',
  estimate: 'estimating parameters (EM iterations)',
  score: 'scoring pairs',
};

/** Adds the `identity` command group with `identity match`, and returns the group for the commands that call a node. */
export function addIdentityCommands(program: Command): Command {
  const identity = program.command('identity').description('Identity resolution: batch matching of person records, and the quarantined links of a node.');
  identity
    .command('match')
    .description(
      'Find the records that are the same person: deduplicate one --file or link two, with Fellegi-Sunter scoring whose parameters are ' +
        'estimated on the files themselves (EM), in worker threads. Writes report.json, report.md, pairs.csv and score-distribution.svg to --report.',
    )
    .requiredOption('--file <csv>', 'CSV file of person records, read as text; give it once to deduplicate, twice to link two files', collectFile)
    .requiredOption('--report <dir>', 'directory for the report files, created when missing')
    .option('--preset <name>', `column layout: ${PRESET_NAMES.map((name) => `${name} (${PRESETS[name].description})`).join('; ')}`, parseChoice('--preset', PRESET_NAMES), 'auto')
    .option('--column <field=column>', 'map a column to a person field, overriding the preset (repeatable); fields: givenName, surname, dateOfBirth, streetNumber, addressLine1, addressLine2, city, postcode, state, phone, email, identifier:NAME', collectColumn)
    .option('--id-column <column>', 'column of the record ids (default: the preset\'s, else the row number)')
    .option('--truth <column>', 'ground truth column: records with equal values are the same person; enables precision, recall and F1')
    .option('--truth-from-id <regex>', 'ground truth from the id: the first capturing group of this regular expression is the entity (the febrl preset uses ^rec-(\\d+)-(?:org|dup-\\d+)$)')
    .option('--no-ground-truth', "ignore the preset's ground truth")
    .option('--match-threshold <probability>', 'match probability at or above which a pair is a match', parseProbability('--match-threshold'), DEFAULT_THRESHOLDS.minMatchProbability)
    .option('--review-threshold <probability>', 'match probability at or above which a pair below --match-threshold is a suggestion to review', parseProbability('--review-threshold'), DEFAULT_THRESHOLDS.minReviewProbability)
    .option('--block-on <rule>', `blocking rule FIELD[:exact|phonetic|initial|year]+... (repeatable), replacing the defaults: ${DEFAULT_BLOCKING_RULES.join(', ')}`, collectRule)
    .option('--max-block-size <records>', 'blocks with more records than this produce no pairs', parseInteger('--max-block-size', 2, 10_000_000), 1_000)
    .option('--u-from <source>', 'where u comes from: random-pairs (u from random pairs, m by EM per blocking rule) or em (m, u and lambda by one EM run)', parseChoice('--u-from', ['random-pairs', 'em']), 'random-pairs')
    .option('--random-pairs <n>', 'random pairs compared to estimate u', parseInteger('--random-pairs', 1_000, 100_000_000), 200_000)
    .option('--max-em-iterations <n>', 'iterations of each EM run at most', parseInteger('--max-em-iterations', 1, 100_000), 200)
    .option('--seed <n>', 'seed of the random pairs', parseInteger('--seed', 0, 2 ** 31 - 1), 1)
    .option('--model <file>', 'score with these parameters (a report.json or its model) instead of estimating them')
    .option('--one-to-one', 'with two files, match each record to at most one record of the other file, the most probable', false)
    .option('--workers <n>', 'worker threads that compare pairs (default: the available parallelism)', parseInteger('--workers', 1, MAX_WORKERS))
    .option('--pairs-per-task <n>', `pairs per worker task, at least ${MIN_PAIRS_PER_TASK}`, parseInteger('--pairs-per-task', MIN_PAIRS_PER_TASK, 1_000_000), 4_096)
    .option('--no-progress', 'print no progress on stderr')
    .option('--log-level <level>', `log level of the worker pool: ${LOG_LEVELS.join(', ')}`, parseChoice('--log-level', LOG_LEVELS), 'warn')
    .action((options: MatchCommandOptions) => runMatch(options));
  return identity;
}

async function runMatch(options: MatchCommandOptions): Promise<void> {
  if (options.file.length > 2) throw new UsageError(`--file is given ${options.file.length} times: give one file to deduplicate or two to link`);
  if (options.reviewThreshold > options.matchThreshold) {
    throw new UsageError(`invalid --review-threshold ${options.reviewThreshold}: it must not be above --match-threshold ${options.matchThreshold}`);
  }
  if (options.oneToOne && options.file.length === 1) throw new UsageError('--one-to-one applies only to a linkage of two --file');

  const request = {
    preset: options.preset,
    columns: options.column,
    idColumn: options.idColumn,
    truthColumn: options.truth,
    truthFromId: options.truthFromId,
    noTruth: !options.groundTruth,
  };
  const files = await usage(() => Promise.all(options.file.map((file) => readRecordFile(file, request))));
  const model = options.model === undefined ? undefined : await usage(() => readModelFile(options.model as string));

  const workers = options.workers ?? os.availableParallelism();
  const pool = new MatchingPool({ logger: createLogger({ level: options.logLevel, name: 'rtcdp-identity-match' }), workers, pairsPerTask: options.pairsPerTask });
  const progress = new MatchProgress(options.progress);
  let result: BatchMatchResult;
  try {
    await pool.start();
    result = await usage(() =>
      runBatchMatch({
        pool,
        files,
        blockingRules: options.blockOn,
        maxBlockSize: options.maxBlockSize,
        thresholds: { minMatchProbability: options.matchThreshold, minReviewProbability: options.reviewThreshold },
        model,
        uEstimation: options.uFrom,
        randomPairs: options.randomPairs,
        maxEmIterations: options.maxEmIterations,
        seed: options.seed,
        oneToOne: options.oneToOne,
        onProgress: (update) => progress.update(update),
      }),
    );
  } finally {
    progress.stop();
    await pool.close();
  }

  const commandLine = `rtcdp ${process.argv.slice(2).join(' ')}`;
  const written = await writeMatchReport(options.report, result, { command: commandLine, workers, pairsPerTask: options.pairsPerTask });
  process.stdout.write(`${summaryLines(result, written.json).join('\n')}\n`);
}

function summaryLines(result: BatchMatchResult, reportFile: string): string[] {
  const lines = [
    `${result.mode} of ${result.files.map((file) => `${path.basename(file.file)} (${file.records} records)`).join(' and ')}`,
    `candidate pairs: ${result.blocking.candidatePairs}, comparisons: ${result.comparisons} at ${Math.round(comparisonsPerSecond(result))}/s`,
    `matches: ${result.decisions.matches.length}, to review: ${result.decisions.reviews.length}`,
  ];
  const evaluation = result.evaluation;
  if (evaluation !== undefined) {
    lines.push(`precision: ${evaluation.precision.toFixed(4)}, recall: ${evaluation.recall.toFixed(4)}, F1: ${evaluation.f1.toFixed(4)} (true pairs: ${evaluation.truePairs}, found by blocking: ${evaluation.truePairsInCandidates})`);
  }
  lines.push(`report: ${path.dirname(reportFile)}`);
  return lines;
}

/** Runs a step whose input errors are the user's to fix: they exit with 2, like other usage errors. */
async function usage<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    if (error instanceof RecordInputError || error instanceof ConfigError) throw new UsageError(error.message, { cause: error });
    throw error;
  }
}

function collectFile(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function collectColumn(value: string, previous: Map<string, string> | undefined): Map<string, string> {
  const equals = value.indexOf('=');
  const field = value.slice(0, Math.max(0, equals));
  const column = value.slice(equals + 1);
  if (equals <= 0 || column === '') throw new UsageError(`invalid --column "${value}": expected FIELD=COLUMN, for example givenName=first_name`);
  if (!isFieldName(field)) {
    throw new UsageError(`invalid --column "${value}": ${field} is not a person field. Use givenName, surname, dateOfBirth, streetNumber, addressLine1, addressLine2, city, postcode, state, phone, email or identifier:NAME`);
  }
  return new Map([...(previous ?? []), [field, column]]);
}

function collectRule(value: string, previous: string[] | undefined): string[] {
  try {
    parseBlockingRule(value);
  } catch (error) {
    throw new UsageError(`invalid --block-on "${value}": ${(error as Error).message}`);
  }
  return [...(previous ?? []), value];
}

function parseProbability(option: string): (value: string) => number {
  return (value) => {
    const number = /^\s*[0-9.eE+-]+\s*$/.test(value) ? Number(value) : Number.NaN;
    if (!(number > 0 && number < 1)) throw new UsageError(`invalid ${option} "${value}": expected a probability greater than 0 and less than 1, such as 0.95`);
    return number;
  };
}

/** Shows progress on stderr: a bar per stage on a TTY, a line when a stage ends otherwise. */
class MatchProgress {
  #bar: SingleBar | undefined;
  #stage: BatchStage | undefined;
  #stageStartedAt = performance.now();

  constructor(private readonly enabled: boolean) {}

  update(progress: BatchProgress): void {
    if (!this.enabled) return;
    if (progress.stage !== this.#stage) this.#startStage(progress);
    this.#bar?.setTotal(Math.max(1, progress.total));
    this.#bar?.update(progress.done);
  }

  stop(): void {
    this.#endStage();
  }

  #startStage(progress: BatchProgress): void {
    this.#endStage();
    this.#stage = progress.stage;
    this.#stageStartedAt = performance.now();
    if (!process.stderr.isTTY) return;
    this.#bar = new SingleBar({ stream: process.stderr, format: `${STAGE_NAMES[progress.stage].padEnd(38)} {bar} {value}/{total}`, barsize: 20, hideCursor: true });
    this.#bar.start(Math.max(1, progress.total), progress.done);
  }

  #endStage(): void {
    this.#bar?.stop();
    this.#bar = undefined;
    if (this.#stage !== undefined && !process.stderr.isTTY) {
      process.stderr.write(`${STAGE_NAMES[this.#stage]}: done in ${((performance.now() - this.#stageStartedAt) / 1_000).toFixed(2)} s\n`);
    }
    this.#stage = undefined;
  }
}
