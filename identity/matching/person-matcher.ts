/**
 * The long-lived matcher of the online path. Profiles are added one at a time to a
 * blocking index, which returns the profiles that share a blocking key with the new one.
 * `score` then compares pairs in the worker pool with a fixed model. Pairs of concurrent
 * `score` calls are gathered into tasks of at least `pairsPerTask` pairs, waiting at most
 * `maxBatchDelayMs` for a task to fill, so a worker never gets a task per profile.
 */
import { ConfigError, throwIfAborted } from '../../common/errors.js';
import { Lifecycle, type LifecycleState } from '../../common/lifecycle.js';
import type { Logger } from '../../common/logger.js';
import { BlockingIndex } from './blocking-index.js';
import { DEFAULT_BLOCKING_RULES, expandRules } from './blocking-rules.js';
import { compileSchema, decodePattern, type CompiledSchema } from './comparison-schema.js';
import { flattenWeights, probabilityOf, schemaOf, weightsOf, type MatchModel } from './fellegi-sunter.js';
import { integerOption, resolveThresholds, type MatchingPoolOptionsInput, type MatchThresholds } from './matching-options.js';
import { MatchingPool, type MatchingPoolStats } from './matching-pool.js';
import type { PersonRecord } from './person.js';
import { preparePerson } from './prepare.js';
import { encodePerson } from './record-codec.js';
import { SharedRecordStore } from './shared-record-store.js';

export interface PersonMatcherOptions extends MatchingPoolOptionsInput {
  /** The parameters to score with, such as the `model` of a batch run's report.json. */
  model: MatchModel;
  logger: Logger;
  /** Blocking rules as text (blocking-rules.ts). Default DEFAULT_BLOCKING_RULES, limited to the model's fields. */
  blockingRules?: readonly string[];
  /** A block with this many profiles returns no candidates. Default 1,000. */
  maxBlockSize?: number;
  /** Default 0.95. */
  minMatchProbability?: number;
  /** Default 0.5. */
  minReviewProbability?: number;
  /** Maximum wait for more pairs before a task smaller than pairsPerTask is sent. Default 5 ms. */
  maxBatchDelayMs?: number;
}

export type MatchDecision = 'match' | 'review' | 'non-match';

export interface ScoredPair {
  readonly a: string;
  readonly b: string;
  /** Match weight with the prior: log2 of the odds that the two profiles are one person. */
  readonly weight: number;
  readonly probability: number;
  readonly decision: MatchDecision;
  /** The comparison level of each field, in the order of `PersonMatcher.fields`. Level 0 means missing. */
  readonly levels: readonly number[];
}

export interface PersonMatcherStats {
  profiles: number;
  /** Times a block was passed over for having more than maxBlockSize profiles. */
  oversizedBlockHits: number;
  /** Prepared records in shared memory, replaced ones included. */
  storedRecords: number;
  pool: MatchingPoolStats;
}

/** One `score` call waiting for its pairs. */
interface ScoreRequest {
  readonly pairs: readonly (readonly [string, string])[];
  readonly results: ScoredPair[];
  remaining: number;
  settled: boolean;
  resolve(results: ScoredPair[]): void;
  reject(error: unknown): void;
}

/** A run of consecutive pairs of one request inside a batch. */
interface BatchSegment {
  request: ScoreRequest;
  /** Index of the segment's first pair in the request. */
  offset: number;
  length: number;
}

export class PersonMatcher {
  readonly thresholds: MatchThresholds;
  readonly #lifecycle: Lifecycle;
  readonly #logger: Logger;
  readonly #pool: MatchingPool;
  readonly #model: MatchModel;
  readonly #compiled: CompiledSchema;
  readonly #weights: { values: Float64Array; offsets: Int32Array };
  readonly #prior: number;
  readonly #index: BlockingIndex;
  readonly #store = new SharedRecordStore();
  readonly #slots = new Map<string, number>();
  readonly #maxBatchDelayMs: number;
  #batchSlots: number[] = [];
  #batchSegments: BatchSegment[] = [];
  #batchTimer: NodeJS.Timeout | undefined;
  readonly #inFlight = new Set<Promise<void>>();
  #closing: Promise<void> | undefined;

