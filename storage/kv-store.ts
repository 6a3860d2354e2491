/**
 * The key-value operations that cluster coordination and the identity graph need: reads
 * that may be stale, and writes that succeed only on an expected revision. NatsKvStore
 * (cluster/kv) runs them on a JetStream KV bucket, RocksDbKvStore in the node's RocksDB,
 * and MemoryKvStore in memory for model tests. All pass the same contract tests.
 */
import { RtcdpError } from '../common/errors.js';

export interface KvEntry {
  key: string;
  value: Uint8Array;
  /** Revision of this write. Revisions grow with every write to the bucket. */
  revision: number;
}

export interface KvStore {
  /** Reads a key. The result may be stale: decide nothing from it that a write does not confirm. */
  get(key: string): Promise<KvEntry | null>;
  /** Writes a key that does not exist or was deleted. Returns the new revision; throws KvConflictError when the key exists. */
  create(key: string, value: Uint8Array): Promise<number>;
  /** Writes a key whose last revision is `expectedRevision`. Returns the new revision; throws KvConflictError otherwise. */
  update(key: string, value: Uint8Array, expectedRevision: number): Promise<number>;
  /** Writes a key unconditionally. Returns the new revision. */
  put(key: string, value: Uint8Array): Promise<number>;
  /** Deletes a key, only at `expectedRevision` when given (throws KvConflictError otherwise). */
  delete(key: string, expectedRevision?: number): Promise<void>;
  /** Every live key and value whose key starts with `prefix`. */
  list(prefix?: string): Promise<KvEntry[]>;
}

/** A conditional KV write found another revision than it expected. */
export class KvConflictError extends RtcdpError {
  readonly code = 'KV_CONFLICT';
}
