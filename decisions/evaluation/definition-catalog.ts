/**
 * The compiled definitions of every workspace this node has evaluated, kept current from a
 * DefinitionStore. A workspace is loaded the first time one of its profiles is, and compiled
 * again whenever the store reports a new version of one of its definitions, so an apply
 * takes effect without a restart. A periodic reload covers a version that a store's watch
 * could miss while the workspace was loading.
 */
import type { Logger } from '../../common/logger.js';
import type { DefinitionStore } from '../definitions/definition-store.js';
import { WorkspaceProgram } from './workspace-program.js';

export interface DefinitionCatalogOptions {
  store: DefinitionStore;
  logger: Logger;
  /** Time between reloads of every loaded workspace, besides those the watch triggers. Default 10,000 ms. */
  reloadIntervalMs?: number;
}

export class DefinitionCatalog {
  readonly #store: DefinitionStore;
  readonly #logger: Logger;
  readonly #reloadIntervalMs: number;
  readonly #programs = new Map<string, WorkspaceProgram>();
  readonly #loading = new Map<string, Promise<void>>();
  /** Workspaces with a reload requested while one was running. */
  readonly #stale = new Set<string>();
  #unwatch: (() => void) | null = null;
  #reloadTimer: NodeJS.Timeout | null = null;

  constructor(options: DefinitionCatalogOptions) {
    this.#store = options.store;
    this.#logger = options.logger.child({ component: 'definition-catalog' });
    this.#reloadIntervalMs = options.reloadIntervalMs ?? 10_000;
  }

  start(): void {
    if (this.#unwatch !== null) return;
    this.#unwatch = this.#store.watch((version) => this.#reload(version.workspace));
    this.#reloadTimer = setInterval(() => {
      for (const workspace of this.#programs.keys()) this.#reload(workspace);
    }, this.#reloadIntervalMs);
    this.#reloadTimer.unref();
  }

  stop(): void {
    this.#unwatch?.();
    this.#unwatch = null;
    if (this.#reloadTimer !== null) clearInterval(this.#reloadTimer);
    this.#reloadTimer = null;
  }

  /** Loads a workspace's definitions unless they are loaded. Rejects when the store cannot be read. */
  prepare(workspace: string): Promise<void> {
    if (this.#programs.has(workspace)) return Promise.resolve();
    return this.#load(workspace);
  }

  /** Returns the compiled definitions of a prepared workspace, or undefined before `prepare` finished. */
  program(workspace: string): WorkspaceProgram | undefined {
    return this.#programs.get(workspace);
  }

  #load(workspace: string): Promise<void> {
    let loading = this.#loading.get(workspace);
    if (loading === undefined) {
      loading = this.#compile(workspace).finally(() => {
        this.#loading.delete(workspace);
        if (this.#stale.delete(workspace)) this.#reload(workspace);
      });
      this.#loading.set(workspace, loading);
    }
    return loading;
  }

  async #compile(workspace: string): Promise<void> {
    const versions = await this.#store.listLatest(workspace);
    const program = WorkspaceProgram.compile(workspace, versions, this.#logger);
    const previous = this.#programs.get(workspace);
    this.#programs.set(workspace, program);
    if (previous !== undefined && changed(previous, program)) {
      this.#logger.info({ workspace, computedTraits: program.traits.length, segments: program.segments.length }, 'definitions reloaded');
    }
  }

  /** Compiles a loaded workspace again; a reload that fails keeps the current program and logs. */
  #reload(workspace: string): void {
    if (!this.#programs.has(workspace) && !this.#loading.has(workspace)) return;
    if (this.#loading.has(workspace)) {
      this.#stale.add(workspace);
      return;
    }
    this.#load(workspace).catch((error: unknown) => {
      this.#logger.warn({ workspace, err: error }, 'definitions could not be reloaded; evaluating with the ones loaded before');
    });
  }
}

function changed(before: WorkspaceProgram, after: WorkspaceProgram): boolean {
  const fingerprint = (program: WorkspaceProgram) => [...program.traits, ...program.segments].map((definition) => `${definition.name}@${definition.hash}`).join(',');
  return fingerprint(before) !== fingerprint(after);
}
