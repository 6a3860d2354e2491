/**
 * Definitions of a cluster, in a KV bucket that every node reads, so an apply through any
 * node is seen by all of them without a restart.
 *
 * Keys: `definitions.<workspace>.<kind>.<name>.latest` contains the latest version record,
 * written with compare-and-set at the revision read before the apply: the write that decides
 * between concurrent applies. `definitions.<workspace>.<kind>.<name>.v<version>` keeps each
 * version, written after its latest key, and a version whose copy is missing after a failed
 * write is still read from the latest key. Workspaces, kinds and names are subject tokens
 * already (a name is a CEL identifier).
 *
 * NOTE: writes to several keys are not atomic, so an apply that fails halfway can leave some
 * definitions at their new version. Applying the same files again completes it, because
 * unchanged definitions are skipped.
 */
import type { Logger } from '../common/logger.js';
import { silentLogger } from '../common/logger.js';
import type { DefinitionKind } from '../decisions/definitions/document.js';
import { DefinitionConflictError, type DefinitionListener, type DefinitionStore, type DefinitionVersion } from '../decisions/definitions/definition-store.js';
import { decode, encode } from '../storage/codec.js';
import { KvConflictError, type KvEntry, type KvStore } from '../storage/kv-store.js';

export const DEFINITION_BUCKET = 'rtcdp-definitions';
const PREFIX = 'definitions';
const LATEST = 'latest';
const VERSION_DIGITS = 9;

export interface KvDefinitionStoreOptions {
  /** How often watch() reads the latest versions to find new ones. Default 500 ms. */
  watchIntervalMs?: number;
  logger?: Logger;
}

export class KvDefinitionStore implements DefinitionStore {
  readonly #kv: KvStore;
  readonly #logger: Logger;
  readonly #watchIntervalMs: number;
  readonly #listeners = new Set<DefinitionListener>();
  #watchTimer: NodeJS.Timeout | null = null;
  /** Latest version number per definition key, as the watch last read them. */
  #watched: Map<string, number> | null = null;

  /** `kv` must return the latest write on every read. */
  constructor(kv: KvStore, options: KvDefinitionStoreOptions = {}) {
    this.#kv = kv;
    this.#logger = (options.logger ?? silentLogger()).child({ component: 'definitions' });
    this.#watchIntervalMs = options.watchIntervalMs ?? 500;
  }

