/**
 * The identity graph: which profile each identifier belongs to, which profiles were merged
 * into which, and the links held in quarantine. It resolves every event to one profile
 * before the event enters the log, so all of a person's events reach the same actor.
 *
 * Every change is a compare-and-set on a KvStore. A resolution that loses a race reads
 * again and retries, so resolutions running at the same time on different nodes agree.
 * An identifier's record is created once and never repointed, and a profile is merged into
 * at most one other. A merged profile's identifiers reach its survivor through the
 * `mergedInto` chain. The graph never decides from a read alone.
 */
import { RtcdpError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Identifier } from '../profiles/identifiers.js';
import { KvConflictError, type KvStore } from '../storage/kv-store.js';
import type { IdentitySettings } from './identity-settings.js';
import { RecordCache } from './record-cache.js';
import {
  decodeRecord,
  describeIdentifier,
  encodeRecord,
  IDENTITY_RECORD_VERSION,
  identityKeys,
  quarantineId,
  sameIdentifier,
  type IdentifierRecord,
  type LinkCause,
  type MergeEntry,
  type ProfileRecord,
  type QuarantineReason,
  type QuarantineRecord,
  type QuarantineStatus,
} from './identity-records.js';

/** Profiles followed along a `mergedInto` chain before the graph reports it as corrupt. */
const MAX_CHAIN_LENGTH = 64;

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
  | 'QUARANTINE_DECIDED';

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
    let found: string | undefined;
    for (const identifier of identifiers) {
      const start = this.#cache.identifier(workspace, identifier);
      const root = start === undefined ? undefined : this.#cachedRoot(workspace, start);
      if (root === undefined || (found !== undefined && root !== found)) return undefined;
      found = root;
    }
    return found === undefined ? undefined : { profileId: found, merges: [], quarantined: [] };
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
    const start = await this.#identifierProfile(workspace, identifier);
    if (start === undefined) return undefined;
    const root = await this.#root(workspace, start, [], false);
    return root?.record.profileId;
  }

  /** Returns the profile that `profileId` was merged into, following the chain, or `profileId` itself. */
  async survivorOf(workspace: string, profileId: string): Promise<string> {
    const root = await this.#root(workspace, profileId, [], false);
    return root?.record.profileId ?? profileId;
  }

  /** Returns a profile's record, merged or not, or undefined when the graph does not know it. */
  async profile(workspace: string, profileId: string): Promise<ProfileRecord | undefined> {
    const entry = await this.#kv.get(identityKeys.profile(workspace, profileId));
    return entry === null ? undefined : decodeRecord<ProfileRecord>(entry.value);
  }

  /** Returns every profile merged into `profileId`, directly or through profiles merged into those. */
  async mergedInto(workspace: string, profileId: string): Promise<string[]> {
    const found: string[] = [];
    let frontier = [profileId];
    while (frontier.length > 0 && found.length < MAX_MERGED_PROFILES) {
      const records = await Promise.all(frontier.map((id) => this.profile(workspace, id)));
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
    const view = await this.#read(workspace, identifiers, cached);
    const cause: LinkCause = { messageId, rule: 'shared-identifier', atMs: this.#now() };
    const plan = this.#plan(workspace, identifiers, view);

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
   * the merge while the union of identifiers stays within the settings. A new identifier is
   * linked while its type is under the limit. Every other link is held in quarantine, so the
   * highest-priority identifier always decides the event's profile.
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
    await this.#updateSurvivor(workspace, winner, plan.union, merges);
    for (const loser of losers) await this.#markMerged(workspace, loser, winner.record.profileId, cause);
    return winner.record.profileId;
  }

  /** Reads each identifier's profile, following merges to the survivor. */
  async #read(workspace: string, identifiers: Identifier[], cached: boolean): Promise<GraphView> {
    const unannounced: MergeNotice[] = [];
    const starts = await Promise.all(identifiers.map((identifier) => this.#identifierProfile(workspace, identifier)));
    const mapped = starts.map((start) => start !== undefined);
    // A profile record can exist without its first identifier's record, because a resolution
    // stopped between the two writes. That profile is still the identifier's profile.
    if (starts[0] === undefined) starts[0] = naturalProfileId(identifiers[0]);

    const roots = new Map<string, Root>();
    const rootOf = await Promise.all(
      starts.map(async (start) => {
        if (start === undefined) return undefined;
        const root = await this.#root(workspace, start, unannounced, cached);
        if (root === undefined) return undefined;
        roots.set(root.record.profileId, root);
        return root.record.profileId;
      }),
    );
    return { mapped, rootOf, roots, unannounced: dedupeNotices(unannounced) };
  }

  /** Returns the profile an identifier's record names, from the cache or the store, or undefined without a record. */
  async #identifierProfile(workspace: string, identifier: Identifier): Promise<string | undefined> {
    const cached = this.#cache.identifier(workspace, identifier);
    if (cached !== undefined) return cached;

    const entry = await this.#kv.get(identityKeys.identifier(workspace, identifier));
    if (entry === null) return undefined;
    const profileId = decodeRecord<IdentifierRecord>(entry.value).profileId;
    this.#cache.setIdentifier(workspace, identifier, profileId);
    return profileId;
  }

  /** Returns a profile record, from the cache when `cached` allows it, else from the store (refreshing the cache). */
  async #profileRecord(workspace: string, profileId: string, cached: boolean): Promise<Root | undefined> {
    const hit = cached ? this.#cache.profile(workspace, profileId) : undefined;
    if (hit !== undefined) return hit;

    const entry = await this.#kv.get(identityKeys.profile(workspace, profileId));
    if (entry === null) return undefined;
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

  async #updateSurvivor(workspace: string, winner: Root, identifiers: Identifier[], merges: MergeEntry[]): Promise<void> {
    if (merges.length === 0 && identifiers.length === winner.record.identifiers.length) return;
    const record: ProfileRecord = { ...winner.record, identifiers, merges: [...winner.record.merges, ...merges] };
    const { profileId } = winner.record;
    const revision = await this.#kvUpdate(identityKeys.profile(workspace, profileId), encodeRecord(record), winner.revision, () => this.#cache.forgetProfile(workspace, profileId));
    this.#cache.setProfile(workspace, profileId, { record, revision });
  }

  async #markMerged(workspace: string, loser: Root, winnerId: string, cause: LinkCause): Promise<void> {
    const record: ProfileRecord = { ...loser.record, mergedInto: { ...cause, profileId: winnerId }, mergeAnnounced: false };
    const { profileId } = loser.record;
    const revision = await this.#kvUpdate(identityKeys.profile(workspace, profileId), encodeRecord(record), loser.revision, () => this.#cache.forgetProfile(workspace, profileId));
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

  /** Files quarantined links. A link already filed, by a retry of the same event, keeps its record and status. */
  async #fileQuarantine(workspace: string, records: QuarantineRecord[]): Promise<void> {
    for (const record of records) {
      await this.#kv.create(identityKeys.quarantine(workspace, record.id), encodeRecord(record)).catch((error: unknown) => {
        if (!(error instanceof KvConflictError)) throw error;
      });
      this.#options.logger.warn(
        { workspace, quarantineId: record.id, identifier: record.identifier, profileId: record.profileId, otherProfileId: record.otherProfileId, reason: record.reason, messageId: record.messageId },
        'identity link quarantined',
      );
    }
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
    const cause: LinkCause = { messageId: record.id, rule: 'approved-link', atMs: this.#now() };
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
      await this.#updateSurvivor(workspace, target, identifiers, []);
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
   * checked: the caller decided the pair is one person. Returns the merges for the caller to
   * append, empty when the two are already one profile.
   */
  mergeProfiles(workspace: string, first: string, second: string, cause: LinkCause): Promise<MergeNotice[]> {
    return this.#withRetries(workspace, `${first} and ${second} were merged`, 'try again', async () => {
      const unannounced: MergeNotice[] = [];
      const [a, b] = await Promise.all([this.#root(workspace, first, unannounced, false), this.#root(workspace, second, unannounced, false)]);
      if (a === undefined || b === undefined) throw new IdentityError('IDENTIFIER_NOT_LINKED', `profile ${a === undefined ? first : second} of workspace ${workspace} is not in the identity graph`);
      if (a.record.profileId === b.record.profileId) return dedupeNotices(unannounced);
      return dedupeNotices([...unannounced, await this.#mergeRoots(workspace, a, b, [], cause)]);
    });
  }

  /** Merges two survivors into the one `survivor` picks; throws Retry when either changed since it was read. */
  async #mergeRoots(workspace: string, a: Root, b: Root, identifiers: Identifier[], cause: LinkCause): Promise<MergeNotice> {
    const winner = survivor(this.#options.settingsFor(workspace), [a, b]);
    const loser = winner === a ? b : a;
    const entry: MergeEntry = { ...cause, profileId: loser.record.profileId, from: identifiers, into: [] };
    await this.#updateSurvivor(workspace, winner, unionOf(winner.record.identifiers, loser.record.identifiers), [entry]);
    await this.#markMerged(workspace, loser, winner.record.profileId, cause);
    return { workspace, loser: loser.record.profileId, winner: winner.record.profileId, cause };
  }

  /**
   * Returns why two profiles may not merge under the workspace's settings (a per-profile
   * limit or merge protection), or undefined when they may. The fuzzy matcher checks it before
   * it merges, so a match never joins two customers with different user ids.
   */
  async mergeConflictOf(workspace: string, first: string, second: string): Promise<string | undefined> {
    const [a, b] = await Promise.all([this.#root(workspace, first, [], false), this.#root(workspace, second, [], false)]);
    if (a === undefined || b === undefined) return `profile ${a === undefined ? first : second} is not in the identity graph`;
    return mergeConflict(this.#options.settingsFor(workspace), a.record.identifiers, b.record.identifiers)?.message;
  }

  /**
   * Files a pair of profiles whose person traits the fuzzy matcher scored in its review band,
   * for an operator to approve (merge) or reject, like a quarantined link. The same pair is
   * filed once; returns the record, or undefined when it was filed before.
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
    try {
      await this.#kv.create(identityKeys.quarantine(workspace, id), encodeRecord(record));
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
