/**
 * The identity operations an operator runs on a node, the same in both modes: list,
 * approve and reject quarantined links, explain why two identifiers share a profile, and
 * undo a merge. An approval that merges profiles appends the merge command like an ingested
 * event would. An unmerge splits the graph first and then appends its command to the
 * survivor's partition, whose actor rebuilds both profiles from the log.
 */
import { IdentityError, type IdentityGraph, type Explanation, type MergeNotice, type UnmergePlan } from '../identity/identity-graph.js';
import type { QuarantineRecord, QuarantineStatus } from '../identity/identity-records.js';
import type { IdentitySettings } from '../identity/identity-settings.js';
import { normalizeIdentifier } from '../identity/normalize.js';
import type { Logger } from '../common/logger.js';
import { sameIdentifier, type Identifier } from '../profiles/identifiers.js';
import { commandMessageIds, UNMERGE_RULE, type UnmergeCommand } from '../profiles/identity-commands.js';
import type { ProfileView } from '../profiles/profile.js';
import { encode } from '../storage/codec.js';
import type { AppendRequest, EventLog } from '../storage/event-log.js';
import { assertIdentifier, assertWorkspaceName } from './arguments.js';
import { DeadlineError } from '../common/errors.js';
import { InvalidArgumentError } from './errors.js';
import { linkRequest, mergeRequest } from './ingest-batch.js';
import { shardOf } from './routing.js';

/** How often an unmerge looks whether the actors have carried it out. */
const UNMERGE_POLL_INTERVAL_MS = 20;

/** Maximum length of a profile id that an unmerge accepts, in characters. */
const MAX_PROFILE_ID_LENGTH = 1_024;

export interface IdentityAdminOptions {
  graph: IdentityGraph;
  settingsFor: (workspace: string) => IdentitySettings;
  shards: () => number;
  /** Appends records to the log, resolving once they are durable. */
  append: (requests: AppendRequest[]) => Promise<void>;
  /** Reads the log, to check that it still contains the history an unmerge replays. */
  log: Pick<EventLog, 'read'>;
  /** Returns a profile by id from its actor, undefined when it has none. */
  profile: (workspace: string, profileId: string) => Promise<ProfileView | undefined>;
  /** How long an unmerge waits for the actors to absorb the merge and carry out the split. */
  timeoutMs: number;
  logger: Logger;
}

/** The outcome of an unmerge: the graph's split, and both profiles after it. */
export interface UnmergeResult {
  plan: UnmergePlan;
  survivor: ProfileView;
  restored: ProfileView;
}

/** The identity operations the API serves. */
export interface IdentityOperations {
  listQuarantine(workspace: string, status?: QuarantineStatus): Promise<QuarantineRecord[]>;
  approve(workspace: string, id: string): Promise<QuarantineRecord>;
  reject(workspace: string, id: string): Promise<QuarantineRecord>;
  explain(workspace: string, first: Identifier, second: Identifier): Promise<Explanation>;
  unmerge(workspace: string, profile: Identifier, merged: Identifier | string): Promise<UnmergeResult>;
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

  /**
   * Splits a profile merged into the profile of `profile` off again: `merged` is the merged
   * profile's id, or an identifier it brought in. Resolves once both actors carried out the
   * split, with both profiles.
   */
  async unmerge(workspace: string, profile: Identifier, merged: Identifier | string): Promise<UnmergeResult> {
    assertWorkspaceName(workspace);
    const graph = this.#options.graph;
    const survivorId = await graph.profileOf(workspace, this.#normalize(workspace, profile, 'profile'));
    if (survivorId === undefined) throw new IdentityError('PROFILE_NOT_FOUND', `profile not found: no profile of workspace ${workspace} has ${profile.type} ${JSON.stringify(profile.value)}`);
    if (typeof merged === 'string' && (merged === '' || merged.length > MAX_PROFILE_ID_LENGTH)) {
      throw new InvalidArgumentError(`merged profile id must be 1 to ${MAX_PROFILE_ID_LENGTH} characters, received ${merged.length}`);
    }
    const mergedId = typeof merged === 'string' ? merged : await this.#mergedProfileOf(workspace, survivorId, this.#normalize(workspace, merged, 'merged'));

    const deadline = Date.now() + this.#options.timeoutMs;
    const resumed = await this.#resumedPlan(workspace, survivorId, mergedId);
    const sinceSequence = await this.#absorbPosition(workspace, survivorId, mergedId, deadline, resumed);
    const plan = resumed ?? (await graph.unmerge(workspace, survivorId, mergedId));
    await this.#options.append([unmergeRequest(plan, sinceSequence, this.#options.shards())]);
    await graph.markUnmergeAnnounced(workspace, survivorId, plan.id);
    this.#options.logger.info({ workspace, survivor: survivorId, restored: mergedId, unmergeId: plan.id, profiles: plan.profiles }, 'profile unmerge appended');

    const applied = 'the unmerge is in the log and completes when the actors apply it';
    const [survivor, restored] = await Promise.all([
      this.#pollProfile(workspace, survivorId, deadline, (view) => view.splits.some((split) => split.id === plan.id), `split off ${mergedId}`, applied),
      this.#pollProfile(workspace, mergedId, deadline, (view) => view.mergedInto === undefined, 'return to life', applied),
    ]);
    return { plan, survivor, restored };
  }

  /**
   * Returns the profile merged into `survivorId` that brought `identifier` in: the profile the
   * identifier was first linked to, or the one along its merges that was merged into the survivor.
   */
  async #mergedProfileOf(workspace: string, survivorId: string, identifier: Identifier): Promise<string> {
    const graph = this.#options.graph;
    let current = await graph.linkedProfileOf(workspace, identifier);
    for (let hops = 0; current !== undefined && hops < 64; hops++) {
      const record = await graph.profile(workspace, current);
      if (record?.mergedInto === undefined) break;
      if (record.mergedInto.profileId === survivorId) return current;
      current = record.mergedInto.profileId;
    }
    // An unmerge that a crash interrupted after the graph's split names the identifier's side.
    const pending = (await graph.profile(workspace, survivorId))?.unmerges?.find((unmerge) => !unmerge.announced && unmerge.restoredIdentifiers.some((restored) => sameIdentifier(restored, identifier)));
    if (pending !== undefined) return pending.profileId;
    throw new IdentityError('NOT_MERGED', `${identifier.type} ${JSON.stringify(identifier.value)} did not come into profile ${survivorId} through a merge, so no merge can be undone at it`);
  }

