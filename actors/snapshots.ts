import type { Logger } from '../common/logger.js';
import { notifyDurable, type Actor, type TellEnvelope } from './actor.js';
import type { ResolvedOptions } from './options.js';
import { nextRetryDelay } from './retry.js';
import type { ActorBehavior } from './types.js';

/**
 * Main-thread time, in ms, that one batch's `persist` call should take before it returns
 * its promise: the time it spends copying or encoding the states. Nothing else runs on the
 * thread meanwhile, so batches are sized to stay near this, as an actor turn does.
 */
const PERSIST_CALL_BUDGET_MS = 5;

/** Snapshots in the first batch, before the cost of one is measured. */
const FIRST_BATCH_SIZE = 50;

/** Weight of the newest batch in the running sums that give the cost of one snapshot. */
const COST_SMOOTHING = 0.2;

/**
 * Share of the due actors that a batch takes at least, so that the writer keeps up when
 * actors become due faster than batches of the time budget can write them.
 */
const MIN_BACKLOG_SHARE = 0.25;

/** Callbacks from the snapshot writer into the actor system. */
export interface SnapshotHooks<State, Message> {
  /** Whether the actor's state may be snapshotted now, which is false while it is rebuilt. */
  canSnapshot(actor: Actor<State, Message>): boolean;
  /** Called after a persist of these actors settled, whether it succeeded or failed. */
  afterPersist(actors: Array<Actor<State, Message>>): void;
}

/**
 * Decides when dirty actors are persisted and writes their snapshots in batches.
 *
 * An actor with a non-empty journal is always in exactly one place: `#waiting` (until
 * snapshotIntervalMs passes), `#due` (written by the next batch), or the in-flight batch.
 * One batch is in flight at a time, so two writes of the same key can never race, and
 * everything that becomes due meanwhile waits for a later batch. A batch has at most
 * maxPersistBatch actors. Outside a drain it has fewer when preparing that many would take
 * the persist call longer than PERSIST_CALL_BUDGET_MS, but at least MIN_BACKLOG_SHARE of
 * the due actors.
 */
export class SnapshotWriter<State, Message> {
  readonly #behavior: ActorBehavior<State, Message>;
  readonly #options: ResolvedOptions;
  readonly #logger: Logger;
  readonly #hooks: SnapshotHooks<State, Message>;

  /** Ordered by dirtySince, except that actors re-added after a persist may be late by its latency. */
  readonly #waiting = new Set<Actor<State, Message>>();
  readonly #due = new Set<Actor<State, Message>>();
  #inFlightBatch: Array<Actor<State, Message>> = [];
  readonly #inFlightKeys = new Set<string>();
  /** Settles after the in-flight batch was handled; it never rejects. */
  #inFlight: Promise<void> | undefined = undefined;

  #intervalTimer: NodeJS.Timeout | undefined = undefined;
  #retryTimer: NodeJS.Timeout | undefined = undefined;
  #retryDelayMs = 0;
  #consecutiveFailures = 0;
  #writeScheduled = false;
  #stopped = false;
  /** Decayed sums of the persist calls' main-thread time, in ms, and of their snapshots. */
  #callTimeMs = 0;
  #callSnapshots = 0;
  /** Whether every later batch is as large as allowed: set by a drain, or a flush before one, which waits for all its batches. */
  #largestBatches = false;

  /** Snapshots written by successful persist calls. */
  persistedSnapshots = 0;
  /** Actors whose journal is not empty. */
  dirtyActors = 0;

  constructor(
    behavior: ActorBehavior<State, Message>,
    options: ResolvedOptions,
    logger: Logger,
    hooks: SnapshotHooks<State, Message>,
  ) {
    this.#behavior = behavior;
    this.#options = options;
    this.#logger = logger;
    this.#hooks = hooks;
  }

  /** Whether no actor has unpersisted messages and no persist is in flight. */
  get idle(): boolean {
    return this.dirtyActors === 0 && this.#inFlight === undefined;
  }

  /** Appends an applied message to the actor's journal and schedules its snapshot. */
  recordApplied(actor: Actor<State, Message>, envelope: TellEnvelope<Message>): void {
    const journal = actor.journal;
    journal.push(envelope);

    if (journal.length === 1) {
      this.dirtyActors++;
    }

    // An actor in flight is rescheduled when its persist settles.
    if (actor.persisting || actor.persistSchedule === 'due') {
      return;
    }

    if (journal.length >= this.#options.snapshotEveryMessages) {
      this.markDue(actor);
      return;
    }

    if (actor.persistSchedule === 'none') {
      this.#wait(actor, envelope.appliedAt);
    }
  }

