/**
 * The Piscina pool of matching worker threads. It splits preparation requests into tasks of
 * `recordsPerTask` persons and comparison requests into tasks of `pairsPerTask` pairs, keeps
 * at most `maxTasksInFlight` tasks in Piscina, and resolves each request when its tasks have
 * finished. The calling thread only slices arrays and posts messages, so its event loop
 * keeps running while the workers compare.
 */
import { Piscina } from 'piscina';
import { AbortedError, throwIfAborted } from '../../common/errors.js';
import { Lifecycle, type LifecycleState } from '../../common/lifecycle.js';
import type { Logger } from '../../common/logger.js';
import type { BlockingRule } from './blocking-rules.js';
import type { ComparisonSchema } from './comparison-schema.js';
import { MatchingTaskError } from './errors.js';
import { resolvePoolOptions, type MatchingPoolOptionsInput, type MatchingPoolSettings } from './matching-options.js';
import type { PersonRecord } from './person.js';
import type { SharedRecordStore } from './shared-record-store.js';
import { splitIntoTasks } from './task-split.js';
import { yieldToEventLoop } from './yield.js';
import type { CompareResult, CompareTask, MatchingTask, PrepareResult } from './worker-tasks.js';

export interface MatchingPoolOptions extends MatchingPoolOptionsInput {
  logger: Logger;
}

export interface CompareRequest {
  store: SharedRecordStore;
  /** Flat `[a0, b0, a1, b1, ...]` slots of the store. */
  pairs: Int32Array;
  schema: ComparisonSchema;
  /** Flattened model weights, to get each pair's match weight back too. */
  weights?: { values: Float64Array; offsets: Int32Array };
  signal?: AbortSignal;
}

/** Counters since the pool started. */
export interface MatchingPoolStats {
  prepareTasks: number;
  recordsPrepared: number;
  compareTasks: number;
  pairsCompared: number;
  /** Pairs of the smallest and largest comparison task, 0 before the first. */
  smallestCompareTask: number;
  largestCompareTask: number;
}

export class MatchingPool {
  readonly settings: MatchingPoolSettings;
  readonly #logger: Logger;
  readonly #lifecycle: Lifecycle;
  #piscina: Piscina<MatchingTask, PrepareResult | CompareResult> | undefined;
  #inFlight = 0;
  /** Tasks waiting for one of the maxTasksInFlight places, first come first served. */
  readonly #waiting: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];
  readonly #idle: Array<() => void> = [];
  #closing: Promise<void> | undefined;
  readonly #stats: MatchingPoolStats = { prepareTasks: 0, recordsPrepared: 0, compareTasks: 0, pairsCompared: 0, smallestCompareTask: 0, largestCompareTask: 0 };

  constructor(options: MatchingPoolOptions) {
    this.settings = resolvePoolOptions(options);
    this.#logger = options.logger.child({ component: 'matching-pool' });
    this.#lifecycle = new Lifecycle('matching pool', this.#logger);
  }

  get state(): LifecycleState {
    return this.#lifecycle.state;
  }

