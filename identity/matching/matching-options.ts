/**
 * Options of the matching pool and the person matcher, validated once at construction into
 * objects whose fields carry their units. Each rule throws ConfigError naming the option.
 */
import os from 'node:os';
import { ConfigError } from '../../common/errors.js';

/**
 * Minimum pairs per comparison task unless the whole request has fewer. A no-op Piscina 5.3
 * task took 30 to 80 µs on the machine of docs/benchmarks.md, so a task needs thousands of
 * comparisons of about 1 µs each for that cost to stay small.
 */
export const MIN_PAIRS_PER_TASK = 1_000;
export const MAX_WORKERS = 64;

export interface MatchingPoolOptionsInput {
  /** Worker threads. Default: os.availableParallelism(). */
  workers?: number;
  /**
   * Pairs per comparison task. A request is split into tasks of about this size, none
   * smaller than MIN_PAIRS_PER_TASK unless the request is. Default 4,096.
   */
  pairsPerTask?: number;
  /**
   * Person records per preparation task, at least 1,000. Default 1,000. Posting a task
   * clones its records on the calling thread, which took about 1.6 ms per thousand FEBRL
   * records on the machine of docs/benchmarks.md.
   */
  recordsPerTask?: number;
  /** Maximum tasks handed to Piscina and not yet finished. Further tasks wait in the pool. Default: 4 per worker. */
  maxTasksInFlight?: number;
  /** How long `close` waits for running tasks before it terminates the workers. Default 10,000 ms. */
  closeTimeoutMs?: number;
  /**
   * Nice value added to each worker thread (0 to 19), so that the event loop's thread wins
   * the CPU when both want it. Applied by Piscina through @napi-rs/nice. Default 10.
   */
  workerNiceIncrement?: number;
}

export interface MatchingPoolSettings {
  readonly workers: number;
  readonly pairsPerTask: number;
  readonly recordsPerTask: number;
  readonly maxTasksInFlight: number;
  readonly closeTimeoutMs: number;
  readonly workerNiceIncrement: number;
}

export function resolvePoolOptions(input: MatchingPoolOptionsInput = {}): MatchingPoolSettings {
  const workers = integerOption('workers', input.workers, os.availableParallelism(), 1, MAX_WORKERS);
  return Object.freeze({
    workers,
    pairsPerTask: integerOption('pairsPerTask', input.pairsPerTask, 4_096, MIN_PAIRS_PER_TASK, 1_000_000),
    recordsPerTask: integerOption('recordsPerTask', input.recordsPerTask, 1_000, 1_000, 1_000_000),
    maxTasksInFlight: integerOption('maxTasksInFlight', input.maxTasksInFlight, workers * 4, 1, 100_000),
    closeTimeoutMs: integerOption('closeTimeoutMs', input.closeTimeoutMs, 10_000, 0, 3_600_000),
    workerNiceIncrement: integerOption('workerNiceIncrement', input.workerNiceIncrement, 10, 0, 19),
  });
}

export interface MatchThresholds {
  /** A pair whose match probability is at least this is a match, which may be merged automatically. */
  readonly minMatchProbability: number;
  /** A pair whose probability is at least this but below minMatchProbability is a suggestion to review. */
  readonly minReviewProbability: number;
}

export const DEFAULT_THRESHOLDS: MatchThresholds = Object.freeze({ minMatchProbability: 0.95, minReviewProbability: 0.5 });

/** Validates both thresholds: each in (0, 1), and the review threshold not above the match threshold. */
export function resolveThresholds(input: Partial<MatchThresholds> = {}): MatchThresholds {
  const minMatchProbability = probabilityOption('minMatchProbability', input.minMatchProbability, DEFAULT_THRESHOLDS.minMatchProbability);
  const minReviewProbability = probabilityOption('minReviewProbability', input.minReviewProbability, Math.min(DEFAULT_THRESHOLDS.minReviewProbability, minMatchProbability));
  if (minReviewProbability > minMatchProbability) {
    throw new ConfigError(`minReviewProbability must not be above minMatchProbability (${minMatchProbability}), received ${minReviewProbability}`);
  }
  return Object.freeze({ minMatchProbability, minReviewProbability });
}

export function integerOption(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, received ${String(value)}`);
  }
  return value;
}

function probabilityOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value > 0 && value < 1)) {
    throw new ConfigError(`${name} must be a probability greater than 0 and less than 1, received ${String(value)}`);
  }
  return value;
}