  async listLatest(workspace: string, options: { kind?: DefinitionKind; includeDeleted?: boolean } = {}): Promise<DefinitionVersion[]> {
    const prefix = options.kind === undefined ? `${PREFIX}.${workspace}.` : `${PREFIX}.${workspace}.${options.kind}.`;
    const latest = (await this.#kv.list(prefix)).filter((entry) => entry.key.endsWith(`.${LATEST}`)).map(decodeEntry);
    return latest.filter((version) => options.includeDeleted || !version.deleted).sort(byKindAndName);
  }

  async getVersion(workspace: string, kind: DefinitionKind, name: string, version?: number): Promise<DefinitionVersion | undefined> {
    const entry = await this.#kv.get(version === undefined ? latestKey(workspace, kind, name) : versionKey(workspace, kind, name, version));
    return entry === null ? undefined : decodeEntry(entry);
  }

  async listVersions(workspace: string, kind: DefinitionKind, name: string): Promise<DefinitionVersion[]> {
    const [entries, latest] = await Promise.all([this.#kv.list(`${definitionKey(workspace, kind, name)}.v`), this.#kv.get(latestKey(workspace, kind, name))]);
    const versions = new Map(entries.map(decodeEntry).map((version) => [version.version, version]));
    if (latest !== null) {
      const record = decodeEntry(latest);
      if (!versions.has(record.version)) versions.set(record.version, record);
    }
    return [...versions.values()].sort((a, b) => a.version - b.version);
  }

  /**
   * Checks every definition's latest version first, so a conflict found then stores
   * nothing. A conflict found while writing, with another apply in between, leaves the
   * versions written so far.
   */
  async append(versions: readonly DefinitionVersion[]): Promise<void> {
    const latest = await Promise.all(versions.map((version) => this.#kv.get(latestKey(version.workspace, version.kind, version.name))));
    versions.forEach((version, i) => {
      const stored = latest[i] === null ? 0 : decodeEntry(latest[i]!).version;
      if (version.version !== stored + 1) throw conflict(version, stored);
    });

    for (const [i, version] of versions.entries()) {
      const value = encode(version);
      const key = latestKey(version.workspace, version.kind, version.name);
      try {
        if (latest[i] === null) await this.#kv.create(key, value);
        else await this.#kv.update(key, value, latest[i]!.revision);
      } catch (error) {
        if (!(error instanceof KvConflictError)) throw error;
        const current = await this.#kv.get(key);
        throw conflict(version, current === null ? 0 : decodeEntry(current).version);
      }
      await this.#kv.put(versionKey(version.workspace, version.kind, version.name, version.version), value);
    }
  }

  /** Calls `listener` for each version stored from now on, by this node or any other, found by reading every `watchIntervalMs`. */
  watch(listener: DefinitionListener): () => void {
    this.#listeners.add(listener);
    if (this.#watchTimer === null) {
      this.#watchTimer = setInterval(() => void this.#poll(), this.#watchIntervalMs);
      this.#watchTimer.unref();
      void this.#poll();
    }

    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size > 0 || this.#watchTimer === null) return;
      clearInterval(this.#watchTimer);
      this.#watchTimer = null;
      this.#watched = null;
    };
  }

  async #poll(): Promise<void> {
    let entries: KvEntry[];
    try {
      entries = (await this.#kv.list(`${PREFIX}.`)).filter((entry) => entry.key.endsWith(`.${LATEST}`));
    } catch (error) {
      this.#logger.warn({ err: error }, 'reading the latest definitions failed; the next read retries');
      return;
    }

    const first = this.#watched === null;
    const watched = this.#watched ?? new Map<string, number>();
    this.#watched = watched;
    for (const entry of entries) {
      const latest = decodeEntry(entry);
      const seen = watched.get(entry.key) ?? 0;
      watched.set(entry.key, Math.max(seen, latest.version));
      // The first read sets the baseline: only versions stored after watch() was called are reported.
      if (first || latest.version <= seen) continue;
      await this.#report(latest, seen);
    }
  }

  /** Reports every version after `seen` up to `latest`, oldest first. */
  async #report(latest: DefinitionVersion, seen: number): Promise<void> {
    const versions = seen + 1 === latest.version ? [latest] : (await this.listVersions(latest.workspace, latest.kind, latest.name)).filter((version) => version.version > seen);
    for (const version of versions) {
      for (const listener of this.#listeners) {
        try {
          listener(version);
        } catch (error) {
          this.#logger.error({ err: error, workspace: version.workspace, kind: version.kind, name: version.name, version: version.version }, 'definition listener failed');
        }
      }
    }
  }
}

function definitionKey(workspace: string, kind: DefinitionKind, name: string): string {
  return `${PREFIX}.${workspace}.${kind}.${name}`;
}

function latestKey(workspace: string, kind: DefinitionKind, name: string): string {
  return `${definitionKey(workspace, kind, name)}.${LATEST}`;
}

function versionKey(workspace: string, kind: DefinitionKind, name: string, version: number): string {
  return `${definitionKey(workspace, kind, name)}.v${String(version).padStart(VERSION_DIGITS, '0')}`;
}

function decodeEntry(entry: KvEntry): DefinitionVersion {
  return decode<DefinitionVersion>(Buffer.from(entry.value));
}

function conflict(version: DefinitionVersion, stored: number): DefinitionConflictError {
  return new DefinitionConflictError(
    `${version.kind} ${JSON.stringify(version.name)} is at version ${stored} in workspace ${JSON.stringify(version.workspace)}, ` +
      `so version ${version.version} cannot follow it: another apply changed it meanwhile. Apply again`,
  );
}

function byKindAndName(a: DefinitionVersion, b: DefinitionVersion): number {
  if (a.kind !== b.kind) return a.kind < b.kind ? -1 : 1;
  if (a.name === b.name) return 0;
  return a.name < b.name ? -1 : 1;
}
