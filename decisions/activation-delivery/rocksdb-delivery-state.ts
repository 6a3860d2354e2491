/** A webhook destination's cursor and dead letters in an embedded node's RocksDB. */
import { decode, encode } from '../../storage/codec.js';
import { keys, prefixEnd } from '../../storage/keys.js';
import type { Store } from '../../storage/store.js';
import type { DeliveryState, WebhookDeadLetter } from './delivery-state.js';

export class RocksDbDeliveryState implements DeliveryState {
  readonly #store: Store;
  readonly #workspace: string;
  readonly #destination: string;

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

  #cursorOp(afterSequence: number) {
    return { type: 'put' as const, key: keys.webhookCursor(this.#workspace, this.#destination), value: String(afterSequence) };
  }
}
