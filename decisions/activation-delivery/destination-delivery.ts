/**
 * The delivery loop of one webhook destination. It reads the workspace's activation feed
 * after its cursor, POSTs each page as one batch, and moves the cursor past the batch only
 * after a 2xx response or once the batch is a dead letter. So every activation is delivered
 * at least once: a crash or a stop between the response and the cursor write sends the
 * same batch again.
 *
 * Before each live batch the loop sends the dead letters queued for replay, each as one
 * batch with the activations it stored. A delivered replay deletes its dead letter, and a
 * failed one stays a dead letter that is no longer queued.
 */
import type { Logger } from '../../common/logger.js';
import { KvConflictError } from '../../storage/kv-store.js';
import type { ActivationFeed } from '../../cluster/serving-node.js';
import type { DeliveryState, WebhookDeadLetter } from './delivery-state.js';
import type { WebhookDestination } from './webhook-config.js';
import { idempotencyKey, signWebhookBody, toWebhookActivation, type WebhookActivation, type WebhookBody } from './webhook-payload.js';
import { postBatch, type AttemptResult } from './webhook-request.js';
import { TokenBucket, type Clock } from './token-bucket.js';

export interface RetryPolicy {
  /** Delay before the second attempt; each later attempt doubles it. */
  baseDelayMs: number;
  /** Maximum delay between attempts, before jitter. */
  maxDelayMs: number;
  /** Maximum Retry-After wait honoured. A longer one is cut to this. */
  maxRetryAfterMs: number;
  /** Uniform in [0, 1), for jitter. */
  random: () => number;
}

/** Counters of one destination since the dispatcher started, on this node. */
export interface DestinationStats {
  /** The sequence delivered (or dead-lettered) up to, as last stored. */
  cursor: number;
  deliveredBatches: number;
  deliveredActivations: number;
  /** Requests that did not return a 2xx, each retry counted. */
  failedAttempts: number;
  deadLetteredBatches: number;
  /** Dead letters replayed and deleted after a 2xx response. */
  replayedBatches: number;
  /** Requests that waited for the rate limit. */
  rateLimitWaits: number;
}

export interface DestinationDeliveryOptions {
  destination: WebhookDestination;
  feed: ActivationFeed;
  state: DeliveryState;
  retry: RetryPolicy;
  clock: Clock;
  logger: Logger;
  /** Counters that this loop adds to. The dispatcher keeps them across the loops it starts for a destination. */
  stats: DestinationStats;
  /**
   * Time between two checks for queued replays while the feed has nothing new, for replay
   * requests that another node stored. Default: no periodic check, so only `wakeForReplays`
   * makes an idle loop check.
   */
  replayPollIntervalMs?: number;
  /**
   * Called once when the loop stopped because another node wrote the cursor (a
   * KvConflictError of the state), which means this node no longer delivers the destination.
   */
  onFenced?: () => void;
}

export function emptyDestinationStats(): DestinationStats {
  return { cursor: 0, deliveredBatches: 0, deliveredActivations: 0, failedAttempts: 0, deadLetteredBatches: 0, replayedBatches: 0, rateLimitWaits: 0 };
}

/** Dead letters that the loop reads per list of queued replays. */
const REPLAY_PAGE = 10;

type BatchOutcome = { kind: 'delivered'; attempts: number } | { kind: 'dead-letter'; deadLetter: WebhookDeadLetter } | { kind: 'stopped' };

/** The failed attempts of a batch before this loop sent it, and where to store the count after each failure. */
interface AttemptCount {
  failedBefore: number;
  record?: (failed: number) => Promise<void>;
}

export class DestinationDelivery {
  readonly #destination: WebhookDestination;
  readonly #feed: ActivationFeed;
  readonly #state: DeliveryState;
  readonly #retry: RetryPolicy;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #bucket: TokenBucket;
  /** Aborts waits and stops new attempts; a request in flight may still finish. */
  readonly #stopping = new AbortController();
  /** Aborts the request in flight too. */
  readonly #forced = new AbortController();
  #running: Promise<void> | null = null;
  readonly #stats: DestinationStats;
  readonly #onFenced: () => void;
  readonly #replayPollIntervalMs: number | null;
  /** Set by wakeForReplays until the loop checks for queued replays. */
  #replaysRequested = false;
  /** Ends the current wait for new activations, so that the loop checks for queued replays. */
  #idleWait: AbortController | null = null;

