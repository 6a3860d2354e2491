/**
 * The embedded event log, in the node's RocksDB. Appends from concurrent callers are
 * grouped into one write batch per turn of the event loop (group commit) and that batch
 * is synced before any of its callers resolve. Sequences are assigned just before the
 * batch is written, and batches are written one at a time, so sequence order, write order
 * and the order listeners see are the same.
 *
 * A batch that RocksDB wrote but whose WAL sync failed is still in the log. Its sequences
 * are taken, its messageIds are deduplicated and a restart replays it. So its records go
 * to the listeners like any other, while its callers get an EventLogError, because the
 * records are not proven durable.
 */
import { RtcdpError } from '../common/errors.js';
import { Lifecycle } from '../common/lifecycle.js';
import { silentLogger, type Logger } from '../common/logger.js';
import type { AppendListener, AppendOutcome, AppendRequest, EventLog, LogRecord, PartitionId } from './event-log.js';
import { decode, encode } from './codec.js';
import { keys, parseLogHeadKey, parseSequence, prefixEnd } from './keys.js';
import { WalSyncError, type Store, type WriteOp } from './store.js';

const LOG_RECORD_VERSION = 1;

/** Appends are split into write batches of at most this many records. */
const MAX_RECORDS_PER_BATCH = 5_000;

interface StoredLogRecord {
  version: number;
  messageId: string;
  payload: Buffer;
  /** When the record was appended, ms since the Unix epoch; pruning compares it with the retention. */
  appendedAtMs: number;
}

/** Records pruned per partition in one `prune` call, at most, so one call stays short. */
const MAX_PRUNED_PER_PARTITION = 10_000;

interface PendingAppend {
  request: AppendRequest;
  /** Result of the request, null until known. An `appended` outcome stays when the write landed but its sync failed. */
  outcome: AppendOutcome | null;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** The event log failed to append or read. */
export class EventLogError extends RtcdpError {
  readonly code = 'EVENT_LOG_FAILED';
  override readonly retryable = true;

  /**
   * Events of the failed append that are in the log anyway, because the WAL sync failed
   * after their batch was written. They reach the append listeners, and a retry of their
   * messageIds returns `duplicate`, but they are not proven durable.
   */
  readonly written: number;

  constructor(message: string, options: { cause?: unknown; written?: number } = {}) {
    super(message, { cause: options.cause });
    this.written = options.written ?? 0;
  }
}

export class RocksDbEventLog implements EventLog {
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #lifecycle: Lifecycle;
  readonly #heads = new Map<string, { partition: PartitionId; sequence: number }>();
  readonly #listeners = new Set<AppendListener>();
  /**
   * The first append of each messageId queued or being written, per workspace, so a
   * concurrent duplicate is caught before it reaches RocksDB.
   */
  readonly #inFlight = new Map<string, Promise<void>>();
  #queue: PendingAppend[] = [];
  #writing = false;
  /** Set when a written batch fails its WAL sync, and cleared by the next sync that succeeds. */
  #syncFailed = false;

  private constructor(store: Store, logger: Logger) {
    this.#store = store;
    this.#logger = logger;
    this.#lifecycle = new Lifecycle('event-log', logger);
  }

  /** Opens the log in `store`, reading each partition's head sequence. */
  static async open(store: Store, options: { logger?: Logger } = {}): Promise<RocksDbEventLog> {
    const logger = (options.logger ?? silentLogger()).child({ component: 'event-log' });
    const log = new RocksDbEventLog(store, logger);
    log.#lifecycle.set('starting');

    const prefix = keys.logHeadPrefix();
    for (const entry of await store.list({ gte: prefix, lt: prefixEnd(prefix) })) {
      const partition = parseLogHeadKey(entry.key.toString());
      log.#heads.set(partitionName(partition), { partition, sequence: Number(entry.value.toString()) });
    }

    log.#lifecycle.set('running', { partitions: log.#heads.size });
    return log;
  }

  /**
   * Appends events as the EventLog interface describes. Rejects with EventLogError when any
   * of them failed, once all of them are settled. Its `written` counts the events that were
   * written before a failed WAL sync. Those events are in the log and reach the listeners.
   */
  append(requests: AppendRequest[]): Promise<AppendOutcome[]> {
    this.#lifecycle.assert('append', 'running');

    const pending = requests.map((request) => this.#enqueue(request));
    this.#scheduleWrite();
    return Promise.allSettled(pending.map((entry) => entry.promise)).then((settled) => {
      const failed = settled.find((result) => result.status === 'rejected');
      if (failed !== undefined) throw appendFailure(pending.map((entry) => entry.item), failed.reason);
      return pending.map((entry) => entry.item.outcome!);
    });
  }

  async read(partition: PartitionId, afterSequence: number, limit: number): Promise<LogRecord[]> {
    this.#lifecycle.assert('read', 'running', 'draining');

    const prefix = keys.logPartitionPrefix(partition.workspace, partition.shard);
    const entries = await this.#store.list({
      gt: keys.logRecord(partition.workspace, partition.shard, afterSequence),
      lt: prefixEnd(prefix),
      limit,
    });