  constructor(options: PersonMatcherOptions) {
    this.#logger = options.logger.child({ component: 'person-matcher' });
    this.#lifecycle = new Lifecycle('person matcher', this.#logger);
    this.thresholds = resolveThresholds({ minMatchProbability: options.minMatchProbability, minReviewProbability: options.minReviewProbability });
    this.#maxBatchDelayMs = integerOption('maxBatchDelayMs', options.maxBatchDelayMs, 5, 0, 60_000);
    this.#model = options.model;
    this.#compiled = compileSchema(schemaOf(options.model));
    const weights = weightsOf(options.model);
    this.#weights = flattenWeights(weights);
    this.#prior = weights.prior;

    const fieldNames = this.fields;
    const rules = expandRules(options.blockingRules ?? DEFAULT_BLOCKING_RULES, fieldNames);
    if (rules.length === 0) throw new ConfigError(`blockingRules: no rule applies to the model's fields (${fieldNames.join(', ')}). Add a rule on those fields`);
    this.#index = new BlockingIndex({ rules, identifierNames: this.#compiled.schema.identifierNames, maxBlockSize: integerOption('maxBlockSize', options.maxBlockSize, 1_000, 2, 10_000_000) });
    this.#pool = new MatchingPool(options);
  }

  get state(): LifecycleState {
    return this.#lifecycle.state;
  }

  /** The compared fields, in the order of ScoredPair.levels. */
  get fields(): string[] {
    return this.#compiled.schema.fields.map((field) => field.name);
  }

  get model(): MatchModel {
    return this.#model;
  }