  /** Queues the actor for the next batch unless it is clean or already being written. */
  markDue(actor: Actor<State, Message>): void {
    if (actor.persisting) {
      actor.dueAfterPersist = true;
      return;
    }
    if (actor.persistSchedule === 'due' || actor.journal.length === 0) {
      return;
    }

    if (actor.persistSchedule === 'waiting') {
      this.#waiting.delete(actor);
    }

    actor.persistSchedule = 'due';
    this.#due.add(actor);
    this.requestWrite();
  }

  /** Drops the actor from the schedule after its journal was emptied outside a persist. */
  journalEmptied(actor: Actor<State, Message>): void {
    this.dirtyActors--;
    this.#unschedule(actor);
  }

  /** Returns the in-flight persist that covers this key, or undefined. The promise never rejects. */
  persistInFlight(key: string): Promise<void> | undefined {
    return this.#inFlightKeys.has(key) ? this.#inFlight : undefined;
  }

  /**
   * Marks every dirty actor due and returns the newest journaled message of each. Once
   * all of them are durable, every message applied before the call is durable.
   */
  requestFlush(options: { largestBatches?: boolean } = {}): Array<TellEnvelope<Message>> {
    if (options.largestBatches === true) {
      this.#largestBatches = true;
    }

    const targets: Array<TellEnvelope<Message>> = [];
    const actors = [...this.#waiting, ...this.#due, ...this.#inFlightBatch];

    for (const actor of actors) {
      const newest = actor.journal.at(-1);
      if (newest === undefined) {
        continue;
      }

      actor.flushUntil = newest;
      targets.push(newest);
      this.markDue(actor);
    }

    return targets;
  }

  /** Starts the next batch on a later tick, so everything marked due until then joins it. */
  requestWrite(): void {
    if (this.#writeScheduled || this.#due.size === 0) {
      return;
    }

    this.#writeScheduled = true;
    setImmediate(this.#writeDue);
  }

  /** Stops all timers. Persists that settle later are ignored. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#intervalTimer);
    clearTimeout(this.#retryTimer);
    this.#intervalTimer = undefined;
    this.#retryTimer = undefined;
  }

  #wait(actor: Actor<State, Message>, since: number): void {
    actor.persistSchedule = 'waiting';
    actor.dirtySince = since;
    this.#waiting.add(actor);
    this.#armIntervalTimer();
  }

  #unschedule(actor: Actor<State, Message>): void {
    if (actor.persistSchedule === 'waiting') {
      this.#waiting.delete(actor);
    } else if (actor.persistSchedule === 'due') {
      this.#due.delete(actor);
    }
    actor.persistSchedule = 'none';
  }

  #armIntervalTimer(): void {
    if (this.#intervalTimer !== undefined || this.#stopped) {
      return;
    }

    const oldest = this.#waiting.values().next().value;
    if (oldest === undefined) {
      return;
    }

    const delay = Math.max(0, oldest.dirtySince + this.#options.snapshotIntervalMs - performance.now());
    this.#intervalTimer = setTimeout(this.#onInterval, delay);
    this.#intervalTimer.unref();
  }

  readonly #onInterval = (): void => {
    this.#intervalTimer = undefined;
    const now = performance.now();

    for (const actor of this.#waiting) {
      if (actor.dirtySince + this.#options.snapshotIntervalMs > now) {
        break;
      }
      this.markDue(actor);
    }

    this.#armIntervalTimer();
  };

  readonly #writeDue = (): void => {
    this.#writeScheduled = false;

    if (this.#stopped || this.#inFlight !== undefined || this.#retryTimer !== undefined) {
      return;
    }

    const batch = this.#takeBatch();
    if (batch.length > 0) {
      this.#write(batch);
    }
  };

  #takeBatch(): Array<Actor<State, Message>> {
    const batch: Array<Actor<State, Message>> = [];
    const limit = this.#batchLimit();

    for (const actor of this.#due) {
      if (batch.length >= limit) {
        break;
      }

      // A restarting actor stays due; the system requests a write when it is ready again.
      if (!this.#hooks.canSnapshot(actor)) {
        continue;
      }

      this.#unschedule(actor);
      if (actor.journal.length > 0) {
        batch.push(actor);
      }
    }

    return batch;
  }

  /** Returns the number of actors the next batch may take. */
  #batchLimit(): number {
    const max = this.#options.maxPersistBatch;
    if (this.#largestBatches) {
      return max;
    }

    const withinBudget = this.#callSnapshots === 0 ? FIRST_BATCH_SIZE : Math.floor((PERSIST_CALL_BUDGET_MS * this.#callSnapshots) / this.#callTimeMs);
    const backlogShare = Math.ceil(this.#due.size * MIN_BACKLOG_SHARE);
    return Math.max(1, Math.min(max, Math.max(withinBudget, backlogShare)));
  }

  /** Adds a call to the decayed sums, so that one call slowed by a GC pause moves the estimate by its share of the snapshots only. */
  #recordCallTime(elapsedMs: number, snapshots: number): void {
    this.#callTimeMs = this.#callTimeMs * (1 - COST_SMOOTHING) + elapsedMs;
    this.#callSnapshots = this.#callSnapshots * (1 - COST_SMOOTHING) + snapshots;
  }

  #write(batch: Array<Actor<State, Message>>): void {
    const snapshots = batch.map((actor) => {
      actor.persisting = true;
      actor.persistCovered = actor.journal.length;
      this.#inFlightKeys.add(actor.key);
      return { key: actor.key, state: actor.state as State };
    });

    let written: Promise<void>;
    const startedAt = performance.now();
    try {
      written = this.#behavior.persist(snapshots);
      this.#recordCallTime(performance.now() - startedAt, snapshots.length);
    } catch (error) {
      written = Promise.reject(error);
    }

    this.#inFlightBatch = batch;
    this.#inFlight = written
      .then(
        () => this.#onPersisted(batch),
        (error: unknown) => this.#onPersistFailed(batch, error),
      )
      .catch((error: unknown) => {
        this.#logger.error({ err: error }, 'handling a settled persist threw');
      });
  }