  /**
   * Returns the plan of an unmerge of these profiles that the graph made but whose command
   * may not be in the log (a crash came in between), or undefined for a merge still in place.
   * The graph's checks give the precise error for a profile that is neither.
   */
  async #resumedPlan(workspace: string, survivorId: string, mergedId: string): Promise<UnmergePlan | undefined> {
    const record = await this.#options.graph.profile(workspace, survivorId);
    const inPlace = record !== undefined && record.mergedInto === undefined && record.merges.some((merge) => merge.profileId === mergedId);
    return inPlace ? undefined : this.#options.graph.unmerge(workspace, survivorId, mergedId);
  }

  /**
   * Returns the sequence of the survivor's partition where the merge began, once its actor
   * has absorbed the merged profile, after checking that the log still contains the records
   * from there. A resumed unmerge that the survivor has applied already needs none, because
   * its command is a duplicate.
   */
  async #absorbPosition(workspace: string, survivorId: string, mergedId: string, deadline: number, resumed: UnmergePlan | undefined): Promise<number> {
    const applied = (profile: ProfileView) => resumed !== undefined && profile.splits.some((split) => split.id === resumed.id);
    const absorbed = (profile: ProfileView) => applied(profile) || profile.merges.some((merge) => merge.profileId === mergedId);
    const view = await this.#pollProfile(workspace, survivorId, deadline, absorbed, `absorb ${mergedId}`, 'nothing was changed; run the unmerge again');
    if (applied(view)) return 0;

    const position = view.merges.find((merge) => merge.profileId === mergedId)?.position;
    if (position === undefined) throw new IdentityError('UNMERGE_UNSUPPORTED', `profile ${survivorId} absorbed ${mergedId} before this version of rtcdp recorded where, so the merge cannot be undone`);

    const partition = { workspace, shard: position.shard };
    const [first] = await this.#options.log.read(partition, position.sequence - 1, 1);
    if (first?.sequence !== position.sequence) {
      throw new IdentityError('UNMERGE_HISTORY_EXPIRED', `the event log no longer contains the records since the merge of ${mergedId} into ${survivorId} began (shard ${position.shard}, sequence ${position.sequence}): the merge is older than the log's retention`);
    }
    return position.sequence;
  }

  /** Asks for a profile until `done` is true for it; throws a DeadlineError naming `waitingFor` and `then` at the deadline. */
  async #pollProfile(workspace: string, profileId: string, deadline: number, done: (view: ProfileView) => boolean, waitingFor: string, then: string): Promise<ProfileView> {
    for (;;) {
      const view = await this.#options.profile(workspace, profileId);
      if (view !== undefined && done(view)) return view;
      if (Date.now() >= deadline) throw new DeadlineError(`profile ${profileId} of workspace ${workspace} did not ${waitingFor} within ${this.#options.timeoutMs} ms; ${then}`);
      await new Promise((resolve) => setTimeout(resolve, UNMERGE_POLL_INTERVAL_MS));
    }
  }

  /** Appends the merge commands of `merges` and marks them announced. */
  async announce(merges: MergeNotice[]): Promise<void> {
    if (merges.length === 0) return;
    const shards = this.#options.shards();
    await this.#options.append([...merges.map((merge) => linkRequest(merge, shards)), ...merges.map((merge) => mergeRequest(merge, shards))]);
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
    assertIdentifier(identifier, name);
    const normalized = normalizeIdentifier(this.#options.settingsFor(workspace), { type: identifier.type, value: identifier.value, field: `${name} identifier` });
    if (!normalized.ok) throw new InvalidArgumentError(normalized.message);
    return normalized.identifier;
  }
}

/** Builds the log record of an unmerge, for the survivor's partition. */
function unmergeRequest(plan: UnmergePlan, sinceSequence: number, shards: number): AppendRequest {
  const command: UnmergeCommand = {
    command: 'unmerge',
    profileId: plan.survivor,
    restored: plan.restored,
    profiles: plan.profiles,
    restoredIdentifiers: plan.restoredIdentifiers,
    survivorIdentifiers: plan.survivorIdentifiers,
    sinceSequence,
    mergeMessageId: plan.merge.messageId,
    cause: { messageId: plan.id, rule: UNMERGE_RULE, atMs: plan.atMs },
  };
  return { workspace: plan.workspace, shard: shardOf(plan.survivor, shards), messageId: commandMessageIds.unmerge(plan.id), payload: encode(command), value: command };
}
