/** A webhook destination's cursor and dead letters in an embedded node's RocksDB. */
import { decode, encode } from '../../storage/codec.js';
import { keys, prefixEnd } from '../../storage/keys.js';
import type { Store } from '../../storage/store.js';
import { deadLetterNotFound, missingSequences, selectDeadLetters, type DeliveryState, type FailedAttemptsRecord, type ReplaySelection, type WebhookDeadLetter } from './delivery-state.js';

export class RocksDbDeliveryState implements DeliveryState {
  readonly #store: Store;
  readonly #workspace: string;
  readonly #destination: string;
  /** The last dead-letter read-modify-write, so that a replay request and the delivery loop never interleave theirs. */
  #deadLetterUpdates: Promise<unknown> = Promise.resolve();
  /** False once a list found no queued replay, until the next replay request; this node is the only writer. */
  #mayHaveQueuedReplays = true;
  /** Replay requests so far, so that a list that read before a request does not clear the flag it set. */
  #replayRequests = 0;

  constructor(store: Store, workspace: string, destination: string) {
    this.#store = store;
    this.#workspace = workspace;
    this.#destination = destination;
  }

  /** Returns the sequence delivered up to, 0 for a destination that has delivered nothing. */
  async readCursor(): Promise<number> {
    const stored = await this.#store.get(keys.webhookCursor(this.#workspace, this.#destination));
    return stored === null ? 0 : Number(stored.toString());
  }

  /** Returns the stored cursor; a node's RocksDB has a single writer, so there is nothing to claim. */
  async claimCursor(): Promise<number> {
    return this.readCursor();
  }

  /**
   * Stores the cursor. The write is in RocksDB's WAL when this resolves, so it survives a
   * process crash. It is not fsynced, so a power loss may lose it, and then the batch is
   * delivered again.
   */
  async writeCursor(afterSequence: number): Promise<void> {
    await this.#store.write([this.#cursorOp(afterSequence)]);
  }

  async readAttempts(firstSequence: number): Promise<number> {
    const stored = await this.#store.get(keys.webhookAttempts(this.#workspace, this.#destination));
    if (stored === null) return 0;
    const record = decode<FailedAttemptsRecord>(stored);
    return record.firstSequence === firstSequence ? record.attempts : 0;
  }

  async writeAttempts(firstSequence: number, attempts: number): Promise<void> {
    const record: FailedAttemptsRecord = { version: 1, firstSequence, attempts };
    await this.#store.write([{ type: 'put', key: keys.webhookAttempts(this.#workspace, this.#destination), value: encode(record) }]);
  }

  /** Stores a dead letter and moves the cursor past it in one atomic write. */
  async writeDeadLetter(deadLetter: WebhookDeadLetter, afterSequence: number): Promise<void> {
    const key = keys.webhookDeadLetter(this.#workspace, this.#destination, deadLetter.firstSequence);
    await this.#store.write([{ type: 'put', key, value: encode(deadLetter) }, this.#cursorOp(afterSequence)]);
  }

  /** Returns the destination's dead letters whose first sequence is after `afterSequence`, oldest batch first. */
  async listDeadLetters(limit = 100, afterSequence = 0): Promise<WebhookDeadLetter[]> {
    const prefix = keys.webhookDeadLetterPrefix(this.#workspace, this.#destination);
    const start = keys.webhookDeadLetter(this.#workspace, this.#destination, afterSequence + 1);
    const entries = await this.#store.list({ gte: start, lt: prefixEnd(prefix), limit });
    return entries.map((entry) => decode<WebhookDeadLetter>(entry.value));
  }

  async queueReplays(selection: ReplaySelection, nowMs: number): Promise<number> {
    return this.#exclusive(async () => {
      const deadLetters = await this.#listAll();
      const missing = missingSequences(selection, deadLetters);
      if (missing.length > 0) throw deadLetterNotFound(this.#destination, missing);

      const chosen = selectDeadLetters(selection, deadLetters);
      await this.#store.write(chosen.map((deadLetter) => this.#deadLetterOp({ ...deadLetter, replayQueuedAtMs: deadLetter.replayQueuedAtMs ?? nowMs })));
      this.#replayRequests += 1;
      this.#mayHaveQueuedReplays = true;
      return chosen.length;
    });
  }

  async listQueuedReplays(limit: number): Promise<WebhookDeadLetter[]> {
    if (!this.#mayHaveQueuedReplays) return [];

    const requestsBefore = this.#replayRequests;
    const queued = (await this.#listAll()).filter((deadLetter) => deadLetter.replayQueuedAtMs !== undefined).slice(0, limit);
    if (queued.length === 0 && this.#replayRequests === requestsBefore) this.#mayHaveQueuedReplays = false;
    return queued;
  }

  async deleteDeadLetter(firstSequence: number): Promise<void> {
    await this.#exclusive(() => this.#store.write([{ type: 'del', key: keys.webhookDeadLetter(this.#workspace, this.#destination, firstSequence) }]));
  }

  async writeFailedReplay(deadLetter: WebhookDeadLetter): Promise<void> {
    const { replayQueuedAtMs: _queued, ...failed } = deadLetter;
    await this.#exclusive(() => this.#store.write([this.#deadLetterOp(failed)]));
  }

  /** Reads every dead letter of the destination, oldest batch first. */
  async #listAll(): Promise<WebhookDeadLetter[]> {
    const prefix = keys.webhookDeadLetterPrefix(this.#workspace, this.#destination);
    const entries = await this.#store.list({ gte: prefix, lt: prefixEnd(prefix) });
    return entries.map((entry) => decode<WebhookDeadLetter>(entry.value));
  }

  #exclusive<T>(update: () => Promise<T>): Promise<T> {
    const result = this.#deadLetterUpdates.then(update);
    this.#deadLetterUpdates = result.catch(() => undefined);
    return result;
  }

  #deadLetterOp(deadLetter: WebhookDeadLetter) {
    return { type: 'put' as const, key: keys.webhookDeadLetter(this.#workspace, this.#destination, deadLetter.firstSequence), value: encode(deadLetter) };
  }

  #cursorOp(afterSequence: number) {
    return { type: 'put' as const, key: keys.webhookCursor(this.#workspace, this.#destination), value: String(afterSequence) };
  }
}
