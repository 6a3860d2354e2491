/**
 * Applies, compares and reads a workspace's definitions on a DefinitionStore. An apply
 * validates the whole set first and stores nothing when any document is invalid. Then it
 * writes a new version of each definition whose content changed. An unchanged document
 * writes nothing, so applying the same files again is a no-op.
 */
import { canonicalDocument, toYaml, unifiedDiff } from './canonical.js';
import { byKindAndName, DEFINITION_RECORD_VERSION, DefinitionNotFoundError, type DefinitionStore, type DefinitionVersion } from './definition-store.js';
import type { DefinitionKind, SourceFile } from './document.js';
import type { DefinitionIssue } from './issues.js';
import { validateDefinitionSet, type ValidatedDefinition } from './validate.js';

export type DefinitionChange = 'created' | 'updated' | 'unchanged' | 'deleted';

export interface DefinitionResult {
  kind: DefinitionKind;
  name: string;
  change: DefinitionChange;
  /** The version after the apply: new for created, updated and deleted, the stored one for unchanged. */
  version: number;
  /** The version before the apply; 0 when there was none or it was a tombstone. */
  previousVersion: number;
  /** '' for deleted. */
  contentHash: string;
  /** The file and path of the document; empty for deleted. */
  source: { file: string; path: string };
}

export interface ApplyOptions {
  /** Validate and report what would change without storing anything. */
  dryRun?: boolean;
  /** Delete stored definitions of the workspace that the set does not contain. */
  prune?: boolean;
}

export interface ApplyOutcome {
  /** Empty when the set was valid. Nothing is stored when it is not. */
  issues: DefinitionIssue[];
  /** One per document of the set in file order, then one per deleted definition. Empty when `issues` is not. */
  results: DefinitionResult[];
}

export interface DefinitionDiff extends DefinitionResult {
  /** Unified diff of the canonical YAML, current version against proposed; '' when unchanged. */
  diff: string;
}

export interface DiffOutcome {
  issues: DefinitionIssue[];
  diffs: DefinitionDiff[];
}

/** The definitions of a workspace before and after an apply, as a test of the apply needs them. */
export interface ApplyPreview {
  issues: DefinitionIssue[];
  /** As ApplyOutcome.results. */
  results: DefinitionResult[];
  /** The latest stored version of each definition, tombstones left out, sorted by kind and name. */
  current: DefinitionVersion[];
  /**
   * The latest version of each definition once the apply is stored, tombstones left out,
   * sorted by kind and name. Versions the apply would write are built in memory only.
   */
  proposed: DefinitionVersion[];
}

interface PlannedChange {
  result: DefinitionResult;
  proposed: ValidatedDefinition | undefined;
  /** The latest stored version, tombstones included. */
  latest: DefinitionVersion | undefined;
}

export class DefinitionRegistry {
  readonly #store: DefinitionStore;
  readonly #now: () => number;

