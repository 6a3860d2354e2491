/**
 * The typed key-value store under every rtcdp node: one RocksDB database per node.
 *
 * Binding: rocksdb-native (Holepunch). Measured on a 2-core machine with 1M 500-byte
 * values in batches of 1,000, it wrote 485k puts/s and blocked the main thread about
 * 0.14 ms per batch, because the write runs on libuv's thread pool. classic-level is
 * LevelDB, not RocksDB, and @nxtedition/rocksdb blocked the event loop 3-8 ms per batch.
 *
 * Durability: a write batch resolves once RocksDB has appended it to its write-ahead log
 * with write(2), so it survives a kill -9 of the process. rocksdb-native has no per-write
 * `sync` option, so for power-loss durability `write(ops, { sync: true })` also calls
 * fdatasync on the current WAL file (and on the previous one when the WAL rolled over
 * meanwhile). Concurrent sync writes share one fdatasync (group commit).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { createRequire } from 'node:module';
import { RtcdpError } from '../common/errors.js';
import { Lifecycle } from '../common/lifecycle.js';
import { silentLogger, type Logger } from '../common/logger.js';

const require = createRequire(import.meta.url);
const RocksDB = require('rocksdb-native');

export type Key = Buffer | string;

export type WriteOp =
  | { type: 'put'; key: Key; value: Buffer | string }
  | { type: 'del'; key: Key }
  | { type: 'delRange'; start: Key; end: Key };

export interface Range {
  gt?: Key;
  gte?: Key;
  lt?: Key;
  lte?: Key;
  reverse?: boolean;
  limit?: number;
}

export interface Entry {
  key: Buffer;
  value: Buffer;
}

export interface StoreOptions {
  /** Directory of the database; created when missing. */
  path: string;
  /** fdatasync the WAL on `write(ops, { sync: true })`. Default true. */
  walSync?: boolean;
  logger?: Logger;
}

/** The database could not be opened, read or written. */
export class StorageError extends RtcdpError {
  readonly code = 'STORAGE_FAILED';
}

interface PendingRead {
  keys: Key[];
  resolve: (values: (Buffer | null)[]) => void;
  reject: (error: unknown) => void;
}

/**
 * fdatasync of the WAL failed. The writes it was to cover are in RocksDB, visible to reads
 * and replayed on the next open, but are not proven to be on disk.
 */
export class WalSyncError extends StorageError {}

export class Store {
  readonly path: string;
  readonly walSync: boolean;
  readonly #db: any;
  readonly #lifecycle: Lifecycle;
  #pendingSync: Promise<void> | null = null;
  #syncQueued: Promise<void> | null = null;
  #lastWalPath: string | null = null;
  #walSyncFault: ((file: string) => Error | null) | null = null;
  /** Reads waiting for the next read batch (#flushReads). */
  #pendingReads: PendingRead[] = [];

  private constructor(db: any, options: StoreOptions, logger: Logger) {
    this.#db = db;
    this.path = options.path;
    this.walSync = options.walSync ?? true;
    this.#lifecycle = new Lifecycle('store', logger);
  }

  /** Opens the database at `options.path`, creating it when missing. */
  static async open(options: StoreOptions): Promise<Store> {
    const logger = (options.logger ?? silentLogger()).child({ component: 'store', path: options.path });
    await fs.mkdir(options.path, { recursive: true });
    const db = new RocksDB(options.path);
    const store = new Store(db, options, logger);
    store.#lifecycle.set('starting');

    try {
      await db.ready();
    } catch (error) {
      store.#lifecycle.set('failed');
      throw new StorageError(`failed to open RocksDB at ${options.path}: ${(error as Error).message}`, { cause: error });
    }

    store.#lifecycle.set('running');
    return store;
  }

  get state() {
    return this.#lifecycle.state;
  }

  /** Read batches sent to RocksDB since the store opened. */
  get readBatches(): number {
    return this.#db.stats.readBatches as number;
  }

  /** Reads a key, in one RocksDB read batch with the other reads of this turn of the event loop. */
  async get(key: Key): Promise<Buffer | null> {
    this.#lifecycle.assert('get', 'running', 'draining');
    const [value] = await this.#queueRead([key]);
    return value;
  }

