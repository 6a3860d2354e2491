/**
 * Where definitions and every earlier version of them are kept. Embedded mode stores them in
 * the node's RocksDB (rocksdb-definition-store.ts); cluster mode in a NATS KV bucket that
 * every node reads (cluster/kv-definition-store.ts).
 */
import { RtcdpError } from '../../common/errors.js';
import type { JsonObject } from '../../profiles/event.js';
import type { DefinitionKind } from './document.js';

/** Layout version of a stored DefinitionVersion, for readers of older records. */
export const DEFINITION_RECORD_VERSION = 1;

/** One version of one definition, as stored. Versions are never changed or removed. */
export interface DefinitionVersion {
  recordVersion: number;
  workspace: string;
  kind: DefinitionKind;
  name: string;
  /** 1 for the first version, one more for each later one, tombstones included. */
  version: number;
  /** SHA-256 of the canonical content (canonical.ts); '' for a tombstone. */
  contentHash: string;
  appliedAtMs: number;
  /** A tombstone, written by an apply with `prune` that no longer contains the definition. */
  deleted: boolean;
  description: string;
  /** The spec with sorted keys; empty for a tombstone. */
  spec: JsonObject;
  /** The file and path of the document in the apply that wrote this version; empty for a tombstone. */
  source: { file: string; path: string };
}

/** Orders definitions by kind, then name, in code-unit order, as `listLatest` returns them. */
export function byKindAndName(a: { kind: string; name: string }, b: { kind: string; name: string }): number {
  if (a.kind !== b.kind) return a.kind < b.kind ? -1 : 1;
  if (a.name === b.name) return 0;
  return a.name < b.name ? -1 : 1;
}

/** A change to one definition, reported to `watch` listeners after it is stored. */
export type DefinitionListener = (version: DefinitionVersion) => void;

export interface DefinitionStore {
  /**
   * Returns the latest version of every definition of a workspace, sorted by kind and name.
   * Tombstones are left out unless `includeDeleted` is set.
   */
  listLatest(workspace: string, options?: { kind?: DefinitionKind; includeDeleted?: boolean }): Promise<DefinitionVersion[]>;

  /** Returns one version of a definition, or the latest one when `version` is undefined; undefined when there is none. */
  getVersion(workspace: string, kind: DefinitionKind, name: string, version?: number): Promise<DefinitionVersion | undefined>;

  /** Returns every version of a definition, oldest first. */
  listVersions(workspace: string, kind: DefinitionKind, name: string): Promise<DefinitionVersion[]>;

  /**
   * Stores new versions, each exactly one more than the definition's latest stored version
   * (1 for a new definition). Throws DefinitionConflictError, storing nothing, when any
   * definition has moved on since the caller read it. The embedded store writes all or none.
   */
  append(versions: readonly DefinitionVersion[]): Promise<void>;

  /**
   * Calls `listener` for every version stored from now on, each definition's versions in
   * order. Returns a function that stops it.
   */
  watch(listener: DefinitionListener): () => void;
}

/** Another apply stored a version of the same definition first. Nothing was stored, so the caller can apply again. */
export class DefinitionConflictError extends RtcdpError {
  readonly code = 'DEFINITION_CONFLICT';
  override readonly retryable = true;
}

/** No definition, or no such version of it, exists in the workspace. */
export class DefinitionNotFoundError extends RtcdpError {
  readonly code = 'DEFINITION_NOT_FOUND';
}
