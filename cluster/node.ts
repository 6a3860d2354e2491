/**
 * An rtcdp node: validates and appends events to the log, delivers each owned partition
 * to the customer actors, and serves profile queries through those actors. Embedded mode
 * runs it on the RocksDB event log with every shard owned; cluster mode gives it another
 * log and ownership behind the same interfaces.
 */
import { ActorSystem } from '../actors/actor-system.js';
import { DeadlineError, OverloadedError } from '../common/errors.js';
import type { DefinitionStore } from '../decisions/definitions/definition-store.js';
import { DefinitionRegistry, type ApplyPreview } from '../decisions/definitions/definition-registry.js';
import type { SourceFile } from '../decisions/definitions/document.js';
import { RocksDbDefinitionStore } from '../decisions/definitions/rocksdb-definition-store.js';
import { DefinitionCatalog } from '../decisions/evaluation/definition-catalog.js';
import { compareDefinitions, type DefinitionTestReport } from '../decisions/evaluation/definition-test.js';
import { DefinitionEvaluator } from '../decisions/evaluation/definition-evaluator.js';
import { Lifecycle } from '../common/lifecycle.js';
import type { Logger } from '../common/logger.js';
import type { CustomerEvent, RawEvent } from '../profiles/event.js';
import { ActivationLog } from '../profiles/activation-log.js';
import { EvaluationTimers } from '../profiles/evaluation-timers.js';
import { profileIdForIdentifier, type Identifier } from '../profiles/identifiers.js';
import { actorKey, ProfileBehavior, type DeadLetterRecord } from '../profiles/profile-behavior.js';
import { ProfileHistoryReader, type StoredEvent, type StoredProfile } from '../profiles/profile-history.js';
import { mergeHistoryPage, mergedProfileIds } from '../profiles/history-page.js';
import { randomUUID } from 'node:crypto';
import type { DecisionReceipt } from '../profiles/decision-state.js';
import type { DecideRequest, ProfileMessage } from '../profiles/evaluator.js';
import type { ProfileState, ProfileView, UnpersistedEvent } from '../profiles/profile.js';
import { decode, encode } from '../storage/codec.js';
import type { AppendRequest, EventLog, LogRecord, PartitionId } from '../storage/event-log.js';
import { keys, parseSequence, prefixEnd } from '../storage/keys.js';
import { EventLogError, RocksDbEventLog } from '../storage/rocksdb-event-log.js';
import type { KvStore } from '../storage/kv-store.js';
import { RocksDbKvStore } from '../storage/rocksdb-kv-store.js';
import { Store } from '../storage/store.js';
import { EventResolver } from '../identity/event-resolver.js';
import { IdentityGraph } from '../identity/identity-graph.js';
import type { ProfileRecord } from '../identity/identity-records.js';
import { IdentityAdmin } from './identity-admin.js';
import { createOnlineMatching, type OnlineMatching } from '../identity/online-matching.js';
import { normalizeIdentifier } from '../identity/normalize.js';
import type { OutgoingRecord } from '../profiles/identity-commands.js';
import { assertIdentifier, assertWorkspaceName, checkShardCount, notFound, notFoundUnconfigured, parsePageSize, parseTestSample, type TestSample } from './arguments.js';
import { formatPageToken, parsePageToken, startCursors } from './page-token.js';
import { InvalidArgumentError, NodeUnavailableError } from './errors.js';
import { resolveNodeOptions, type NodeOptions, type ResolvedNodeOptions } from './node-options.js';
import { LocalShardOwnership, type ShardOwnership } from './ownership.js';
import { applyOutcomes, prepareBatch, type IngestResult, type PreparedBatch } from './ingest-batch.js';
import { PartitionConsumer } from './partition-consumer.js';
import { attachUnmergeHistory } from './unmerge-history.js';
import type { DecideInput, DefinitionTestRequest, ProfileEventsPage, ServingNode } from './serving-node.js';
import { shardOf } from './routing.js';

export type { IngestResult, IngestStatus } from './ingest-batch.js';
export type { ProfileEventsPage } from './serving-node.js';

/** Name of the identity graph's store in the node's RocksDB. */
const IDENTITY_STORE_NAME = 'identity';

/** How often a query checks whether a profile has absorbed the profiles merged into it. */
const ABSORB_POLL_INTERVAL_MS = 5;
/** The minimum time a drain gives the final persist, even with a drain timeout of 0. */
const MIN_FINAL_PERSIST_MS = 5_000;

