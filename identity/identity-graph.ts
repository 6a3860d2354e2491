/**
 * The identity graph: which profile each identifier belongs to, which profiles were merged
 * into which, and the links held in quarantine. It resolves every event to one profile
 * before the event enters the log, so all of a person's events reach the same actor.
 *
 * Every change is a compare-and-set on a KvStore. A resolution that loses a race reads
 * again and retries, so resolutions running at the same time on different nodes agree.
 * An identifier's record is created once and repointed only by an operator's unmerge, from
 * the survivor to the restored profile. A profile is merged into at most one other at a
 * time. A merged profile's identifiers reach its survivor through the `mergedInto` chain.
 * The graph never decides from a read alone.
 */
import { RtcdpError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Identifier } from '../profiles/identifiers.js';
import { encode } from '../storage/codec.js';
import { KvConflictError, type KvStore } from '../storage/kv-store.js';
import type { IdentitySettings } from './identity-settings.js';
import { RecordCache } from './record-cache.js';
import { separated, separationAfterMerge, separationWithout, splitForUnmerge, withSeparatedFrom, type IdentifierLink } from './unmerge.js';
import {
  decodeRecord,
  describeIdentifier,
  encodeRecord,
  IDENTITY_RECORD_VERSION,
  identityKeys,
  quarantineId,
  sameIdentifier,
  unmergeId,
  type IdentifierRecord,
  type LinkCause,
  type MergeEntry,
  type ProfileRecord,
  type QuarantineReason,
  type QuarantineRecord,
  type QuarantineStatus,
  type UnmergeEntry,
} from './identity-records.js';

/** Profiles followed along a `mergedInto` chain before the graph reports it as corrupt. */
const MAX_CHAIN_LENGTH = 64;

/** How often a node reads a workspace's unmerge epoch, whose change makes it drop its cached records. */
const UNMERGE_EPOCH_CHECK_MS = 1_000;

/** Profiles `mergedInto` lists at most, for a query that waits until all of them are absorbed. */
const MAX_MERGED_PROFILES = 10_000;

export type IdentityErrorCode =
  /** Concurrent resolutions kept changing the records this one read; retrying may succeed. */
  | 'IDENTITY_CONTENTION'
  /** The store of the graph (RocksDB, or NATS KV in cluster mode) failed or is unreachable; retrying may succeed. */
  | 'IDENTITY_STORE_FAILED'
  /** A `mergedInto` chain is longer than any the graph writes: the records are damaged. */
  | 'IDENTITY_CHAIN_TOO_LONG'
  | 'IDENTIFIER_NOT_LINKED'
  | 'QUARANTINE_NOT_FOUND'
  /** The quarantined link was already approved or rejected. */
  | 'QUARANTINE_DECIDED'
  /** A profile named in an unmerge is not in the identity graph. */
  | 'PROFILE_NOT_FOUND'
  /** The profile to unmerge from was itself merged into another: unmerge it from that one. */
  | 'PROFILE_NOT_SURVIVOR'
  /** The profile to restore is not merged directly into the profile named as its survivor. */
  | 'NOT_MERGED'
  /** A later unmerge or restore of the survivor keeps the merge from being undone. */
  | 'UNMERGE_ORDER'
  /** mergeProfiles was asked to merge profiles that an operator unmerged. */
  | 'PROFILES_SEPARATED'
  /** The survivor absorbed the merged profile before rtcdp recorded where in the log, so the actors cannot replay the merge apart. */
  | 'UNMERGE_UNSUPPORTED'
  /** The event log no longer contains the survivor's records since the merge, which an unmerge replays. */
  | 'UNMERGE_HISTORY_EXPIRED';

export class IdentityError extends RtcdpError {
  readonly code: IdentityErrorCode;
  override readonly retryable: boolean;

  constructor(code: IdentityErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.retryable = code === 'IDENTITY_CONTENTION' || code === 'IDENTITY_STORE_FAILED';
  }
}

export interface IdentityGraphOptions {
  kv: KvStore;
  /** The identity settings of a workspace. */
  settingsFor: (workspace: string) => IdentitySettings;
  logger: Logger;
  /** Wall clock, ms since the epoch. Default Date.now. */
  now?: () => number;
  /** Attempts of one resolution when concurrent writers change the records it read. Default 32. */
  maxAttempts?: number;
  /** Identifier records and profile records kept in memory, each. Default 500,000. */
  cacheEntries?: number;
}

/** A merge that the profile actors still have to carry out: `loser` hands its state to `winner`. */
export interface MergeNotice {
  workspace: string;
  loser: string;
  winner: string;
  cause: LinkCause;
}

export interface Resolution {
  /** The profile the event belongs to. */
  profileId: string;
  /** Merges this resolution made or found unannounced, for the caller to append to the log. */
  merges: MergeNotice[];
  /** Links this resolution did not make. */
  quarantined: QuarantineRecord[];
}

/** The split of an operator's unmerge, for the profile actors to carry out. */
export interface UnmergePlan {
  workspace: string;
  /** Unique id of this unmerge: 22 URL-safe characters. */
  id: string;
  /** The profile that keeps its id and gives back the merged part. */
  survivor: string;
  /** The profile merged in and now restored. */
  restored: string;
  /** `restored`, then the survivor's later merges that joined through the restored side's identifiers: every profile whose state goes back with it. */
  profiles: string[];
  /** The identifiers that belong to `restored` after the split. */
  restoredIdentifiers: Identifier[];
  /** The identifiers that stay with the survivor. */
  survivorIdentifiers: Identifier[];
  /** The merge undone. */
  merge: MergeEntry;
  /** Wall-clock time of the unmerge, ms since the epoch. */
  atMs: number;
}

/** One step of the path that links two identifiers. */
export type ExplainStep =
  | ({ kind: 'linked'; identifier: Identifier; profileId: string; via?: Identifier } & LinkCause)
  | ({ kind: 'merged'; profileId: string; intoProfileId: string; from: Identifier[]; into: Identifier[] } & LinkCause);

export interface Explanation {
  /** The profile both identifiers belong to now. */
  profileId: string;
  /** From the first identifier to the profile they share, then from there back to the second. */
  steps: ExplainStep[];
}

interface Root {
  record: ProfileRecord;
  revision: number;
  /** Set when the record came from the cache: the store may hold a newer revision. */
  fromCache?: boolean;
}

/** The profile an identifier's record names, and whether it came from the cache. */
interface Link {
  profileId: string;
  fromCache: boolean;
}

/** The records one attempt read: each identifier's current profile, and the profiles themselves. */
interface GraphView {
  /** Per identifier: whether its record exists. */
  mapped: boolean[];
  /** Per identifier: the survivor of the profile it belongs to. */
  rootOf: Array<string | undefined>;
  roots: Map<string, Root>;
  /** Merges found along the chains whose command may not be in the log yet. */
  unannounced: MergeNotice[];
}

/** A link an event would make that the settings forbid. */
interface HeldLink {
  identifier: Identifier;
  /** The profile `identifier` belongs to, when the link would merge it. */
  otherProfileId?: string;
  reason: QuarantineReason;
  message: string;
}

/** The writes one resolution attempt plans. */
interface Plan {
  /** The existing profiles the event belongs to, to be merged into one. */
  group: Root[];
  /** Every identifier of the resulting profile. */
  union: Identifier[];
  /** The event's identifiers to link to the resulting profile. */
  toMap: Identifier[];
  heldLinks: HeldLink[];
}

