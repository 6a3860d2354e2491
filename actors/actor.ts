import type { Logger } from '../common/logger.js';
import { RingQueue } from './ring-queue.js';
import type { DeliveryCallbacks } from './types.js';

/**
 * Lifecycle stage of one actor. A `loading` or `restarting` actor waits for
 * `behavior.load` and takes no messages. A `removed` actor has left the system, and late
 * callbacks for it are ignored.
 */
export type ActorStatus = 'loading' | 'ready' | 'restarting' | 'removed';

/** Whether an actor with unpersisted messages waits for the snapshot interval or is due now. */
export type PersistSchedule = 'none' | 'waiting' | 'due';

const APPLIED = Object.freeze({ deadLettered: false });
const DEAD_LETTERED = Object.freeze({ deadLettered: true });

/** A message passed to `tell`, with its delivery state. */
export class TellEnvelope<Message> {
  readonly kind = 'tell';
  /** Failed `handle` calls so far. */
  failures = 0;
  lastError: unknown = undefined;
  /** performance.now() of the run-loop turn that applied the message. */
  appliedAt = 0;
  /** Set once a persisted snapshot or a stored dead letter covers the message. */
  durable = false;

  constructor(
    readonly message: Message,
    readonly callbacks: DeliveryCallbacks | undefined,
  ) {}
}

/** A query waiting in a mailbox behind the messages sent before it. */
export class AskEnvelope<State> {
  readonly kind = 'ask';
  /** Set when the ask is resolved, rejected or aborted, so that it settles once. */
  settled = false;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort: (() => void) | undefined;

  constructor(
    readonly query: (state: State | undefined) => unknown,
    readonly resolve: (value: unknown) => void,
    readonly reject: (error: unknown) => void,
    signal: AbortSignal | undefined,
    abortError: () => Error,
  ) {
    this.#signal = signal;

    if (signal !== undefined) {
      this.#onAbort = () => this.fail(abortError());
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** Marks the ask settled and returns whether it was still open. */
  claim(): boolean {
    if (this.settled) {
      return false;
    }

    this.settled = true;

    if (this.#onAbort !== undefined) {
      this.#signal?.removeEventListener('abort', this.#onAbort);
    }
    return true;
  }

  fail(error: unknown): void {
    if (this.claim()) {
      this.reject(error);
    }
  }
}

export type Envelope<State, Message> = TellEnvelope<Message> | AskEnvelope<State>;

/** One resident actor: its state, mailbox, journal and scheduling flags. */
export class Actor<State, Message> {
  status: ActorStatus = 'loading';
  state: State | undefined = undefined;
  /** False until a snapshot was loaded or `create` ran, which is how asks see `undefined`. */
  hasState = false;
  readonly mailbox = new RingQueue<Envelope<State, Message>>();
  /** Applied messages that no persisted snapshot covers yet, oldest first. */
  journal: Array<TellEnvelope<Message>> = [];
  /** Whether the actor is in the run queue. */
  scheduled = false;
  /** performance.now() of the last time the actor took messages or was activated. */
  lastActive: number;
  persistSchedule: PersistSchedule = 'none';
  /** performance.now() when the oldest message of the journal was applied. */
  dirtySince = 0;
  persisting = false;
  /** Set when the actor was marked due while a persist of it was in flight: the next persist starts as soon as that one settles. */
  dueAfterPersist = false;
  /** Journal entries that the in-flight snapshot covers. */
  persistCovered = 0;
  /** The newest message a pending `flush` waits for. */
  flushUntil: TellEnvelope<Message> | undefined = undefined;
  /** Set when the actor should leave memory as soon as its snapshot is persisted. */
  passivationPending = false;
  /** Set when the journal reached maxJournalMessages, which pauses the mailbox. */
  journalFull = false;
  loadRetryDelayMs = 0;
  writableWaiters: Array<() => void> | undefined = undefined;

  constructor(
    readonly key: string,
    now: number,
  ) {
    this.lastActive = now;
  }
}

/** Calls onApplied, logging a throw so one sender's bug cannot stop the run loop. */
export function notifyApplied(envelope: TellEnvelope<unknown>, deadLettered: boolean, key: string, logger: Logger): void {
  const callbacks = envelope.callbacks;
  if (callbacks?.onApplied === undefined) {
    return;
  }

  try {
    callbacks.onApplied(deadLettered ? DEAD_LETTERED : APPLIED, envelope.message);
  } catch (error) {
    logger.error({ err: error, key }, 'onApplied callback threw');
  }
}

/** Marks the message durable and calls onDurable, logging a throw. */
export function notifyDurable(envelope: TellEnvelope<unknown>, key: string, logger: Logger): void {
  envelope.durable = true;

  const callbacks = envelope.callbacks;
  if (callbacks?.onDurable === undefined) {
    return;
  }

  try {
    callbacks.onDurable(envelope.message);
  } catch (error) {
    logger.error({ err: error, key }, 'onDurable callback threw');
  }
}