export class RtcdpNode implements ServingNode {
  readonly options: ResolvedNodeOptions;
  /** Definitions in this node's RocksDB, served by DefinitionService. */
  readonly definitionStore: DefinitionStore;
  /** Activations of this node's profiles, served by ActivationService. */
  readonly activations: ActivationLog;
  readonly evaluator: DefinitionEvaluator;
  readonly #logger: Logger;
  readonly #lifecycle: Lifecycle;
  readonly #store: Store;
  readonly #log: EventLog;
  readonly #ownership: ShardOwnership;
  /** The identity graph of every workspace, in this node's RocksDB. */
  readonly identity: IdentityGraph;
  readonly #resolver: EventResolver;
  /** Quarantine decisions and explanations of the identity graph. */
  readonly identityAdmin: IdentityAdmin;
  /** Fuzzy matching of live profiles; undefined unless the options configure it. */
  readonly matching: OnlineMatching | undefined;
  readonly #behavior: ProfileBehavior;
  readonly #actors: ActorSystem<ProfileState, ProfileMessage>;
  readonly #catalog: DefinitionCatalog;
  readonly #timers: EvaluationTimers;
  readonly #consumers = new Map<string, PartitionConsumer>();
  #inFlightEvents = 0;
  #checkpointTimer: NodeJS.Timeout | null = null;
  #pruneTimer: NodeJS.Timeout | null = null;
  /** The prune pass in progress, awaited by drain before the log closes. */
  #pruning: Promise<number> | null = null;
  /** The checkpoint last written per partition; the log is pruned only up to it. */
  readonly #writtenCheckpoints = new Map<string, number>();
  #unsubscribe: () => void = () => {};
  /** Definition tests in progress, which read the store: drain and abort stop them before it closes. */
  readonly #definitionTests = new Set<Promise<unknown>>();
  readonly #stopDefinitionTests = new AbortController();