  constructor(options: DestinationDeliveryOptions) {
    this.#destination = options.destination;
    this.#feed = options.feed;
    this.#state = options.state;
    this.#retry = options.retry;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#bucket = new TokenBucket(options.destination.maxRequestsPerSecond, options.clock);
    this.#stats = options.stats;
    this.#onFenced = options.onFenced ?? (() => {});
    this.#replayPollIntervalMs = options.replayPollIntervalMs ?? null;
  }

  get destination(): WebhookDestination {
    return this.#destination;
  }

  get stats(): DestinationStats {
    return { ...this.#stats };
  }

  /** Starts the loop in the background; it runs until `stop`, or until another node writes the cursor. A stopped loop cannot start again. */
  start(): void {
    this.#running ??= this.#run();
  }

  /** Makes the loop check for queued replays before its next live batch, at once when it waits for activations. */
  wakeForReplays(): void {
    this.#replaysRequested = true;
    this.#idleWait?.abort();
  }

  /**
   * Stops the loop. A request in flight gets `graceMs` to finish, so that its batch is not
   * sent again after a restart. After that it is aborted, and its batch stays after the cursor.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopping.abort();
    if (this.#running === null) return;

    const grace = new AbortController();
    const finished = await Promise.race([this.#running.then(() => true), this.#clock.sleep(graceMs, grace.signal).then(() => false)]);
    grace.abort();
    if (!finished) {
      this.#logger.warn({ graceMs }, 'webhook request still in flight after the grace period; aborting it');
      this.#forced.abort();
      await this.#running;
    }
  }

  async #run(): Promise<void> {
    let failures = 0;
    let cursor: number | null = null;

    while (!this.#stopping.signal.aborted) {
      try {
        if (cursor === null) {
          cursor = await this.#state.claimCursor();
          this.#stats.cursor = cursor;
          const message = cursor === 0 ? 'webhook delivery started at the oldest retained activation' : 'webhook delivery resumed after the stored cursor';
          this.#logger.info({ cursor, url: this.#destination.url.origin }, message);
        }
        await this.#replayQueued();
        if (this.#stopping.signal.aborted) break;
        cursor = await this.#step(cursor);
        failures = 0;
      } catch (error) {
        if (error instanceof KvConflictError) {
          this.#logger.warn({ err: error, cursor: this.#stats.cursor }, 'webhook cursor was written by another node; stopping delivery of this destination');
          this.#onFenced();
          break;
        }

        // Reading the feed or writing the cursor failed: wait, then read from the stored cursor again.
        if (this.#stopping.signal.aborted) break;
        failures += 1;
        const retryInMs = this.#backoffMs(failures);
        this.#logger.error({ err: error, failures, retryInMs }, 'webhook delivery loop failed; retrying');
        cursor = null;
        await this.#clock.sleep(retryInMs, this.#stopping.signal);
      }
    }
    this.#logger.info({ cursor: this.#stats.cursor }, 'webhook delivery stopped');
  }

  /** Delivers the next page after `cursor`, or waits for one. Returns the new cursor. */
  async #step(cursor: number): Promise<number> {
    const { workspace, maxBatchActivations, types } = this.#destination;
    const page = await this.#feed.list(workspace, { afterSequence: cursor, limit: maxBatchActivations, types });

    if (page.activations.length === 0) {
      // Caught up, though the cursor may still move past activations of other types.
      if (page.nextAfterSequence > cursor) await this.#storeCursor(page.nextAfterSequence);
      if (page.nextAfterSequence >= page.visibleSequence) await this.#waitIdle(page.nextAfterSequence);
      return Math.max(cursor, page.nextAfterSequence);
    }

    const firstSequence = page.activations[0].sequence;
    const failedBefore = await this.#state.readAttempts(firstSequence);
    const outcome = await this.#deliver(page.activations.map(toWebhookActivation), { failedBefore, record: (failed) => this.#state.writeAttempts(firstSequence, failed) });
    if (outcome.kind === 'stopped') return cursor;

    if (outcome.kind === 'delivered') {
      await this.#storeCursor(page.nextAfterSequence);
      this.#stats.deliveredBatches += 1;
      this.#stats.deliveredActivations += page.activations.length;
    } else {
      await this.#state.writeDeadLetter(outcome.deadLetter, page.nextAfterSequence);
      this.#stats.cursor = page.nextAfterSequence;
      this.#stats.deadLetteredBatches += 1;
    }
    return page.nextAfterSequence;
  }

