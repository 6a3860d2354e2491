/**
 * The embedded DefinitionStore, in the node's RocksDB: one key per version and one key per
 * definition holding its latest version number (storage/keys.ts).
 */
import { silentLogger, type Logger } from '../../common/logger.js';
import { decode, encode } from '../../storage/codec.js';
import { keys, prefixEnd } from '../../storage/keys.js';
import type { Store, WriteOp } from '../../storage/store.js';
import type { DefinitionKind } from './document.js';
import { DefinitionConflictError, type DefinitionListener, type DefinitionStore, type DefinitionVersion } from './definition-store.js';

export class RocksDbDefinitionStore implements DefinitionStore {
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #listeners = new Set<DefinitionListener>();
  /** The append in progress: appends run one at a time, so the version check and the write are atomic. */
  #appending: Promise<void> = Promise.resolve();

  constructor(store: Store, options: { logger?: Logger } = {}) {
    this.#store = store;
    this.#logger = (options.logger ?? silentLogger()).child({ component: 'definitions' });
  }

  async listLatest(workspace: string, options: { kind?: DefinitionKind; includeDeleted?: boolean } = {}): Promise<DefinitionVersion[]> {
    const prefix = keys.definitionLatestPrefix(workspace, options.kind);
    const entries = await this.#store.list({ gte: prefix, lt: prefixEnd(prefix) });
    const versionKeys = entries.map((entry) => {
      const [kind, name] = parseDefinitionKey(entry.key.toString().slice(keys.definitionLatestPrefix(workspace).length));
      return keys.definitionVersion(workspace, kind, name, Number(entry.value.toString()));
    });

    const records = await this.#store.getMany(versionKeys);
    const versions = records.map((record, i) => {
      if (record === null) throw new Error(`definition version ${versionKeys[i]} is missing although its latest-version key points to it`);
      return decode<DefinitionVersion>(record);
    });
    return versions.filter((version) => options.includeDeleted || !version.deleted).sort(byKindAndName);
  }

  async getVersion(workspace: string, kind: DefinitionKind, name: string, version?: number): Promise<DefinitionVersion | undefined> {
    const number = version ?? (await this.#latestVersion(workspace, kind, name));
    if (number === 0) return undefined;
    const record = await this.#store.get(keys.definitionVersion(workspace, kind, name, number));
    return record === null ? undefined : decode<DefinitionVersion>(record);
  }

  async listVersions(workspace: string, kind: DefinitionKind, name: string): Promise<DefinitionVersion[]> {
    const prefix = keys.definitionVersionPrefix(workspace, kind, name);
    const entries = await this.#store.list({ gte: prefix, lt: prefixEnd(prefix) });
    return entries.map((entry) => decode<DefinitionVersion>(entry.value));
  }

  append(versions: readonly DefinitionVersion[]): Promise<void> {
    const appended = this.#appending.then(() => this.#appendNow(versions));
    this.#appending = appended.catch(() => undefined);
    return appended;
  }

  watch(listener: DefinitionListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async #appendNow(versions: readonly DefinitionVersion[]): Promise<void> {
    if (versions.length === 0) return;

    const ops: WriteOp[] = [];
    for (const version of versions) {
      const latest = await this.#latestVersion(version.workspace, version.kind, version.name);
      if (version.version !== latest + 1) {
        throw new DefinitionConflictError(
          `${version.kind} ${JSON.stringify(version.name)} is at version ${latest} in workspace ${JSON.stringify(version.workspace)}, ` +
            `so version ${version.version} cannot follow it: another apply changed it meanwhile. Nothing was stored. Apply again`,
        );
      }
      ops.push({ type: 'put', key: keys.definitionVersion(version.workspace, version.kind, version.name, version.version), value: encode(version) });
      ops.push({ type: 'put', key: keys.definitionLatest(version.workspace, version.kind, version.name), value: String(version.version) });
    }

    await this.#store.write(ops, { sync: true });
    for (const version of versions) {
      for (const listener of this.#listeners) this.#notify(listener, version);
    }
  }

  /** Calls one listener. The versions are stored by now, so a listener that throws is logged and does not fail the append. */
  #notify(listener: DefinitionListener, version: DefinitionVersion): void {
    try {
      listener(version);
    } catch (error) {
      this.#logger.error({ err: error, workspace: version.workspace, kind: version.kind, name: version.name, version: version.version }, 'definition listener failed');
    }
  }

  async #latestVersion(workspace: string, kind: DefinitionKind, name: string): Promise<number> {
    const stored = await this.#store.get(keys.definitionLatest(workspace, kind, name));
    return stored === null ? 0 : Number(stored.toString());
  }
}

/** Splits `<length>:<kind><length>:<name>`, the key suffix that `part` wrote, into kind and name. */
function parseDefinitionKey(suffix: string): [DefinitionKind, string] {
  const parts: string[] = [];
  let rest = Buffer.from(suffix);
  while (rest.length > 0 && parts.length < 2) {
    const colon = rest.indexOf(':');
    const length = Number(rest.subarray(0, colon).toString());
    parts.push(rest.subarray(colon + 1, colon + 1 + length).toString());
    rest = rest.subarray(colon + 1 + length);
  }
  return [parts[0] as DefinitionKind, parts[1]];
}

function byKindAndName(a: DefinitionVersion, b: DefinitionVersion): number {
  if (a.kind !== b.kind) return a.kind < b.kind ? -1 : 1;
  if (a.name === b.name) return 0;
  return a.name < b.name ? -1 : 1;
}