/** A resolution found the graph changed under it; the attempt starts again. */
class Retry extends Error {}

export class IdentityGraph {
  readonly #kv: KvStore;
  readonly #options: IdentityGraphOptions;
  readonly #now: () => number;
  readonly #maxAttempts: number;
  readonly #cache: RecordCache;

  /** Per workspace: the unmerge epoch's revision this node's cache follows, and when it was last read. */
  readonly #epochs = new Map<string, { revision: number; checkedAtMs: number }>();
  readonly #epochReads = new Map<string, Promise<void>>();

  constructor(options: IdentityGraphOptions) {
    this.#kv = failingAsStoreErrors(options.kv);
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#maxAttempts = options.maxAttempts ?? 32;
    this.#cache = new RecordCache(options.cacheEntries ?? 500_000);
  }

  /**
   * Returns the profile an event with these identifiers belongs to, creating it, linking the
   * event's new identifiers to it and merging the profiles the event proves to be one.
   * `identifiers` come normalised and in priority order, as `eventIdentifiers` returns them.
   */
  async resolve(workspace: string, messageId: string, identifiers: Identifier[]): Promise<Resolution> {
    if (identifiers.length === 0) throw new TypeError('resolve needs at least one identifier');
    await this.#followUnmergeEpoch(workspace);

    // The first attempt may use cached records; a retry reads the store again.
    return this.#withRetries(workspace, `event ${messageId} was resolved`, 'send the event again', (attempt) => this.#attempt(workspace, messageId, identifiers, attempt === 1));
  }