  #onPersisted(batch: Array<Actor<State, Message>>): void {
    if (this.#stopped) {
      return;
    }

    this.#settle(batch);
    this.#retryDelayMs = 0;
    this.#consecutiveFailures = 0;
    this.persistedSnapshots += batch.length;

    for (const actor of batch) {
      this.#completeJournal(actor);
    }

    this.#hooks.afterPersist(batch);
    this.requestWrite();
  }

  /** Marks the covered journal entries durable and reschedules what was applied since. */
  #completeJournal(actor: Actor<State, Message>): void {
    const covered = actor.persistCovered;
    actor.persistCovered = 0;

    const durable = covered === actor.journal.length ? actor.journal : actor.journal.splice(0, covered);
    if (durable === actor.journal) {
      actor.journal = [];
    }

    for (const envelope of durable) {
      notifyDurable(envelope, actor.key, this.#logger);
    }

    if (actor.flushUntil?.durable === true) {
      actor.flushUntil = undefined;
    }

    if (actor.journal.length === 0) {
      this.dirtyActors--;
      actor.dueAfterPersist = false;
      return;
    }

    this.#reschedule(actor);
  }

  #reschedule(actor: Actor<State, Message>): void {
    const journal = actor.journal;
    const urgent =
      actor.dueAfterPersist ||
      actor.flushUntil !== undefined ||
      actor.passivationPending ||
      journal.length >= this.#options.snapshotEveryMessages ||
      journal[0].appliedAt + this.#options.snapshotIntervalMs <= performance.now();
    actor.dueAfterPersist = false;

    if (urgent) {
      this.markDue(actor);
    } else {
      this.#wait(actor, journal[0].appliedAt);
    }
  }

  #onPersistFailed(batch: Array<Actor<State, Message>>, error: unknown): void {
    if (this.#stopped) {
      return;
    }

    this.#settle(batch);
    this.#consecutiveFailures++;
    this.#retryDelayMs = nextRetryDelay(this.#retryDelayMs);

    this.#logger.error(
      {
        err: error,
        snapshots: batch.length,
        firstKey: batch[0].key,
        consecutiveFailures: this.#consecutiveFailures,
        retryInMs: this.#retryDelayMs,
      },
      'persisting actor snapshots failed; the actors stay dirty and the write is retried',
    );

    for (const actor of batch) {
      actor.persistCovered = 0;
      this.markDue(actor);
    }

    this.#retryTimer = setTimeout(this.#retry, this.#retryDelayMs);
    this.#retryTimer.unref();
    this.#hooks.afterPersist(batch);
  }

  readonly #retry = (): void => {
    this.#retryTimer = undefined;
    this.#writeDue();
  };

  #settle(batch: Array<Actor<State, Message>>): void {
    this.#inFlight = undefined;
    this.#inFlightBatch = [];

    for (const actor of batch) {
      actor.persisting = false;
      this.#inFlightKeys.delete(actor.key);
    }
  }
}