    return entries.map((entry) => {
      const stored = decode<StoredLogRecord>(entry.value);
      return { ...partition, sequence: parseSequence(entry.key.toString()), messageId: stored.messageId, payload: stored.payload };
    });
  }

  /**
   * Deletes the records of a partition that were appended before `appendedBeforeMs` and are
   * at or below `upToSequence`, with their messageIds: a messageId is deduplicated exactly
   * as long as its record is kept. Pass the partition's persisted checkpoint as
   * `upToSequence`, so a restart never needs a pruned record. Returns how many were deleted.
   */
  async prune(partition: PartitionId, upToSequence: number, appendedBeforeMs: number): Promise<number> {
    this.#lifecycle.assert('prune', 'running');

    const prefix = keys.logPartitionPrefix(partition.workspace, partition.shard);
    const entries = await this.#store.list({
      gte: prefix,
      lte: keys.logRecord(partition.workspace, partition.shard, upToSequence),
      limit: MAX_PRUNED_PER_PARTITION,
    });

    const ops: WriteOp[] = [];
    for (const entry of entries) {
      const stored = decode<StoredLogRecord>(entry.value);
      if (stored.appendedAtMs >= appendedBeforeMs) break;
      ops.push({ type: 'del', key: entry.key }, { type: 'del', key: keys.dedup(partition.workspace, stored.messageId) });
    }

    await this.#store.write(ops);
    return ops.length / 2;
  }

  async headSequence(partition: PartitionId): Promise<number> {
    return this.#headOf(partition);
  }

  async partitions(): Promise<PartitionId[]> {
    return [...this.#heads.values()].map((head) => head.partition);
  }

  #headOf(partition: PartitionId): number {
    return this.#heads.get(partitionName(partition))?.sequence ?? 0;
  }

  /**
   * Calls `listener` with each group of records once it is durable, in sequence order per
   * partition. Records whose batch was written but failed its WAL sync are delivered too,
   * once, because they are in the log and a restart would replay them anyway.
   */
  onAppend(listener: AppendListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Waits for queued appends to be written, then stops accepting more. */
  async close(): Promise<void> {
    if (this.#lifecycle.is('stopped')) return;
    this.#lifecycle.set('draining');
    while (this.#writing || this.#queue.length > 0) await new Promise((resolve) => setTimeout(resolve, 5));
    this.#listeners.clear();
    this.#lifecycle.set('stopped');
  }

  async storedMessageIds(workspace: string, messageIds: readonly string[]): Promise<Set<string>> {
    this.#lifecycle.assert('storedMessageIds', 'running');
    // A batch whose WAL sync failed is in RocksDB but not proven durable, so until a sync
    // succeeds again its messageIds must still go through append.
    if (this.#syncFailed || messageIds.length === 0) return new Set();

    const stored = await this.#store.getMany(messageIds.map((messageId) => keys.dedup(workspace, messageId)));
    return new Set(messageIds.filter((_, index) => stored[index] !== null));
  }

  #enqueue(request: AppendRequest): { item: PendingAppend; promise: Promise<void> } {
    let item!: PendingAppend;
    const promise = new Promise<void>((resolve, reject) => {
      item = { request, outcome: null, resolve, reject };
    });

    // A messageId already queued or being written makes this one a duplicate without a
    // RocksDB read. It settles with the first one, so it is acknowledged only once the
    // event it repeats is durable, and fails when that one fails.
    const id = dedupName(request.workspace, request.messageId);
    const first = this.#inFlight.get(id);
    if (first !== undefined) {
      const duplicate = first.then(() => {
        item.outcome = { status: 'duplicate' };
      });
      return { item, promise: duplicate };
    }

    this.#inFlight.set(id, promise);
    this.#queue.push(item);
    return { item, promise };
  }

  #scheduleWrite(): void {
    if (this.#writing || this.#queue.length === 0) return;
    this.#writing = true;
    setImmediate(() => void this.#writeLoop());
  }

  async #writeLoop(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, MAX_RECORDS_PER_BATCH);
      try {
        await this.#writeBatch(batch);
      } catch (error) {
        const written = batch.filter((item) => item.outcome?.status === 'appended').length;
        this.#logger.error({ err: error, events: batch.length, written }, 'event log append failed');
        for (const item of batch) item.reject(error);
      } finally {
        for (const item of batch) this.#inFlight.delete(dedupName(item.request.workspace, item.request.messageId));
      }
    }
    this.#writing = false;
  }

  /** Writes one batch. When that fails, it resets the outcome of each event it did not write to null and throws. */
  async #writeBatch(batch: PendingAppend[]): Promise<void> {
    await this.#retryFailedSync();

    const stored = await this.#store.getMany(batch.map((item) => keys.dedup(item.request.workspace, item.request.messageId)));
    const fresh: PendingAppend[] = [];
    batch.forEach((item, index) => {
      if (stored[index] === null) fresh.push(item);
      else item.outcome = { status: 'duplicate' };
    });

    const { ops, records, heads } = this.#prepare(fresh);
    const syncFailure = await this.#write(ops, fresh);

    // The batch is in RocksDB from here on, synced or not. So its sequences are taken, and
    // the listeners get its records now, because nothing else delivers them before a restart.
    for (const [name, head] of heads) this.#heads.set(name, head);
    if (records.length > 0) this.#notify(records);

    if (syncFailure !== null) {
      this.#syncFailed = true;
      throw syncFailure;
    }
    for (const item of batch) item.resolve();
  }

  /**
   * Syncs the WAL again after a batch failed its sync, before anything more is written.
   * While the disk keeps failing, appends then fail without writing, rather than each
   * adding records that reach the listeners but are not durable. A retry of the failed
   * batch's messageIds returns `duplicate` only once a sync has succeeded.
   */
  async #retryFailedSync(): Promise<void> {
    if (!this.#syncFailed) return;

    // NOTE: Linux may mark the pages that a failed fdatasync could not write as clean, so
    // this sync can succeed although the failed batch never reached the disk. PostgreSQL
    // stops on a failed fsync for this reason, while this log goes on.
    await this.#store.syncWal();
    this.#syncFailed = false;
    this.#logger.info('WAL sync succeeded again after a failure');
  }

  /**
   * Writes and syncs `ops`. Returns the WalSyncError when the batch was written but not
   * synced, and null when both succeeded. Throws when the batch was not written.
   */
  async #write(ops: WriteOp[], fresh: PendingAppend[]): Promise<WalSyncError | null> {
    try {
      await this.#store.write(ops, { sync: true });
      return null;
    } catch (error) {
      if (error instanceof WalSyncError) return error;
      for (const item of fresh) item.outcome = null;
      throw error;
    }
  }

  /** Assigns sequences and builds the write batch, without changing the known heads until it is written. */
  #prepare(fresh: PendingAppend[]) {
    const ops: WriteOp[] = [];
    const records: LogRecord[] = [];
    const heads = new Map<string, { partition: PartitionId; sequence: number }>();
    const appendedAtMs = Date.now();

    for (const item of fresh) {
      const { workspace, shard, messageId, payload, value: decoded } = item.request;
      const name = partitionName(item.request);
      const head = heads.get(name) ?? { partition: { workspace, shard }, sequence: this.#headOf(item.request) };
      const sequence = head.sequence + 1;
      heads.set(name, { partition: head.partition, sequence });

      const value: StoredLogRecord = { version: LOG_RECORD_VERSION, messageId, payload, appendedAtMs };
      ops.push({ type: 'put', key: keys.logRecord(workspace, shard, sequence), value: encode(value) });
      ops.push({ type: 'put', key: keys.dedup(workspace, messageId), value: `${shard}:${sequence}` });
      records.push({ workspace, shard, sequence, messageId, payload, value: decoded });
      item.outcome = { status: 'appended', sequence };
    }

    for (const head of heads.values()) {
      ops.push({ type: 'put', key: keys.logHead(head.partition.workspace, head.partition.shard), value: String(head.sequence) });
    }
    return { ops, records, heads };
  }

  #notify(records: LogRecord[]): void {
    for (const listener of this.#listeners) {
      try {
        listener(records);
      } catch (error) {
        this.#logger.error({ err: error }, 'event log listener threw');
      }
    }
  }
}

/**
 * Builds the error of an append call that failed because of `cause`. Its `written` counts
 * the call's events that are in the log although the call failed.
 */
function appendFailure(items: PendingAppend[], cause: unknown): EventLogError {
  const written = items.filter((item) => item.outcome?.status === 'appended').length;
  const message = (cause as Error).message;
  if (written === 0) return new EventLogError(`failed to append ${items.length} events: ${message}`, { cause });

  return new EventLogError(
    `failed to append ${items.length} events: ${written} were written but not proven durable (${message}). ` +
      'They stay in the log, and a retry returns them as duplicates once the WAL syncs again.',
    { cause, written },
  );
}

function partitionName(partition: PartitionId): string {
  return `${partition.workspace}/${partition.shard}`;
}

function dedupName(workspace: string, messageId: string): string {
  return `${workspace}/${messageId}`;
}
