import type { Actor } from './actor.js';
import type { ResolvedOptions } from './options.js';

/** Least recently used actors one activation inspects when the resident limit is exceeded. */
const EVICTION_SCAN_LIMIT = 1_000;

/**
 * The resident actors and their passivation. The map is kept in least recently used
 * order (a touch deletes and re-inserts), so both the idle sweep and the eviction above
 * maxResidentActors walk it from the oldest entry. Only ready actors with empty mailboxes
 * leave; a dirty one is persisted first and leaves when `afterPersist` finds it clean.
 */
export class ResidentActors<State, Message> {
  readonly #actors = new Map<string, Actor<State, Message>>();
  readonly #options: ResolvedOptions;
  /** Asks the snapshot writer to persist a dirty actor that should leave memory. */
  readonly #persistSoon: (actor: Actor<State, Message>) => void;
  #lastTouched: Actor<State, Message> | undefined = undefined;
  #idleTimer: NodeJS.Timeout | undefined = undefined;
  #pendingPassivations = 0;
  #stopped = false;

  /** Actors with state that left memory. */
  passivations = 0;

  constructor(options: ResolvedOptions, persistSoon: (actor: Actor<State, Message>) => void) {
    this.#options = options;
    this.#persistSoon = persistSoon;
  }

  get size(): number {
    return this.#actors.size;
  }

  get(key: string): Actor<State, Message> | undefined {
    return this.#actors.get(key);
  }

  values(): IterableIterator<Actor<State, Message>> {
    return this.#actors.values();
  }

  /** Adds a new actor as the most recently used one, evicting others above the limit. */
  add(actor: Actor<State, Message>): void {
    this.#actors.set(actor.key, actor);
    this.#lastTouched = actor;
    this.#armIdleTimer(this.#options.idleTimeoutMs);
    this.#enforceLimit();
  }

  /** Marks the actor used at `now` (performance.now()). */
  touch(actor: Actor<State, Message>, now: number): void {
    actor.lastActive = now;

    // Most touches hit the actor touched last, which is already at the end of the map.
    if (this.#lastTouched !== actor) {
      this.#actors.delete(actor.key);
      this.#actors.set(actor.key, actor);
      this.#lastTouched = actor;
    }
  }

  /** Removes the actor from memory; it counts as a passivation when it had state. */
  remove(actor: Actor<State, Message>, countAsPassivation: boolean): void {
    if (actor.passivationPending) {
      this.cancelPassivation(actor);
    }

    if (actor.hasState && countAsPassivation) {
      this.passivations++;
    }

    actor.status = 'removed';
    this.#actors.delete(actor.key);

    if (this.#lastTouched === actor) {
      this.#lastTouched = undefined;
    }
  }

  /** Called when a message arrives for an actor waiting to be passivated. */
  cancelPassivation(actor: Actor<State, Message>): void {
    actor.passivationPending = false;
    this.#pendingPassivations--;
  }

  /** Passivates the actor if it was waiting for its persist and is clean and idle now. */
  passivateIfPending(actor: Actor<State, Message>): void {
    if (actor.passivationPending && this.#canPassivateNow(actor)) {
      this.remove(actor, true);
    }
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  #armIdleTimer(delayMs: number): void {
    // The armed timer is never later than the new delay, because entries later in the map were used later.
    if (this.#idleTimer !== undefined || this.#stopped) {
      return;
    }

    this.#idleTimer = setTimeout(this.#passivateIdle, delayMs);
    this.#idleTimer.unref();
  }

  /** Passivates actors idle for idleTimeoutMs, oldest first, and re-arms for the next one. */
  readonly #passivateIdle = (): void => {
    this.#idleTimer = undefined;
    const now = performance.now();

    for (const actor of this.#actors.values()) {
      const idleUntil = actor.lastActive + this.#options.idleTimeoutMs;
      if (idleUntil > now) {
        this.#armIdleTimer(idleUntil - now);
        return;
      }
      this.#requestPassivation(actor);
    }

    // Only busy or still-persisting actors remain, so look at them again one period later.
    if (this.#actors.size > 0) {
      this.#armIdleTimer(this.#options.idleTimeoutMs);
    }
  };

  #enforceLimit(): void {
    let excess = this.#actors.size - this.#pendingPassivations - this.#options.maxResidentActors;
    let scanned = 0;

    for (const actor of this.#actors.values()) {
      if (excess <= 0 || scanned >= EVICTION_SCAN_LIMIT) {
        return;
      }

      scanned++;
      if (this.#requestPassivation(actor)) {
        excess--;
      }
    }
    // NOTE: when every scanned actor is busy, the system stays above maxResidentActors until a later activation or idle sweep.
  }

  /**
   * Passivates an idle actor now when it is clean, or persists it first when it is dirty.
   * Returns false when it cannot leave memory (busy, or messages waiting) or was already
   * waiting for its persist.
   */
  #requestPassivation(actor: Actor<State, Message>): boolean {
    if (actor.status !== 'ready' || actor.mailbox.length > 0 || actor.passivationPending) {
      return false;
    }

    if (this.#canPassivateNow(actor)) {
      this.remove(actor, true);
      return true;
    }

    actor.passivationPending = true;
    this.#pendingPassivations++;
    this.#persistSoon(actor);
    return true;
  }

  #canPassivateNow(actor: Actor<State, Message>): boolean {
    return actor.status === 'ready' && actor.mailbox.length === 0 && actor.journal.length === 0 && !actor.persisting;
  }
}