  /**
   * Waits until an activation after `afterSequence` is visible, the loop stops, a replay is
   * requested on this node, or the replay poll interval has passed.
   */
  async #waitIdle(afterSequence: number): Promise<void> {
    // An aborted signal fires no more 'abort' events, so the listener below would never run.
    if (this.#replaysRequested || this.#stopping.signal.aborted) return;

    const wait = new AbortController();
    const stop = () => wait.abort();
    this.#stopping.signal.addEventListener('abort', stop, { once: true });
    this.#idleWait = wait;
    try {
      const waits = [this.#feed.waitBeyond(this.#destination.workspace, afterSequence, wait.signal)];
      if (this.#replayPollIntervalMs !== null) waits.push(this.#clock.sleep(this.#replayPollIntervalMs, wait.signal));
      await Promise.race(waits);
    } finally {
      this.#idleWait = null;
      wait.abort();
      this.#stopping.signal.removeEventListener('abort', stop);
    }
  }

  /** Sends the dead letters queued for replay, oldest first, until none is queued or the loop stops. */
  async #replayQueued(): Promise<void> {
    this.#replaysRequested = false;
    for (;;) {
      const queued = await this.#state.listQueuedReplays(REPLAY_PAGE);
      if (queued.length === 0) return;

      for (const deadLetter of queued) {
        if (this.#stopping.signal.aborted) return;
        const outcome = await this.#deliver(deadLetter.activations);
        if (outcome.kind === 'stopped') return;
        await this.#settleReplay(deadLetter, outcome);
      }
    }
  }

  async #settleReplay(deadLetter: WebhookDeadLetter, outcome: Exclude<BatchOutcome, { kind: 'stopped' }>): Promise<void> {
    const batch = { firstSequence: deadLetter.firstSequence, lastSequence: deadLetter.lastSequence };
    if (outcome.kind === 'delivered') {
      await this.#state.deleteDeadLetter(deadLetter.firstSequence);
      this.#stats.replayedBatches += 1;
      this.#logger.info({ ...batch, attempts: outcome.attempts }, 'replayed dead letter delivered; deleted it');
      return;
    }

    const { replayQueuedAtMs: _queued, status: _status, ...kept } = deadLetter;
    const failure = outcome.deadLetter;
    const failed: WebhookDeadLetter = { ...kept, attempts: deadLetter.attempts + failure.attempts, error: failure.error, failedAtMs: failure.failedAtMs };
    if (failure.status !== undefined) failed.status = failure.status;
    await this.#state.writeFailedReplay(failed);
    this.#logger.warn({ ...batch, attempts: failed.attempts, status: failure.status, error: failure.error }, 'replayed dead letter failed again; it stays a dead letter');
  }

  async #storeCursor(afterSequence: number): Promise<void> {
    await this.#state.writeCursor(afterSequence);
    this.#stats.cursor = afterSequence;
  }

