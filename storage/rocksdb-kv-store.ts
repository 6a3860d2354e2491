/**
 * A KvStore in the node's RocksDB, for embedded mode: the same compare-and-set contract as
 * a JetStream KV bucket, in one process. Operations on one key run one after another, so a
 * create or update checks the current revision and writes without another writer in
 * between. Every write is synced before it resolves. Writes issued in the same turn of the
 * event loop go to RocksDB as one batch, and concurrent batches share an fdatasync (the
 * store's group commit).
 *
 * This instance is the only writer of its keys (open one per name and database), so what it
 * read or wrote is still current. It keeps up to `cacheEntries` keys in memory, present or
 * absent, and reads them from memory instead of RocksDB.
 */
import { KeyedOrder } from '../common/keyed-order.js';
import { decode, encode } from './codec.js';
import { KvConflictError, type KvEntry, type KvStore } from './kv-store.js';
import { part, prefixEnd } from './keys.js';
import type { Store, WriteOp } from './store.js';

const RECORD_VERSION = 1;

/** Keys whose entry, or absence, is kept in memory. */
const DEFAULT_CACHE_ENTRIES = 500_000;

/** Revisions reserved at a time: the counter is written once per this many writes. */
const REVISION_BLOCK = 4_096;

interface StoredValue {
  version: number;
  revision: number;
  value: Uint8Array;
}

export class RocksDbKvStore implements KvStore {
  readonly #store: Store;
  readonly #prefix: string;
  readonly #revisionKey: string;
  /** The last revision handed out. */
  #revision: number;
  /** Revisions up to this one are reserved by the stored counter. */
  #reservedUntil: number;
  #reserving: Promise<void> | null = null;
  /** Operations on one key run one after another. */
  readonly #order = new KeyedOrder();
  /** Entries by key as RocksDB has them, null for a key known to be absent; oldest insertions are dropped first. */
  readonly #known = new Map<string, KvEntry | null>();
  readonly #cacheEntries: number;
  /** Writes waiting for the next batch, with the callbacks of their callers. */
  #pending: Array<{ op: WriteOp; resolve: () => void; reject: (error: unknown) => void }> = [];

  private constructor(store: Store, name: string, revision: number, cacheEntries: number) {
    this.#store = store;
    this.#prefix = `kv/${part(name)}/`;
    this.#revisionKey = `kv-revision/${part(name)}`;
    this.#revision = revision;
    this.#reservedUntil = revision;
    this.#cacheEntries = cacheEntries;
  }

  /** Opens the store named `name` in `store`; names keep several stores apart in one database. */
  static async open(store: Store, name: string, options: { cacheEntries?: number } = {}): Promise<RocksDbKvStore> {
    const stored = await store.get(`kv-revision/${part(name)}`);
    return new RocksDbKvStore(store, name, stored === null ? 0 : Number(stored.toString()), options.cacheEntries ?? DEFAULT_CACHE_ENTRIES);
  }

  get(key: string): Promise<KvEntry | null> {
    return this.#read(key);
  }

  create(key: string, value: Uint8Array): Promise<number> {
    return this.#order.run([key], async () => {
      if ((await this.#read(key)) !== null) throw new KvConflictError(`key ${key} already exists`);
      return this.#write(key, value);
    });
  }

  update(key: string, value: Uint8Array, expectedRevision: number): Promise<number> {
    return this.#order.run([key], async () => {
      await this.#expect(key, expectedRevision);
      return this.#write(key, value);
    });
  }

  put(key: string, value: Uint8Array): Promise<number> {
    return this.#order.run([key], () => this.#write(key, value));
  }

  delete(key: string, expectedRevision?: number): Promise<void> {
    return this.#order.run([key], async () => {
      if (expectedRevision !== undefined) await this.#expect(key, expectedRevision);
      await this.#nextRevision();
      await this.#submit(key, { type: 'del', key: this.#prefix + key }, null);
    });
  }

  async list(prefix = ''): Promise<KvEntry[]> {
    const start = this.#prefix + prefix;
    const entries = await this.#store.list({ gte: start, lt: prefix === '' ? prefixEnd(this.#prefix) : prefixEnd(start) });
    return entries.map((entry) => this.#toEntry(entry.key.toString().slice(this.#prefix.length), entry.value));
  }

  async #read(key: string): Promise<KvEntry | null> {
    const known = this.#known.get(key);
    if (known !== undefined) return known === null ? null : { ...known, value: Uint8Array.from(known.value) };

    // The store reads it in one batch with the other reads of this turn of the event loop.
    const stored = await this.#store.get(this.#prefix + key);
    const entry = stored === null ? null : this.#toEntry(key, stored);
    // A write to the key that started meanwhile has already recorded what is current.
    if (!this.#known.has(key)) this.#remember(key, entry);
    return entry;
  }

  #remember(key: string, entry: KvEntry | null): void {
    this.#known.delete(key);
    this.#known.set(key, entry);
    if (this.#known.size > this.#cacheEntries) this.#known.delete(this.#known.keys().next().value!);
  }

  #toEntry(key: string, stored: Buffer): KvEntry {
    const { revision, value } = decode<StoredValue>(stored);
    return { key, value: Uint8Array.from(value), revision };
  }

  async #expect(key: string, expectedRevision: number): Promise<void> {
    const current = await this.#read(key);
    if (current?.revision !== expectedRevision) {
      throw new KvConflictError(`key ${key} is at revision ${current?.revision ?? 'none'}, expected ${expectedRevision}`);
    }
  }

  async #write(key: string, value: Uint8Array): Promise<number> {
    const revision = await this.#nextRevision();
    const stored: StoredValue = { version: RECORD_VERSION, revision, value: Buffer.from(value) };
    await this.#submit(key, { type: 'put', key: this.#prefix + key, value: encode(stored) }, { key, value: Uint8Array.from(value), revision });
    return revision;
  }

  /**
   * Writes `op` in the next batch and resolves once it is synced; then `entry` is the key's
   * current entry. A failed write drops the key from memory, so the next read goes to RocksDB.
   */
  async #submit(key: string, op: WriteOp, entry: KvEntry | null): Promise<void> {
    if (this.#pending.length === 0) setImmediate(() => void this.#flush());
    try {
      await new Promise<void>((resolve, reject) => this.#pending.push({ op, resolve, reject }));
      this.#remember(key, entry);
    } catch (error) {
      this.#known.delete(key);
      throw error;
    }
  }

  async #flush(): Promise<void> {
    const batch = this.#pending;
    this.#pending = [];
    try {
      await this.#store.write(
        batch.map((item) => item.op),
        { sync: true },
      );
      for (const item of batch) item.resolve();
    } catch (error) {
      for (const item of batch) item.reject(error);
    }
  }

  /**
   * Takes the next revision. The stored counter reserves a block of revisions ahead of the
   * writes, so after a restart every new revision is above any written before it. The unused
   * rest of a block is skipped, as JetStream skips the sequences of other subjects.
   */
  async #nextRevision(): Promise<number> {
    while (this.#revision >= this.#reservedUntil) {
      this.#reserving ??= this.#reserve().finally(() => (this.#reserving = null));
      await this.#reserving;
    }
    this.#revision += 1;
    return this.#revision;
  }

  async #reserve(): Promise<void> {
    const until = this.#reservedUntil + REVISION_BLOCK;
    await this.#store.write([{ type: 'put', key: this.#revisionKey, value: String(until) }], { sync: true });
    this.#reservedUntil = until;
  }


}
