/** A KvStore wrapper for tests that fails chosen operations, as an unreachable NATS server would. */
import type { KvEntry, KvStore } from '../../storage/kv-store.js';

export type KvOperation = 'get' | 'create' | 'update' | 'put' | 'delete' | 'list';

export class FailingKvStore implements KvStore {
  /** Operations that throw until removed from this set. */
  readonly failing = new Set<KvOperation>();
  /** Number of calls per operation, failed ones included. */
  readonly calls = new Map<KvOperation, number>();

  constructor(private readonly inner: KvStore) {}

  failAll(): void {
    for (const operation of ['get', 'create', 'update', 'put', 'delete', 'list'] as const) this.failing.add(operation);
  }

  async get(key: string): Promise<KvEntry | null> {
    this.#check('get');
    return this.inner.get(key);
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    this.#check('create');
    return this.inner.create(key, value);
  }

  async update(key: string, value: Uint8Array, expectedRevision: number): Promise<number> {
    this.#check('update');
    return this.inner.update(key, value, expectedRevision);
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    this.#check('put');
    return this.inner.put(key, value);
  }

  async delete(key: string, expectedRevision?: number): Promise<void> {
    this.#check('delete');
    return this.inner.delete(key, expectedRevision);
  }

  async list(prefix?: string): Promise<KvEntry[]> {
    this.#check('list');
    return this.inner.list(prefix);
  }

  #check(operation: KvOperation): void {
    this.calls.set(operation, (this.calls.get(operation) ?? 0) + 1);
    if (this.failing.has(operation)) throw new Error(`simulated KV failure: ${operation}`);
  }
}