  private constructor(options: ResolvedNodeOptions, store: Store, log: EventLog, identityKv: KvStore) {
    this.options = options;
    this.#logger = options.logger;
    this.#lifecycle = new Lifecycle('node', this.#logger);
    this.#store = store;
    this.#log = log;
    this.#ownership = new LocalShardOwnership();
    this.identity = new IdentityGraph({ kv: identityKv, settingsFor: options.identitySettings, logger: this.#logger, now: options.now });
    this.#resolver = new EventResolver({ graph: this.identity, settingsFor: options.identitySettings });
    this.identityAdmin = new IdentityAdmin({
      graph: this.identity,
      settingsFor: options.identitySettings,
      shards: () => options.shards,
      append: (requests) => this.#appendInternal(requests),
      log: { read: (partition, afterSequence, limit) => this.#log.read(partition, afterSequence, limit) },
      profile: (workspace, profileId) => this.#profileById(workspace, profileId),
      timeoutMs: options.queryTimeoutMs,
      logger: this.#logger,
    });
    this.matching = createOnlineMatching(options.matching, { graph: this.identity, kv: identityKv, announce: (merges) => this.identityAdmin.announce(merges), logger: this.#logger });
    this.definitionStore = new RocksDbDefinitionStore(store, { logger: this.#logger });
    this.activations = new ActivationLog(store);
    this.#catalog = new DefinitionCatalog({ store: this.definitionStore, logger: this.#logger, reloadIntervalMs: options.definitionReloadIntervalMs });
    this.evaluator = new DefinitionEvaluator({ catalog: this.#catalog, logger: this.#logger });
    this.#behavior = new ProfileBehavior({
      store,
      limits: options.profileLimits,
      logger: this.#logger,
      evaluator: this.evaluator,
      activations: this.activations,
      beforeApply: options.beforeApply,
      now: options.now,
      send: (records) => this.#send(records),
      identifiersOf: (workspace, event) => this.#resolver.identifiersOf(workspace, event),
    });
    this.#actors = new ActorSystem(this.#behavior, { ...options.actors, logger: this.#logger });
    this.#timers = new EvaluationTimers({
      store,
      partitions: async () => (await this.#log.partitions()).filter((partition) => this.#ownership.owns(partition.shard)),
      tell: (key, message) => this.#actors.tell(key, message),
      logger: this.#logger,
      intervalMs: options.evaluationTimerIntervalMs,
      now: options.now,
    });
  }

  /** Opens the data directory, replays every partition from its checkpoint, and starts delivering. */
  static async start(input: NodeOptions): Promise<RtcdpNode> {
    const options = resolveNodeOptions(input);
    const store = await Store.open({ path: options.dataDir, walSync: options.walSync, logger: options.logger });

    try {
      await checkShardCount(store, options.shards);
      const log = await RocksDbEventLog.open(store, { logger: options.logger });
      const identityKv = await RocksDbKvStore.open(store, IDENTITY_STORE_NAME);
      const node = new RtcdpNode(options, store, log, identityKv);
      await node.#start();
      return node;
    } catch (error) {
      await store.close();
      throw error;
    }
  }

  async #start(): Promise<void> {
    this.#lifecycle.set('starting', { dataDir: this.options.dataDir, shards: this.options.shards });
    this.#catalog.start();
    this.#actors.start();
    await this.matching?.start();

    // Records between a checkpoint and the head were acknowledged before the restart and
    // are replayed now, so they count as in flight until applied.
    for (const partition of await this.#log.partitions()) {
      if (!this.#ownership.owns(partition.shard)) continue;
      const consumer = await this.#consumerFor(partition);
      this.#inFlightEvents += (await this.#log.headSequence(partition)) - consumer.applied.value;
    }
    this.#unsubscribe = this.#log.onAppend((records) => this.#route(records));

    this.#checkpointTimer = setInterval(() => void this.#writeCheckpoints(), this.options.checkpointIntervalMs);
    this.#checkpointTimer.unref();
    this.#pruneTimer = setInterval(() => void this.pruneLog(), this.options.pruneIntervalMs);
    this.#pruneTimer.unref();
    this.#timers.start();
    this.#lifecycle.set('running');
  }

  get state() {
    return this.#lifecycle.state;
  }

  /** The node's RocksDB, for components that keep node-local state in it, such as webhook delivery cursors. Open until the node stops. */
  get store(): Store {
    return this.#store;
  }

  /**
   * Validates, routes and appends a batch. Resolves once every accepted event is durable in
   * the log, with one result per event in request order. Throws OverloadedError, storing
   * nothing, when the batch would take the node over its in-flight limit.
   */
  async ingest(workspace: string, raws: RawEvent[]): Promise<IngestResult[]> {
    this.#assertRunning('ingest');
    assertWorkspaceName(workspace);

    const stored = this.#log.storedMessageIds === undefined ? undefined : (ids: readonly string[]) => this.#log.storedMessageIds!(workspace, ids);
    const batch = await prepareBatch(workspace, raws, this.options.eventLimits, this.options.shards, this.#resolver, stored);
    await this.#append(batch);
    await Promise.all(batch.merges.map((merge) => this.identityAdmin.markAnnounced(merge)));
    this.#observePersons(workspace, batch.events);
    return batch.results;
  }

  /** Hands the appended events to online matching, which scores those that describe a person in the background. */
  #observePersons(workspace: string, requests: AppendRequest[]): void {
    const matching = this.matching;
    if (matching === undefined) return;
    for (const request of requests) {
      const event = request.value as CustomerEvent;
      matching.observe(workspace, event.profileId!, event);
    }
  }

  /** Appends the records profile actors send to other profiles: merge state and forwarded events. */
  #send(records: OutgoingRecord[]): Promise<void> {
    return this.#appendInternal(
      records.map((record) => ({
        workspace: record.workspace,
        shard: shardOf(record.profileId, this.options.shards),
        messageId: record.messageId,
        payload: encode(record.entry),
        value: record.entry,
      })),
    );
  }

  /**
   * Appends records that are not ingested events: identity commands and forwarded events.
   * They count as in flight until applied, like ingested events, but never fail for
   * overload, because an actor's persist or an operator's approval waits on them.
   */
  async #appendInternal(requests: AppendRequest[]): Promise<void> {
    this.#inFlightEvents += requests.length;
    let appended = 0;
    try {
      const outcomes = await this.#log.append(requests);
      appended = outcomes.filter((outcome) => outcome.status === 'appended').length;
    } catch (error) {
      if (error instanceof EventLogError) appended = error.written;
      throw error;
    } finally {
      this.#inFlightEvents -= requests.length - appended;
    }
  }

  async #append(batch: PreparedBatch): Promise<void> {
    const { requests } = batch;
    if (requests.length === 0) return;
    if (requests.length > this.options.maxInFlightEvents) {
      throw new InvalidArgumentError(`batch of ${requests.length} valid events is larger than the node's in-flight limit of ${this.options.maxInFlightEvents}; split it into smaller batches`);
    }
    if (this.#inFlightEvents + requests.length > this.options.maxInFlightEvents) {
      throw new OverloadedError(`node has ${this.#inFlightEvents} events in flight; ${requests.length} more would pass the limit of ${this.options.maxInFlightEvents}. Retry after a short backoff.`);
    }

    this.#inFlightEvents += requests.length;
    let appended = 0;
    try {
      appended = applyOutcomes(batch, await this.#log.append(requests));
    } catch (error) {
      // Events written before a failed WAL sync are still applied, and release their slots then.
      if (error instanceof EventLogError) appended = error.written;
      throw error;
    } finally {
      // Only appended events will be applied and release their in-flight slot.
      this.#inFlightEvents -= requests.length - appended;
    }
  }

  /** Returns the profile holding `identifier`, reflecting every event acknowledged before the call. */
  async getProfile(workspace: string, identifier: Identifier): Promise<ProfileView> {
    this.#assertRunning('getProfile');
    const profileId = await this.#resolve(workspace, identifier);
    const snapshot = await this.#actors.ask(actorKey(workspace, profileId), (state) => (state === undefined ? undefined : this.#behavior.view(state)));
    if (snapshot === undefined) throw notFound(identifier);
    return snapshot;
  }

  /** Returns a profile by id, reflecting every event acknowledged before the call, or undefined when it has none. */
  async #profileById(workspace: string, profileId: string): Promise<ProfileView | undefined> {
    await this.#awaitDelivered(workspace, shardOf(profileId, this.options.shards));
    return this.#actors.ask(actorKey(workspace, profileId), (state) => (state === undefined ? undefined : this.#behavior.view(state)));
  }

  /**
   * Returns a page of the profile's events, newest first: its own history joined with the
   * histories of the profiles merged into it (profiles/history-page.ts). Each merged profile
   * lists the events it applied before the merge. It has no unpersisted ones by now, because
   * #resolve waited until it sent its state, and the persist that sends it writes them.
   */
  async listProfileEvents(workspace: string, identifier: Identifier, page: { pageSize?: number; pageToken?: string } = {}): Promise<ProfileEventsPage> {
    this.#assertRunning('listProfileEvents');
    const pageSize = parsePageSize(page.pageSize);
    const start = parsePageToken(page.pageToken);
    const profileId = await this.#resolve(workspace, identifier);

    const own = await this.#actors.ask(actorKey(workspace, profileId), (state) =>
      state === undefined ? undefined : { unpersisted: state.unpersisted.map((event) => ({ ...event })), merged: mergedProfileIds(profileId, state.merges) },
    );
    if (own === undefined) throw notFound(identifier);

    const reader = new ProfileHistoryReader(this.#store);
    const sources = await Promise.all(
      [...startCursors(start, profileId, own.merged)].map(async ([sourceId, before]) => {
        const unpersisted = sourceId === profileId ? own.unpersisted : [];
        return { profileId: sourceId, before, events: await newestOwnEvents(reader, { workspace, profileId: sourceId, before, unpersisted }, pageSize + 1) };
      }),
    );
    const { events, next } = mergeHistoryPage(sources, pageSize);
    return { events, nextPageToken: formatPageToken(next), unavailableNodes: [], departedNodes: [] };
  }

  /**
   * Decides the next best action for the profile holding `identifier`, in its actor, after
   * every event acknowledged before the call. The decision counts for the rules' caps.
   */
  async decide(workspace: string, identifier: Identifier, request: DecideInput): Promise<DecisionReceipt> {
    this.#assertRunning('decide');
    const profileId = await this.#resolve(workspace, identifier);
    const key = actorKey(workspace, profileId);
    // A Decide call never creates a profile: an unknown identifier is NOT_FOUND.
    if (!(await this.#actors.ask(key, (state) => state !== undefined))) throw notFound(identifier);

    let reply: (receipt: DecisionReceipt) => void = () => {};
    const receipt = new Promise<DecisionReceipt>((resolve) => (reply = resolve));
    const message: DecideRequest = { kind: 'decide', requestId: randomUUID(), channel: request.channel, context: request.context, nowMs: this.options.now(), reply };
    if (!this.#actors.tell(key, message)) throw new OverloadedError(`profile ${profileId} has a full mailbox; retry shortly`);
    return this.#withDeadline(receipt, `the decision for profile ${profileId}`);
  }

  /** Returns the receipts of the profile's most recent decisions, newest first. */
  async listReceipts(workspace: string, identifier: Identifier): Promise<DecisionReceipt[]> {
    const profile = await this.getProfile(workspace, identifier);
    return [...profile.receipts].reverse();
  }

  /** Lists dead letters of a workspace, oldest profile id first. */
  async listDeadLetters(workspace: string, limit = 100): Promise<DeadLetterRecord[]> {
    this.#assertRunning('listDeadLetters');
    const prefix = keys.deadLetterPrefix(workspace);
    const entries = await this.#store.list({ gte: prefix, lt: prefixEnd(prefix), limit });
    return entries.map((entry) => decode<DeadLetterRecord>(entry.value));
  }

  /**
   * Replays the stored events of sample profiles under the workspace's current definitions
   * and under those an apply of `files` would leave, and compares the results
   * (decisions/evaluation/definition-test.ts). Stores nothing. An invalid set returns its
   * issues and evaluates nothing. The sample reflects every event acknowledged before the
   * call. Throws InvalidArgumentError for a bad sample, ProfileNotFoundError for an
   * identifier without a stored profile, and AbortedError when `request.signal` aborts or
   * the node stops.
   */
  async testDefinitions(workspace: string, files: readonly SourceFile[], request: DefinitionTestRequest = {}): Promise<DefinitionTestReport> {
    this.#assertRunning('testDefinitions');
    assertWorkspaceName(workspace);
    if (files.length === 0) throw new InvalidArgumentError('files is empty: send at least one definition file');
    const sample = parseTestSample(request.profiles, request.identifiers);

    const preview = await new DefinitionRegistry(this.definitionStore).preview(workspace, files, { prune: request.prune });
    if (preview.issues.length > 0) return { issues: preview.issues, results: [], comparison: undefined };

    const signal = AbortSignal.any([this.#stopDefinitionTests.signal, ...(request.signal === undefined ? [] : [request.signal])]);
    const running = this.#compareOnSample(workspace, sample, preview, request, signal);
    this.#definitionTests.add(running);
    try {
      return { issues: [], results: preview.results, comparison: await running };
    } finally {
      this.#definitionTests.delete(running);
    }
  }

  async #compareOnSample(workspace: string, sample: TestSample, preview: ApplyPreview, request: DefinitionTestRequest, signal: AbortSignal) {
    // Every acknowledged event applied, and every applied event in the stored history.
    await this.#awaitAllApplied(workspace);
    await this.#actors.flush();

    const reader = new ProfileHistoryReader(this.#store);
    const named = 'identifiers' in sample ? await this.#storedProfiles(workspace, sample.identifiers, reader) : undefined;
    return compareDefinitions(workspace, {
      current: preview.current,
      proposed: preview.proposed,
      source: {
        profiles: () => named ?? reader.firstProfiles(workspace, 'count' in sample ? sample.count : 0),
        events: (profile) => reader.events(profile),
      },
      limits: this.options.profileLimits,
      nowMs: request.nowMs ?? Date.now(),
      logger: this.#logger,
      maxHistoryEvents: request.maxHistoryEvents,
      signal,
    });
  }

  /** Resolves identifiers to their stored profiles, each profile once, in the order given. */
  async #storedProfiles(workspace: string, identifiers: readonly Identifier[], reader: ProfileHistoryReader): Promise<StoredProfile[]> {
    const profiles = new Map<string, StoredProfile>();
    for (const identifier of identifiers) {
      const profileId = await this.#resolve(workspace, identifier);
      if (profiles.has(profileId)) continue;
      const stored = await reader.get(workspace, profileId);
      if (stored === undefined) throw notFound(identifier);
      profiles.set(profileId, stored);
    }
    return [...profiles.values()];
  }

  stats() {
    return { state: this.state, inFlightEvents: this.#inFlightEvents, partitions: this.#consumers.size, actors: this.#actors.stats() };
  }

  /**
   * Waits until every event acknowledged so far is reflected, then finds the profile id.
   * The identity graph links an event's identifiers before the event is acknowledged, so the
   * profile is known at once. Its partition is then applied up to the head, and the merges
   * the graph lists for it are awaited until its actor has absorbed them.
   */
  async #resolve(workspace: string, identifier: Identifier): Promise<string> {
    assertWorkspaceName(workspace);
    assertIdentifier(identifier);

    const { profileId, record } = await this.#profileOf(workspace, identifier);
    if (profileId === undefined) throw notFound(identifier);
    await this.#awaitDelivered(workspace, shardOf(profileId, this.options.shards));
    await this.#awaitAbsorbed(workspace, profileId, record);
    return profileId;
  }

  /**
   * Returns the profile an identifier belongs to through the identity graph, with its graph
   * record when the graph has one. A user or anonymous id the graph does not know names the
   * profile its events were routed to before identity resolution. A value that does not
   * link profiles finds none.
   */
  async #profileOf(workspace: string, identifier: Identifier): Promise<{ profileId: string | undefined; record?: ProfileRecord }> {
    const normalized = normalizeIdentifier(this.options.identitySettings(workspace), { type: identifier.type, value: identifier.value, field: identifier.type });
    if (!normalized.ok && normalized.code === 'UNKNOWN_IDENTIFIER_TYPE') throw notFoundUnconfigured(identifier);
    if (!normalized.ok || !normalized.linkable) return { profileId: undefined };

    const record = await this.identity.profileRecordOf(workspace, normalized.identifier);
    return { profileId: record?.profileId ?? profileIdForIdentifier(normalized.identifier), record };
  }

  /**
   * Waits until the profile's actor has absorbed every profile the graph merged into it, and
   * has the events that reached those profiles' tombstones. Their partitions are applied up
   * to the head and their forwards sent, then the survivor's partition is delivered again.
   * Only the merged profiles' actors are asked, so the query never waits for other profiles.
   * `record` is the profile's graph record when the caller has just read it.
   */
  async #awaitAbsorbed(workspace: string, profileId: string, record?: ProfileRecord): Promise<void> {
    const expected = await this.identity.mergedInto(workspace, profileId, record);
    if (expected.length === 0) return;
    const deadline = Date.now() + this.options.queryTimeoutMs;

    const shards = new Set(expected.map((merged) => shardOf(merged, this.options.shards)));
    for (const shard of shards) await this.#awaitApplied(workspace, shard);
    // A tombstone with records to send persists in the next batch, which sends them.
    for (const merged of expected) {
      await this.#pollUntil(actorKey(workspace, merged), (state) => (state?.outbox.length ?? 0) === 0, deadline, `profile ${merged} did not forward its events to ${profileId}`);
    }
    await this.#awaitDelivered(workspace, shardOf(profileId, this.options.shards));

    const absorbed = (state: ProfileState | undefined) => expected.every((id) => state?.merges.some((merge) => merge.profileId === id) === true);
    await this.#pollUntil(actorKey(workspace, profileId), absorbed, deadline, `profile ${profileId} did not absorb the profiles merged into it`);
  }

  /** Asks an actor every few milliseconds until `done` accepts its state; throws DeadlineError naming `what` at `deadline`. */
  async #pollUntil(key: string, done: (state: ProfileState | undefined) => boolean, deadline: number, what: string): Promise<void> {
    for (;;) {
      if (await this.#actors.ask(key, done)) return;
      if (Date.now() >= deadline) throw new DeadlineError(`${what} within ${this.options.queryTimeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, ABSORB_POLL_INTERVAL_MS));
    }
  }

  /** Waits until every record of the partition up to its current head has been handled by its actor. */
  async #awaitApplied(workspace: string, shard: number): Promise<void> {
    const partition = { workspace, shard };
    const head = await this.#log.headSequence(partition);
    if (head === 0) return;
    const consumer = await this.#consumerFor(partition);
    await this.#withDeadline(consumer.applied.reach(head), `shard ${shard} to apply events up to ${head}`);
  }

  async #awaitDelivered(workspace: string, shard: number): Promise<void> {
    const partition = { workspace, shard };
    const head = await this.#log.headSequence(partition);
    if (head === 0) return;
    // A query of a shard that has caught up, the usual case, sets no timer.
    const consumer = this.#consumers.get(partitionName(partition)) ?? (await this.#consumerFor(partition));
    if (consumer.deliveredSequence >= head) return;
    await this.#withDeadline(consumer.delivered(head), `shard ${shard} to deliver events up to ${head}`);
  }

  async #awaitAllApplied(workspace: string): Promise<void> {
    const partitions = await this.#log.partitions();
    const waits = partitions.filter((partition) => partition.workspace === workspace).map(async (partition) => {
      const consumer = await this.#consumerFor(partition);
      await consumer.applied.reach(await this.#log.headSequence(partition));
    });
    await this.#withDeadline(Promise.all(waits), `workspace ${workspace} to apply acknowledged events`);
  }

  async #withDeadline<T>(promise: Promise<T>, waitingFor: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlineError(`timed out after ${this.options.queryTimeoutMs} ms waiting for ${waitingFor}`)), this.options.queryTimeoutMs);
      timer.unref();
    });
    try {
      return await Promise.race([promise, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  #route(records: LogRecord[]): void {
    let start = 0;
    for (let i = 1; i <= records.length; i++) {
      const boundary = i === records.length || records[i].shard !== records[start].shard || records[i].workspace !== records[start].workspace;
      if (!boundary) continue;
      const group = records.slice(start, i);
      start = i;
      if (!this.#ownership.owns(group[0].shard)) continue;
      const consumer = this.#consumers.get(partitionName(group[0]));
      if (consumer) consumer.offer(group);
      else void this.#consumerFor(group[0]);
    }
  }

  /** The consumer of a partition, created from its checkpoint on first use. */
  async #consumerFor(partition: PartitionId): Promise<PartitionConsumer> {
    const name = partitionName(partition);
    const existing = this.#consumers.get(name);
    if (existing) return existing;

    const stored = await this.#store.get(keys.checkpoint(partition.workspace, partition.shard));
    const raced = this.#consumers.get(name);
    if (raced) return raced;

    // `partition` may be a log record: only its two fields are kept.
    const id = { workspace: partition.workspace, shard: partition.shard };
    const consumer = new PartitionConsumer({
      partition: id,
      log: this.#log,
      actors: this.#actors,
      checkpoint: stored === null ? 0 : Number(stored.toString()),
      logger: this.#logger,
      onApplied: () => {
        this.#inFlightEvents -= 1;
      },
      readUnmergeHistory: (message) => attachUnmergeHistory(this.#log, id, message, this.#logger),
    });
    this.#consumers.set(name, consumer);
    consumer.start();
    return consumer;
  }

  async #writeCheckpoints(): Promise<void> {
    const written = [...this.#consumers.values()].map((consumer) => ({ consumer, sequence: consumer.durable.value }));
    const ops = written.map(({ consumer, sequence }) => ({
      type: 'put' as const,
      key: keys.checkpoint(consumer.partition.workspace, consumer.partition.shard),
      value: String(sequence),
    }));

    try {
      await this.#store.write(ops, { sync: true });
      for (const { consumer, sequence } of written) this.#writtenCheckpoints.set(partitionName(consumer.partition), sequence);
    } catch (error) {
      this.#logger.error({ err: error }, 'checkpoint write failed');
    }
  }

  /**
   * Deletes log records older than the dedup window that are at or below their partition's
   * written checkpoint. Runs every `pruneIntervalMs`; returns how many records it deleted.
   */
  async pruneLog(): Promise<number> {
    if (this.#pruning !== null || !this.#lifecycle.is('running')) return 0;
    this.#pruning = this.#prunePartitions().finally(() => {
      this.#pruning = null;
    });
    return this.#pruning;
  }

  async #prunePartitions(): Promise<number> {
    let pruned = 0;

    try {
      const appendedBeforeMs = Date.now() - this.options.dedupWindowMs;
      for (const consumer of this.#consumers.values()) {
        const upTo = this.#writtenCheckpoints.get(partitionName(consumer.partition)) ?? 0;
        if (upTo > 0) pruned += await this.#log.prune(consumer.partition, upTo, appendedBeforeMs);
      }
      if (pruned > 0) this.#logger.info({ pruned, appendedBeforeMs }, 'pruned event log records past the dedup window');
    } catch (error) {
      this.#logger.error({ err: error }, 'event log pruning failed');
    }
    await this.#pruneActivations();
    return pruned;
  }

  /** Deletes activations older than `activationRetentionMs` from each workspace's activation log. */
  async #pruneActivations(): Promise<void> {
    const storedBeforeMs = Date.now() - this.options.activationRetentionMs;
    const workspaces = new Set([...this.#consumers.values()].map((consumer) => consumer.partition.workspace));
    for (const workspace of workspaces) {
      try {
        const pruned = await this.activations.prune(workspace, storedBeforeMs);
        if (pruned > 0) this.#logger.info({ workspace, pruned, storedBeforeMs }, 'pruned activations past their retention');
      } catch (error) {
        this.#logger.error({ workspace, err: error }, 'activation pruning failed');
      }
    }
  }

  /**
   * Stops taking events, applies everything already acknowledged, persists every profile
   * and checkpoint, and closes the store. After `timeoutMs` it stops waiting for delivery
   * but still persists what was applied, for up to `timeoutMs` again and at least
   * MIN_FINAL_PERSIST_MS: the rest is replayed from the log on the next start.
   */
  async drain(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#lifecycle.is('stopped', 'draining')) return;
    this.#lifecycle.set('draining');
    const timeoutMs = options.timeoutMs ?? 30_000;

    // Matching first: the merges it makes append commands that the actors still apply.
    await this.matching?.stop();
    await this.#awaitConsumers(timeoutMs);
    for (const consumer of this.#consumers.values()) consumer.stop();
    this.#unsubscribe();
    await this.#timers.stop();
    await this.#stopTests();
    // Unpersisted state is replayed from the log on the next start, so a store that fails every write cannot hold the drain.
    await this.#actors.drain({ timeoutMs, flushTimeoutMs: Math.max(timeoutMs, MIN_FINAL_PERSIST_MS) });
    this.#catalog.stop();

    if (this.#checkpointTimer) clearInterval(this.#checkpointTimer);
    if (this.#pruneTimer) clearInterval(this.#pruneTimer);
    await this.#writeCheckpoints();
    await this.#pruning;
    await this.#log.close();
    await this.#store.close();
    this.#lifecycle.set('stopped');
  }

  /**
   * Stops at once, without applying or persisting anything more: the forced way to stop.
   * Events acknowledged but not yet in a snapshot are replayed from the log on the next start.
   */
  async abort(): Promise<void> {
    if (this.#lifecycle.is('stopped')) return;
    this.#lifecycle.set('draining', { forced: true });

    await this.matching?.abort();
    for (const consumer of this.#consumers.values()) consumer.stop();
    this.#unsubscribe();
    if (this.#checkpointTimer) clearInterval(this.#checkpointTimer);
    if (this.#pruneTimer) clearInterval(this.#pruneTimer);
    await this.#timers.stop();
    await this.#stopTests();
    await this.#actors.stop();
    this.#catalog.stop();
    await this.#pruning;
    await this.#log.close();
    await this.#store.close();
    this.#lifecycle.set('stopped', { forced: true });
  }

  /** Aborts the definition tests in progress and waits until none reads the store. */
  async #stopTests(): Promise<void> {
    this.#stopDefinitionTests.abort(new NodeUnavailableError('node is stopping'));
    await Promise.allSettled(this.#definitionTests);
  }

  async #awaitConsumers(timeoutMs: number): Promise<void> {
    // A partition's consumer may still be in creation, so go by the log's partitions.
    const partitions = await this.#log.partitions();
    const owned = partitions.filter((partition) => this.#ownership.owns(partition.shard));
    const waits = owned.map(async (partition) => {
      const consumer = await this.#consumerFor(partition);
      await consumer.applied.reach(await this.#log.headSequence(partition));
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#logger.warn({ timeoutMs }, 'drain timed out waiting for events to be applied; they will be replayed on the next start');
        resolve();
      }, timeoutMs);
    });
    await Promise.race([Promise.all(waits), timeout]);
    clearTimeout(timer);
  }

  #assertRunning(operation: string): void {
    if (!this.#lifecycle.is('running')) throw new NodeUnavailableError(`node cannot ${operation} while ${this.state}; retry against a running node`);
  }
}

/**
 * Returns a profile's newest `limit` events below `before`, newest first: its actor's
 * unpersisted events, then the stored history below the oldest of them.
 */
async function newestOwnEvents(
  reader: ProfileHistoryReader,
  history: { workspace: string; profileId: string; before: number; unpersisted: readonly UnpersistedEvent[] },
  limit: number,
): Promise<StoredEvent[]> {
  const { workspace, profileId, before, unpersisted } = history;
  const recent = unpersisted.filter((event) => event.sequence < before).reverse().slice(0, limit);
  if (recent.length >= limit) return recent;

  const storedBefore = Math.min(before, unpersisted[0]?.sequence ?? before);
  return [...recent, ...(await reader.newestEvents(workspace, profileId, storedBefore, limit - recent.length))];
}

function partitionName(partition: PartitionId): string {
  return `${partition.workspace}/${partition.shard}`;
}
