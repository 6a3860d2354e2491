import type { Logger } from '../common/logger.js';
import type { Actor } from './actor.js';
import type { DeadLetterWriter } from './dead-letters.js';
import type { ResolvedOptions } from './options.js';
import { nextRetryDelay } from './retry.js';
import type { SnapshotWriter } from './snapshots.js';
import type { ActorBehavior } from './types.js';

/** Callbacks from the supervisor into the actor system. */
export interface SupervisorHooks<State, Message> {
  /** The actor finished loading or restarting and may take messages again. */
  ready(actor: Actor<State, Message>): void;
  /** Handles a failed `load` and returns whether to retry, which is false when nothing waits for the actor. */
  loadFailed(actor: Actor<State, Message>, error: unknown): boolean;
  /** Something that flush or drain may wait for has changed. */
  progress(): void;
  isStopped(): boolean;
}

/**
 * Brings actors into a usable state: activation through `load` (or `create` on the first
 * message), and restart after `handle` threw, which reloads the last snapshot and
 * re-applies the journal, the messages applied since that snapshot was persisted.
 */
export class Supervisor<State, Message> {
  readonly #behavior: ActorBehavior<State, Message>;
  readonly #options: ResolvedOptions;
  readonly #logger: Logger;
  readonly #snapshots: SnapshotWriter<State, Message>;
  readonly #deadLetters: DeadLetterWriter<Message>;
  readonly #hooks: SupervisorHooks<State, Message>;

  /** Actors in `loading` or `restarting`. */
  busy = 0;
  restarting = 0;
  activations = 0;
  restarts = 0;

  constructor(
    behavior: ActorBehavior<State, Message>,
    options: ResolvedOptions,
    logger: Logger,
    snapshots: SnapshotWriter<State, Message>,
    deadLetters: DeadLetterWriter<Message>,
    hooks: SupervisorHooks<State, Message>,
  ) {
    this.#behavior = behavior;
    this.#options = options;
    this.#logger = logger;
    this.#snapshots = snapshots;
    this.#deadLetters = deadLetters;
    this.#hooks = hooks;
  }

  /** Loads a new actor's snapshot, then calls `ready` whether or not one was found. */
  activate(actor: Actor<State, Message>): void {
    this.busy++;
    this.#load(actor, (loaded) => this.#finishActivation(actor, loaded));
  }

  /** Gives an actor without a snapshot its initial state. Throws what `create` throws. */
  create(actor: Actor<State, Message>): void {
    this.#giveState(actor, this.#behavior.create(actor.key));
  }

  /** Rebuilds the actor from its last snapshot plus journal after `handle` threw. */
  restart(actor: Actor<State, Message>, error: unknown, attempt: number): void {
    this.restarts++;
    this.#logger.error(
      { err: error, key: actor.key, attempt, maxAttempts: this.#options.maxAttempts, journaled: actor.journal.length },
      'actor message handler threw; restarting the actor from its last snapshot',
    );

    if (actor.status === 'ready') {
      actor.status = 'restarting';
      this.busy++;
      this.restarting++;
    }

    this.#load(actor, (loaded) => this.#finishRestart(actor, loaded));
  }

  /** Updates the counters for an actor that leaves memory while loading or restarting. */
  forget(actor: Actor<State, Message>): void {
    if (actor.status === 'loading' || actor.status === 'restarting') {
      this.busy--;
    }
    if (actor.status === 'restarting') {
      this.restarting--;
    }
  }

  #finishActivation(actor: Actor<State, Message>, loaded: State | undefined): void {
    if (loaded !== undefined) {
      this.#giveState(actor, loaded);
    }

    actor.status = 'ready';
    this.busy--;
    this.#hooks.ready(actor);
  }

  #giveState(actor: Actor<State, Message>, state: State): void {
    actor.state = state;
    actor.hasState = true;
    this.activations++;
  }

  #finishRestart(actor: Actor<State, Message>, loaded: State | undefined): void {
    actor.state = loaded !== undefined ? loaded : this.#behavior.create(actor.key);
    actor.hasState = true;

    if (!this.#replayJournal(actor)) {
      return;
    }

    actor.status = 'ready';
    this.busy--;
    this.restarting--;
    // The actor may have become due while it could not be snapshotted.
    this.#snapshots.requestWrite();
    this.#hooks.ready(actor);
  }

  /**
   * Re-applies the journal to the reloaded state. A message that throws now, although it
   * was applied before, is moved to dead letters and the actor restarts once more, because
   * the throw may have left the state half-updated. Returns false in that case.
   */
  #replayJournal(actor: Actor<State, Message>): boolean {
    const journal = actor.journal;

    for (let index = 0; index < journal.length; index++) {
      const envelope = journal[index];

      try {
        actor.state = this.#behavior.handle(actor.state as State, envelope.message, actor.key);
      } catch (error) {
        journal.splice(index, 1);
        if (journal.length === 0) {
          this.#snapshots.journalEmptied(actor);
        }

        // Its onApplied was called when it was first applied, so only onDurable is left.
        this.#logger.error({ err: error, key: actor.key }, 'replaying a journaled message threw; moving it to dead letters');
        this.#deadLetters.write(actor.key, envelope, error, envelope.failures + 1);
        this.restart(actor, error, envelope.failures + 1);
        return false;
      }
    }

    return true;
  }

  /**
   * Calls `behavior.load`, but only after any persist of the key that is still in flight
   * has settled, so it never reads a snapshot older than the one being written. A failed
   * load, or a throw while rebuilding the state, is retried with backoff.
   */
  #load(actor: Actor<State, Message>, onLoaded: (state: State | undefined) => void): void {
    const pending = this.#snapshots.persistInFlight(actor.key);
    const load = (): Promise<State | undefined> => this.#behavior.load(actor.key);
    const loading = pending === undefined ? Promise.resolve().then(load) : pending.then(load);

    loading
      .then((state) => {
        if (this.#isGone(actor)) {
          return;
        }
        actor.loadRetryDelayMs = 0;
        onLoaded(state);
      })
      .catch((error: unknown) => this.#retryLoad(actor, onLoaded, error))
      .finally(() => this.#hooks.progress());
  }

  #retryLoad(actor: Actor<State, Message>, onLoaded: (state: State | undefined) => void, error: unknown): void {
    if (this.#isGone(actor)) {
      return;
    }

    const status = actor.status;
    if (!this.#hooks.loadFailed(actor, error)) {
      this.#logger.error({ err: error, key: actor.key, status }, 'loading actor state failed; no message waits for it, so it is not retried');
      return;
    }

    actor.loadRetryDelayMs = nextRetryDelay(actor.loadRetryDelayMs);
    this.#logger.error(
      { err: error, key: actor.key, status, retryInMs: actor.loadRetryDelayMs },
      'loading or rebuilding actor state failed; retrying',
    );

    const timer = setTimeout(() => {
      if (!this.#isGone(actor)) {
        this.#load(actor, onLoaded);
      }
    }, actor.loadRetryDelayMs);
    timer.unref();
  }

  #isGone(actor: Actor<State, Message>): boolean {
    return actor.status === 'removed' || this.#hooks.isStopped();
  }
}
