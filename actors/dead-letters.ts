import type { Logger } from '../common/logger.js';
import { notifyDurable, type TellEnvelope } from './actor.js';
import { nextRetryDelay } from './retry.js';
import type { ActorBehavior } from './types.js';

/**
 * Stores dead letters through `behavior.deadLetter`, retrying failed writes with backoff
 * so that no message is lost, and calls each message's onDurable once it is stored.
 */
export class DeadLetterWriter<Message> {
  readonly #behavior: Pick<ActorBehavior<unknown, Message>, 'deadLetter'>;
  readonly #logger: Logger;
  readonly #onStored: () => void;
  #stopped = false;

  /** Messages moved to dead letters, stored or not. */
  count = 0;
  /** Dead letters not stored yet. */
  pending = 0;

  constructor(behavior: Pick<ActorBehavior<unknown, Message>, 'deadLetter'>, logger: Logger, onStored: () => void) {
    this.#behavior = behavior;
    this.#logger = logger;
    this.#onStored = onStored;
  }

  /** Starts storing a message that failed `attempts` times with `error`. */
  write(key: string, envelope: TellEnvelope<Message>, error: unknown, attempts: number): void {
    this.count++;
    this.pending++;
    this.#attempt(key, envelope, error, attempts, 0);
  }

  /** Stops retrying. Writes that settle later are ignored. */
  stop(): void {
    this.#stopped = true;
  }

  #attempt(key: string, envelope: TellEnvelope<Message>, error: unknown, attempts: number, retryDelayMs: number): void {
    const store = (): Promise<void> => this.#behavior.deadLetter(key, envelope.message, error, attempts);

    Promise.resolve()
      .then(store)
      .then(
        () => this.#stored(key, envelope),
        (failure: unknown) => this.#retry(key, envelope, error, attempts, retryDelayMs, failure),
      );
  }

  #stored(key: string, envelope: TellEnvelope<Message>): void {
    if (this.#stopped) {
      return;
    }

    this.pending--;
    notifyDurable(envelope, key, this.#logger);
    this.#onStored();
  }

  #retry(key: string, envelope: TellEnvelope<Message>, error: unknown, attempts: number, previousDelayMs: number, failure: unknown): void {
    if (this.#stopped) {
      return;
    }

    const delay = nextRetryDelay(previousDelayMs);
    this.#logger.error({ err: failure, key, retryInMs: delay }, 'storing a dead letter failed; retrying');

    const timer = setTimeout(() => {
      if (!this.#stopped) {
        this.#attempt(key, envelope, error, attempts, delay);
      }
    }, delay);
    timer.unref();
  }
}