  /** Reads many keys, in one RocksDB read batch with the other reads of this turn; the result is in the order of `keys`. */
  async getMany(keys: Key[]): Promise<(Buffer | null)[]> {
    this.#lifecycle.assert('getMany', 'running', 'draining');
    if (keys.length === 0) return [];
    return this.#queueRead(keys);
  }

  /**
   * Queues a read for the next batch, which starts once the event loop reaches its check
   * phase. A read batch is one call into rocksdb-native, which took about 7 µs of main-thread
   * time with one key (a CPU profile on a 2-core VM), and a trip through libuv's thread pool.
   * So the actors that activate in one turn, each reading its snapshot, share one call.
   */
  #queueRead(keys: Key[]): Promise<(Buffer | null)[]> {
    if (this.#pendingReads.length === 0) setImmediate(this.#flushReads);
    return new Promise((resolve, reject) => this.#pendingReads.push({ keys, resolve, reject }));
  }

  readonly #flushReads = (): void => {
    const reads = this.#pendingReads;
    if (reads.length === 0) return;
    this.#pendingReads = [];

    let values: Array<Array<Promise<Buffer | null>>>;
    try {
      const batch = this.#db.read({ capacity: reads.reduce((sum, read) => sum + read.keys.length, 0), autoDestroy: true });
      values = reads.map((read) => read.keys.map((key): Promise<Buffer | null> => batch.get(key)));
      batch.tryFlush();
    } catch (error) {
      for (const read of reads) read.reject(error);
      return;
    }

    reads.forEach((read, i) => {
      Promise.all(values[i]).then((found) => read.resolve(found.map((value) => value ?? null)), read.reject);
    });
  };

  /**
   * Writes `ops` atomically. Resolves when the batch is in the WAL (kill -9 safe); with
   * `sync` and `walSync` on, also after the WAL is on disk (power-loss safe). Rejects with
   * WalSyncError when the batch was written but the sync failed, and with StorageError
   * when the batch was not written.
   */
  async write(ops: WriteOp[], options: { sync?: boolean } = {}): Promise<void> {
    this.#lifecycle.assert('write', 'running', 'draining');
    if (ops.length === 0) return;

    const batch = this.#db.write({ capacity: ops.length, autoDestroy: true });
    for (const op of ops) {
      if (op.type === 'put') batch.tryPut(op.key, op.value);
      else if (op.type === 'del') batch.tryDelete(op.key);
      else batch.tryDeleteRange(op.start, op.end);
    }

    try {
      await batch.flush();
    } catch (error) {
      throw new StorageError(`failed to write ${ops.length} operations: ${(error as Error).message}`, { cause: error });
    }

    if (options.sync && this.walSync) await this.syncWal();
  }

  /** Iterates `range` in key order (or reverse), at most `range.limit` entries. */
  async *iterate(range: Range): AsyncGenerator<Entry> {
    this.#lifecycle.assert('iterate', 'running', 'draining');
    const iterator = this.#db.iterator(range);
    try {
      for await (const entry of iterator) yield entry as Entry;
    } finally {
      iterator.destroy();
    }
  }

  /** Collects `iterate(range)` into an array. */
  async list(range: Range): Promise<Entry[]> {
    const entries: Entry[] = [];
    for await (const entry of this.iterate(range)) entries.push(entry);
    return entries;
  }