  stats(): PersonMatcherStats {
    return { profiles: this.#index.size, oversizedBlockHits: this.#index.oversizedBlockHits, storedRecords: this.#store.size, pool: this.#pool.stats() };
  }

  async start(): Promise<void> {
    this.#lifecycle.assert('start', 'created');
    this.#lifecycle.set('starting');
    try {
      await this.#pool.start();
    } catch (error) {
      this.#lifecycle.set('failed', { err: error });
      throw error;
    }
    this.#lifecycle.set('running', { workers: this.#pool.settings.workers, fields: this.fields });
  }

  /**
   * Adds or replaces a profile's person fields and returns the ids of the other profiles
   * that share a blocking key with it. Runs on the calling thread in microseconds: it
   * normalises the fields and computes two Double Metaphone codes.
   */
  add(id: string, person: PersonRecord): string[] {
    this.#lifecycle.assert('add', 'running');
    const prepared = preparePerson(person, this.#compiled.schema.identifierNames);
    // NOTE: the shared store is append-only, so replacing a profile leaves its old record
    // in memory until the matcher closes. stats().storedRecords shows how many there are.
    this.#slots.set(id, this.#store.append(encodePerson(prepared)));
    return this.#index.add(id, prepared);
  }

  /**
   * Returns a person's blocking keys, one per rule and prefixed by the rule's number, without
   * the rules that do not apply to it: what a shared index files the person under.
   */
  blockingKeys(person: PersonRecord): string[] {
    const keys = this.#index.keysOf(preparePerson(person, this.#compiled.schema.identifierNames));
    return keys.flatMap((key, rule) => (key === '' ? [] : [`${rule}:${key}`]));
  }

  /** The largest block whose members are candidates; a key shared by more profiles selects none. */
  get maxBlockSize(): number {
    return this.#index.maxBlockSize;
  }

  /** Removes a profile, such as one merged into another. Returns false when it is unknown. */
  remove(id: string): boolean {
    this.#lifecycle.assert('remove', 'running');
    this.#slots.delete(id);
    return this.#index.remove(id);
  }

  /** Adds a profile and scores it against its candidates. */
  async match(id: string, person: PersonRecord, signal?: AbortSignal): Promise<ScoredPair[]> {
    const candidates = this.add(id, person);
    return this.score(candidates.map((candidate) => [id, candidate] as const), signal);
  }

  /**
   * Scores pairs of added profiles and resolves with one result per pair, in order. Throws
   * RangeError for an id that was not added, and rejects with MatchingTaskError when a
   * worker fails.
   */
  score(pairs: readonly (readonly [string, string])[], signal?: AbortSignal): Promise<ScoredPair[]> {
    this.#lifecycle.assert('score', 'running');
    throwIfAborted(signal, 'scoring pairs');
    const slots = pairs.map(([a, b]) => [this.#slotOf(a), this.#slotOf(b)]);
    if (pairs.length === 0) return Promise.resolve([]);

    return new Promise<ScoredPair[]>((resolve, reject) => {
      const request: ScoreRequest = { pairs, results: new Array<ScoredPair>(pairs.length), remaining: pairs.length, settled: false, resolve, reject };
      const segment: BatchSegment = { request, offset: 0, length: 0 };
      for (const [index, [a, b]] of slots.entries()) {
        this.#batchSlots.push(a, b);
        segment.length++;
        if (this.#batchSlots.length / 2 >= this.#pool.settings.pairsPerTask) {
          this.#batchSegments.push({ ...segment });
          this.#flush();
          segment.offset = index + 1;
          segment.length = 0;
        }
      }
      if (segment.length > 0) this.#batchSegments.push(segment);
      if (this.#batchSlots.length > 0) this.#batchTimer ??= setTimeout(() => this.#flush(), this.#maxBatchDelayMs);
    });
  }

  /**
   * Sends the gathered pairs, then stops the workers as MatchingPool.close does: with
   * `force`, pairs not yet scored are rejected. Calling it again returns the same promise.
   */
  close(options: { force?: boolean } = {}): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#lifecycle.is('created')) {
        this.#lifecycle.set('stopped');
        return;
      }
      this.#lifecycle.set('draining');
      this.#flush();
      if (options.force !== true) await Promise.allSettled([...this.#inFlight]);
      await this.#pool.close(options);
      this.#lifecycle.set('stopped');
    })();
    return this.#closing;
  }

  #slotOf(id: string): number {
    const slot = this.#slots.get(id);
    if (slot === undefined) throw new RangeError(`profile ${JSON.stringify(id)} was not added to the matcher, or was removed`);
    return slot;
  }

  /** Sends the gathered pairs as one request to the pool, which splits it into tasks. */
  #flush(): void {
    clearTimeout(this.#batchTimer);
    this.#batchTimer = undefined;
    if (this.#batchSlots.length === 0) return;

    const pairs = Int32Array.from(this.#batchSlots);
    const segments = this.#batchSegments;
    this.#batchSlots = [];
    this.#batchSegments = [];
    const done = this.#pool
      .compare({ store: this.#store, pairs, schema: this.#compiled.schema, weights: this.#weights })
      .then(
        (result) => this.#deliver(segments, result.patterns, result.weights as Float64Array),
        (error: unknown) => {
          for (const { request } of segments) settle(request, error);
        },
      )
      .finally(() => this.#inFlight.delete(done));
    this.#inFlight.add(done);
  }

  #deliver(segments: readonly BatchSegment[], patterns: Float64Array, weights: Float64Array): void {
    const { minMatchProbability, minReviewProbability } = this.thresholds;
    let position = 0;
    for (const { request, offset, length } of segments) {
      for (let i = 0; i < length; i++, position++) {
        const [a, b] = request.pairs[offset + i];
        const weight = weights[position] + this.#prior;
        const probability = probabilityOf(weight);
        const decision = decisionOf(probability, minMatchProbability, minReviewProbability);
        const levels = new Array<number>(this.#compiled.radices.length);
        decodePattern(this.#compiled, patterns[position], levels);
        request.results[offset + i] = { a, b, weight, probability, decision, levels };
      }
      request.remaining -= length;
      if (request.remaining === 0) settle(request);
    }
  }
}

function decisionOf(probability: number, minMatchProbability: number, minReviewProbability: number): MatchDecision {
  if (probability >= minMatchProbability) return 'match';
  if (probability >= minReviewProbability) return 'review';
  return 'non-match';
}

/** Resolves a request, or rejects it with `error`, once. */
function settle(request: ScoreRequest, error?: unknown): void {
  if (request.settled) return;
  request.settled = true;
  if (error === undefined) request.resolve(request.results);
  else request.reject(error);
}