  stats(): MatchingPoolStats {
    return { ...this.#stats };
  }

  /** Starts the worker threads and waits until a worker has loaded the task code. */
  async start(): Promise<void> {
    this.#lifecycle.assert('start', 'created');
    this.#lifecycle.set('starting', { workers: this.settings.workers });
    try {
      this.#piscina = new Piscina({
        filename: workerUrl(),
        minThreads: this.settings.workers,
        maxThreads: this.settings.workers,
        idleTimeout: Number.POSITIVE_INFINITY,
        closeTimeout: this.settings.closeTimeoutMs,
        execArgv: workerExecArgv(),
        niceIncrement: this.settings.workerNiceIncrement,
      });
      await this.#piscina.run({ kind: 'prepare', persons: [], identifierNames: [], rules: [] });
    } catch (error) {
      this.#lifecycle.set('failed', { err: error });
      await this.#piscina?.destroy();
      throw new MatchingTaskError('the matching workers failed to start', { cause: error });
    }
    this.#lifecycle.set('running');
  }

  /**
   * Prepares persons and computes their keys under `rules`, in tasks of `recordsPerTask`.
   * Results are in the order of `persons`.
   */
  async prepare(persons: readonly PersonRecord[], identifierNames: readonly string[], rules: readonly BlockingRule[], signal?: AbortSignal): Promise<PrepareResult> {
    this.#lifecycle.assert('prepare', 'running');
    throwIfAborted(signal, 'preparing person records');

    const size = this.settings.recordsPerTask;
    const tasks: Promise<PrepareResult>[] = [];
    for (let start = 0; start < persons.length; start += size) {
      const task: MatchingTask = { kind: 'prepare', persons: persons.slice(start, start + size), identifierNames: [...identifierNames], rules: rules.map((rule) => rule.text) };
      tasks.push(this.#run(task, signal) as Promise<PrepareResult>);
      // Posting a task clones its persons on this thread, so the event loop runs between tasks.
      await yieldToEventLoop();
    }

    const results = await Promise.all(tasks);
    this.#stats.prepareTasks += results.length;
    this.#stats.recordsPrepared += persons.length;
    return { encoded: results.flatMap((result) => result.encoded), keys: results.flatMap((result) => result.keys) };
  }

  /**
   * Compares pairs of records of a store, in tasks of `pairsPerTask` pairs. Resolves with
   * the pattern of each pair (and its match weight when the request has weights) in the
   * order of the pairs.
   */
  async compare(request: CompareRequest): Promise<CompareResult> {
    this.#lifecycle.assert('compare', 'running');
    throwIfAborted(request.signal, 'comparing pairs');

    const store = request.store.view();
    const sizes = splitIntoTasks(request.pairs.length / 2, this.settings.pairsPerTask);
    const tasks: Promise<CompareResult>[] = [];
    let offset = 0;
    for (const size of sizes) {
      const pairs = request.pairs.slice(offset * 2, (offset + size) * 2);
      offset += size;
      const task: CompareTask = { kind: 'compare', schema: request.schema, store, pairs, weights: request.weights };
      tasks.push(this.#run(task, request.signal).then((result) => this.#countCompared(size, result as CompareResult)));
    }
    return concatenate(await Promise.all(tasks), request.weights !== undefined);
  }

  /**
   * Stops the workers. Without `force`, tasks already accepted finish first, for at most
   * `closeTimeoutMs`, after which the workers are terminated. With `force`, waiting tasks
   * are rejected with AbortedError and running ones end at once. Calling it again returns
   * the same promise.
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    this.#closing ??= this.#close(options.force === true);
    return this.#closing;
  }

  async #close(force: boolean): Promise<void> {
    if (this.#lifecycle.is('created')) {
      this.#lifecycle.set('stopped');
      return;
    }
    this.#lifecycle.set('draining', { tasksInFlight: this.#inFlight, tasksWaiting: this.#waiting.length });

    if (!force) {
      const drained = await this.#waitForIdle(this.settings.closeTimeoutMs);
      if (!drained) this.#logger.warn({ tasksInFlight: this.#inFlight, closeTimeoutMs: this.settings.closeTimeoutMs }, 'matching tasks still running at the close deadline, terminating the workers');
    }

    for (const waiter of this.#waiting.splice(0)) waiter.reject(new AbortedError('a matching task that was waiting when the pool closed'));
    await this.#piscina?.destroy();
    this.#lifecycle.set('stopped', { ...this.#stats });
  }

  async #run(task: MatchingTask, signal: AbortSignal | undefined): Promise<PrepareResult | CompareResult> {
    await this.#acquire();
    try {
      throwIfAborted(signal, 'a matching task');
      return await (this.#piscina as Piscina).run(task, { signal });
    } catch (error) {
      if (error instanceof AbortedError) throw error;
      if (signal?.aborted) throw new AbortedError('a matching task', { cause: error });
      throw new MatchingTaskError(`a ${task.kind} task failed in a matching worker: ${(error as Error).message}`, { cause: error });
    } finally {
      this.#release();
    }
  }

  #acquire(): Promise<void> {
    if (this.#inFlight < this.settings.maxTasksInFlight) {
      this.#inFlight++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  /** Hands the place of a finished task to the first waiting task, or frees it. */
  #release(): void {
    const next = this.#waiting.shift();
    if (next !== undefined) {
      next.resolve();
      return;
    }
    this.#inFlight--;
    if (this.#inFlight === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  /** Resolves true once no task is in flight, or false after `timeoutMs`. */
  #waitForIdle(timeoutMs: number): Promise<boolean> {
    if (this.#inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      timer.unref();
      this.#idle.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  #countCompared(size: number, result: CompareResult): CompareResult {
    const stats = this.#stats;
    stats.compareTasks++;
    stats.pairsCompared += size;
    stats.smallestCompareTask = stats.smallestCompareTask === 0 ? size : Math.min(stats.smallestCompareTask, size);
    stats.largestCompareTask = Math.max(stats.largestCompareTask, size);
    return result;
  }
}

function concatenate(results: readonly CompareResult[], withWeights: boolean): CompareResult {
  const total = results.reduce((sum, result) => sum + result.patterns.length, 0);
  const patterns = new Float64Array(total);
  const weights = withWeights ? new Float64Array(total) : undefined;
  let offset = 0;
  for (const result of results) {
    patterns.set(result.patterns, offset);
    if (weights !== undefined && result.weights !== undefined) weights.set(result.weights, offset);
    offset += result.patterns.length;
  }
  return weights === undefined ? { patterns } : { patterns, weights };
}

/** The worker entry point next to this module: score-worker.ts when running from source under tsx, .js once compiled. */
function workerUrl(): string {
  const extension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./score-worker${extension}`, import.meta.url).href;
}

/**
 * Node options of the workers, or undefined to inherit the parent's. The parent's options
 * include tsx under `node --import tsx`, but not when bin/rtcdp.js registers tsx through its
 * API, so the TypeScript worker then gets tsx's loader by its resolved path. Only that option
 * is given, because Node rejects an explicit execArgv with process-wide flags such as
 * `--max-semi-space-size`, which it drops silently when a worker inherits them.
 */
function workerExecArgv(): string[] | undefined {
  const runsFromSource = import.meta.url.endsWith('.ts');
  if (!runsFromSource || process.execArgv.some((argument) => argument.includes('tsx'))) return undefined;
  return ['--import', import.meta.resolve('tsx')];
}