  /**
   * Makes every write that has resolved so far durable on disk, or rejects with
   * WalSyncError. Calls that arrive while an fdatasync runs share the next one, so N
   * concurrent writers cost two syncs, not N.
   */
  syncWal(): Promise<void> {
    if (this.#pendingSync === null) {
      this.#pendingSync = this.#syncOnce().finally(() => {
        this.#pendingSync = null;
      });
      return this.#pendingSync;
    }

    // A sync is running, but it may have started before this caller's write resolved, so
    // the caller needs the next sync whether the running one succeeds or fails.
    const syncNext = () => {
      this.#syncQueued = null;
      return this.syncWal();
    };
    this.#syncQueued ??= this.#pendingSync.then(syncNext, syncNext);
    return this.#syncQueued;
  }

  async #syncOnce(): Promise<void> {
    try {
      const previous = this.#lastWalPath;
      const current = await syncCurrentWal(() => this.#currentWalPath(), (file, options) => this.#fdatasync(file, options));
      // A WAL that rolled over since the last sync may hold writes that are not yet synced.
      // Once RocksDB has deleted it, its contents are already in synced table files.
      if (previous !== null && previous !== current) await this.#fdatasync(previous, { missingOk: true });
      // Moved only after both syncs succeed, so the next sync retries a previous WAL that failed.
      this.#lastWalPath = current;
    } catch (error) {
      throw new WalSyncError(`failed to fdatasync the WAL of RocksDB at ${this.path}: ${(error as Error).message}`, { cause: error });
    }
  }

  async #fdatasync(file: string, options?: { missingOk?: boolean }): Promise<void> {
    const fault = this.#walSyncFault?.(file) ?? null;
    if (fault !== null) throw fault;
    await fdatasync(file, options);
  }

  /**
   * Sets a test hook for disk errors. `fault` runs before each fdatasync of a WAL file, and
   * an Error it returns fails that sync in place of the fdatasync. Null removes the hook.
   * Only tests call it.
   */
  setWalSyncFault(fault: ((file: string) => Error | null) | null): void {
    this.#walSyncFault = fault;
  }

  async #currentWalPath(): Promise<string> {
    const wal = await this.#db.currentWalFile();
    // rocksdb-native reports the WAL as "/000004.log", relative to the database directory.
    return path.join(this.path, path.basename(wal.path));
  }

  /** Flushes memtables to table files, then closes. The store is unusable afterwards. */
  async close(): Promise<void> {
    if (this.#lifecycle.is('stopped')) return;
    this.#lifecycle.set('draining');

    try {
      // Reads queued before the close still get their values.
      this.#flushReads();
      await this.#pendingSync;
      await this.#db.close();
      this.#lifecycle.set('stopped');
    } catch (error) {
      this.#lifecycle.set('failed');
      throw new StorageError(`failed to close RocksDB at ${this.path}: ${(error as Error).message}`, { cause: error });
    }
  }
}

/** Attempts of syncCurrentWal when the WAL keeps rolling over under it. */
const WAL_SYNC_ATTEMPTS = 5;

/**
 * Syncs the current WAL file and returns its path. RocksDB can roll the WAL over, flush it
 * and delete it between the moment its name is read and the moment it is opened. A file
 * that vanished that way was flushed into synced table files, so the sync moves on to the
 * WAL that replaced it. A file that is missing while it is still the current one is an
 * error. Exported for tests, which cannot time a real rollover.
 */
export async function syncCurrentWal(
  readCurrent: () => Promise<string>,
  sync: (file: string, options?: { missingOk?: boolean }) => Promise<void>,
): Promise<string> {
  let current = await readCurrentWal(readCurrent);
  for (let attempt = 1; ; attempt++) {
    try {
      await sync(current);
      return current;
    } catch (error) {
      const next = await readCurrentWal(readCurrent);
      if (!isMissingFile(error) || next === current || attempt >= WAL_SYNC_ATTEMPTS) throw error;
      current = next;
    }
  }
}

/**
 * Reads the current WAL's name. RocksDB lists its WAL files and then reads their sizes, so
 * a WAL deleted in between (flushed after a rollover, as after opening a database whose
 * WAL it recovered) fails the read with a missing file: it is read again.
 */
async function readCurrentWal(readCurrent: () => Promise<string>): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await readCurrent();
    } catch (error) {
      if (!isMissingFile(error) || attempt >= WAL_SYNC_ATTEMPTS) throw error;
    }
  }
}

/** Whether an error is a missing file: ENOENT from Node, or RocksDB's IO error for one. */
function isMissingFile(error: unknown): boolean {
  const cause = error instanceof Error ? (error.cause as NodeJS.ErrnoException | undefined) : undefined;
  if (cause?.code === 'ENOENT' || (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return true;
  return error instanceof Error && error.message.includes('No such file or directory');
}

async function fdatasync(file: string, options: { missingOk?: boolean } = {}): Promise<void> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (error) {
    if (options.missingOk && (error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new StorageError(`failed to open WAL file ${file} for fdatasync`, { cause: error });
  }

  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}
