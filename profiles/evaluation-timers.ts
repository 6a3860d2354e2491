/**
 * Durable timers that evaluate a profile again when time alone can change its segments,
 * such as a purchase leaving a 30-day window. A profile's snapshot write moves its entry in
 * the timer index (keys.evaluationTimer, per workspace and shard, ordered by due time), so
 * the index survives restarts. This sweeper reads the due entries of the partitions the node
 * owns every `intervalMs` and sends each profile an EvaluationDue message through its actor.
 *
 * An entry stays in the index until the profile's next snapshot moves or removes it, so an
 * evaluation lost to a crash is sent again after the restart. A profile gets at most one
 * message per due time within `resendAfterMs`. The actor ignores a message for a due time
 * it no longer has.
 */
import { Lifecycle } from '../common/lifecycle.js';
import type { Logger } from '../common/logger.js';
import type { PartitionId } from '../storage/event-log.js';
import { keys, padSequence, parseEvaluationTimerKey } from '../storage/keys.js';
import type { Store } from '../storage/store.js';
import type { EvaluationDue } from './evaluator.js';
import { actorKey } from './profile-behavior.js';

export interface EvaluationTimersOptions {
  store: Store;
  /** The partitions whose timers this node fires: those it owns. */
  partitions: () => Promise<readonly PartitionId[]>;
  /** Delivers a message to a profile's actor; false when its mailbox is full, to be tried on the next sweep. */
  tell: (key: string, message: EvaluationDue) => boolean;
  logger: Logger;
  /** Time between sweeps. Default 1,000 ms. */
  intervalMs?: number;
  /** A due entry still in the index this long after its message was sent is sent again. Default 30,000 ms. */
  resendAfterMs?: number;
  /** Due entries sent per sweep, at most; the rest wait for the next sweep. Default 10,000. */
  maxPerSweep?: number;
  now?: () => number;
}

export class EvaluationTimers {
  readonly #options: EvaluationTimersOptions;
  readonly #logger: Logger;
  readonly #lifecycle: Lifecycle;
  readonly #intervalMs: number;
  readonly #resendAfterMs: number;
  readonly #maxPerSweep: number;
  readonly #now: () => number;
  /** Timer key to the time its message was sent. */
  readonly #sent = new Map<string, number>();
  #timer: NodeJS.Timeout | null = null;
  #sweeping: Promise<number> | null = null;
  /** Messages sent since start. */
  fired = 0;

  constructor(options: EvaluationTimersOptions) {
    this.#options = options;
    this.#logger = options.logger.child({ component: 'evaluation-timers' });
    this.#lifecycle = new Lifecycle('evaluation-timers', this.#logger);
    this.#intervalMs = options.intervalMs ?? 1_000;
    this.#resendAfterMs = options.resendAfterMs ?? 30_000;
    this.#maxPerSweep = options.maxPerSweep ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  start(): void {
    this.#lifecycle.set('running');
    this.#timer = setInterval(() => void this.sweep(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Stops sweeping and waits for a sweep in progress. */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#sweeping;
    this.#lifecycle.set('stopped');
  }

  /** Sends a message for every due entry now; resolves with how many it sent. A sweep in progress is joined. */
  sweep(): Promise<number> {
    this.#sweeping ??= this.#sweepOnce()
      .catch((error: unknown) => {
        this.#logger.warn({ err: error }, 'timer sweep failed; it is tried again on the next interval');
        return 0;
      })
      .finally(() => {
        this.#sweeping = null;
      });
    return this.#sweeping;
  }

  async #sweepOnce(): Promise<number> {
    const nowMs = this.#now();
    this.#forgetOldSends(nowMs);

    let sent = 0;
    for (const partition of await this.#options.partitions()) {
      if (sent >= this.#maxPerSweep) break;
      sent += await this.#sweepPartition(partition, nowMs, this.#maxPerSweep - sent);
    }
    this.fired += sent;
    return sent;
  }

  async #sweepPartition(partition: PartitionId, nowMs: number, budget: number): Promise<number> {
    const prefix = keys.evaluationTimerPrefix(partition.workspace, partition.shard);
    // Keys order by due time, so everything due sorts before the first key of nowMs + 1.
    const range = { gte: prefix, lt: `${prefix}${padSequence(nowMs + 1)}` };

    let sent = 0;
    for await (const entry of this.#options.store.iterate(range)) {
      const key = entry.key.toString();
      if (this.#sent.has(key)) continue;

      const { dueMs, profileId } = parseEvaluationTimerKey(key);
      if (!this.#options.tell(actorKey(partition.workspace, profileId), { kind: 'evaluation-due', dueMs })) break;
      this.#sent.set(key, nowMs);
      if (++sent >= budget) break;
    }
    return sent;
  }

  #forgetOldSends(nowMs: number): void {
    for (const [key, sentAtMs] of this.#sent) {
      if (nowMs - sentAtMs >= this.#resendAfterMs) this.#sent.delete(key);
    }
  }
}
