import { AbortedError, InvalidStateError, OverloadedError } from '../common/errors.js';
import { Lifecycle, type LifecycleState } from '../common/lifecycle.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { Actor, AskEnvelope, TellEnvelope, notifyApplied, type Envelope } from './actor.js';
import { DeadLetterWriter } from './dead-letters.js';
import { resolveOptions, validateDrainTimeout, type ResolvedOptions } from './options.js';
import { ProgressWaiters } from './progress.js';
import { ResidentActors } from './residency.js';
import { RingQueue } from './ring-queue.js';
import { SnapshotWriter } from './snapshots.js';
import { Supervisor } from './supervisor.js';
import type { ActorBehavior, ActorSystemOptions, DeliveryCallbacks } from './types.js';

const COMPONENT = 'actor system';

/** Messages one run-loop turn handles before it yields to the event loop. */
const TURN_MESSAGE_BUDGET = 1_000;

/** Time one run-loop turn may take before it yields, in milliseconds. */
const TURN_TIME_BUDGET_MS = 5;

/** Messages one actor handles before the next actor in the run queue gets a turn. */
const ACTOR_TURN_LIMIT = 128;

export interface ActorSystemStats {
  /** Actors in memory, including those still loading. */
  resident: number;
  /** Messages and asks waiting in mailboxes. */
  queued: number;
  /** Actors with applied messages that no persisted snapshot covers yet. */
  dirty: number;
  activations: number;
  passivations: number;
  restarts: number;
  deadLetters: number;
  persistedSnapshots: number;
}

/**
 * Runs one actor per key on top of an ActorBehavior. Messages for a key are handled one at
 * a time in tell order. Actors are activated on demand, snapshotted in batches (see
 * SnapshotWriter), restarted from their last snapshot plus journal when `handle` throws
 * (see Supervisor), and passivated when idle or above the resident limit (see ResidentActors).
 *
 * `tell` appends to the key's ring-buffer mailbox and puts the actor on a run queue. One
 * run loop, started with setImmediate, drains that queue in turns of at most 1,000
 * messages or 5 ms. So no promise is created per message, and I/O runs between turns.
 */
export class ActorSystem<State, Message> {
  readonly #behavior: ActorBehavior<State, Message>;
  readonly #options: ResolvedOptions;
  readonly #logger: Logger;
  readonly #lifecycle: Lifecycle;
  readonly #snapshots: SnapshotWriter<State, Message>;
  readonly #deadLetters: DeadLetterWriter<Message>;
  readonly #supervisor: Supervisor<State, Message>;
  readonly #actors: ResidentActors<State, Message>;
  readonly #progress = new ProgressWaiters();

  readonly #runQueue = new RingQueue<Actor<State, Message>>();
  #loopScheduled = false;
  /** performance.now() at the start of the current actor turn. */
  #now = 0;
  #queued = 0;
  /** Set when drain timed out: mailboxes were emptied and no more messages are taken. */
  #halted = false;
  #stopped = false;

