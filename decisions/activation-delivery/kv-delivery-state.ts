/**
 * A webhook destination's cursor and dead letters in the cluster's KV bucket, which every
 * node reads, so whichever node delivers the destination resumes after the same cursor.
 *
 * Every cursor write is a compare-and-set on the revision that this node last read or
 * wrote. A node that claimed the cursor (claimCursor) thereby makes the cursor writes of
 * the node that delivered before it fail with KvConflictError, even when that node has not
 * noticed yet that it lost the delivery lease.
 *
 * The bucket has no multi-key transaction on nats-server 2.9, so a dead letter is written
 * first and the cursor after it. A crash between the two writes leaves the dead letter and
 * the old cursor, and the next delivery sends the batch again: delivery stays at least
 * once, with the same activation ids.
 *
 * A replay request marks the chosen dead letters as queued and then rewrites the
 * `replay-request` key. The delivering node reads that one key before each batch and lists
 * the dead letters only when its revision changed since the last list that found nothing
 * queued.
 */
import { InvalidStateError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { KvConflictError, type KvStore } from '../../storage/kv-store.js';
import { deadLetterNotFound, missingSequences, selectDeadLetters, type DeliveryState, type FailedAttemptsRecord, type ReplaySelection, type WebhookDeadLetter } from './delivery-state.js';
import { webhookKeys } from './webhook-kv-keys.js';

/** The value of a `cursor.<workspace>.<destination>` key, as JSON. */
export interface KvCursorRecord {
  /** Format version of the record. */
  version: 1;
  /** The sequence delivered (or dead-lettered) up to. */
  afterSequence: number;
  /** Node id of the node that wrote the record. */
  nodeId: string;
}

/** Attempts of a replay request whose compare-and-set writes met concurrent changes. */
const QUEUE_ATTEMPTS = 3;

interface StoredDeadLetter {
  key: string;
  revision: number;
  deadLetter: WebhookDeadLetter;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export class KvDeliveryState implements DeliveryState {
  readonly #kv: KvStore;
  readonly #workspace: string;
  readonly #destination: string;
  readonly #nodeId: string;
  readonly #logger: Logger;
  readonly #cursorKey: string;
  /** Revision of the cursor key as this node last claimed or wrote it; null before the first claim. */
  #cursorRevision: number | null = null;
  /** Revision of the replay-request key at the last list that found no queued replay. */
  #replaysDoneAtRevision: number | null = null;
  /** Revisions of the dead letters that listQueuedReplays returned last, by first sequence. */
  readonly #queuedRevisions = new Map<number, number>();

  readonly #initialCursor: () => Promise<number>;

  /**
   * `initialCursor` returns the cursor to start from when the bucket has none for the
   * destination, such as the cursor a node kept in its own RocksDB before cursors were
   * shared. Default: 0, the oldest retained activation.
   */
  constructor(kv: KvStore, options: { workspace: string; destination: string; nodeId: string; logger: Logger; initialCursor?: () => Promise<number> }) {
    this.#kv = kv;
    this.#workspace = options.workspace;
    this.#destination = options.destination;
    this.#nodeId = options.nodeId;
    this.#logger = options.logger;
    this.#initialCursor = options.initialCursor ?? (async () => 0);
    this.#cursorKey = webhookKeys.cursor(options.workspace, options.destination);
  }

  async readCursor(): Promise<number> {
    const entry = await this.#kv.get(this.#cursorKey);
    return entry === null ? 0 : this.#decodeCursor(entry.value).afterSequence;
  }

  async claimCursor(): Promise<number> {
    this.#cursorRevision = null;
    const entry = await this.#kv.get(this.#cursorKey);
    const afterSequence = entry === null ? await this.#initialCursor() : this.#decodeCursor(entry.value).afterSequence;

    const value = this.#encodeCursor(afterSequence);
    this.#cursorRevision = entry === null ? await this.#kv.create(this.#cursorKey, value) : await this.#kv.update(this.#cursorKey, value, entry.revision);
    return afterSequence;
  }

  async writeCursor(afterSequence: number): Promise<void> {
    if (this.#cursorRevision === null) throw new InvalidStateError('webhook delivery state', 'unclaimed', 'write the cursor');
    this.#cursorRevision = await this.#kv.update(this.#cursorKey, this.#encodeCursor(afterSequence), this.#cursorRevision);
  }

  /**
   * Writes the dead letter, then the cursor. When the cursor write conflicts, the node that
   * claimed the cursor delivers the batch itself. The key then gets back the value it had
   * before this write, such as that node's dead letter of the same first sequence, or is
   * deleted when it had none. A key rewritten meanwhile keeps the newer value.
   */
  async writeDeadLetter(deadLetter: WebhookDeadLetter, afterSequence: number): Promise<void> {
    const key = webhookKeys.deadLetter(this.#workspace, this.#destination, deadLetter.firstSequence);
    // NOTE: a dead letter that the new holder writes between this read and the put below is
    // still overwritten and then deleted. The window is one KV round trip.
    const previous = await this.#kv.get(key);
    const revision = await this.#kv.put(key, this.#encodeDeadLetter(deadLetter));

    try {
      await this.writeCursor(afterSequence);
    } catch (error) {
      if (error instanceof KvConflictError) await this.#undoDeadLetter(key, revision, previous?.value ?? null);
      throw error;
    }
  }

  /**
   * Lists every dead letter of the destination and returns a page of them.
   * NOTE: each call reads every dead letter of the destination from the bucket, one read
   * per key, so a destination with thousands of dead letters lists slowly.
   */
  async listDeadLetters(limit = 100, afterSequence = 0): Promise<WebhookDeadLetter[]> {
    const stored = await this.#listAll();
    return stored
      .map(({ deadLetter }) => deadLetter)
      .filter((deadLetter) => deadLetter.firstSequence > afterSequence)
      .slice(0, limit);
  }

  /** Marks the dead letters with compare-and-set writes, and reads them again when one changed meanwhile. */
  async queueReplays(selection: ReplaySelection, nowMs: number): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      const stored = await this.#listAll();
      const missing = missingSequences(selection, stored.map(({ deadLetter }) => deadLetter));
      if (missing.length > 0) throw deadLetterNotFound(this.#destination, missing);

      const chosen = new Set(selectDeadLetters(selection, stored.map(({ deadLetter }) => deadLetter)));
      try {
        for (const { key, revision, deadLetter } of stored.filter((entry) => chosen.has(entry.deadLetter))) {
          if (deadLetter.replayQueuedAtMs !== undefined) continue;
          await this.#kv.update(key, this.#encodeDeadLetter({ ...deadLetter, replayQueuedAtMs: nowMs }), revision);
        }
      } catch (error) {
        if (!(error instanceof KvConflictError) || attempt >= QUEUE_ATTEMPTS) throw error;
        continue;
      }

      await this.#kv.put(webhookKeys.replayRequest(this.#workspace, this.#destination), encoder.encode(JSON.stringify({ requestedAtMs: nowMs, nodeId: this.#nodeId })));
      return chosen.size;
    }
  }

  async listQueuedReplays(limit: number): Promise<WebhookDeadLetter[]> {
    const request = await this.#kv.get(webhookKeys.replayRequest(this.#workspace, this.#destination));
    if (request === null || request.revision === this.#replaysDoneAtRevision) return [];

    const queued = (await this.#listAll()).filter(({ deadLetter }) => deadLetter.replayQueuedAtMs !== undefined).slice(0, limit);
    if (queued.length === 0) this.#replaysDoneAtRevision = request.revision;
    this.#queuedRevisions.clear();
    for (const { revision, deadLetter } of queued) this.#queuedRevisions.set(deadLetter.firstSequence, revision);
    return queued.map(({ deadLetter }) => deadLetter);
  }

  async deleteDeadLetter(firstSequence: number): Promise<void> {
    await this.#kv.delete(webhookKeys.deadLetter(this.#workspace, this.#destination, firstSequence));
  }

  async writeFailedReplay(deadLetter: WebhookDeadLetter): Promise<void> {
    const { replayQueuedAtMs: _queued, ...failed } = deadLetter;
    const key = webhookKeys.deadLetter(this.#workspace, this.#destination, deadLetter.firstSequence);
    const revision = this.#queuedRevisions.get(deadLetter.firstSequence);
    if (revision === undefined) {
      await this.#kv.put(key, this.#encodeDeadLetter(failed));
      return;
    }

    try {
      await this.#kv.update(key, this.#encodeDeadLetter(failed), revision);
    } catch (error) {
      if (!(error instanceof KvConflictError)) throw error;
      this.#logger.info({ destination: this.#destination, firstSequence: deadLetter.firstSequence }, 'dead letter changed during its replay; keeping the newer version');
    }
  }

  /** Reads every dead letter of the destination, oldest batch first. */
  async #listAll(): Promise<StoredDeadLetter[]> {
    const entries = await this.#kv.list(webhookKeys.deadLetterPrefix(this.#workspace, this.#destination));
    return entries
      .map((entry) => ({ key: entry.key, revision: entry.revision, deadLetter: JSON.parse(decoder.decode(entry.value)) as WebhookDeadLetter }))
      .sort((a, b) => a.deadLetter.firstSequence - b.deadLetter.firstSequence);
  }

  async readAttempts(firstSequence: number): Promise<number> {
    const entry = await this.#kv.get(webhookKeys.attempts(this.#workspace, this.#destination));
    if (entry === null) return 0;
    const record = JSON.parse(decoder.decode(entry.value)) as FailedAttemptsRecord;
    return record.firstSequence === firstSequence ? record.attempts : 0;
  }

  /**
   * Stores the count with a plain put, without the cursor's compare-and-set. Only the node
   * that holds the delivery lease sends the batch, and a count a fenced node writes late only
   * moves the batch to the dead letters an attempt sooner or later.
   */
  async writeAttempts(firstSequence: number, attempts: number): Promise<void> {
    const record: FailedAttemptsRecord = { version: 1, firstSequence, attempts };
    await this.#kv.put(webhookKeys.attempts(this.#workspace, this.#destination), encoder.encode(JSON.stringify(record)));
  }

  #encodeDeadLetter(deadLetter: WebhookDeadLetter): Uint8Array {
    return encoder.encode(JSON.stringify(deadLetter));
  }

  /** Restores `previous` under `key`, or deletes the key when `previous` is null, if the key is still at `revision`. */
  async #undoDeadLetter(key: string, revision: number, previous: Uint8Array | null): Promise<void> {
    try {
      if (previous === null) await this.#kv.delete(key, revision);
      else await this.#kv.update(key, previous, revision);
    } catch (error) {
      this.#logger.warn({ err: error, key, revision }, 'failed to undo a dead letter write whose cursor write conflicted; the key keeps its current value');
    }
  }

  #encodeCursor(afterSequence: number): Uint8Array {
    const record: KvCursorRecord = { version: 1, afterSequence, nodeId: this.#nodeId };
    return encoder.encode(JSON.stringify(record));
  }

  #decodeCursor(value: Uint8Array): KvCursorRecord {
    const record = JSON.parse(decoder.decode(value)) as Partial<KvCursorRecord>;
    if (record.version !== 1 || !Number.isSafeInteger(record.afterSequence) || (record.afterSequence as number) < 0) {
      throw new RangeError(`cursor of webhook destination ${this.#destination} in workspace ${this.#workspace} is not a valid cursor record`);
    }
    return record as KvCursorRecord;
  }
}