  /**
   * Sends a batch until it succeeds, fails for good, or the loop stops. A live batch counts
   * on from the `failedBefore` attempts that an earlier loop stored, and stores the count
   * after each failed attempt with `record`. So a node that restarts again and again still
   * moves the batch to the dead letters after maxAttempts. A replayed dead letter counts its
   * attempts afresh.
   */
  async #deliver(activations: WebhookActivation[], attempts: AttemptCount = { failedBefore: 0 }): Promise<BatchOutcome> {
    const body: WebhookBody = { activations };
    // Every attempt sends the same bytes, so the signature and the idempotency key repeat too.
    const text = JSON.stringify(body);
    const signature = signWebhookBody(this.#destination.secret, text);
    const key = idempotencyKey(activations);
    const batch = { firstSequence: activations[0].sequence, lastSequence: activations[activations.length - 1].sequence, activations: activations.length };

    if (attempts.failedBefore > 0) this.#logger.info({ ...batch, failedBefore: attempts.failedBefore }, 'webhook batch resumed after earlier failed attempts');
    for (let attempt = attempts.failedBefore + 1; ; attempt++) {
      const waitedMs = await this.#bucket.take(this.#stopping.signal);
      if (waitedMs === null) return { kind: 'stopped' };
      if (waitedMs > 0) this.#stats.rateLimitWaits += 1;

      const result = await postBatch({
        url: this.#destination.url,
        body: text,
        signature,
        idempotencyKey: key,
        timeoutMs: this.#destination.timeoutMs,
        signal: this.#forced.signal,
        nowMs: this.#clock.now(),
      });
      if (result.ok) {
        this.#logger.debug({ ...batch, attempt, status: result.status }, 'webhook batch delivered');
        return { kind: 'delivered', attempts: attempt };
      }
      if ('stopped' in result) return { kind: 'stopped' };

      this.#stats.failedAttempts += 1;
      if (!result.retryable || attempt >= this.#destination.maxAttempts) {
        this.#logger.error({ ...batch, attempts: attempt, status: result.status, error: result.error }, 'webhook batch moved to the dead letters');
        return { kind: 'dead-letter', deadLetter: this.#deadLetter(body, attempt, result) };
      }

      await this.#recordFailedAttempts(attempts, attempt, batch);
      const retryInMs = result.retryAfterMs === undefined ? this.#backoffMs(attempt) : Math.min(result.retryAfterMs, this.#retry.maxRetryAfterMs);
      this.#logger.warn({ ...batch, attempt, maxAttempts: this.#destination.maxAttempts, status: result.status, error: result.error, retryInMs }, 'webhook request failed; retrying');
      await this.#clock.sleep(retryInMs, this.#stopping.signal);
      if (this.#stopping.signal.aborted) return { kind: 'stopped' };
    }
  }

  /** Stores the failed attempts of a live batch. A failed write is logged, and a restart then counts on from the last count stored. */
  async #recordFailedAttempts(attempts: AttemptCount, failed: number, batch: { firstSequence: number; lastSequence: number }): Promise<void> {
    if (attempts.record === undefined) return;
    try {
      await attempts.record(failed);
    } catch (error) {
      this.#logger.warn({ err: error, ...batch, failed }, 'storing the failed attempts of a webhook batch failed; a restart counts them from the last stored value');
    }
  }

  #deadLetter(body: WebhookBody, attempts: number, result: Extract<AttemptResult, { retryable: boolean }>): WebhookDeadLetter {
    const { activations } = body;
    const deadLetter: WebhookDeadLetter = {
      version: 1,
      destination: this.#destination.name,
      workspace: this.#destination.workspace,
      firstSequence: activations[0].sequence,
      lastSequence: activations[activations.length - 1].sequence,
      activations,
      attempts,
      error: result.error,
      failedAtMs: this.#clock.now(),
    };
    if (result.status !== undefined) deadLetter.status = result.status;
    return deadLetter;
  }

  /**
   * Exponential backoff with jitter: base × 2^(attempt − 1), capped at maxDelayMs, then
   * scaled by a random factor in [0.5, 1) so that destinations failing together spread out.
   */
  #backoffMs(attempt: number): number {
    const exponential = Math.min(this.#retry.maxDelayMs, this.#retry.baseDelayMs * 2 ** Math.min(attempt - 1, 30));
    return Math.round(exponential * (0.5 + this.#retry.random() / 2));
  }
}
