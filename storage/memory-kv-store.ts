/**
 * An in-memory KvStore for deterministic model tests. Revisions grow across the whole
 * store, as they do in a JetStream KV bucket. `staleReads` makes get() return an older
 * value, to check that callers decide nothing from a read.
 */
import { KvConflictError, type KvEntry, type KvStore } from './kv-store.js';

export class MemoryKvStore implements KvStore {
  readonly #entries = new Map<string, KvEntry>();
  /** Every write in order, so a stale read can return an earlier state. */
  readonly #history: Array<{ key: string; entry: KvEntry | null }> = [];
  #revision = 0;
  /** When set, get() returns the value the key had this many writes ago. */
  staleReads = 0;

  async get(key: string): Promise<KvEntry | null> {
    if (this.staleReads === 0) return this.#entries.get(key) ?? null;

    let entry: KvEntry | null = this.#entries.get(key) ?? null;
    let skipped = 0;
    for (let i = this.#history.length - 1; i >= 0 && skipped < this.staleReads; i--) {
      if (this.#history[i].key !== key) continue;
      skipped += 1;
      entry = this.#previousEntry(key, i);
    }
    return entry;
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    if (this.#entries.has(key)) throw new KvConflictError(`key ${key} already exists`);
    return this.#write(key, value);
  }

  async update(key: string, value: Uint8Array, expectedRevision: number): Promise<number> {
    const current = this.#entries.get(key);
    if (current?.revision !== expectedRevision) {
      throw new KvConflictError(`key ${key} is at revision ${current?.revision ?? 'none'}, expected ${expectedRevision}`);
    }
    return this.#write(key, value);
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    return this.#write(key, value);
  }

  async delete(key: string, expectedRevision?: number): Promise<void> {
    const current = this.#entries.get(key);
    if (expectedRevision !== undefined && current?.revision !== expectedRevision) {
      throw new KvConflictError(`key ${key} is at revision ${current?.revision ?? 'none'}, expected ${expectedRevision}`);
    }
    this.#revision += 1;
    this.#entries.delete(key);
    this.#history.push({ key, entry: null });
  }

  async list(prefix = ''): Promise<KvEntry[]> {
    return [...this.#entries.values()].filter((entry) => entry.key.startsWith(prefix)).sort((a, b) => a.key.localeCompare(b.key));
  }

  #write(key: string, value: Uint8Array): number {
    this.#revision += 1;
    const entry = { key, value: Uint8Array.from(value), revision: this.#revision };
    this.#entries.set(key, entry);
    this.#history.push({ key, entry });
    return this.#revision;
  }

  /** The entry `key` had before the write at history index `index`. */
  #previousEntry(key: string, index: number): KvEntry | null {
    for (let i = index - 1; i >= 0; i--) if (this.#history[i].key === key) return this.#history[i].entry;
    return null;
  }
}