  constructor(store: DefinitionStore, options: { now?: () => number } = {}) {
    this.#store = store;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Validates `files` as one set and stores a new version of every definition that changed.
   * Throws DefinitionConflictError, storing nothing, when another apply to the same
   * definitions finished in between.
   */
  async apply(workspace: string, files: readonly SourceFile[], options: ApplyOptions = {}): Promise<ApplyOutcome> {
    const plan = await this.#plan(workspace, files, options.prune ?? false);
    if (plan.issues.length > 0) return { issues: plan.issues, results: [] };

    const appliedAtMs = this.#now();
    const writes = plan.changes.filter((change) => change.result.change !== 'unchanged').map((change) => versionRecord(workspace, change, appliedAtMs));
    if (!options.dryRun) await this.#store.append(writes);
    return { issues: [], results: plan.changes.map((change) => change.result) };
  }

  /** Compares `files` with the stored definitions, as an apply with the same options would change them. */
  async diff(workspace: string, files: readonly SourceFile[], options: { prune?: boolean } = {}): Promise<DiffOutcome> {
    const plan = await this.#plan(workspace, files, options.prune ?? false);
    if (plan.issues.length > 0) return { issues: plan.issues, diffs: [] };

    const diffs = plan.changes.map((change) => {
      const { kind, name } = change.result;
      const current = change.latest !== undefined && !change.latest.deleted ? change.latest : undefined;
      const diff = unifiedDiff(
        `${kind}/${name}`,
        { text: current === undefined ? '' : toYaml([documentOfVersion(current)]), header: current === undefined ? 'not stored' : `version ${current.version}` },
        { text: change.proposed === undefined ? '' : toYaml([canonicalDocument(change.proposed, workspace)]), header: change.proposed === undefined ? 'deleted' : 'proposed' },
      );
      return { ...change.result, diff };
    });
    return { issues: [], diffs };
  }

  /**
   * Validates `files` as an apply with the same options would, stores nothing, and returns
   * the workspace's definitions before and after that apply. Both lists are empty when the
   * set is invalid.
   */
  async preview(workspace: string, files: readonly SourceFile[], options: { prune?: boolean } = {}): Promise<ApplyPreview> {
    const plan = await this.#plan(workspace, files, options.prune ?? false);
    if (plan.issues.length > 0) return { issues: plan.issues, results: [], current: [], proposed: [] };

    // With prune, every stored definition that the set leaves out has a 'deleted' change.
    const appliedAtMs = this.#now();
    const byKey = new Map(plan.current.map((version) => [definitionKey(version), version]));
    for (const change of plan.changes) {
      const key = definitionKey(change.result);
      if (change.result.change === 'deleted') byKey.delete(key);
      else if (change.result.change === 'unchanged' && change.latest !== undefined) byKey.set(key, change.latest);
      else byKey.set(key, versionRecord(workspace, change, appliedAtMs));
    }

    const proposed = [...byKey.values()].sort(byKindAndName);
    return { issues: [], results: plan.changes.map((change) => change.result), current: plan.current, proposed };
  }

  /** Returns the latest version of each definition of a workspace, sorted by kind and name. */
  list(workspace: string, options: { kind?: DefinitionKind; includeDeleted?: boolean } = {}): Promise<DefinitionVersion[]> {
    return this.#store.listLatest(workspace, options);
  }

  /**
   * Returns one version of a definition (the latest when `version` is undefined) and the list
   * of all its versions. Throws DefinitionNotFoundError when either does not exist.
   */
  async get(workspace: string, kind: DefinitionKind, name: string, version?: number): Promise<{ definition: DefinitionVersion; versions: DefinitionVersion[] }> {
    const versions = await this.#store.listVersions(workspace, kind, name);
    if (versions.length === 0) throw new DefinitionNotFoundError(`no ${kind} named ${JSON.stringify(name)} in workspace ${JSON.stringify(workspace)}`);

    const definition = version === undefined ? versions[versions.length - 1] : versions.find((candidate) => candidate.version === version);
    if (definition === undefined) {
      throw new DefinitionNotFoundError(`${kind} ${JSON.stringify(name)} has no version ${version}. Its versions are 1 to ${versions[versions.length - 1].version}`);
    }
    return { definition, versions };
  }

  async #plan(workspace: string, files: readonly SourceFile[], prune: boolean): Promise<{ issues: DefinitionIssue[]; changes: PlannedChange[]; current: DefinitionVersion[] }> {
    const latest = await this.#store.listLatest(workspace, { includeDeleted: true });
    const current = latest.filter((version) => !version.deleted);
    const validation = validateDefinitionSet(files, { workspace, current, prune });
    if (validation.issues.length > 0) return { issues: validation.issues, changes: [], current };

    const latestByKey = new Map(latest.map((version) => [definitionKey(version), version]));
    const changes: PlannedChange[] = validation.definitions.map((proposed) => planChange(proposed, latestByKey.get(definitionKey(proposed))));

    if (prune) {
      const proposedKeys = new Set(validation.definitions.map(definitionKey));
      for (const stored of current.filter((version) => !proposedKeys.has(definitionKey(version)))) {
        changes.push({
          proposed: undefined,
          latest: stored,
          result: { kind: stored.kind, name: stored.name, change: 'deleted', version: stored.version + 1, previousVersion: stored.version, contentHash: '', source: { file: '', path: '' } },
        });
      }
    }
    return { issues: [], changes, current };
  }
}

function planChange(proposed: ValidatedDefinition, latest: DefinitionVersion | undefined): PlannedChange {
  const base = { kind: proposed.kind, name: proposed.name, contentHash: proposed.contentHash, source: proposed.source };
  const stored = latest !== undefined && !latest.deleted ? latest : undefined;

  let result: DefinitionResult;
  if (stored === undefined) {
    result = { ...base, change: 'created', version: (latest?.version ?? 0) + 1, previousVersion: 0 };
  } else if (stored.contentHash === proposed.contentHash) {
    result = { ...base, change: 'unchanged', version: stored.version, previousVersion: stored.version };
  } else {
    result = { ...base, change: 'updated', version: stored.version + 1, previousVersion: stored.version };
  }
  return { result, proposed, latest };
}

function versionRecord(workspace: string, change: PlannedChange, appliedAtMs: number): DefinitionVersion {
  const { result, proposed } = change;
  return {
    recordVersion: DEFINITION_RECORD_VERSION,
    workspace,
    kind: result.kind,
    name: result.name,
    version: result.version,
    contentHash: result.contentHash,
    appliedAtMs,
    deleted: proposed === undefined,
    description: proposed?.description ?? '',
    spec: proposed?.spec ?? {},
    source: result.source,
  };
}

/** Returns the canonical document of a stored version, with its workspace. */
export function documentOfVersion(version: DefinitionVersion) {
  return canonicalDocument(version, version.workspace);
}

function definitionKey(definition: { kind: string; name: string }): string {
  return `${definition.kind}/${definition.name}`;
}
