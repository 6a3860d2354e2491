/**
 * A webhook destination's durable state in the node's RocksDB: its cursor (the activation
 * sequence it has delivered up to) and its dead letters (batches it gave up on).
 */
import { decode, encode } from '../../storage/codec.js';
import { keys, prefixEnd } from '../../storage/keys.js';
import type { Store } from '../../storage/store.js';
import type { WebhookActivation } from './webhook-payload.js';

/** A batch that failed `attempts` times, or once with a status that a retry cannot change. */
export interface WebhookDeadLetter {
  /** Format version of the record. */
  version: 1;
  destination: string;
  workspace: string;
  firstSequence: number;
  lastSequence: number;
  /** The activations of the batch as the requests carried them. */
  activations: WebhookActivation[];
  attempts: number;
  /** HTTP status of the last attempt; absent after a network error or a timeout. */
  status?: number;
  /** The failure of the last attempt, such as `received HTTP 400: …`. */
  error: string;
  /** When delivery gave up, ms since the epoch. */
  failedAtMs: number;
}

export class DeliveryState {
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