  /**
   * Runs `operation` until it does not throw Retry, at most maxAttempts times with a growing
   * random back-off; then throws IDENTITY_CONTENTION, naming `what` and the advice `then`.
   */
  async #withRetries<T>(workspace: string, what: string, then: string, operation: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      try {
        return await operation(attempt);
      } catch (error) {
        if (!(error instanceof Retry)) throw error;
        this.#options.logger.debug({ workspace, attempt, what }, 'identity graph changed during an update; reading again');
        await backOff(attempt);
      }
    }
    throw new IdentityError('IDENTITY_CONTENTION', `the identity graph of workspace ${workspace} kept changing while ${what} (${this.#maxAttempts} attempts); ${then}`);
  }

  /**
   * Resolves from the cache alone, without writing: returns the profile when every identifier
   * is cached and leads to one profile through announced merges, else undefined (call
   * `resolve`). Synchronous, so a known person's event costs no store read and no await.
   */
  resolveCached(workspace: string, identifiers: Identifier[]): Resolution | undefined {
    // When the workspace's unmerge epoch is due to be read again, `resolve` reads it first.
    if (this.#epochDue(workspace)) return undefined;
    let found: string | undefined;
    for (const identifier of identifiers) {
      const start = this.#cache.identifier(workspace, identifier);
      const root = start === undefined ? undefined : this.#cachedRoot(workspace, start);
      if (root === undefined || (found !== undefined && root !== found)) return undefined;
      found = root;
    }
    return found === undefined ? undefined : { profileId: found, merges: [], quarantined: [] };
  }

  /** Whether the workspace's unmerge epoch was last read more than a second ago. */
  #epochDue(workspace: string): boolean {
    const epoch = this.#epochs.get(workspace);
    return epoch === undefined || this.#now() - epoch.checkedAtMs >= UNMERGE_EPOCH_CHECK_MS;
  }

  /**
   * Reads the workspace's unmerge epoch when it is due, at most once a second, and drops the
   * cache when another node has unmerged profiles since. Within that second a cached
   * resolution can still name the survivor of an undone merge: its actor forwards such
   * events, but a link between the two profiles in that second is not quarantined.
   */
  #followUnmergeEpoch(workspace: string): Promise<void> {
    if (!this.#epochDue(workspace)) return Promise.resolve();
    // Resolutions that find the epoch due at the same time share one read.
    let reading = this.#epochReads.get(workspace);
    if (reading === undefined) {
      reading = this.#readUnmergeEpoch(workspace).finally(() => this.#epochReads.delete(workspace));
      this.#epochReads.set(workspace, reading);
    }
    return reading;
  }

  async #readUnmergeEpoch(workspace: string): Promise<void> {
    const known = this.#epochs.get(workspace);
    const entry = await this.#kv.get(identityKeys.unmergeEpoch(workspace));
    const revision = entry?.revision ?? 0;
    if (known !== undefined && revision !== known.revision) {
      this.#cache.clear();
      this.#options.logger.info({ workspace }, 'profiles were unmerged on another node; identity records are read again');
    }
    this.#epochs.set(workspace, { revision, checkedAtMs: this.#now() });
  }

  /** Follows cached, announced merges from `profileId` to its survivor; undefined when a record is missing or a merge unannounced. */
  #cachedRoot(workspace: string, profileId: string): string | undefined {
    let current = profileId;
    for (let hops = 0; hops < MAX_CHAIN_LENGTH; hops++) {
      const record = this.#cache.profile(workspace, current)?.record;
      if (record === undefined) return undefined;
      if (record.mergedInto === undefined) return current;
      if (record.mergeAnnounced !== true) return undefined;
      current = record.mergedInto.profileId;
    }
    return undefined;
  }

  /** Returns the profile an identifier belongs to now, or undefined when no event carried it. */
  async profileOf(workspace: string, identifier: Identifier): Promise<string | undefined> {
    return (await this.profileRecordOf(workspace, identifier))?.profileId;
  }

  /** Returns the record of the profile an identifier belongs to now, or undefined when no event carried it. */
  async profileRecordOf(workspace: string, identifier: Identifier): Promise<ProfileRecord | undefined> {
    const link = await this.#identifierLink(workspace, identifier);
    if (link === undefined) return undefined;
    const root = await this.#identifierRoot(workspace, identifier, link, [], false);
    return root?.record;
  }

  /** Returns the profile an identifier's record names, read from the store without following merges, or undefined when no event carried it. */
  async linkedProfileOf(workspace: string, identifier: Identifier): Promise<string | undefined> {
    const entry = await this.#kv.get(identityKeys.identifier(workspace, identifier));
    return entry === null ? undefined : decodeRecord<IdentifierRecord>(entry.value).profileId;
  }

  /** Returns the profile that `profileId` was merged into, following the chain, or `profileId` itself. */
  async survivorOf(workspace: string, profileId: string): Promise<string> {
    const root = await this.#root(workspace, profileId, [], false);
    return root?.record.profileId ?? profileId;
  }

  /** Returns a profile's record, merged or not, or undefined when the graph does not know it. */
  async profile(workspace: string, profileId: string): Promise<ProfileRecord | undefined> {
    return (await this.#profileRecord(workspace, profileId, false))?.record;
  }

  /**
   * Returns every profile merged into `profileId`, directly or through profiles merged into
   * those. `record`, the profile's record just read, saves reading it again.
   */
  async mergedInto(workspace: string, profileId: string, record?: ProfileRecord): Promise<string[]> {
    const found: string[] = [];
    let frontier = [profileId];
    while (frontier.length > 0 && found.length < MAX_MERGED_PROFILES) {
      const records = await Promise.all(frontier.map((id) => (id === record?.profileId ? record : this.profile(workspace, id))));
      frontier = records.flatMap((record) => record?.merges.map((merge) => merge.profileId) ?? []).filter((id) => !found.includes(id));
      found.push(...frontier);
    }
    return found;
  }

  /** Records that the merge command of `loser` is in the log, so resolutions stop announcing it. */
  async markAnnounced(workspace: string, loser: string): Promise<void> {
    const key = identityKeys.profile(workspace, loser);
    const entry = await this.#kv.get(key);
    if (entry === null) return;
    const record = decodeRecord<ProfileRecord>(entry.value);
    if (record.mergedInto === undefined || record.mergeAnnounced === true) return;
    const announced: ProfileRecord = { ...record, mergeAnnounced: true };
    try {
      const revision = await this.#kv.update(key, encodeRecord(announced), entry.revision);
      this.#cache.setProfile(workspace, loser, { record: announced, revision });
    } catch (error) {
      // Another node marked it first or the record moved on; the next resolution that
      // passes it announces the merge again, which the actors ignore.
      if (!(error instanceof KvConflictError)) throw error;
      this.#cache.forgetProfile(workspace, loser);
    }
  }

  async #attempt(workspace: string, messageId: string, identifiers: Identifier[], cached: boolean): Promise<Resolution> {
    let view = await this.#read(workspace, identifiers, cached);
    // A cached record may name a merge that was announced or undone since: a merge is
    // announced only from records read from the store.
    if (cached && view.unannounced.length > 0) view = await this.#read(workspace, identifiers, false);
    const cause: LinkCause = { messageId, rule: 'shared-identifier', atMs: this.#now() };
    const plan = this.#plan(workspace, identifiers, view);
    await this.#confirmUnwritten(workspace, plan);

    const profileId = plan.group.length === 0 ? await this.#start(workspace, identifiers[0], plan, cause) : await this.#merge(workspace, identifiers, view, plan, cause);
    const via = identifiers.find((_, index) => view.mapped[index] && view.rootOf[index] === profileId);
    await this.#mapIdentifiers(workspace, plan.toMap, profileId, via, cause);

    const quarantined = plan.heldLinks.map((link) => this.#quarantine(workspace, link, profileId, cause));
    await this.#fileQuarantine(workspace, quarantined);
    const newMerges = plan.group.filter((root) => root.record.profileId !== profileId).map((loser) => ({ workspace, loser: loser.record.profileId, winner: profileId, cause }));
    return { profileId, merges: dedupeNotices([...view.unannounced, ...newMerges]), quarantined };
  }

  /**
   * Decides, in priority order, what each identifier of the event does. Its profile joins
   * the merge while the union of identifiers stays within the settings and no operator
   * unmerged it from a profile already joined. A new identifier is linked while its type is
   * under the limit. Every other link is held in quarantine, so the highest-priority
   * identifier always decides the event's profile.
   */
  #plan(workspace: string, identifiers: Identifier[], view: GraphView): Plan {
    const settings = this.#options.settingsFor(workspace);
    const plan: Plan = { group: [], union: [], toMap: [], heldLinks: [] };
    const conflicting = new Set<string>();

    for (const [index, identifier] of identifiers.entries()) {
      const rootId = view.rootOf[index];
      if (rootId !== undefined) {
        const root = view.roots.get(rootId)!;
        if (conflicting.has(rootId)) continue;
        if (!plan.group.includes(root)) {
          const apart = plan.group.find((member) => separated(member.record, root.record));
          if (apart !== undefined) {
            conflicting.add(rootId);
            const message = `profiles ${apart.record.profileId} and ${rootId} were unmerged by an operator, so ${describeIdentifier(identifier)} did not merge them; approving this link merges them again`;
            plan.heldLinks.push({ identifier, otherProfileId: rootId, reason: 'UNMERGED', message });
            continue;
          }
          const conflict = mergeConflict(settings, plan.union, root.record.identifiers);
          if (conflict !== undefined) {
            conflicting.add(rootId);
            plan.heldLinks.push({ identifier, otherProfileId: rootId, ...conflict });
            continue;
          }
          plan.group.push(root);
          plan.union = unionOf(plan.union, root.record.identifiers);
        }
        if (!view.mapped[index]) plan.toMap.push(identifier);
        continue;
      }

      if (plan.union.some((known) => sameIdentifier(known, identifier))) {
        plan.toMap.push(identifier);
        continue;
      }
      const limit = limitOf(settings, identifier.type);
      if (countOfType(plan.union, identifier.type) >= limit) {
        const message = `the profile already has ${limit} ${identifier.type} value${limit === 1 ? '' : 's'}, the maxPerProfile limit, so ${describeIdentifier(identifier)} was not linked`;
        plan.heldLinks.push({ identifier, reason: 'PER_PROFILE_LIMIT', message });
        continue;
      }
      plan.union.push(identifier);
      plan.toMap.push(identifier);
    }
    return plan;
  }

  /** Starts a profile for an event none of whose identifiers belongs to one yet. */
  async #start(workspace: string, first: Identifier, plan: Plan, cause: LinkCause): Promise<string> {
    const profileId = naturalProfileId(first);
    const record: ProfileRecord = { version: IDENTITY_RECORD_VERSION, profileId, createdAtMs: cause.atMs, identifiers: plan.union, merges: [] };
    const revision = await this.#kvCreate(identityKeys.profile(workspace, profileId), encodeRecord(record), () => this.#cache.forgetProfile(workspace, profileId));
    this.#cache.setProfile(workspace, profileId, { record, revision });
    return profileId;
  }

  /** Merges the plan's profiles into their survivor and gives it the plan's identifiers; returns the survivor. */
  async #merge(workspace: string, identifiers: Identifier[], view: GraphView, plan: Plan, cause: LinkCause): Promise<string> {
    const winner = survivor(this.#options.settingsFor(workspace), plan.group);
    const losers = plan.group.filter((root) => root !== winner);

    const merges = losers.map((loser) => this.#mergeEntry(loser, identifiers, view, winner.record.profileId, cause));
    await this.#updateSurvivor(workspace, winner, plan.union, merges, separationAfterMerge(plan.group.map((root) => root.record)));
    for (const loser of losers) await this.#markMerged(workspace, loser, winner.record.profileId, cause);
    return winner.record.profileId;
  }

  /** Reads each identifier's profile, following merges to the survivor. */
  async #read(workspace: string, identifiers: Identifier[], cached: boolean): Promise<GraphView> {
    const unannounced: MergeNotice[] = [];
    const links = await Promise.all(identifiers.map((identifier) => this.#identifierLink(workspace, identifier)));
    const mapped = links.map((link) => link !== undefined);

    const roots = new Map<string, Root>();
    const rootOf = await Promise.all(
      identifiers.map(async (identifier, index) => {
        const link = links[index];
        // A profile record can exist without its first identifier's record, because a resolution
        // stopped between the two writes. That profile is still the identifier's profile.
        const start = link === undefined && index === 0 ? naturalProfileId(identifier) : undefined;
        if (link === undefined && start === undefined) return undefined;

        const root = link === undefined ? await this.#root(workspace, start!, unannounced, cached) : await this.#identifierRoot(workspace, identifier, link, unannounced, cached);
        if (root === undefined) return undefined;
        roots.set(root.record.profileId, root);
        return root.record.profileId;
      }),
    );
    return { mapped, rootOf, roots, unannounced: dedupeNotices(unannounced) };
  }

  /** Returns the profile an identifier's record names, from the cache or the store, or undefined without a record. */
  async #identifierLink(workspace: string, identifier: Identifier): Promise<Link | undefined> {
    const cached = this.#cache.identifier(workspace, identifier);
    if (cached !== undefined) return { profileId: cached, fromCache: true };

    const entry = await this.#kv.get(identityKeys.identifier(workspace, identifier));
    if (entry === null) return undefined;
    const profileId = decodeRecord<IdentifierRecord>(entry.value).profileId;
    this.#cache.setIdentifier(workspace, identifier, profileId);
    return { profileId, fromCache: false };
  }

  /**
   * Follows an identifier's profile to its survivor. A survivor that does not list the
   * identifier means that a cached record was stale, because an unmerge on another node
   * repointed the identifier or restored its profile: the identifier is then forgotten and
   * followed again from the store. A survivor read from the store that does not list it is
   * returned as it is (an unmerge between its writes).
   */
  async #identifierRoot(workspace: string, identifier: Identifier, link: Link, unannounced: MergeNotice[], cached: boolean): Promise<Root | undefined> {
    const root = await this.#root(workspace, link.profileId, unannounced, cached);
    if (root === undefined || listsIdentifier(root.record, identifier) || !(cached || link.fromCache)) return root;

    this.#cache.forgetIdentifier(workspace, identifier);
    const fresh = await this.#identifierLink(workspace, identifier);
    return fresh === undefined ? undefined : this.#root(workspace, fresh.profileId, unannounced, false);
  }

  /**
   * Throws Retry when the plan decides the event's profile from a cached record without
   * writing it (no compare-and-set would catch a stale copy) and the store has a newer
   * revision, such as after an unmerge on another node. Costs one read in that case only.
   */
  async #confirmUnwritten(workspace: string, plan: Plan): Promise<void> {
    const [root] = plan.group;
    if (plan.group.length !== 1 || root.fromCache !== true || plan.union.length !== root.record.identifiers.length) return;

    const { profileId } = root.record;
    const entry = await this.#kv.get(identityKeys.profile(workspace, profileId));
    if (entry?.revision === root.revision) return;
    this.#cache.forgetProfile(workspace, profileId);
    throw new Retry();
  }

  /** Returns a profile record, from the cache when `cached` allows it, else from the store (refreshing the cache). */
  async #profileRecord(workspace: string, profileId: string, cached: boolean): Promise<Root | undefined> {
    const hit = cached ? this.#cache.profile(workspace, profileId) : undefined;
    if (hit !== undefined) return { ...hit, fromCache: true };

    const entry = await this.#kv.get(identityKeys.profile(workspace, profileId));
    if (entry === null) return undefined;
    // A revision names one value of the key, so a cached copy of it needs no decoding.
    const known = this.#cache.profile(workspace, profileId);
    if (known?.revision === entry.revision) return known;

    const root = { record: decodeRecord<ProfileRecord>(entry.value), revision: entry.revision };
    this.#cache.setProfile(workspace, profileId, root);
    return root;
  }

  /** Follows `mergedInto` from `profileId` to the profile that was not merged into another. */
  async #root(workspace: string, profileId: string, unannounced: MergeNotice[], cached: boolean): Promise<Root | undefined> {
    let current = profileId;
    for (let hops = 0; hops < MAX_CHAIN_LENGTH; hops++) {
      const entry = await this.#profileRecord(workspace, current, cached);
      if (entry === undefined) return undefined;

      const record = entry.record;
      if (record.mergedInto === undefined) return entry;
      if (record.mergeAnnounced !== true) {
        const { messageId, rule, atMs } = record.mergedInto;
        unannounced.push({ workspace, loser: current, winner: record.mergedInto.profileId, cause: { messageId, rule, atMs } });
      }
      current = record.mergedInto.profileId;
    }
    throw new IdentityError('IDENTITY_CHAIN_TOO_LONG', `profile ${profileId} of workspace ${workspace} is merged along a chain of more than ${MAX_CHAIN_LENGTH} profiles`);
  }

  #mergeEntry(loser: Root, identifiers: Identifier[], view: GraphView, winnerId: string, cause: LinkCause): MergeEntry {
    const from = identifiers.filter((_, index) => view.rootOf[index] === loser.record.profileId);
    const into = identifiers.filter((_, index) => view.rootOf[index] === winnerId);
    return { ...cause, profileId: loser.record.profileId, from, into };
  }

  /** Gives the survivor of a merge its identifiers, the new merge entries and the `separatedFrom` of the merged profiles. */
  async #updateSurvivor(workspace: string, winner: Root, identifiers: Identifier[], merges: MergeEntry[], separatedFrom: string[]): Promise<void> {
    if (merges.length === 0 && identifiers.length === winner.record.identifiers.length) return;
    const record = withSeparatedFrom({ ...winner.record, identifiers, merges: [...winner.record.merges, ...merges] }, separatedFrom);
    await this.#writeProfile(workspace, winner, record);
  }

  async #markMerged(workspace: string, loser: Root, winnerId: string, cause: LinkCause, separatedFrom = loser.record.separatedFrom ?? []): Promise<void> {
    const record = withSeparatedFrom({ ...loser.record, mergedInto: { ...cause, profileId: winnerId }, mergeAnnounced: false }, separatedFrom);
    await this.#writeProfile(workspace, loser, record);
  }

  /** Replaces a profile record read at `current.revision`; throws Retry when it changed since. */
  async #writeProfile(workspace: string, current: Root, record: ProfileRecord): Promise<void> {
    const { profileId } = current.record;
    const revision = await this.#kvUpdate(identityKeys.profile(workspace, profileId), encodeRecord(record), current.revision, () => this.#cache.forgetProfile(workspace, profileId));
    this.#cache.setProfile(workspace, profileId, { record, revision });
  }

  async #mapIdentifiers(workspace: string, identifiers: Identifier[], profileId: string, via: Identifier | undefined, cause: LinkCause): Promise<void> {
    await Promise.all(
      identifiers.map(async (identifier) => {
        const record: IdentifierRecord = { version: IDENTITY_RECORD_VERSION, identifier, profileId, ...cause, ...(via === undefined ? {} : { via }) };
        await this.#kvCreate(identityKeys.identifier(workspace, identifier), encodeRecord(record));
        this.#cache.setIdentifier(workspace, identifier, profileId);
      }),
    );
  }

  #quarantine(workspace: string, link: HeldLink, profileId: string, cause: LinkCause): QuarantineRecord {
    const { identifier, otherProfileId, reason, message } = link;
    return {
      version: IDENTITY_RECORD_VERSION,
      id: quarantineId(profileId, identifier, otherProfileId),
      workspace,
      identifier,
      profileId,
      ...(otherProfileId === undefined ? {} : { otherProfileId }),
      reason,
      message,
      messageId: cause.messageId,
      atMs: cause.atMs,
      status: 'pending',
    };
  }

  /**
   * Files quarantined links. A link already filed, by a retry of the same event, keeps its
   * record and status, unless it was approved. An approved link that is held again was
   * undone by an unmerge since, so it is filed again as pending for a new decision.
   */
  async #fileQuarantine(workspace: string, records: QuarantineRecord[]): Promise<void> {
    for (const record of records) {
      await this.#fileQuarantined(workspace, record);
      this.#options.logger.warn(
        { workspace, quarantineId: record.id, identifier: record.identifier, profileId: record.profileId, otherProfileId: record.otherProfileId, reason: record.reason, messageId: record.messageId },
        'identity link quarantined',
      );
    }
  }

  async #fileQuarantined(workspace: string, record: QuarantineRecord): Promise<void> {
    const key = identityKeys.quarantine(workspace, record.id);
    const ignoreConflict = (error: unknown) => {
      if (!(error instanceof KvConflictError)) throw error;
    };
    try {
      await this.#kv.create(key, encodeRecord(record));
      return;
    } catch (error) {
      ignoreConflict(error);
    }

    const filed = await this.#kv.get(key);
    if (filed === null || decodeRecord<QuarantineRecord>(filed.value).status !== 'approved') return;
    await this.#kv.update(key, encodeRecord(record), filed.revision).catch(ignoreConflict);
  }

  /** Creates a record and returns its revision; a conflict calls `onConflict` (to forget a cached copy) and starts the attempt again. */
  async #kvCreate(key: string, value: Uint8Array, onConflict?: () => void): Promise<number> {
    try {
      return await this.#kv.create(key, value);
    } catch (error) {
      if (!(error instanceof KvConflictError)) throw error;
      onConflict?.();
      throw new Retry();
    }
  }

  /** Updates a record at `revision` and returns the new one; a conflict calls `onConflict` and starts the attempt again. */
  async #kvUpdate(key: string, value: Uint8Array, revision: number, onConflict: () => void): Promise<number> {
    try {
      return await this.#kv.update(key, value, revision);
    } catch (error) {
      if (!(error instanceof KvConflictError)) throw error;
      onConflict();
      throw new Retry();
    }
  }

  /** Lists a workspace's quarantined links, oldest first, optionally of one status. */
  async listQuarantine(workspace: string, status?: QuarantineStatus): Promise<QuarantineRecord[]> {
    const entries = await this.#kv.list(identityKeys.quarantinePrefix(workspace));
    return entries
      .map((entry) => decodeRecord<QuarantineRecord>(entry.value))
      .filter((record) => status === undefined || record.status === status)
      .sort((a, b) => a.atMs - b.atMs || a.id.localeCompare(b.id));
  }

  /**
   * Makes a quarantined link although it breaks the settings: links the identifier to the
   * profile, or merges the two profiles. Returns the merges for the caller to append.
   */
  async approve(workspace: string, id: string): Promise<{ record: QuarantineRecord; merges: MergeNotice[] }> {
    const { record, revision } = await this.#pending(workspace, id);
    // The approval time keeps the merge's log records apart from an earlier approval of the
    // same link, made again after an unmerge.
    const atMs = this.#now();
    const cause: LinkCause = { messageId: `${record.id}@${atMs}`, rule: 'approved-link', atMs };
    const merges = await this.#withRetries(workspace, `link ${id} was approved`, 'try again', () => this.#approveOnce(workspace, record, cause));

    const decided: QuarantineRecord = { ...record, status: 'approved', decidedAtMs: cause.atMs };
    await this.#kv.update(identityKeys.quarantine(workspace, id), encodeRecord(decided), revision);
    return { record: decided, merges };
  }

  async #approveOnce(workspace: string, record: QuarantineRecord, cause: LinkCause): Promise<MergeNotice[]> {
    const unannounced: MergeNotice[] = [];
    const target = await this.#root(workspace, record.profileId, unannounced, false);
    if (target === undefined) throw new IdentityError('IDENTIFIER_NOT_LINKED', `profile ${record.profileId} of workspace ${workspace} is not in the identity graph`);

    const identifier = record.identifier;
    const otherId = record.otherProfileId === undefined ? await this.profileOf(workspace, identifier!) : await this.survivorOf(workspace, record.otherProfileId);

    if (otherId === undefined) {
      const identifiers = unionOf(target.record.identifiers, [identifier!]);
      await this.#updateSurvivor(workspace, target, identifiers, [], target.record.separatedFrom ?? []);
      await this.#mapIdentifiers(workspace, [identifier!], target.record.profileId, undefined, cause);
      return unannounced;
    }
    if (otherId === target.record.profileId) return unannounced;

    const other = (await this.#root(workspace, otherId, unannounced, false))!;
    const merge = await this.#mergeRoots(workspace, target, other, identifier === undefined ? [] : [identifier], cause);
    return dedupeNotices([...unannounced, merge]);
  }

  /**
   * Merges two profiles outside an event, as the fuzzy matcher does for a pair above its
   * auto-merge threshold. `cause.messageId` names what proved the match. Settings are not
   * checked, because the caller decided the pair is one person. Returns the merges for the
   * caller to append, empty when the two are already one profile. Throws PROFILES_SEPARATED
   * for profiles an operator unmerged: only an approved link merges those again.
   */
  mergeProfiles(workspace: string, first: string, second: string, cause: LinkCause): Promise<MergeNotice[]> {
    return this.#withRetries(workspace, `${first} and ${second} were merged`, 'try again', async () => {
      const unannounced: MergeNotice[] = [];
      const [a, b] = await Promise.all([this.#root(workspace, first, unannounced, false), this.#root(workspace, second, unannounced, false)]);
      if (a === undefined || b === undefined) throw new IdentityError('IDENTIFIER_NOT_LINKED', `profile ${a === undefined ? first : second} of workspace ${workspace} is not in the identity graph`);
      if (a.record.profileId === b.record.profileId) return dedupeNotices(unannounced);
      if (separated(a.record, b.record)) throw new IdentityError('PROFILES_SEPARATED', `${separationMessage(a.record.profileId, b.record.profileId)} (workspace ${workspace})`);
      return dedupeNotices([...unannounced, await this.#mergeRoots(workspace, a, b, [], cause)]);
    });
  }

  /**
   * Merges two survivors into the one `survivor` picks; throws Retry when either changed since
   * it was read. mergeProfiles rejects separated profiles first, so separated profiles reach
   * it only through an approved link, which ends the separation on both records.
   */
  async #mergeRoots(workspace: string, a: Root, b: Root, identifiers: Identifier[], cause: LinkCause): Promise<MergeNotice> {
    const winner = survivor(this.#options.settingsFor(workspace), [a, b]);
    const loser = winner === a ? b : a;
    const entry: MergeEntry = { ...cause, profileId: loser.record.profileId, from: identifiers, into: [] };
    const identifiersAfter = unionOf(winner.record.identifiers, loser.record.identifiers);
    await this.#updateSurvivor(workspace, winner, identifiersAfter, [entry], separationAfterMerge([winner.record, loser.record]));
    await this.#markMerged(workspace, loser, winner.record.profileId, cause, separationWithout(loser.record, winner.record));
    return { workspace, loser: loser.record.profileId, winner: winner.record.profileId, cause };
  }

  /**
   * Returns why two profiles may not merge (an operator unmerged them, or the workspace's
   * settings forbid it by a per-profile limit or merge protection), or undefined when they
   * may. The fuzzy matcher checks it before it merges, so a match never joins two customers
   * with different user ids, nor profiles an operator split.
   */
  async mergeConflictOf(workspace: string, first: string, second: string): Promise<string | undefined> {
    const [a, b] = await Promise.all([this.#root(workspace, first, [], false), this.#root(workspace, second, [], false)]);
    if (a === undefined || b === undefined) return `profile ${a === undefined ? first : second} is not in the identity graph`;
    if (separated(a.record, b.record)) return separationMessage(a.record.profileId, b.record.profileId);
    return mergeConflict(this.#options.settingsFor(workspace), a.record.identifiers, b.record.identifiers)?.message;
  }

  /**
   * Files a pair of profiles whose person traits the fuzzy matcher scored in its review band,
   * for an operator to approve (merge) or reject, like a quarantined link. The same pair is
   * filed once, and again only after an approved merge of it was unmerged. Returns the
   * record, or undefined when it was filed before.
   */
  async suggestMatch(workspace: string, first: string, second: string, probability: number, detail = 'in the review band'): Promise<QuarantineRecord | undefined> {
    const [profileId, otherProfileId] = [first, second].sort();
    const id = quarantineId(`fuzzy-match\u0000${profileId}`, { type: 'profile', value: otherProfileId }, undefined);
    const record: QuarantineRecord = {
      version: IDENTITY_RECORD_VERSION,
      id,
      workspace,
      profileId,
      otherProfileId,
      reason: 'FUZZY_MATCH',
      message: `the person traits of profiles ${profileId} and ${otherProfileId} match with probability ${probability.toFixed(3)}, ${detail}`,
      messageId: id,
      atMs: this.#now(),
      status: 'pending',
      probability,
    };
    const key = identityKeys.quarantine(workspace, id);
    try {
      await this.#kv.create(key, encodeRecord(record));
      return record;
    } catch (error) {
      if (!(error instanceof KvConflictError)) throw error;
    }

    // An approved suggestion whose merge an operator undid since is filed again for review.
    const filed = await this.#kv.get(key);
    if (filed === null || decodeRecord<QuarantineRecord>(filed.value).status !== 'approved') return undefined;
    if ((await this.mergeConflictOf(workspace, profileId, otherProfileId)) === undefined) return undefined;
    try {
      await this.#kv.update(key, encodeRecord(record), filed.revision);
      return record;
    } catch (error) {
      if (error instanceof KvConflictError) return undefined;
      throw error;
    }
  }

  /** Rejects a quarantined link: it stays unmade, and the record keeps the decision. */
  async reject(workspace: string, id: string): Promise<QuarantineRecord> {
    const { record, revision } = await this.#pending(workspace, id);
    const decided: QuarantineRecord = { ...record, status: 'rejected', decidedAtMs: this.#now() };
    await this.#kv.update(identityKeys.quarantine(workspace, id), encodeRecord(decided), revision);
    return decided;
  }

  async #pending(workspace: string, id: string): Promise<{ record: QuarantineRecord; revision: number }> {
    const entry = await this.#kv.get(identityKeys.quarantine(workspace, id));
    if (entry === null) throw new IdentityError('QUARANTINE_NOT_FOUND', `workspace ${workspace} has no quarantined link ${id}; list them with rtcdp identity quarantine list`);
    const record = decodeRecord<QuarantineRecord>(entry.value);
    if (record.status !== 'pending') throw new IdentityError('QUARANTINE_DECIDED', `quarantined link ${id} was already ${record.status}`);
    return { record, revision: entry.revision };
  }

  /** Explains why two identifiers belong to one profile: the links and merges between them. */
  async explain(workspace: string, first: Identifier, second: Identifier): Promise<Explanation> {
    const [a, b] = await Promise.all([this.#pathToRoot(workspace, first), this.#pathToRoot(workspace, second)]);
    const rootA = a.profiles.at(-1)!;
    const rootB = b.profiles.at(-1)!;
    if (rootA !== rootB) {
      throw new IdentityError('IDENTIFIER_NOT_LINKED', `${describeIdentifier(first)} belongs to profile ${rootA} and ${describeIdentifier(second)} to profile ${rootB}: they are not linked`);
    }

    // Each path is cut at the first profile both pass through.
    const meet = a.profiles.find((profileId) => b.profiles.includes(profileId))!;
    const stepsA = a.steps.slice(0, a.profiles.indexOf(meet) + 1);
    const stepsB = b.steps.slice(0, b.profiles.indexOf(meet) + 1);
    return { profileId: rootA, steps: [...stepsA, ...stepsB.reverse()] };
  }

  /** The steps from an identifier to its profile's survivor, and the profiles along the way. */
  async #pathToRoot(workspace: string, identifier: Identifier): Promise<{ steps: ExplainStep[]; profiles: string[] }> {
    const entry = await this.#kv.get(identityKeys.identifier(workspace, identifier));
    if (entry === null) {
      throw new IdentityError(
        'IDENTIFIER_NOT_LINKED',
        `${describeIdentifier(identifier)} is not linked to any profile of workspace ${workspace}: no event carried it, or its link is in the quarantine (rtcdp identity quarantine list)`,
      );
    }

    const link = decodeRecord<IdentifierRecord>(entry.value);
    const steps: ExplainStep[] = [{ kind: 'linked', identifier, profileId: link.profileId, messageId: link.messageId, rule: link.rule, atMs: link.atMs, ...(link.via === undefined ? {} : { via: link.via }) }];
    const profiles = [link.profileId];

    for (let hops = 0; hops < MAX_CHAIN_LENGTH; hops++) {
      const record = await this.profile(workspace, profiles.at(-1)!);
      if (record?.mergedInto === undefined) return { steps, profiles };

      const into = await this.profile(workspace, record.mergedInto.profileId);
      const entry = into?.merges.find((merge) => merge.profileId === record.profileId);
      const { profileId: intoProfileId, ...cause } = record.mergedInto;
      steps.push({ kind: 'merged', profileId: record.profileId, intoProfileId, from: entry?.from ?? [], into: entry?.into ?? [], ...cause });
      profiles.push(intoProfileId);
    }
    throw new IdentityError('IDENTITY_CHAIN_TOO_LONG', `profile ${link.profileId} of workspace ${workspace} is merged along a chain of more than ${MAX_CHAIN_LENGTH} profiles`);
  }

  /**
   * Undoes the merge of `mergedId` into `survivorId`, as an operator requests. `mergedId`
   * gets back the identifiers that came with it or were linked through them since, and the
   * survivor's later merges that joined through those identifiers move with it. The two
   * profiles stay apart afterwards until an operator approves a link between them. Returns
   * the plan for the profile actors to carry out; until markUnmergeAnnounced, calling again
   * returns the same plan and completes writes that a crash interrupted.
   *
   * Throws IdentityError PROFILE_NOT_FOUND, PROFILE_NOT_SURVIVOR, NOT_MERGED or
   * UNMERGE_ORDER, or IDENTITY_CONTENTION when resolutions keep changing the survivor.
   */
  unmerge(workspace: string, survivorId: string, mergedId: string): Promise<UnmergePlan> {
    return this.#withRetries(workspace, `profile ${mergedId} was unmerged from ${survivorId}`, 'run the unmerge again', () => this.#unmergeOnce(workspace, survivorId, mergedId));
  }

  /** Records that the command of unmerge `id` is in the log, so `unmerge` stops returning its plan. Does nothing for an unknown id. */
  markUnmergeAnnounced(workspace: string, survivorId: string, id: string): Promise<void> {
    return this.#withRetries(workspace, `unmerge ${id} was marked announced`, 'try again', async () => {
      const current = await this.#profileRecord(workspace, survivorId, false);
      const unmerges = current?.record.unmerges ?? [];
      const index = unmerges.findIndex((unmerge) => unmerge.id === id);
      if (current === undefined || index === -1 || unmerges[index].announced) return;

      const announced = unmerges.map((unmerge) => (unmerge.id === id ? { ...unmerge, announced: true } : unmerge));
      await this.#writeProfile(workspace, current, { ...current.record, unmerges: announced });
    });
  }

  async #unmergeOnce(workspace: string, survivorId: string, mergedId: string): Promise<UnmergePlan> {
    const [survivorRoot, merged] = await Promise.all([this.#profileRecord(workspace, survivorId, false), this.#profileRecord(workspace, mergedId, false)]);
    if (survivorRoot === undefined || merged === undefined) {
      const missing = survivorRoot === undefined ? survivorId : mergedId;
      throw new IdentityError('PROFILE_NOT_FOUND', `profile ${missing} is not in the identity graph of workspace ${workspace}; check the profile id (profile ids are user:ID, anon:ID or TYPE:VALUE)`);
    }
    const record = survivorRoot.record;
    if (record.mergedInto !== undefined) {
      const into = record.mergedInto.profileId;
      throw new IdentityError(
        'PROFILE_NOT_SURVIVOR',
        `profile ${survivorId} of workspace ${workspace} is not a survivor: it was merged into ${into}. Unmerge ${survivorId} from ${into}; the profiles merged into ${survivorId} before go back with it`,
      );
    }

    const mergeIndex = record.merges.findIndex((entry) => entry.profileId === mergedId);
    const resumed = mergeIndex === -1 || merged.record.mergedInto?.profileId !== survivorId;
    let entry: UnmergeEntry;
    if (resumed) {
      // Not merged (any more): a pending unmerge of it means a call that a crash interrupted.
      const pending = (record.unmerges ?? []).filter((unmerge) => unmerge.profileId === mergedId && !unmerge.announced).at(-1);
      if (pending === undefined) throw notMergedError(workspace, survivorId, merged.record);
      entry = pending;
    } else {
      checkUnmergeOrder(workspace, record, record.merges[mergeIndex]);
      entry = await this.#splitSurvivor(workspace, survivorRoot, mergeIndex);
    }

    // NOTE: until the restored profile's record is written, events with restored identifiers
    // still resolve to the survivor, whose actor has to forward them after the split.
    await this.#restoreProfiles(workspace, survivorId, entry);
    await this.#kv.put(identityKeys.unmergeEpoch(workspace), encode({ version: IDENTITY_RECORD_VERSION, unmergeId: entry.id }));
    this.#options.logger.info({ workspace, unmergeId: entry.id, survivor: survivorId, restored: mergedId, profiles: entry.profiles, resumed }, 'profiles unmerged');
    return {
      workspace,
      id: entry.id,
      survivor: survivorId,
      restored: entry.profileId,
      profiles: entry.profiles,
      restoredIdentifiers: entry.restoredIdentifiers,
      survivorIdentifiers: entry.survivorIdentifiers,
      merge: entry.merge,
      atMs: entry.atMs,
    };
  }

  /**
   * Splits the survivor's identifiers and writes its side of an unmerge. Identifier records
   * are repointed first: the restored profile is still merged into the survivor then, so
   * they resolve as before. The survivor's record, with the unmerge entry, is the write that
   * commits the unmerge. Throws Retry when a record changed since it was read.
   */
  async #splitSurvivor(workspace: string, survivorRoot: Root, mergeIndex: number): Promise<UnmergeEntry> {
    const record = survivorRoot.record;
    const merge = record.merges[mergeIndex];
    const mergedId = merge.profileId;

    const heads = [...new Set([mergedId, ...record.merges.slice(mergeIndex + 1).map((entry) => entry.profileId)])];
    const subtrees = new Map(await Promise.all(heads.map(async (profileId) => [profileId, await this.mergedInto(workspace, profileId)] as const)));
    const stored = await Promise.all(record.identifiers.map((identifier) => this.#kv.get(identityKeys.identifier(workspace, identifier))));
    const links = record.identifiers.map((identifier, index): IdentifierLink => {
      const entry = stored[index];
      // Without a record, as after a crash before linking, the identifier is its start profile's.
      if (entry === null) return { identifier, profileId: naturalProfileId(identifier) };
      const { profileId, via } = decodeRecord<IdentifierRecord>(entry.value);
      return { identifier, profileId, ...(via === undefined ? {} : { via }) };
    });
    const split = splitForUnmerge({ survivor: record, mergeIndex, links, subtrees });

    await Promise.all(
      record.identifiers.map(async (identifier, index) => {
        const entry = stored[index];
        if (entry === null || links[index].profileId !== record.profileId || !split.restoredIdentifiers.some((restored) => sameIdentifier(restored, identifier))) return;
        const repointed: IdentifierRecord = { ...decodeRecord<IdentifierRecord>(entry.value), profileId: mergedId };
        await this.#kvUpdate(identityKeys.identifier(workspace, identifier), encodeRecord(repointed), entry.revision, () => this.#cache.forgetIdentifier(workspace, identifier));
        this.#cache.setIdentifier(workspace, identifier, mergedId);
      }),
    );

    const entry: UnmergeEntry = {
      id: unmergeId(record.profileId, mergedId, merge.atMs, record.unmerges?.length ?? 0),
      profileId: mergedId,
      profiles: split.profiles,
      mergeMessageId: merge.messageId,
      atMs: this.#now(),
      announced: false,
      merge,
      movedMerges: record.merges.filter((candidate) => candidate.profileId !== mergedId && split.profiles.includes(candidate.profileId)),
      restoredIdentifiers: split.restoredIdentifiers,
      survivorIdentifiers: split.survivorIdentifiers,
    };
    const updated: ProfileRecord = {
      ...record,
      identifiers: split.survivorIdentifiers,
      merges: record.merges.filter((candidate) => !split.profiles.includes(candidate.profileId)),
      separatedFrom: [...new Set([...(record.separatedFrom ?? []), mergedId])],
      unmerges: [...(record.unmerges ?? []), entry],
    };
    await this.#writeProfile(workspace, survivorRoot, updated);
    return entry;
  }

  /**
   * Writes the restored side of a committed unmerge: each profile that moves with the restored
   * one is pointed at it, then the restored profile stops being merged. A record no longer
   * merged into the survivor was written before, so a repeated call writes only what is left.
   */
  async #restoreProfiles(workspace: string, survivorId: string, entry: UnmergeEntry): Promise<void> {
    // Profiles that move keep mergeAnnounced, because their state moves with the restored
    // profile's. One whose merge was never announced is announced into the restored profile.
    for (const profileId of entry.profiles.slice(1)) {
      const moved = await this.#profileRecord(workspace, profileId, false);
      const mergedInto = moved?.record.mergedInto;
      if (moved === undefined || mergedInto?.profileId !== survivorId) continue;
      await this.#writeProfile(workspace, moved, { ...moved.record, mergedInto: { ...mergedInto, profileId: entry.profileId } });
    }

    const restored = await this.#profileRecord(workspace, entry.profileId, false);
    if (restored === undefined || restored.record.mergedInto?.profileId !== survivorId) return;
    const movedMerges = entry.movedMerges.filter((moved) => !restored.record.merges.some((known) => known.profileId === moved.profileId));
    const record: ProfileRecord = {
      ...restored.record,
      identifiers: entry.restoredIdentifiers,
      merges: [...restored.record.merges, ...movedMerges],
      separatedFrom: [...new Set([...(restored.record.separatedFrom ?? []), survivorId])],
      restoredAtMs: entry.atMs,
    };
    delete record.mergedInto;
    delete record.mergeAnnounced;
    await this.#writeProfile(workspace, restored, record);
  }
}

/**
 * Wraps a store so that every failure other than a revision conflict becomes a retryable
 * IDENTITY_STORE_FAILED, such as a NATS KV call while the server restarts.
 */
function failingAsStoreErrors(kv: KvStore): KvStore {
  const guard = <T>(operation: Promise<T>): Promise<T> =>
    operation.catch((error: unknown) => {
      if (error instanceof KvConflictError) throw error;
      const reason = error instanceof Error ? error.message : String(error);
      throw new IdentityError('IDENTITY_STORE_FAILED', `the identity graph's store failed: ${reason}. Retry the call`, { cause: error });
    });
  return {
    get: (key) => guard(kv.get(key)),
    create: (key, value) => guard(kv.create(key, value)),
    update: (key, value, revision) => guard(kv.update(key, value, revision)),
    put: (key, value) => guard(kv.put(key, value)),
    delete: (key, revision) => guard(kv.delete(key, revision)),
    list: (prefix) => guard(kv.list(prefix)),
  };
}

/**
 * Waits a random time that grows with the attempt, up to 64 ms, so resolutions that keep
 * changing the same profile record take turns instead of failing together again.
 */
function backOff(attempt: number): Promise<void> {
  const ceilingMs = Math.min(64, 2 ** attempt);
  return new Promise((resolve) => setTimeout(resolve, Math.random() * ceilingMs));
}

/**
 * Returns the id of a profile started by an event whose highest-priority identifier is
 * `identifier`. User and anonymous ids give `user:` and `anon:` ids, as events were routed
 * before identity resolution, and other types give `TYPE:VALUE`.
 */
export function naturalProfileId(identifier: Identifier): string {
  if (identifier.type === 'user_id') return `user:${identifier.value}`;
  if (identifier.type === 'anonymous_id') return `anon:${identifier.value}`;
  return `${identifier.type}:${identifier.value}`;
}

/**
 * Returns the survivor of a merge: the profile holding the highest-priority identifier type, then
 * the older one, then the smaller id. A known customer's profile outlives an anonymous one.
 */
function survivor(settings: IdentitySettings, group: Root[]): Root {
  const rankOf = (root: Root) => Math.min(...root.record.identifiers.map((identifier) => settings.types.get(identifier.type)?.rank ?? Infinity));
  return group.reduce((best, root) => {
    const byRank = rankOf(root) - rankOf(best);
    if (byRank !== 0) return byRank < 0 ? root : best;
    if (root.record.createdAtMs !== best.record.createdAtMs) return root.record.createdAtMs < best.record.createdAtMs ? root : best;
    return root.record.profileId < best.record.profileId ? root : best;
  });
}

/** Returns why two profiles holding these identifiers must not merge, or undefined when they may. */
function mergeConflict(settings: IdentitySettings, a: Identifier[], b: Identifier[]): { reason: QuarantineReason; message: string } | undefined {
  for (const [type, typeSettings] of settings.types) {
    const left = a.filter((identifier) => identifier.type === type);
    const right = b.filter((identifier) => identifier.type === type);
    if (left.length === 0 || right.length === 0) continue;

    const union = unionOf(left, right);
    const nested = union.length === left.length || union.length === right.length;
    if (typeSettings.mergeProtected && !nested) {
      return { reason: 'MERGE_PROTECTED', message: `the profiles hold different ${type} values (${describeValues(left)} and ${describeValues(right)}), and ${type} is merge-protected` };
    }
    if (union.length > typeSettings.maxPerProfile) {
      return { reason: 'PER_PROFILE_LIMIT', message: `the merged profile would hold ${union.length} ${type} values, over the limit of ${typeSettings.maxPerProfile}` };
    }
  }
  return undefined;
}

/** Returns the message for a merge of two profiles that an operator unmerged. */
function separationMessage(first: string, second: string): string {
  return `profiles ${first} and ${second} were unmerged by an operator, so they merge again only through an approved link (rtcdp identity quarantine approve)`;
}

function notMergedError(workspace: string, survivorId: string, merged: ProfileRecord): IdentityError {
  const into = merged.mergedInto?.profileId;
  const message =
    into === undefined
      ? `profile ${merged.profileId} of workspace ${workspace} is not merged into ${survivorId}: it is a profile of its own, so there is nothing to unmerge`
      : `profile ${merged.profileId} of workspace ${workspace} is not merged directly into ${survivorId} but into ${into}. Unmerge it from ${into} if that is a survivor; if ${into} was merged in turn, unmerging ${into} takes ${merged.profileId} back with it`;
  return new IdentityError('NOT_MERGED', message);
}

/**
 * Throws UNMERGE_ORDER when the survivor was split after `merge`, by an unmerge of its own or
 * by an unmerge that restored it. The actors rebuild a split profile from its events since
 * the merge, and that replay cannot reach across a later split.
 */
function checkUnmergeOrder(workspace: string, survivorRecord: ProfileRecord, merge: MergeEntry): void {
  const mergedAt = new Date(merge.atMs).toISOString();
  const later = (survivorRecord.unmerges ?? []).find((unmerge) => unmerge.atMs > merge.atMs);
  if (later !== undefined) {
    throw new IdentityError(
      'UNMERGE_ORDER',
      `the merge of ${merge.profileId} into ${survivorRecord.profileId} (workspace ${workspace}, ${mergedAt}) cannot be undone: ${later.profileId} was unmerged from ${survivorRecord.profileId} after it (${new Date(later.atMs).toISOString()}), and the profile's events cannot be replayed across that later unmerge`,
    );
  }
  if (survivorRecord.restoredAtMs !== undefined && survivorRecord.restoredAtMs > merge.atMs) {
    throw new IdentityError(
      'UNMERGE_ORDER',
      `the merge of ${merge.profileId} into ${survivorRecord.profileId} (workspace ${workspace}, ${mergedAt}) cannot be undone: ${survivorRecord.profileId} was itself unmerged from the profile it had joined after it (${new Date(survivorRecord.restoredAtMs).toISOString()}), and the profile's events cannot be replayed across that later unmerge`,
    );
  }
}

function listsIdentifier(record: ProfileRecord, identifier: Identifier): boolean {
  return record.identifiers.some((known) => sameIdentifier(known, identifier));
}

function limitOf(settings: IdentitySettings, type: string): number {
  return settings.types.get(type)?.maxPerProfile ?? Infinity;
}

function countOfType(identifiers: Identifier[], type: string): number {
  let count = 0;
  for (const identifier of identifiers) if (identifier.type === type) count += 1;
  return count;
}

function unionOf(a: Identifier[], b: Identifier[]): Identifier[] {
  const union = [...a];
  for (const identifier of b) if (!union.some((known) => sameIdentifier(known, identifier))) union.push(identifier);
  return union;
}

function describeValues(identifiers: Identifier[]): string {
  return identifiers.map((identifier) => JSON.stringify(identifier.value)).join(', ');
}

function dedupeNotices(notices: MergeNotice[]): MergeNotice[] {
  const seen = new Set<string>();
  return notices.filter((notice) => {
    if (seen.has(notice.loser)) return false;
    seen.add(notice.loser);
    return true;
  });
}
