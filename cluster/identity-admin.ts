/**
 * The identity operations an operator runs on a node, the same in both modes: list,
 * approve and reject quarantined links, and explain why two identifiers share a profile.
 * An approval that merges profiles appends the merge command like an ingested event would.
 */
import type { IdentityGraph, Explanation, MergeNotice } from '../identity/identity-graph.js';
import type { QuarantineRecord, QuarantineStatus } from '../identity/identity-records.js';
import type { IdentitySettings } from '../identity/identity-settings.js';
import { normalizeIdentifier } from '../identity/normalize.js';
import type { Logger } from '../common/logger.js';
import type { Identifier } from '../profiles/identifiers.js';
import type { AppendRequest } from '../storage/event-log.js';
import { assertIdentifier, assertWorkspaceName } from './arguments.js';
import { InvalidArgumentError } from './errors.js';
import { mergeRequest } from './ingest-batch.js';

export interface IdentityAdminOptions {
  graph: IdentityGraph;
  settingsFor: (workspace: string) => IdentitySettings;
  shards: () => number;
  /** Appends records to the log, resolving once they are durable. */
  append: (requests: AppendRequest[]) => Promise<void>;
  logger: Logger;
}

/** The identity operations the API serves. */
export interface IdentityOperations {
  listQuarantine(workspace: string, status?: QuarantineStatus): Promise<QuarantineRecord[]>;
  approve(workspace: string, id: string): Promise<QuarantineRecord>;
  reject(workspace: string, id: string): Promise<QuarantineRecord>;
  explain(workspace: string, first: Identifier, second: Identifier): Promise<Explanation>;
}

export class IdentityAdmin implements IdentityOperations {
  readonly #options: IdentityAdminOptions;

  constructor(options: IdentityAdminOptions) {
    this.#options = options;
  }

  listQuarantine(workspace: string, status?: QuarantineStatus): Promise<QuarantineRecord[]> {
    assertWorkspaceName(workspace);
    return this.#options.graph.listQuarantine(workspace, status);
  }

  /** Makes a quarantined link, merging profiles where it joins two, and returns the decided record. */
  async approve(workspace: string, id: string): Promise<QuarantineRecord> {
    assertWorkspaceName(workspace);
    const { record, merges } = await this.#options.graph.approve(workspace, id);
    await this.announce(merges);
    this.#options.logger.info({ workspace, quarantineId: id, merges: merges.map((merge) => merge.loser) }, 'quarantined identity link approved');
    return record;
  }

  async reject(workspace: string, id: string): Promise<QuarantineRecord> {
    assertWorkspaceName(workspace);
    const record = await this.#options.graph.reject(workspace, id);
    this.#options.logger.info({ workspace, quarantineId: id }, 'quarantined identity link rejected');
    return record;
  }

  /** Explains why two identifiers belong to one profile, after normalising them as events are. */
  explain(workspace: string, first: Identifier, second: Identifier): Promise<Explanation> {
    assertWorkspaceName(workspace);
    return this.#options.graph.explain(workspace, this.#normalize(workspace, first, 'first'), this.#normalize(workspace, second, 'second'));
  }

  /** Appends the merge commands of `merges` and marks them announced. */
  async announce(merges: MergeNotice[]): Promise<void> {
    if (merges.length === 0) return;
    await this.#options.append(merges.map((merge) => mergeRequest(merge, this.#options.shards())));
    await Promise.all(merges.map((merge) => this.markAnnounced(merge)));
  }

  /** Records that a merge's command is in the log. A failure only means a later event announces it again. */
  async markAnnounced(merge: MergeNotice): Promise<void> {
    try {
      await this.#options.graph.markAnnounced(merge.workspace, merge.loser);
    } catch (error) {
      this.#options.logger.warn({ err: error, workspace: merge.workspace, loser: merge.loser, winner: merge.winner }, 'failed to mark a merge announced; a later event announces it again');
    }
  }

  #normalize(workspace: string, identifier: Identifier, name: string): Identifier {
    assertIdentifier(identifier);
    const normalized = normalizeIdentifier(this.#options.settingsFor(workspace), { type: identifier.type, value: identifier.value, field: `${name} identifier` });
    if (!normalized.ok) throw new InvalidArgumentError(normalized.message);
    return normalized.identifier;
  }
}