  constructor(behavior: ActorBehavior<State, Message>, options: ActorSystemOptions & { logger?: Logger } = {}) {
    const { logger, ...actorOptions } = options;
    this.#options = resolveOptions(actorOptions);
    this.#behavior = behavior;
    this.#logger = logger ?? silentLogger();
    this.#lifecycle = new Lifecycle(COMPONENT, this.#logger);

    this.#snapshots = new SnapshotWriter(behavior, this.#options, this.#logger, {
      canSnapshot: (actor) => actor.status === 'ready',
      afterPersist: (actors) => this.#afterPersist(actors),
    });
    this.#deadLetters = new DeadLetterWriter(behavior, this.#logger, () => this.#progress.check());
    this.#supervisor = new Supervisor(behavior, this.#options, this.#logger, this.#snapshots, this.#deadLetters, {
      ready: (actor) => this.#afterTurn(actor),
      loadFailed: (actor, error) => this.#onLoadFailed(actor, error),
      progress: () => this.#progress.check(),
      isStopped: () => this.#stopped,
    });
    this.#actors = new ResidentActors(this.#options, (actor) => this.#snapshots.markDue(actor));
  }

  get state(): LifecycleState {
    return this.#lifecycle.state;
  }

  start(): void {
    this.#lifecycle.assert('start', 'created');
    this.#lifecycle.set('starting');
    this.#lifecycle.set('running', { options: this.#options });
  }

  /** Enqueues; returns false (and enqueues nothing) when the key's mailbox is full or the system is not running. */
  tell(key: string, message: Message, callbacks?: DeliveryCallbacks): boolean {
    if (this.#lifecycle.state !== 'running') {
      return false;
    }

    let actor = this.#actors.get(key);
    if (actor === undefined) {
      actor = this.#activate(key);
    } else if (actor.mailbox.length >= this.#options.mailboxCapacity) {
      return false;
    }

    this.#enqueue(actor, new TellEnvelope(message, callbacks));
    return true;
  }

  /**
   * Resolves once the key's mailbox has room (immediately if it has). It also resolves
   * when the system stops accepting messages, so a waiting sender re-checks `tell` and
   * `state`. Rejects with InvalidStateError before `start`.
   */
  whenWritable(key: string): Promise<void> {
    const state = this.#lifecycle.state;
    if (state === 'created') {
      return Promise.reject(new InvalidStateError(COMPONENT, state, 'wait for a writable mailbox'));
    }

    const actor = this.#actors.get(key);
    if (state !== 'running' || actor === undefined || actor.mailbox.length < this.#options.mailboxCapacity) {
      return Promise.resolve();
    }

    return new Promise((resolve) => {
      actor.writableWaiters ??= [];
      actor.writableWaiters.push(resolve);
    });
  }

  /**
   * Runs `query` on the actor's state after every message sent to the key before it. The
   * state is undefined when the actor has no snapshot and never got a message, and such an
   * ask leaves no resident actor behind. The query gets the live state object, so it must not
   * mutate it and must copy what it returns, because later messages may mutate it.
   *
   * An ask takes a mailbox slot like a message until its turn comes, even once aborted.
   * Rejects with OverloadedError when the mailbox is full, AbortedError when `signal`
   * aborts before the query runs, InvalidStateError when the system is not running, and
   * with the error of `query` or of `load` when one of them throws.
   */
  ask<R>(key: string, query: (state: State | undefined) => R, options: { signal?: AbortSignal } = {}): Promise<R> {
    const state = this.#lifecycle.state;
    if (state !== 'running') {
      return Promise.reject(new InvalidStateError(COMPONENT, state, 'run a query'));
    }

    const { signal } = options;
    const abortError = (): Error => new AbortedError(`ask for key "${key}"`, { cause: signal?.reason });
    if (signal?.aborted === true) {
      return Promise.reject(abortError());
    }

    const existing = this.#actors.get(key);
    const capacity = this.#options.mailboxCapacity;
    if (existing !== undefined && existing.mailbox.length >= capacity) {
      return Promise.reject(new OverloadedError(`mailbox of key "${key}" is full (${capacity} entries); retry after whenWritable()`));
    }

    const actor = existing ?? this.#activate(key);
    return new Promise<R>((resolve, reject) => {
      const envelope = new AskEnvelope<State>(query, resolve as (value: unknown) => void, reject, signal, abortError);
      this.#enqueue(actor, envelope);
    });
  }

  /**
   * Persists every dirty actor now, and resolves once every message applied before the call
   * is durable. With `largestBatches`, this flush and every later persist write batches of
   * maxPersistBatch, which suits a system that drains next, such as a shard being handed off.
   */
  flush(options: { largestBatches?: boolean } = {}): Promise<void> {
    const state = this.#lifecycle.state;
    if (state !== 'running' && state !== 'draining') {
      return Promise.reject(new InvalidStateError(COMPONENT, state, 'flush'));
    }

    const targets = this.#snapshots.requestFlush(options);
    let durableCount = 0;
    const allDurable = (): boolean => {
      while (durableCount < targets.length && targets[durableCount].durable) {
        durableCount++;
      }
      return durableCount === targets.length;
    };

    return this.#progress.waitUntil(allDurable).then(() => undefined);
  }

  /**
   * Stops accepting tells and asks, finishes every queued message, persists all dirty
   * state and passivates every actor. When `timeoutMs` passes first, queued messages are
   * dropped (and queued asks rejected), but everything already applied is still persisted
   * and its onDurable called. That final persist may take `flushTimeoutMs` (default: no
   * limit). After that, for example because every write fails, the drain stops anyway, and
   * what stays unpersisted never gets its onDurable. A caller whose messages come from a
   * durable log replays them on the next start.
   */
  async drain(options: { timeoutMs?: number; flushTimeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = validateDrainTimeout('timeoutMs', options.timeoutMs);
    const flushTimeoutMs = validateDrainTimeout('flushTimeoutMs', options.flushTimeoutMs);
    this.#lifecycle.assert('drain', 'created', 'running');
    this.#lifecycle.set('draining', { timeoutMs, flushTimeoutMs });
    this.#releaseWritableWaiters();

    const mailboxesDone = (): boolean => this.#queued === 0 && this.#supervisor.busy === 0;
    const finished = await this.#progress.waitUntil(mailboxesDone, timeoutMs);

    if (!finished) {
      this.#halt(timeoutMs);
      // A restarting actor's state is half-rebuilt, so it can be persisted only once the restart is done.
      await this.#progress.waitUntil(() => this.#supervisor.restarting === 0);
    }

    this.#snapshots.requestFlush({ largestBatches: true });
    const flushed = await this.#progress.waitUntil(() => this.#snapshots.idle && this.#deadLetters.pending === 0, flushTimeoutMs);
    if (!flushed) this.#abandonFlush(flushTimeoutMs!);

    const passivated = this.#removeAll(flushed);
    this.#stopped = true;
    this.#stopTimers();
    this.#lifecycle.set('stopped', { passivated, timedOut: !finished, flushTimedOut: !flushed });
  }

  /** Forced stop: clears timers, rejects pending asks, drops queued messages and forgets unpersisted state. */
  async stop(): Promise<void> {
    const previous = this.#lifecycle.state;
    if (previous === 'stopped') {
      return;
    }

    this.#stopped = true;
    this.#stopTimers();

    const dropped = this.#dropMailboxes(new InvalidStateError(COMPONENT, 'stopped', 'run a query'));
    const unpersistedActors = this.#snapshots.dirtyActors;
    this.#releaseWritableWaiters();
    this.#progress.rejectAll(new InvalidStateError(COMPONENT, 'stopped', 'finish a drain or flush'));
    this.#removeAll(false);

    if (dropped.messages > 0 || unpersistedActors > 0) {
      this.#logger.warn({ ...dropped, unpersistedActors }, 'actor system stopped with queued messages or unpersisted state');
    }
    this.#lifecycle.set('stopped');
  }

  stats(): ActorSystemStats {
    return {
      resident: this.#actors.size,
      queued: this.#queued,
      dirty: this.#snapshots.dirtyActors,
      activations: this.#supervisor.activations,
      passivations: this.#actors.passivations,
      restarts: this.#supervisor.restarts,
      deadLetters: this.#deadLetters.count,
      persistedSnapshots: this.#snapshots.persistedSnapshots,
    };
  }

  #activate(key: string): Actor<State, Message> {
    const actor = new Actor<State, Message>(key, performance.now());
    this.#actors.add(actor);
    this.#supervisor.activate(actor);
    return actor;
  }

  #enqueue(actor: Actor<State, Message>, envelope: Envelope<State, Message>): void {
    actor.mailbox.push(envelope);
    this.#queued++;

    if (actor.passivationPending) {
      this.#actors.cancelPassivation(actor);
    }
    this.#schedule(actor);
  }

  #schedule(actor: Actor<State, Message>): void {
    if (actor.scheduled || actor.status !== 'ready' || actor.mailbox.length === 0) {
      return;
    }

    actor.scheduled = true;
    this.#runQueue.push(actor);

    if (!this.#loopScheduled) {
      this.#loopScheduled = true;
      setImmediate(this.#runLoop);
    }
  }

  readonly #runLoop = (): void => {
    this.#loopScheduled = false;
    const startedAt = performance.now();
    let budget = TURN_MESSAGE_BUDGET;

    while (budget > 0 && this.#runQueue.length > 0 && !this.#halted && !this.#stopped) {
      const actor = this.#runQueue.shift() as Actor<State, Message>;
      actor.scheduled = false;
      this.#now = performance.now();

      if (this.#now - startedAt >= TURN_TIME_BUDGET_MS) {
        this.#schedule(actor);
        break;
      }

      budget -= this.#processMailbox(actor, Math.min(budget, ACTOR_TURN_LIMIT));
    }

    if (!this.#loopScheduled && this.#runQueue.length > 0 && !this.#halted && !this.#stopped) {
      this.#loopScheduled = true;
      setImmediate(this.#runLoop);
    }

    this.#progress.check();
  };

  /** Handles up to `limit` mailbox entries of a ready actor and returns how many it handled. */
  #processMailbox(actor: Actor<State, Message>, limit: number): number {
    if (actor.status !== 'ready') {
      return 0;
    }

    this.#actors.touch(actor, this.#now);
    const mailbox = actor.mailbox;
    let handled = 0;

    while (handled < limit) {
      const envelope = mailbox.peek();
      if (envelope === undefined) {
        break;
      }

      if (envelope.kind === 'ask') {
        this.#take(actor);
        handled++;
        this.#answer(actor, envelope);
        continue;
      }

      if (actor.journal.length >= this.#options.maxJournalMessages) {
        // #afterPersist resumes the actor once a snapshot shortens the journal.
        actor.journalFull = true;
        break;
      }

      if (envelope.failures >= this.#options.maxAttempts) {
        this.#take(actor);
        handled++;
        this.#moveToDeadLetters(actor, envelope);
        continue;
      }

      if (!this.#apply(actor, envelope)) {
        break;
      }
      this.#take(actor);
      handled++;
    }

    this.#afterTurn(actor);
    return handled;
  }

  #take(actor: Actor<State, Message>): void {
    actor.mailbox.shift();
    this.#queued--;
  }

  /** Applies one message; returns false when `handle` threw and a restart began. */
  #apply(actor: Actor<State, Message>, envelope: TellEnvelope<Message>): boolean {
    try {
      if (!actor.hasState) {
        this.#supervisor.create(actor);
      }
      actor.state = this.#behavior.handle(actor.state as State, envelope.message, actor.key);
    } catch (error) {
      // The message stays at the head of the mailbox and is retried after the restart.
      envelope.failures++;
      envelope.lastError = error;
      this.#supervisor.restart(actor, error, envelope.failures);
      return false;
    }

    envelope.appliedAt = this.#now;
    notifyApplied(envelope, false, actor.key, this.#logger);
    this.#snapshots.recordApplied(actor, envelope);
    if (this.#behavior.persistSoon?.(actor.state as State, envelope.message)) this.#snapshots.markDue(actor);
    return true;
  }

  #answer(actor: Actor<State, Message>, envelope: AskEnvelope<State>): void {
    if (!envelope.claim()) {
      return;
    }

    let result: unknown;
    try {
      result = envelope.query(actor.hasState ? actor.state : undefined);
    } catch (error) {
      envelope.reject(error);
      return;
    }
    envelope.resolve(result);
  }

  #moveToDeadLetters(actor: Actor<State, Message>, envelope: TellEnvelope<Message>): void {
    this.#logger.error(
      { err: envelope.lastError, key: actor.key, attempts: envelope.failures },
      'message failed every attempt; moving it to dead letters',
    );

    notifyApplied(envelope, true, actor.key, this.#logger);
    this.#deadLetters.write(actor.key, envelope, envelope.lastError, envelope.failures);
  }

  /** Reschedules the actor after a turn, a load or a restart, or removes it when it never got state. */
  #afterTurn(actor: Actor<State, Message>): void {
    this.#notifyWritable(actor);

    if (actor.status !== 'ready' || actor.journalFull) {
      return;
    }

    if (actor.mailbox.length > 0) {
      this.#schedule(actor);
    } else if (!actor.hasState) {
      // An ask on a key without a snapshot must not leave an actor behind.
      this.#remove(actor, false);
    }
  }

  #notifyWritable(actor: Actor<State, Message>): void {
    const waiters = actor.writableWaiters;
    if (waiters === undefined || actor.mailbox.length >= this.#options.mailboxCapacity) {
      return;
    }

    actor.writableWaiters = undefined;
    for (const resolve of waiters) {
      resolve();
    }
  }

  /** Rejects the actor's queued asks with the load error; returns whether loading should be retried. */
  #onLoadFailed(actor: Actor<State, Message>, error: unknown): boolean {
    for (const envelope of actor.mailbox.drain()) {
      if (envelope.kind === 'ask') {
        this.#queued--;
        envelope.fail(error);
      } else {
        actor.mailbox.push(envelope);
      }
    }
    this.#notifyWritable(actor);

    if (actor.status === 'loading' && !actor.hasState && actor.mailbox.length === 0) {
      this.#remove(actor, false);
      return false;
    }
    return true;
  }

  #afterPersist(actors: Array<Actor<State, Message>>): void {
    for (const actor of actors) {
      if (actor.journalFull && actor.journal.length < this.#options.maxJournalMessages) {
        actor.journalFull = false;
        this.#schedule(actor);
      }

      this.#actors.passivateIfPending(actor);
    }

    this.#progress.check();
  }

  #remove(actor: Actor<State, Message>, countAsPassivation: boolean): void {
    this.#supervisor.forget(actor);
    this.#actors.remove(actor, countAsPassivation);
  }

  /** Removes every resident actor and returns how many there were. */
  #removeAll(countAsPassivations: boolean): number {
    const actors = [...this.#actors.values()];
    for (const actor of actors) {
      this.#remove(actor, countAsPassivations);
    }
    return actors.length;
  }

  /** Gives up the final persist of a drain: later outcomes of writes in flight are ignored. */
  #abandonFlush(flushTimeoutMs: number): void {
    const unpersistedActors = this.#snapshots.dirtyActors;
    const pendingDeadLetters = this.#deadLetters.pending;
    this.#snapshots.stop();
    this.#deadLetters.stop();
    this.#logger.error(
      { flushTimeoutMs, unpersistedActors, pendingDeadLetters },
      'drain stopped before every snapshot and dead letter was written; the messages they cover are not durable',
    );
  }

  /** Drops every queued entry after a drain timeout; asks are rejected. */
  #halt(timeoutMs: number | undefined): void {
    this.#halted = true;

    const dropped = this.#dropMailboxes(new InvalidStateError(COMPONENT, 'draining', 'run a query'));
    this.#logger.warn({ ...dropped, timeoutMs }, 'drain timed out; dropped queued messages and persisting what was applied');
  }

  #dropMailboxes(askError: Error): { messages: number; asks: number } {
    let messages = 0;
    let asks = 0;

    for (const actor of this.#actors.values()) {
      for (const envelope of actor.mailbox.drain()) {
        if (envelope.kind === 'ask') {
          envelope.fail(askError);
          asks++;
        } else {
          messages++;
        }
      }
    }

    this.#queued = 0;
    return { messages, asks };
  }

  #releaseWritableWaiters(): void {
    for (const actor of this.#actors.values()) {
      const waiters = actor.writableWaiters ?? [];
      actor.writableWaiters = undefined;

      for (const resolve of waiters) {
        resolve();
      }
    }
  }

  #stopTimers(): void {
    this.#actors.stop();
    this.#snapshots.stop();
    this.#deadLetters.stop();
  }
}
