/**
 * The contract between the generic actor runtime and the code that gives actors meaning.
 * The runtime knows keys, messages and opaque state; it knows nothing of customers.
 */

/**
 * What a message's sender learns about it, each callback called at most once per message.
 * The message is passed back, so one callbacks object can serve every message of a sender.
 */
export interface DeliveryCallbacks<Message = any> {
  /** The message was handled, or moved to dead letters after its last failed attempt. */
  onApplied?(outcome: { deadLettered: boolean }, message: Message): void;
  /** A persisted snapshot now includes the effect of this message (or it was dead-lettered). */
  onDurable?(message: Message): void;
}

export interface ActorBehavior<State, Message> {
  /**
   * Loads an actor's state from its last persisted snapshot, or returns undefined when it
   * has none. Called on activation and on restart after a handler threw.
   */
  load(key: string): Promise<State | undefined>;

  /** The state of an actor that has no snapshot yet. */
  create(key: string): State;

  /**
   * Applies one message to the state, synchronously. It may mutate `state` and return it,
   * or return a new object. A throw restarts the actor from its last good state.
   */
  handle(state: State, message: Message, key: string): State;

  /**
   * Persists the snapshots of many actors in one write. It must copy or serialize each
   * state before it returns, because the runtime goes on applying messages to the same
   * objects while the write is in flight. The runtime sizes batches by the time this call
   * takes before it returns.
   */
  persist(snapshots: Array<{ key: string; state: State }>): Promise<void>;

  /**
   * Returns whether the state should be persisted in the next batch rather than after the
   * snapshot interval, because of the message just applied. Optional; the default waits.
   */
  persistSoon?(state: State, message: Message): boolean;

  /** Stores a message that failed `attempts` times, with its last error. */
  deadLetter(key: string, message: Message, error: unknown, attempts: number): Promise<void>;
}

export interface ActorSystemOptions {
  /** Messages queued per actor before `tell` returns false. Default 1,000. */
  mailboxCapacity?: number;
  /** Actors kept in memory; above it the least recently used idle ones are passivated. Default 100,000. */
  maxResidentActors?: number;
  /** An actor idle this long is passivated. Default 300,000 (5 minutes). */
  idleTimeoutMs?: number;
  /** A dirty actor is snapshotted after this many applied messages. Default 100. */
  snapshotEveryMessages?: number;
  /** A dirty actor is snapshotted at most this long after its first unsnapshotted message. Default 1,000. */
  snapshotIntervalMs?: number;
  /**
   * Snapshots written together in one `persist` call, at most. Default 500. Outside a drain,
   * a batch is smaller when preparing that many snapshots would keep the persist call on the
   * main thread for more than about 5 ms, but it takes at least a quarter of the due actors.
   */
  maxPersistBatch?: number;
  /** Attempts of one message before it goes to dead letters. Default 3. */
  maxAttempts?: number;
  /**
   * Applied messages an actor may hold that no persisted snapshot covers yet. At the limit
   * the actor stops taking messages until a persist succeeds, so memory stays bounded
   * while the store fails. Default 10,000, or snapshotEveryMessages when that is larger.
   */
  maxJournalMessages?: number;
}
