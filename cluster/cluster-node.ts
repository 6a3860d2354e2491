/**
 * A node of an rtcdp cluster. Any node takes events for any customer and publishes them to
 * the JetStream event log. The node that leases a shard applies the shard's events in its
 * customer actors and serves their queries. Membership, shard leases, the coordinator's
 * assignment and profile snapshots live in NATS, so a node can die and another takes over.
 */
import { EventResolver } from '../identity/event-resolver.js';
import { IdentityGraph } from '../identity/identity-graph.js';
import type { ProfileRecord } from '../identity/identity-records.js';
import { IdentityAdmin } from './identity-admin.js';
import { createOnlineMatching, type OnlineMatching } from '../identity/online-matching.js';
import { normalizeIdentifier } from '../identity/normalize.js';
import type { OutgoingRecord } from '../profiles/identity-commands.js';
import type { KvStore } from '../storage/kv-store.js';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { Lifecycle } from '../common/lifecycle.js';
import type { Logger } from '../common/logger.js';
import { randomUUID } from 'node:crypto';
import { ConfigError, DeadlineError, InvalidStateError, OverloadedError } from '../common/errors.js';
import type { DecisionReceipt } from '../profiles/decision-state.js';
import type { RawEvent } from '../profiles/event.js';
import { profileIdForIdentifier, type Identifier } from '../profiles/identifiers.js';
import { ProfileBehavior } from '../profiles/profile-behavior.js';
import { PUBLISHED_ELSEWHERE } from '../profiles/activation-log.js';
import { JetStreamActivationLog } from './nats/activation-stream.js';
import { ClusterTimerIndex } from './nats/timer-index.js';
import { DefinitionCatalog } from '../decisions/evaluation/definition-catalog.js';
import { DefinitionEvaluator } from '../decisions/evaluation/definition-evaluator.js';
import type { ProfileView } from '../profiles/profile.js';
import { decode, encode } from '../storage/codec.js';
import { historyNodesOf, shardStateKey, type ShardState } from './shard-state.js';
import type { AppendRequest } from '../storage/event-log.js';
import { keys } from '../storage/keys.js';
import type { CustomerEvent } from '../profiles/event.js';
import type { DefinitionStore } from '../decisions/definitions/definition-store.js';
import { Store } from '../storage/store.js';
import { assertIdentifier, assertWorkspaceName, notFound, notFoundUnconfigured, parsePageSize } from './arguments.js';
import type { StoredEvent } from '../profiles/profile-history.js';
import { mergeHistoryPage, mergedProfileIds, newestDistinct, type HistoryCursors } from '../profiles/history-page.js';
import { formatPageToken, parsePageToken, startCursors } from './page-token.js';
import { readStoredHistories, requestStoredHistories, type ProfileEventsRequest, type ProfileHistoriesRequest } from './stored-histories.js';
import { AssignmentWatcher, type Assignment } from './assignment-watcher.js';
import type { ShardHolders } from './assignment.js';
import { loadClusterSettings } from './cluster-settings.js';
import { DEFINITION_BUCKET, KvDefinitionStore } from './kv-definition-store.js';
import { WEBHOOK_BUCKET } from './webhook-leases.js';
import { resolveClusterNodeOptions, type ClusterNodeOptions, type ResolvedClusterNodeOptions } from './cluster-options.js';
import { Coordinator } from './coordinator.js';
import { FailureStreak } from './periodic-task.js';
import { InvalidArgumentError, NodeUnavailableError } from './errors.js';
import { applyOutcomes, prepareBatch, type IngestResult } from './ingest-batch.js';
import { NatsKvStore } from './kv/nats-kv-store.js';
import { decodeLeaseRecord, type PreviousHolder } from './leases/lease-record.js';
import { ShardLeases } from './leases/shard-leases.js';
import { Membership, type MemberInfo } from './membership.js';
import { JetStreamEventLog } from './nats/jetstream-event-log.js';
import { skipSettledRequestErrors } from './nats/settled-requests.js';
import { requestShard, requestSubject, serveShard, serveSubject, ShardMovingError } from './nats/shard-rpc.js';
import { ReplyChunks } from './nats/reply-chunks.js';
import { SnapshotStore } from './nats/snapshot-store.js';
import { shardOf } from './routing.js';
import type { DecideInput, DecisionInput, ProfileEventsPage, ServingNode } from './serving-node.js';
import { ShardHost, type ShardHostStats } from './shard-host.js';

export const CLUSTER_BUCKET = 'rtcdp-cluster';
/** How long a reply too large for one NATS message waits for its requester to fetch it, in ms. */
const REPLY_KEEP_MS = 30_000;
/** Bytes of such replies a node keeps at most; past it, a query gets a retryable REPLY_TOO_LARGE. */
const MAX_KEPT_REPLY_BYTES = 256 * 1024 * 1024;
/** The smallest max_payload of a NATS server that a node runs on, in bytes. */
const MIN_MAX_PAYLOAD_BYTES = 16_384;
const LEASE_KEY_PREFIX = 'shard.';
/** How often the node compares the shards it hosts with the assignment. */
const RECONCILE_INTERVAL_MS = 100;
/** How often the node reads the published assignment. */
const ASSIGNMENT_POLL_INTERVAL_MS = 200;
/** How long stopping waits for the NATS connection to drain before it closes it. */
const DISCONNECT_TIMEOUT_MS = 2_000;

/** Subject where a node serves admin requests: its status, or a request to drain and leave. */
export function adminSubject(nodeId: string): string {
  return `rtcdp.admin.${nodeId}`;
}

/**
 * `profileHistories` and `profileEvents` read the node's stored histories of profiles: the
 * events it applied while it owned their shards (stored-histories.ts).
 */
export type AdminRequest = { op: 'status' } | { op: 'drain' } | ProfileHistoriesRequest | ProfileEventsRequest;

/**
 * Subject on which a node announces that it released a shard's lease after a handoff, with
 * the shard number as the payload, so the node waiting to take it reads the lease at once.
 */
const LEASE_RELEASED_SUBJECT = 'rtcdp.lease.released';

/** Sends an admin request to a node by its id. */
export function requestAdmin<T>(connection: NatsConnection, nodeId: string, request: AdminRequest, timeoutMs: number): Promise<T> {
  return requestSubject<T>(connection, adminSubject(nodeId), request, timeoutMs, `node ${nodeId}`);
}

/** This node's last completed handoff of a shard, kept in its RocksDB. */
interface ShardRelease {
  epoch: number;
  chain: number;
  /** The cluster the release happened in; a release of another cluster's NATS state continues nothing. */
  clusterId?: string;
}

type ShardRequest =
  | { op: 'getProfile'; workspace: string; profileId: string }
  | { op: 'settleForwards'; workspace: string; profileId: string }
  | { op: 'unpersistedEvents'; workspace: string; profileId: string }
  | { op: 'decide'; workspace: string; profileId: string; decision: DecisionInput };

interface HostedShard {
  host: ShardHost;
  subscription: Subscription;
}

export interface ClusterNodeStatus {
  nodeId: string;
  state: string;
  shards: number;
  members: MemberInfo[];
  coordinator: boolean;
  assignment: { version: number; coordinator: string; shards: Record<number, string> } | null;
  hosted: ShardHostStats[];
  inFlightEvents: number;
}

/** The cluster's identity graph bucket. */
export const IDENTITY_BUCKET = 'rtcdp-identity';

/** How often a query checks whether a profile has absorbed the profiles merged into it. */
const ABSORB_POLL_INTERVAL_MS = 5;
/** How long a profile events query waits for each member's stored history. */
const HISTORY_REQUEST_TIMEOUT_MS = 2_000;

export class ClusterNode implements ServingNode {
  readonly options: ResolvedClusterNodeOptions;
  readonly nodeId: string;
  /** Definitions of every workspace, shared by all nodes through a KV bucket. */
  readonly definitionStore: DefinitionStore;
  /** The cluster's activation stream, the same on every node. */
  readonly activations: JetStreamActivationLog;
  /** The `rtcdp-webhooks` bucket: webhook delivery leases, cursors and dead letters, shared by every node. */
  readonly webhookKv: KvStore;
  readonly evaluator: DefinitionEvaluator;
  readonly #catalog: DefinitionCatalog;
  readonly #timers: ClusterTimerIndex;
  readonly #logger: Logger;
  readonly #lifecycle: Lifecycle;
  readonly #connection: NatsConnection;
  readonly #kv: NatsKvStore;
  readonly #log: JetStreamEventLog;
  readonly #snapshots: SnapshotStore;
  /** The replies too large for one NATS message that this node keeps until their requesters fetch them. */
  readonly #replyChunks: ReplyChunks;
  /** The cluster's identity graph, in a replicated KV bucket. */
  readonly identity: IdentityGraph;
  readonly #resolver: EventResolver;
  /** Quarantine decisions and explanations of the identity graph. */
  readonly identityAdmin: IdentityAdmin;
  /** Fuzzy matching of the profiles of events this node accepts; undefined unless the options configure it. */
  readonly matching: OnlineMatching | undefined;
  readonly #store: Store;
  readonly #local: ProfileBehavior;
  readonly #shards: number;
  readonly #clusterId: string;
  readonly #leases: ShardLeases;
  readonly #membership: Membership;
  readonly #coordinator: Coordinator;
  readonly #assignment: AssignmentWatcher;
  readonly #hosted = new Map<number, HostedShard>();
  /** Shards being acquired or handed off; the reconcile loop leaves them alone meanwhile. */
  readonly #transitions = new Map<number, Promise<void>>();
  /** Failures of each shard's transitions in a row, logged without repeating every retry. */
  readonly #transitionFailures = new Map<number, FailureStreak>();
  #reconcileTimer: NodeJS.Timeout | null = null;
  #observeTimer: NodeJS.Timeout | null = null;
  #inFlightEvents = 0;
  #adminSubscription: Subscription | null = null;
  #releaseSubscription: Subscription | null = null;
  #drainRequested: () => void = () => void this.drain();

  private constructor(
    options: ResolvedClusterNodeOptions,
    parts: {
      connection: NatsConnection;
      kv: NatsKvStore;
      log: JetStreamEventLog;
      snapshots: SnapshotStore;
      identityKv: KvStore;
      definitions: DefinitionStore;
      activations: JetStreamActivationLog;
      webhookKv: KvStore;
      timers: ClusterTimerIndex;
      store: Store;
      shards: number;
      clusterId: string;
    },
  ) {
    this.options = options;
    this.nodeId = options.nodeId;
    this.#logger = options.logger.child({ nodeId: options.nodeId });
    this.#lifecycle = new Lifecycle('cluster node', this.#logger);
    this.#connection = parts.connection;
    this.#kv = parts.kv;
    this.#log = parts.log;
    this.#snapshots = parts.snapshots;
    this.#replyChunks = new ReplyChunks(parts.connection, { keepMs: REPLY_KEEP_MS, maxKeptBytes: MAX_KEPT_REPLY_BYTES, logger: this.#logger });
    this.definitionStore = parts.definitions;
    this.#store = parts.store;
    this.#shards = parts.shards;
    this.#clusterId = parts.clusterId;

    this.identity = new IdentityGraph({ kv: parts.identityKv, settingsFor: options.identitySettings, logger: this.#logger });
    this.#resolver = new EventResolver({ graph: this.identity, settingsFor: options.identitySettings });
    this.identityAdmin = new IdentityAdmin({
      graph: this.identity,
      settingsFor: options.identitySettings,
      shards: () => this.#shards,
      append: async (requests) => void (await this.#log.append(requests)),
      log: { read: (partition, afterSequence, limit) => this.#log.read(partition, afterSequence, limit) },
      profile: async (workspace, profileId) => (await this.#askOwner<ProfileView | null>(shardOf(profileId, this.#shards), { op: 'getProfile', workspace, profileId })) ?? undefined,
      timeoutMs: options.queryTimeoutMs,
      logger: this.#logger,
    });
    this.matching = createOnlineMatching(options.matching, { graph: this.identity, kv: parts.identityKv, announce: (merges) => this.identityAdmin.announce(merges), logger: this.#logger });
    this.activations = parts.activations;
    this.webhookKv = parts.webhookKv;
    this.#timers = parts.timers;
    this.#catalog = new DefinitionCatalog({ store: parts.definitions, logger: this.#logger });
    this.evaluator = new DefinitionEvaluator({ catalog: this.#catalog, logger: this.#logger });
    this.#local = new ProfileBehavior({
      store: parts.store,
      limits: options.profileLimits,
      logger: this.#logger,
      evaluator: this.evaluator,
      activations: PUBLISHED_ELSEWHERE,
      send: (records) => this.#send(records),
      identifiersOf: (workspace, event) => this.#resolver.identifiersOf(workspace, event),
    });
    this.#leases = new ShardLeases(parts.kv, {
      nodeId: options.nodeId,
      leaseTtlMs: options.leaseTtlMs,
      renewIntervalMs: options.leaseRenewIntervalMs,
      stallMarginMs: Math.min(1_500, Math.floor(options.leaseTtlMs / 3)),
      takeoverMarginMs: Math.min(1_000, Math.floor(options.leaseTtlMs / 5)),
      logger: this.#logger,
    });
    this.#membership = new Membership({
      kv: parts.kv,
      nodeId: options.nodeId,
      grpcAddress: options.grpcAddress,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      memberTimeoutMs: options.memberTimeoutMs,
      logger: this.#logger,
    });
    this.#coordinator = new Coordinator({
      kv: parts.kv,
      nodeId: options.nodeId,
      membership: this.#membership,
      shardCount: parts.shards,
      readShardHolders: () => this.#readShardHolders(),
      stableForMs: options.rebalanceStableForMs,
      maxConcurrentMoves: options.maxConcurrentMoves,
      logger: this.#logger,
    });
    this.#assignment = new AssignmentWatcher({ kv: parts.kv, pollIntervalMs: ASSIGNMENT_POLL_INTERVAL_MS, logger: this.#logger });
  }

  /** Connects to NATS, joins the cluster and starts taking the shards assigned to this node. */
  static async start(input: ClusterNodeOptions): Promise<ClusterNode> {
    const options = resolveClusterNodeOptions(input);
    const logger = options.logger.child({ nodeId: options.nodeId });
    // Without noAsyncTraces, and without the patch, the client builds Error objects with
    // stack traces for every request: `npm run bench -- nats-client` measures the cost.
    skipSettledRequestErrors();
    const connection = await connect({ servers: options.servers, name: `rtcdp-${options.nodeId}`, maxReconnectAttempts: -1, reconnectTimeWait: 250, noAsyncTraces: true });
    warnAboutServer(connection, options, logger);
    try {
      checkMaxPayload(connection);
    } catch (error) {
      await connection.close();
      throw error;
    }

    let store: Store | null = null;
    try {
      const kv = await NatsKvStore.open(connection, { bucket: CLUSTER_BUCKET, replicas: options.replicas });
      const settings = await loadClusterSettings(kv, { shards: options.shards }, logger);
      const log = await JetStreamEventLog.open({
        connection,
        replicas: options.replicas,
        duplicateWindowMs: options.duplicateWindowMs,
        maxAgeMs: options.streamMaxAgeMs,
        publishTimeoutMs: options.publishTimeoutMs,
        logger,
      });
      const snapshots = await SnapshotStore.open(connection, { replicas: options.replicas, requestTimeoutMs: options.publishTimeoutMs, logger });
      const identityKv = await NatsKvStore.open(connection, { bucket: IDENTITY_BUCKET, replicas: options.replicas, allowDirect: false });
      const definitionKv = await NatsKvStore.open(connection, { bucket: DEFINITION_BUCKET, replicas: options.replicas, allowDirect: false });
      const definitions = new KvDefinitionStore(definitionKv, { logger });
      // allowDirect false: every read goes to the stream leader and returns the latest cursor and lease.
      const webhookKv = await NatsKvStore.open(connection, { bucket: WEBHOOK_BUCKET, replicas: options.replicas, allowDirect: false });
      const timers = await ClusterTimerIndex.open(connection, { replicas: options.replicas });
      const activations = await JetStreamActivationLog.open(connection, {
        replicas: options.replicas,
        maxAgeMs: options.activationRetentionMs,
        duplicateWindowMs: options.duplicateWindowMs,
        publishTimeoutMs: options.publishTimeoutMs,
        logger,
      });
      store = await Store.open({ path: options.dataDir, walSync: false, logger });

      const node = new ClusterNode(options, { connection, kv, log, snapshots, identityKv, definitions, activations, webhookKv, timers, store, shards: settings.shards, clusterId: settings.clusterId });
      await node.#start();
      return node;
    } catch (error) {
      await store?.close();
      await connection.close();
      if (isJetStreamOff(error)) {
        throw new ConfigError(`JetStream is not enabled on the NATS servers at ${options.servers.join(', ')}; start nats-server with -js, or add jetstream {} to its configuration`, { cause: error });
      }
      throw error;
    }
  }

  async #start(): Promise<void> {
    this.#lifecycle.set('starting', { shards: this.#shards, replicas: this.options.replicas });
    this.#catalog.start();
    await this.matching?.start();
    this.#leases.start();
    this.#leases.onChange((shard, owned) => {
      if (!owned) void this.#onLeaseLost(shard);
    });
    await this.#membership.start();
    this.#coordinator.start();
    this.#assignment.onChange(() => this.#reconcile());
    this.#assignment.start();

    this.#reconcileTimer = setInterval(() => this.#reconcile(), RECONCILE_INTERVAL_MS);
    this.#reconcileTimer.unref();
    this.#observeTimer = setInterval(() => void this.#observeLeases(), this.options.leaseRenewIntervalMs);
    this.#observeTimer.unref();
    this.#replyChunks.start();
    this.#adminSubscription = serveSubject(this.#connection, adminSubject(this.nodeId), (request) => this.#serveAdmin(request as AdminRequest), this.#logger, this.#replyChunks);
    this.#releaseSubscription = this.#connection.subscribe(LEASE_RELEASED_SUBJECT, {
      callback: (error, message) => {
        const shard = Number(message?.string());
        if (error === null && Number.isSafeInteger(shard) && shard >= 0) this.#leases.wake(shard);
      },
    });
    this.#lifecycle.set('running');
  }

  /**
   * Sets what happens when `rtcdp cluster drain` names this node. By default the node drains;
   * a process that runs a gRPC server in front of it stops that too, and exits.
   */
  onDrainRequest(listener: () => void): void {
    this.#drainRequested = listener;
  }

  async #serveAdmin(request: AdminRequest): Promise<unknown> {
    if (request.op === 'status') return this.status();
    if (request.op === 'drain') {
      this.#logger.info('drain requested by an admin command');
      setImmediate(this.#drainRequested);
      return { draining: true };
    }
    if (request.op === 'profileHistories' || request.op === 'profileEvents') return readStoredHistories(this.#store, request);
    throw new InvalidArgumentError(`unknown admin request ${JSON.stringify((request as { op?: unknown }).op)}; expected status, drain, profileHistories or profileEvents`);
  }

  get state() {
    return this.#lifecycle.state;
  }

  /** The node's RocksDB, for components that keep node-local state in it. Open until the node stops. */
  get store(): Store {
    return this.#store;
  }

  /** The number of virtual shards of the cluster, as stored in NATS. */
  get shards(): number {
    return this.#shards;
  }

  // -------------------------------------------------------------------------
  // Events and queries
  // -------------------------------------------------------------------------

  async ingest(workspace: string, raws: RawEvent[]): Promise<IngestResult[]> {
    this.#assertRunning('ingest');
    assertWorkspaceName(workspace);

    const batch = await prepareBatch(workspace, raws, this.options.eventLimits, this.#shards, this.#resolver);
    const { results, requests, merges } = batch;
    if (requests.length === 0) return results;
    if (requests.length > this.options.maxInFlightEvents) {
      throw new InvalidArgumentError(`batch of ${requests.length} valid events is larger than the node's in-flight limit of ${this.options.maxInFlightEvents}; split it into smaller batches`);
    }
    if (this.#inFlightEvents + requests.length > this.options.maxInFlightEvents) {
      throw new OverloadedError(`node has ${this.#inFlightEvents} events waiting for JetStream; ${requests.length} more would pass the limit of ${this.options.maxInFlightEvents}. Retry after a short backoff.`);
    }

    this.#inFlightEvents += requests.length;
    try {
      applyOutcomes(batch, await this.#log.append(requests));
    } finally {
      this.#inFlightEvents -= requests.length;
    }
    await Promise.all(merges.map((merge) => this.identityAdmin.markAnnounced(merge)));
    for (const request of batch.events) {
      const event = request.value as CustomerEvent;
      this.matching?.observe(workspace, event.profileId!, event);
    }
    return results;
  }

  /** Publishes the records profile actors send to other profiles (merge state, forwarded events). */
  async #send(records: OutgoingRecord[]): Promise<void> {
    const requests: AppendRequest[] = records.map((record) => ({
      workspace: record.workspace,
      shard: shardOf(record.profileId, this.#shards),
      messageId: record.messageId,
      payload: encode(record.entry),
    }));
    await this.#log.append(requests);
  }

  /**
   * Returns the profile `identifier` belongs to, with every event acknowledged before the
   * call, and every profile the identity graph merged into it already absorbed.
   */
  async getProfile(workspace: string, identifier: Identifier): Promise<ProfileView> {
    this.#assertRunning('getProfile');
    const { profileId, record } = await this.#resolve(workspace, identifier);
    const profile = await this.#absorbedProfile(workspace, profileId, record);
    if (profile === null) throw notFound(identifier);
    return profile;
  }

  /**
   * Returns the profile from its owner once it has absorbed every profile the identity graph
   * merged into it, with the events forwarded to it. Returns null when it has no state.
   * `record` is the profile's graph record as #resolve read it.
   */
  async #absorbedProfile(workspace: string, profileId: string, record: ProfileRecord | undefined): Promise<ProfileView | null> {
    const shard = shardOf(profileId, this.#shards);
    const expected = await this.identity.mergedInto(workspace, profileId, record);
    const deadline = Date.now() + this.options.queryTimeoutMs;
    await this.#settleForwards(workspace, profileId, expected, record);

    for (;;) {
      const profile = await this.#askOwner<ProfileView | null>(shard, { op: 'getProfile', workspace, profileId });
      if (profile === null || expected.every((id) => profile.merges.some((merge) => merge.profileId === id))) return profile;
      if (Date.now() >= deadline) throw new DeadlineError(`profile ${profileId} did not absorb the profiles merged into it within ${this.options.queryTimeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, ABSORB_POLL_INTERVAL_MS));
    }
  }

  /**
   * Waits until the events that reached the profiles merged into `profileId`, or the profiles
   * an operator split from it, are forwarded, so the profile's own shard contains them
   * before it is read. Those profiles' owners apply their shards up to the head and send what they
   * forward.
   */
  async #settleForwards(workspace: string, profileId: string, merged: string[], record: ProfileRecord | undefined): Promise<void> {
    const sources = [...new Set([...merged, ...(record?.separatedFrom ?? [])])];
    await Promise.all(sources.map((source) => this.#askOwner(shardOf(source, this.#shards), { op: 'settleForwards', workspace, profileId: source })));
  }

  /**
   * Decides the next best action for the profile on its shard's owner. The request id goes
   * with every retry, so a retry after a lost reply returns the decision already made.
   */
  async decide(workspace: string, identifier: Identifier, request: DecideInput): Promise<DecisionReceipt> {
    this.#assertRunning('decide');
    const { profileId, record } = await this.#resolve(workspace, identifier);
    const shard = shardOf(profileId, this.#shards);
    // A merged profile decides once it has absorbed the others, so its caps count their
    // decisions too. A profile without merges or unmerges needs no more than its own shard.
    const settles = (record?.merges.length ?? 0) > 0 || (record?.separatedFrom?.length ?? 0) > 0;
    if (settles && (await this.#absorbedProfile(workspace, profileId, record)) === null) throw notFound(identifier);

    const decision: DecisionInput = { ...request, requestId: randomUUID(), nowMs: Date.now() };
    const receipt = await this.#askOwner<DecisionReceipt | null>(shard, { op: 'decide', workspace, profileId, decision });
    if (receipt === null) throw notFound(identifier);
    return receipt;
  }

  /** Returns the receipts of the profile's most recent decisions, newest first. */
  async listReceipts(workspace: string, identifier: Identifier): Promise<DecisionReceipt[]> {
    const profile = await this.getProfile(workspace, identifier);
    return [...profile.receipts].reverse();
  }

  /**
   * Returns a page of the profile's events, newest first: its own history joined with the
   * histories of the profiles merged into it (profiles/history-page.ts). The owner of the
   * profile's shard returns the events applied since its last snapshot. Every member returns,
   * in one request for all the histories, the events it stored while it owned their shards.
   * A member that does not respond within HISTORY_REQUEST_TIMEOUT_MS is listed in
   * `unavailableNodes`, and a node that owned one of the shards and left the cluster in
   * `departedNodes`, because the events only they stored are missing from the page.
   */
  async listProfileEvents(workspace: string, identifier: Identifier, page: { pageSize?: number; pageToken?: string } = {}): Promise<ProfileEventsPage> {
    this.#assertRunning('listProfileEvents');
    const pageSize = parsePageSize(page.pageSize);
    const start = parsePageToken(page.pageToken);
    const { profileId, record } = await this.#resolve(workspace, identifier);

    const merged = await this.#absorbedMerges(workspace, profileId, record);
    const unpersisted = merged === null ? null : await this.#askOwner<StoredEvent[] | null>(shardOf(profileId, this.#shards), { op: 'unpersistedEvents', workspace, profileId });
    if (merged === null || unpersisted === null) throw notFound(identifier);

    const cursors = startCursors(start, profileId, merged);
    const shards = new Set([...cursors.keys()].map((id) => shardOf(id, this.#shards)));
    const [{ stored, unavailableNodes }, departedNodes] = await Promise.all([this.#storedHistories(workspace, cursors, pageSize + 1), this.#departedHistoryNodes(shards)]);

    const sources = [...cursors].map(([sourceId, before]) => {
      const recent = sourceId === profileId ? unpersisted.filter((event) => event.sequence < before) : [];
      const events = [...recent, ...(stored.get(sourceId) ?? [])].map((event) => ({ sequence: event.sequence, payload: Buffer.from(event.payload) }));
      return { profileId: sourceId, before, events: newestDistinct(events, pageSize + 1) };
    });
    const { events, next } = mergeHistoryPage(sources, pageSize);
    return { events, nextPageToken: formatPageToken(next), unavailableNodes, departedNodes };
  }

  /**
   * Returns the profiles merged into `profileId`, directly or through another, once its owner
   * has absorbed them, so their stored histories are complete. Returns [] without asking
   * when the identity graph lists no merge into the profile and no unmerge from it, and
   * null when the profile has no state.
   */
  async #absorbedMerges(workspace: string, profileId: string, record: ProfileRecord | undefined): Promise<string[] | null> {
    const settles = (record?.merges.length ?? 0) > 0 || (record?.separatedFrom?.length ?? 0) > 0;
    if (!settles) return [];
    const profile = await this.#absorbedProfile(workspace, profileId, record);
    return profile === null ? null : mergedProfileIds(profileId, profile.merges);
  }

  /** Returns the nodes that owned one of the shards, and so store part of their histories, but are no longer members. */
  async #departedHistoryNodes(shards: ReadonlySet<number>): Promise<string[]> {
    const entries = await Promise.all([...shards].map((shard) => this.#kv.get(shardStateKey(shard))));
    const known = new Set([this.nodeId, ...this.#membership.members().map((member) => member.nodeId), ...this.#membership.absentNodeIds()]);
    const departed = new Set<string>();
    for (const entry of entries) {
      if (entry === null) continue;
      for (const nodeId of historyNodesOf(decode<ShardState>(Buffer.from(entry.value)))) if (!known.has(nodeId)) departed.add(nodeId);
    }
    return [...departed].sort();
  }

  /**
   * Asks every member, this node included, for the newest `limit` events it stored of each
   * history below its cursor, in one request per member. Nodes that stopped heartbeating
   * without leaving are asked too, so that a crashed node is listed in `unavailableNodes`
   * instead of its events missing silently.
   */
  async #storedHistories(workspace: string, cursors: HistoryCursors, limit: number): Promise<{ stored: Map<string, StoredEvent[]>; unavailableNodes: string[] }> {
    const sources = [...cursors].map(([profileId, before]) => ({ profileId, beforeSequence: Number.isFinite(before) ? before : null }));
    if (sources.length === 0) return { stored: new Map(), unavailableNodes: [] };
    const request: ProfileHistoriesRequest = { op: 'profileHistories', workspace, sources, limit };
    const members = [...new Set([this.nodeId, ...this.#membership.members().map((member) => member.nodeId), ...this.#membership.absentNodeIds()])];
    const timeoutMs = Math.min(this.options.queryTimeoutMs, HISTORY_REQUEST_TIMEOUT_MS);

    const answers = await Promise.allSettled(
      members.map((nodeId) =>
        nodeId === this.nodeId
          ? (readStoredHistories(this.#store, request) as Promise<StoredEvent[][]>)
          : requestStoredHistories((sent) => requestAdmin(this.#connection, nodeId, sent, timeoutMs), request),
      ),
    );

    const stored = new Map<string, StoredEvent[]>(sources.map((source) => [source.profileId, []]));
    const unavailableNodes: string[] = [];
    members.forEach((nodeId, i) => {
      const answer = answers[i];
      if (answer.status === 'fulfilled') sources.forEach((source, j) => stored.get(source.profileId)!.push(...(answer.value[j] ?? [])));
      else {
        unavailableNodes.push(nodeId);
        this.#logger.warn({ err: answer.reason, node: nodeId, workspace, profiles: [...cursors.keys()] }, 'a member did not return its stored histories of a profile; the page is missing the events that only it stored');
      }
    });
    return { stored, unavailableNodes: unavailableNodes.sort() };
  }

  /**
   * Returns the profile an identifier belongs to through the identity graph. A user or
   * anonymous id the graph does not know names the profile its events were routed to before
   * identity resolution. A value that does not link profiles finds none.
   */
  async #resolve(workspace: string, identifier: Identifier): Promise<{ profileId: string; record: ProfileRecord | undefined }> {
    assertWorkspaceName(workspace);
    assertIdentifier(identifier);
    const normalized = normalizeIdentifier(this.options.identitySettings(workspace), { type: identifier.type, value: identifier.value, field: identifier.type });
    if (!normalized.ok && normalized.code === 'UNKNOWN_IDENTIFIER_TYPE') throw notFoundUnconfigured(identifier);
    if (!normalized.ok || !normalized.linkable) throw notFound(identifier);

    const linked = await this.identity.profileRecordOf(workspace, normalized.identifier);
    if (linked !== undefined) return { profileId: linked.profileId, record: linked };
    const profileId = profileIdForIdentifier(normalized.identifier);
    if (profileId === undefined) throw notFound(identifier);
    return { profileId, record: await this.identity.profile(workspace, profileId) };
  }

  async #askOwner<T>(shard: number, request: ShardRequest): Promise<T> {
    const local = this.#hosted.get(shard);
    if (local !== undefined && local.host.state === 'running') {
      try {
        return (await this.#answer(local.host, request)) as T;
      } catch (error) {
        // The shard stopped here while the query waited: ask its next owner, as for any remote shard.
        if (!(error instanceof ShardMovingError)) throw error;
      }
    }
    return requestShard<T>(this.#connection, shard, request, this.options.queryTimeoutMs);
  }

  async #answer(host: ShardHost, request: ShardRequest): Promise<unknown> {
    if (host.state !== 'running') throw new ShardMovingError(`shard ${host.shard} is ${host.state} on node ${this.nodeId}`);
    try {
      return await this.#answerRunning(host, request);
    } catch (error) {
      // A host that stops while a query waits rejects it as stopped; the caller retries on the next owner.
      if (error instanceof InvalidStateError && host.state !== 'running') throw new ShardMovingError(`shard ${host.shard} stopped on node ${this.nodeId} while a query waited`);
      throw error;
    }
  }

  async #answerRunning(host: ShardHost, request: ShardRequest): Promise<unknown> {
    if (request.op === 'decide') return (await host.decide(request.workspace, request.profileId, request.decision, this.options.queryTimeoutMs)) ?? null;
    if (request.op === 'settleForwards') return (await host.settleForwards(request.workspace, request.profileId, this.options.queryTimeoutMs)) ?? null;
    if (request.op === 'unpersistedEvents') return (await host.unpersistedEvents(request.workspace, request.profileId, this.options.queryTimeoutMs)) ?? null;

    const profile = await host.getProfile(request.workspace, request.profileId, this.options.queryTimeoutMs);
    if (profile === undefined) return null;
    if (request.op === 'getProfile') return profile;

  }

  // -------------------------------------------------------------------------
  // Shards
  // -------------------------------------------------------------------------

  /** Starts acquiring the shards assigned to this node and handing off the others. */
  #reconcile(): void {
    if (!this.#lifecycle.is('running', 'draining')) return;
    const assignment = this.#assignment.current();
    if (assignment === null) return;

    for (let shard = 0; shard < this.#shards; shard++) {
      if (this.#transitions.has(shard)) continue;
      const assigned = assignment.shards.get(shard) === this.nodeId;
      const hosted = this.#hosted.has(shard);
      if (assigned && !hosted && this.#lifecycle.is('running')) this.#transition(shard, () => this.#takeShard(shard));
      else if (!assigned && hosted) this.#transition(shard, () => this.#handOff(shard));
    }
  }

  #transition(shard: number, work: () => Promise<void>): Promise<void> {
    let streak = this.#transitionFailures.get(shard);
    if (streak === undefined) {
      streak = new FailureStreak(this.#logger, `transition of shard ${shard} (retried every ${RECONCILE_INTERVAL_MS} ms)`);
      this.#transitionFailures.set(shard, streak);
    }

    const failures = streak;
    const running = work()
      .then(
        () => failures.succeeded({ shard }),
        (error) => failures.failed(error, { shard }),
      )
      .finally(() => this.#transitions.delete(shard));
    this.#transitions.set(shard, running);
    return running;
  }

  async #takeShard(shard: number): Promise<void> {
    const lease = await this.#leases.acquire(shard);
    if (!lease.acquired) return;

    const chain = await this.#tenureChain(shard, lease.epoch, lease.previous);
    let host: ShardHost;
    try {
      host = await ShardHost.start({
        shard,
        epoch: lease.epoch,
        chain,
        clusterId: this.#clusterId,
        activations: this.activations,
        timers: this.#timers,
        store: this.#store,
        nodeId: this.nodeId,
        connection: this.#connection,
        log: this.#log,
        snapshots: this.#snapshots,
        clusterKv: this.#kv,
        local: this.#local,
        actors: this.options.actors,
        maxPendingRecords: this.options.maxPendingRecordsPerShard,
        checkpointIntervalMs: this.options.checkpointIntervalMs,
        evaluationTimerIntervalMs: this.options.evaluationTimerIntervalMs,
        isOwner: () => this.#leases.owns(shard),
        onFenced: () => void this.#onLeaseLost(shard),
        logger: this.#logger,
      });
    } catch (error) {
      await this.#leases.release(shard);
      throw error;
    }

    // The lease may have ended while the host started, and its loss then found no host to stop.
    if (!this.#leases.owns(shard)) {
      await host.abort();
      this.#logger.warn({ shard, epoch: lease.epoch }, 'lost the shard lease while starting it; stopped again');
      return;
    }

    const subscription = serveShard(this.#connection, shard, (request) => this.#answer(host, request as ShardRequest), this.#logger, this.#replyChunks);
    this.#hosted.set(shard, { host, subscription });
    this.#logger.info({ shard, epoch: lease.epoch, previous: lease.previous, localSnapshotsCurrent: chain !== lease.epoch }, 'took over the shard');
  }

  /**
   * Returns the tenure chain a new tenure belongs to. It continues this node's chain when
   * the tenure before it was this node's own and ended by a completed handoff recorded in
   * this data directory, because then the local snapshots written in that chain are current.
   * Otherwise a new chain starts with this tenure's epoch.
   */
  async #tenureChain(shard: number, epoch: number, previous: PreviousHolder | null): Promise<number> {
    if (previous === null || previous.holder !== this.nodeId || !previous.released) return epoch;

    const stored = await this.#store.get(keys.shardRelease(shard));
    if (stored === null) return epoch;
    const release = decode<ShardRelease>(stored);
    return release.epoch === previous.epoch && release.clusterId === this.#clusterId ? release.chain : epoch;
  }

  async #handOff(shard: number): Promise<void> {
    const hosted = this.#hosted.get(shard);
    if (hosted === undefined) return;

    const startedAt = performance.now();
    const completed = await hosted.host.handoff(this.options.handoffTimeoutMs);
    hosted.subscription.unsubscribe();
    this.#hosted.delete(shard);
    const released = await this.#leases.release(shard);
    if (released) this.#announceRelease(shard);

    // Synced, so every local snapshot written before it is on disk too.
    if (completed && released) {
      const release: ShardRelease = { epoch: hosted.host.epoch, chain: hosted.host.chain, clusterId: this.#clusterId };
      await this.#store.write([{ type: 'put', key: keys.shardRelease(shard), value: encode(release) }], { sync: true });
    }
    // pauseMs: from when the shard stopped serving until now, with the lease released.
    const pausedAt = hosted.host.pausedAt;
    const pauseMs = pausedAt === null ? null : Math.round(performance.now() - pausedAt);
    this.#logger.info({ shard, epoch: hosted.host.epoch, handoffMs: Math.round(performance.now() - startedAt), pauseMs }, 'handed the shard off');
  }

  /** Announces to the other nodes that the shard's lease is free. A lost message only delays the next owner until its next poll. */
  #announceRelease(shard: number): void {
    try {
      this.#connection.publish(LEASE_RELEASED_SUBJECT, String(shard));
    } catch (error) {
      this.#logger.debug({ shard, err: error }, 'announcing a released shard lease failed; the next owner finds it at its next poll');
    }
  }

  /** Stops applying a shard at once: its lease expired, was lost, or a newer owner fenced this node. */
  async #onLeaseLost(shard: number): Promise<void> {
    const hosted = this.#hosted.get(shard);
    if (hosted === undefined || this.#transitions.has(shard)) return;

    this.#hosted.delete(shard);
    hosted.subscription.unsubscribe();
    await this.#transition(shard, async () => {
      await hosted.host.abort();
      this.#logger.warn({ shard, epoch: hosted.host.epoch }, 'lost the shard lease; stopped applying its events');
    });
  }

  /**
   * Reads every shard lease, so that a takeover waits out a dead holder's lease from the
   * first time this node saw its last renewal rather than from when the shard is assigned.
   */
  async #observeLeases(): Promise<void> {
    try {
      this.#leases.observe(await this.#kv.list(LEASE_KEY_PREFIX));
    } catch (error) {
      this.#logger.debug({ err: error }, 'reading the shard leases failed; the next read retries');
    }
  }

  async #readShardHolders(): Promise<ShardHolders> {
    const holders = new Map<number, string | null>();
    for (const entry of await this.#kv.list(LEASE_KEY_PREFIX)) {
      const shard = Number(entry.key.slice(LEASE_KEY_PREFIX.length));
      if (!Number.isInteger(shard)) continue;
      try {
        const record = decodeLeaseRecord(entry.value, entry.key, entry.revision);
        holders.set(shard, record.released ? null : record.holder);
      } catch (error) {
        this.#logger.warn({ err: error, key: entry.key }, 'ignoring an invalid shard lease record');
      }
    }
    return holders;
  }

  // -------------------------------------------------------------------------
  // Status and lifecycle
  // -------------------------------------------------------------------------

  status(): ClusterNodeStatus {
    const assignment = this.#assignment.current();
    return {
      nodeId: this.nodeId,
      state: this.state,
      shards: this.#shards,
      members: this.#membership.members(),
      coordinator: this.#coordinator.isLeader(),
      assignment: assignment === null ? null : describeAssignment(assignment),
      hosted: [...this.#hosted.values()].map(({ host }) => host.stats()).sort((a, b) => a.shard - b.shard),
      inFlightEvents: this.#inFlightEvents,
    };
  }

  /**
   * Leaves the cluster gracefully: stops taking events, leaves the membership so the
   * coordinator moves this node's shards elsewhere, hands each one off as it moves, and
   * after `timeoutMs` hands off the rest directly. Then disconnects.
   */
  async drain(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#lifecycle.is('stopped', 'draining')) return;
    this.#lifecycle.set('draining');
    const timeoutMs = options.timeoutMs ?? 30_000;
    const deadline = performance.now() + timeoutMs;
    // Matching first: the merges it makes append commands that the shards still apply.
    await this.matching?.stop();

    // Another node takes over coordination, then the assignment moves this node's shards
    // away once it reads the membership without this node.
    const others = this.#membership.members().filter((member) => member.nodeId !== this.nodeId);
    await this.#coordinator.stop();
    await this.#membership.stop();
    // With no other member, no shard can move, so the node hands them off at once.
    while (others.length > 0 && this.#hosted.size > 0 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, RECONCILE_INTERVAL_MS));
    }
    await Promise.all([...this.#transitions.values()]);
    await Promise.all([...this.#hosted.keys()].map((shard) => this.#transition(shard, () => this.#handOff(shard))));

    await this.#stopComponents();
    this.#lifecycle.set('stopped');
  }

  /** Stops at once without handing anything off; the leases expire and other nodes replay the log. */
  async abort(): Promise<void> {
    if (this.#lifecycle.is('stopped')) return;
    this.#lifecycle.set('draining', { forced: true });
    await this.matching?.abort();
    for (const [shard, hosted] of this.#hosted) {
      hosted.subscription.unsubscribe();
      await hosted.host.abort();
      this.#hosted.delete(shard);
    }
    await this.#stopComponents();
    this.#lifecycle.set('stopped', { forced: true });
  }

  async #stopComponents(): Promise<void> {
    if (this.#reconcileTimer !== null) clearInterval(this.#reconcileTimer);
    if (this.#observeTimer !== null) clearInterval(this.#observeTimer);
    this.#adminSubscription?.unsubscribe();
    this.#replyChunks.stop();
    this.#releaseSubscription?.unsubscribe();
    await this.#assignment.stop();
    await this.#coordinator.stop();
    if (this.#membership.state !== 'stopped') await this.#membership.stop();
    this.#leases.stop();
    this.#catalog.stop();
    await this.#log.close();
    await this.#store.close();
    await this.#disconnect();
  }

  /** Drains the NATS connection, or closes it when the server does not respond in time. */
  async #disconnect(): Promise<void> {
    if (this.#connection.isClosed()) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, DISCONNECT_TIMEOUT_MS)));
    await Promise.race([this.#connection.drain().catch(() => undefined), timeout]);
    clearTimeout(timer);
    if (!this.#connection.isClosed()) await this.#connection.close();
  }

  #assertRunning(operation: string): void {
    if (!this.#lifecycle.is('running')) throw new NodeUnavailableError(`node cannot ${operation} while ${this.state}; retry against a running node`);
  }
}

function describeAssignment(assignment: Assignment): ClusterNodeStatus['assignment'] {
  return { version: assignment.version, coordinator: assignment.coordinator, shards: Object.fromEntries(assignment.shards) };
}

/**
 * Throws ConfigError when the server's max_payload is too small for the records that point
 * to the parts of a large value: with 16 KiB, such a record covers about 29 MB (an estimate
 * from 5 bytes per part sequence).
 */
function checkMaxPayload(connection: NatsConnection): void {
  const maxPayload = connection.info?.max_payload;
  if (maxPayload === undefined || maxPayload >= MIN_MAX_PAYLOAD_BYTES) return;
  throw new ConfigError(`the NATS server's max_payload is ${maxPayload} bytes, below the ${MIN_MAX_PAYLOAD_BYTES} that rtcdp needs; raise it in the NATS servers' configuration (its default is 1048576)`);
}

/** Returns whether the error, or one that caused it, is the NATS client's JetStreamNotEnabled, which its package does not export. */
function isJetStreamOff(error: unknown): boolean {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    if (cause.name === 'JetStreamNotEnabled') return true;
  }
  return false;
}

/** Warns when the NATS server cannot give the durability production needs. */
function warnAboutServer(connection: NatsConnection, options: ResolvedClusterNodeOptions, logger: Logger): void {
  const version = connection.info?.version ?? 'unknown';
  const [major, minor] = version.split('.').map(Number);
  if (!(major > 2 || (major === 2 && minor >= 10))) {
    logger.warn({ natsVersion: version }, 'NATS server is older than 2.10, so it has no sync_interval setting: JetStream acknowledges events before they are fsynced to disk. Use NATS 2.10 or later with sync_interval: always in production');
  }
  if (options.replicas < 3) {
    logger.warn({ replicas: options.replicas }, 'events and snapshots are kept on fewer than 3 NATS servers; losing one server can lose acknowledged events. Use replicas 3 on a 3-server NATS cluster in production');
  }
}
