/**
 * Everything one node runs for one shard it leases: the shard's customer actors, a feed
 * of the shard's events from JetStream, a partition consumer per workspace, and the
 * shard's checkpoints. A host lives for one lease tenure and starts after the lease is
 * taken. It ends by a handoff, which applies, persists and checkpoints everything before the
 * caller releases the lease, or by an abort when the lease is lost, which writes nothing.
 */
import { ActorSystem } from '../actors/actor-system.js';
import type { ActorSystemOptions } from '../actors/types.js';
import { DeadlineError, OverloadedError } from '../common/errors.js';
import { Lifecycle } from '../common/lifecycle.js';
import type { Logger } from '../common/logger.js';
import type { Identifier } from '../profiles/identifiers.js';
import { actorKey, type ProfileBehavior } from '../profiles/profile-behavior.js';
import type { DecisionReceipt } from '../profiles/decision-state.js';
import type { ProfileMessage } from '../profiles/evaluator.js';
import { EvaluationTimers } from '../profiles/evaluation-timers.js';
import { toSnapshot, type ProfileSnapshot, type ProfileState, type ProfileView } from '../profiles/profile.js';
import type { StoredEvent } from '../profiles/profile-history.js';
import type { LogRecord, PartitionId } from '../storage/event-log.js';
import type { Store, WriteOp } from '../storage/store.js';
import { ClusterProfileBehavior } from './cluster-profile-behavior.js';
import { ShardFencedError } from './errors.js';
import type { KvStore } from '../storage/kv-store.js';
import type { JetStreamEventLog } from './nats/jetstream-event-log.js';
import type { JetStreamActivationLog } from './nats/activation-stream.js';
import { ShardFeed } from './nats/shard-feed.js';
import type { ClusterTimerIndex } from './nats/timer-index.js';
import { keys, prefixEnd } from '../storage/keys.js';
import type { SnapshotStore } from './nats/snapshot-store.js';
import { attachUnmergeHistory } from './unmerge-history.js';
import { PartitionConsumer } from './partition-consumer.js';
import type { DecisionInput } from './serving-node.js';
import { ShardStateRecord } from './shard-state.js';

/** How often a handoff checks that the lease is still valid while profiles are persisted. */
const OWNERSHIP_CHECK_INTERVAL_MS = 100;

/**
 * How long a handoff waits past its timeout for the last profiles to be persisted. Without
 * it, writes that keep failing (a snapshot over NATS's max_payload, a bucket that rejects
 * writes) would hold the shard for ever. The next owner replays what was not persisted.
 */
const PERSIST_GRACE_MS = 5_000;

/** Rounds of persisting while the shard still serves, at most, before a handoff stops it. */
const PRE_FLUSH_MAX_ROUNDS = 4;

/** Dirty profiles few enough to persist after the shard stops, so a round that leaves no more ends the rounds. */
const PRE_FLUSH_FEW_PROFILES = 50;

/** How often a query that waits for forwarded records looks at the actor again. */
const FORWARD_POLL_INTERVAL_MS = 5;

export interface ShardHostOptions {
  shard: number;
  epoch: number;
  /** The id of the cluster's NATS state; see ClusterSettings. */
  clusterId: string;
  activations: JetStreamActivationLog;
  timers: ClusterTimerIndex;
  /** The tenure chain of this tenure; see ClusterProfileBehavior. */
  chain: number;
  /** The node's RocksDB store, for local snapshots. */
  store: Store;
  nodeId: string;
  connection: ConstructorParameters<typeof ShardFeed>[0]['connection'];
  log: JetStreamEventLog;
  snapshots: SnapshotStore;
  clusterKv: KvStore;
  local: ProfileBehavior;
  actors: ActorSystemOptions;
  /** Records taken from the stream but not yet applied, above which the feed waits. */
  maxPendingRecords: number;
  checkpointIntervalMs: number;
  evaluationTimerIntervalMs: number;
  /** Whether the lease is still valid; the host writes nothing once it is not. */
  isOwner: () => boolean;
  /** Called once when a write finds a newer owner; the caller then aborts the host. */
  onFenced: (error: ShardFencedError) => void;
  logger: Logger;
}

export interface ShardHostStats {
  shard: number;
  epoch: number;
  state: string;
  workspaces: number;
  /** Records taken from the stream and not yet applied. */
  pendingRecords: number;
  /** Records of the shard in the stream that the feed has not read yet. */
  unreadRecords: number;
  /** Next stream sequence the feed reads. */
  nextSequence: number;
  residentProfiles: number;
  /** Profiles loaded from a current local snapshot and from NATS. */
  loads: { local: number; nats: number };
}

export class ShardHost {
  readonly shard: number;
  readonly epoch: number;
  readonly chain: number;
  readonly #options: ShardHostOptions;
  readonly #logger: Logger;
  readonly #lifecycle: Lifecycle;
  readonly #actors: ActorSystem<ProfileState, ProfileMessage>;
  readonly #behavior: ClusterProfileBehavior;
  readonly #consumers = new Map<string, PartitionConsumer>();
  /** Workspaces with records on this shard: those in the log at start and those seen since. */
  readonly #workspaces = new Set<string>();
  readonly #timers: EvaluationTimers;
  readonly #state: ShardStateRecord;
  #feed: ShardFeed | null = null;
  #pendingRecords = 0;
  #roomWaiter: (() => void) | null = null;
  #checkpointTimer: NodeJS.Timeout | null = null;
  #checkpointing: Promise<void> | null = null;
  #fenced = false;
  #handingOff = false;
  #pausedAt: number | null = null;

  private constructor(options: ShardHostOptions, state: ShardStateRecord) {
    this.shard = options.shard;
    this.epoch = options.epoch;
    this.chain = options.chain;
    this.#options = options;
    this.#state = state;
    this.#logger = options.logger.child({ shard: options.shard, epoch: options.epoch });
    this.#lifecycle = new Lifecycle('shard host', this.#logger);

    this.#behavior = new ClusterProfileBehavior({
      shard: options.shard,
      epoch: options.epoch,
      chain: options.chain,
      clusterId: options.clusterId,
      activations: options.activations,
      timers: options.timers,
      store: options.store,
      snapshots: options.snapshots,
      local: options.local,
      isOwner: options.isOwner,
      onFenced: (error) => this.#fence(error),
    });
    this.#actors = new ActorSystem(this.#behavior, { ...options.actors, logger: this.#logger });
    this.#timers = new EvaluationTimers({
      store: options.store,
      partitions: async () => [...this.#workspaces].map((workspace) => ({ workspace, shard: this.shard })),
      tell: (key, message) => this.#actors.tell(key, message),
      logger: this.#logger,
      intervalMs: options.evaluationTimerIntervalMs,
    });
  }

  /** Claims the shard's checkpoints with the lease epoch and starts applying from them. */
  static async start(options: ShardHostOptions): Promise<ShardHost> {
    const state = await ShardStateRecord.claim(options.clusterKv, options.shard, options.epoch, options.nodeId);
    const host = new ShardHost(options, state);
    await host.#start();
    return host;
  }

  async #start(): Promise<void> {
    this.#lifecycle.set('starting');
    this.#actors.start();

    const fromSequence = await this.#firstUncheckpointed();
    await this.#importTimers();
    this.#feed = new ShardFeed({
      connection: this.#options.connection,
      shard: this.shard,
      fromSequence,
      onRecord: (record) => this.#take(record),
      payloadOf: (message) => this.#options.log.payloadOf(message),
      logger: this.#logger,
    });
    this.#feed.start();

    this.#checkpointTimer = setInterval(() => void this.#checkpoint(), this.#options.checkpointIntervalMs);
    this.#checkpointTimer.unref();
    this.#timers.start();
    this.#lifecycle.set('running', { fromSequence, checkpoints: this.#state.checkpoints });
  }

  /**
   * Replaces this node's local timer index of the shard with the cluster's, which the
   * previous owners kept current, so due evaluations fire here from the start.
   */
  async #importTimers(): Promise<void> {
    const entries = await this.#options.timers.list(this.shard);
    for (const entry of entries) this.#workspaces.add(entry.workspace);

    const ops: WriteOp[] = [...this.#workspaces].map((workspace) => {
      const prefix = keys.evaluationTimerPrefix(workspace, this.shard);
      return { type: 'delRange', start: prefix, end: prefixEnd(prefix) };
    });
    for (const entry of entries) ops.push({ type: 'put', key: keys.evaluationTimer(entry.workspace, this.shard, entry.dueMs, entry.profileId), value: '' });
    if (ops.length > 0) await this.#options.store.write(ops);
    if (entries.length > 0) this.#logger.info({ timers: entries.length }, 'imported the shard\'s timers');
  }

  /**
   * The stream sequence from which the feed must read so that every workspace's records
   * after its checkpoint are seen. A workspace with records but no checkpoint needs all of them.
   */
  async #firstUncheckpointed(): Promise<number> {
    const partitions = (await this.#options.log.partitions()).filter((partition) => partition.shard === this.shard);
    for (const partition of partitions) this.#workspaces.add(partition.workspace);
    let from = Number.MAX_SAFE_INTEGER;
    for (const partition of partitions) {
      from = Math.min(from, (this.#state.checkpoints[partition.workspace] ?? 0) + 1);
    }
    return from === Number.MAX_SAFE_INTEGER ? 1 : from;
  }

  get state() {
    return this.#lifecycle.state;
  }

  /** performance.now() when a handoff stopped serving the shard, or null before that. */
  get pausedAt(): number | null {
    return this.#pausedAt;
  }

  #take(record: LogRecord): void | Promise<void> {
    this.#pendingRecords += this.#consumerFor(record.workspace).offer([record]);
    if (this.#pendingRecords < this.#options.maxPendingRecords) return;
    return new Promise((resolve) => (this.#roomWaiter = resolve));
  }

  #recordApplied(): void {
    this.#pendingRecords -= 1;
    if (this.#roomWaiter !== null && this.#pendingRecords < this.#options.maxPendingRecords / 2) {
      this.#roomWaiter();
      this.#roomWaiter = null;
    }
  }

  #consumerFor(workspace: string): PartitionConsumer {
    let consumer = this.#consumers.get(workspace);
    if (consumer !== undefined) return consumer;

    consumer = new PartitionConsumer({
      partition: { workspace, shard: this.shard },
      actors: this.#actors,
      checkpoint: this.#state.checkpoints[workspace] ?? 0,
      logger: this.#logger,
      onApplied: () => this.#recordApplied(),
      readUnmergeHistory: (message) => attachUnmergeHistory(this.#options.log, { workspace, shard: this.shard }, message, this.#logger),
    });
    this.#consumers.set(workspace, consumer);
    this.#workspaces.add(workspace);
    consumer.start();
    return consumer;
  }

  /**
   * Returns the profile's state after every event of its workspace on this shard that the
   * stream stored before the call, or undefined when the profile has none.
   */
  async getProfile(workspace: string, profileId: string, timeoutMs: number): Promise<ProfileView | undefined> {
    await this.#awaitHead({ workspace, shard: this.shard }, timeoutMs);
    return this.#actors.ask(actorKey(workspace, profileId), (state) => (state === undefined ? undefined : this.#options.local.view(state)));
  }

  /**
   * Returns the events the profile's actor applied since its last persisted snapshot, oldest
   * first, or undefined when the profile does not exist. It first waits until the actor has
   * every event of its workspace on this shard that the stream stored before the call.
   * Older events are in the stored histories of the nodes that applied them.
   */
  async unpersistedEvents(workspace: string, profileId: string, timeoutMs: number): Promise<StoredEvent[] | undefined> {
    await this.#awaitHead({ workspace, shard: this.shard }, timeoutMs);
    return this.#actors.ask(actorKey(workspace, profileId), (state) => state?.unpersisted.map((event) => ({ sequence: event.sequence, payload: event.payload })));
  }

  /**
   * Resolves once the profile's actor has applied every record of its workspace on this
   * shard that the stream stored before the call. It has then also sent the records it
   * forwards: events that reached it as a merged tombstone, or after an unmerge.
   */
  async settleForwards(workspace: string, profileId: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await this.#awaitHead({ workspace, shard: this.shard }, timeoutMs);

    // An actor with records to send persists in the next batch, which sends them.
    for (;;) {
      const pending = await this.#actors.ask(actorKey(workspace, profileId), (state) => state?.outbox.length ?? 0);
      if (pending === 0) return;
      if (Date.now() >= deadline) throw new DeadlineError(`profile ${profileId} did not send its ${pending} forwarded records within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, FORWARD_POLL_INTERVAL_MS));
    }
  }

  /**
   * Decides for the profile in its actor, after every event of its workspace on this shard
   * that the stream stored before the call. Resolves undefined when the profile does not
   * exist; a Decide call creates no profile.
   */
  async decide(workspace: string, profileId: string, decision: DecisionInput, timeoutMs: number): Promise<DecisionReceipt | undefined> {
    await this.#awaitHead({ workspace, shard: this.shard }, timeoutMs);
    const key = actorKey(workspace, profileId);
    if (!(await this.#actors.ask(key, (state) => state !== undefined))) return undefined;

    let reply: (receipt: DecisionReceipt) => void = () => {};
    const receipt = new Promise<DecisionReceipt>((resolve) => (reply = resolve));
    if (!this.#actors.tell(key, { kind: 'decide', ...decision, reply })) throw new OverloadedError(`profile ${profileId} has a full mailbox; retry shortly`);
    await withTimeout(receipt.then(() => undefined), timeoutMs, `the decision for profile ${profileId}`);
    return receipt;
  }

  /** Waits until every record of the partition up to its current head was handed to its actor. */
  async #awaitHead(partition: PartitionId, timeoutMs: number): Promise<void> {
    const head = await this.#options.log.headSequence(partition);
    if (head === 0) return;

    await withTimeout(this.#consumerFor(partition.workspace).delivered(head), timeoutMs, `shard ${this.shard} to deliver events up to sequence ${head}`);
  }

  async #checkpoint(): Promise<void> {
    if (this.#checkpointing !== null || this.#fenced || !this.#options.isOwner()) return;
    this.#checkpointing = this.#writeCheckpoints().finally(() => {
      this.#checkpointing = null;
    });
    await this.#checkpointing;
  }

  async #writeCheckpoints(): Promise<void> {
    const checkpoints: Record<string, number> = { ...this.#state.checkpoints };
    for (const [workspace, consumer] of this.#consumers) checkpoints[workspace] = consumer.durable.value;
    if (Object.entries(checkpoints).every(([workspace, sequence]) => this.#state.checkpoints[workspace] === sequence)) return;

    try {
      await this.#state.write(checkpoints);
    } catch (error) {
      if (error instanceof ShardFencedError) this.#fence(error);
      else this.#logger.error({ err: error }, 'writing the shard checkpoint failed; retrying at the next interval');
    }
  }

  #fence(error: ShardFencedError): void {
    if (this.#fenced) return;
    this.#fenced = true;
    this.#logger.warn({ newerEpoch: error.newerEpoch, err: error }, 'another node owns the shard now; stopping without writing');
    this.#options.onFenced(error);
  }

  /**
   * Hands the shard over: persists the dirty profiles while still serving, then stops
   * reading, applies what was read, persists the rest and writes the final checkpoints.
   * The caller releases the lease afterwards. When the lease runs out first, the rest is
   * left to the next owner, which replays it from the log. Resolves true when every
   * profile and checkpoint was written.
   */
  async handoff(timeoutMs: number): Promise<boolean> {
    if (!this.#lifecycle.is('running') || this.#handingOff) return false;
    this.#handingOff = true;
    const startedAt = performance.now();

    await this.#persistWhileServing(startedAt + timeoutMs / 2);
    if (!this.#lifecycle.is('running')) return false;
    this.#lifecycle.set('draining');
    const pausedAt = performance.now();
    this.#pausedAt = pausedAt;

    try {
      const outcome = await this.#drainForHandoff(Math.max(1, Math.ceil(timeoutMs - (pausedAt - startedAt))));
      if (outcome !== 'completed') {
        const reason = outcome === 'lease-lost' ? 'the lease ended during the handoff' : `persisting the profiles took ${PERSIST_GRACE_MS} ms past the handoff timeout`;
        this.#logger.warn({ timeoutMs }, `${reason}; the next owner replays what was not persisted`);
        await this.#forceStop();
        return false;
      }
      await this.#writeCheckpoints();
      this.#lifecycle.set('stopped', { handoffMs: Math.round(performance.now() - startedAt), pauseMs: Math.round(performance.now() - pausedAt) });
      return true;
    } catch (error) {
      this.#logger.error({ err: error }, 'shard handoff failed; stopping without persisting the rest, which the next owner replays');
      await this.#forceStop();
      return false;
    }
  }

  /**
   * Persists the dirty profiles while the shard still serves, in rounds: each round
   * persists what changed during the one before, so fewer profiles are left to persist
   * once the shard stops, and the pause is short. Ends after PRE_FLUSH_MAX_ROUNDS, once a
   * round leaves at most PRE_FLUSH_FEW_PROFILES dirty, or at `deadline`.
   */
  async #persistWhileServing(deadline: number): Promise<void> {
    for (let round = 1; round <= PRE_FLUSH_MAX_ROUNDS; round++) {
      const remainingMs = deadline - performance.now();
      const flushed = remainingMs > 0 && (await Promise.race([this.#actors.flush({ largestBatches: true }).then(() => true), delay(remainingMs).then(() => false)]));
      if (!flushed) {
        this.#logger.warn({ round }, 'persisting before the handoff took over half its time; stopping the shard anyway');
        return;
      }

      const dirty = this.#actors.stats().dirty;
      if (dirty <= PRE_FLUSH_FEW_PROFILES || !this.#lifecycle.is('running')) return;
      this.#logger.debug({ round, dirty }, 'profiles changed while persisting before the handoff; persisting again');
    }
  }

  /** Stops the feed, applies what it read, and persists every profile, unless the lease ends or persisting outlasts the grace first. */
  async #drainForHandoff(timeoutMs: number): Promise<'completed' | 'lease-lost' | 'timed-out'> {
    const deadline = performance.now() + timeoutMs;
    const feedStopped = this.#feed?.stop();
    this.#releaseFeedWaiter();
    await feedStopped;

    const applied = [...this.#consumers.values()].map((consumer) => consumer.applied.reach(consumer.lastEnqueued));
    await Promise.race([Promise.all(applied), delay(timeoutMs)]);
    for (const consumer of this.#consumers.values()) consumer.stop();
    this.#stopTimer();
    await this.#checkpointing;

    // Persisting retries until it succeeds, which it never does once the lease is gone.
    const remainingMs = Math.max(1, Math.ceil(deadline - performance.now()));
    let raceSettled = false;
    const drained = this.#actors.drain({ timeoutMs: remainingMs }).then(
      () => 'completed' as const,
      (error: unknown) => {
        // The forced stop that follows a lost race rejects the drain, and nothing awaits it then.
        if (!raceSettled) throw error;
        return 'timed-out' as const;
      },
    );
    const ownershipLost = this.#whenOwnershipLost();
    const timedOut = delay(remainingMs + PERSIST_GRACE_MS).then(() => 'timed-out' as const);
    try {
      return await Promise.race([drained, ownershipLost.promise.then(() => 'lease-lost' as const), timedOut]);
    } finally {
      raceSettled = true;
      ownershipLost.cancel();
    }
  }

  /** Resolves false once the lease is no longer valid or a newer owner fenced this host. */
  #whenOwnershipLost(): { promise: Promise<false>; cancel: () => void } {
    let timer: NodeJS.Timeout | undefined;
    const promise = new Promise<false>((resolve) => {
      timer = setInterval(() => {
        if (this.#fenced || !this.#options.isOwner()) resolve(false);
      }, OWNERSHIP_CHECK_INTERVAL_MS);
    });
    return { promise, cancel: () => clearInterval(timer) };
  }

  /** Stops at once without writing anything: the lease is lost or another node fenced this one. */
  async abort(): Promise<void> {
    if (this.#lifecycle.is('stopped')) return;
    if (!this.#lifecycle.is('draining')) this.#lifecycle.set('draining', { forced: true });
    await this.#forceStop();
  }

  async #forceStop(): Promise<void> {
    this.#stopTimer();
    const feedStopped = this.#feed?.stop();
    this.#releaseFeedWaiter();
    for (const consumer of this.#consumers.values()) consumer.stop();
    await this.#actors.stop();
    await feedStopped;
    this.#lifecycle.set('stopped', { forced: true });
  }

  stats(): ShardHostStats {
    return {
      shard: this.shard,
      epoch: this.epoch,
      state: this.state,
      workspaces: this.#consumers.size,
      pendingRecords: this.#pendingRecords,
      unreadRecords: this.#feed?.unreadRecords ?? 0,
      nextSequence: this.#feed?.nextSequence ?? 0,
      residentProfiles: this.#actors.stats().resident,
      loads: { ...this.#behavior.loads },
    };
  }

  #releaseFeedWaiter(): void {
    this.#roomWaiter?.();
    this.#roomWaiter = null;
  }

  #stopTimer(): void {
    if (this.#checkpointTimer !== null) clearInterval(this.#checkpointTimer);
    this.#checkpointTimer = null;
    // A sweep still running finds the actors stopped: their tell returns false.
    void this.#timers.stop();
  }
}

async function withTimeout(promise: Promise<void>, timeoutMs: number, waitingFor: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(`timed out after ${timeoutMs} ms waiting for ${waitingFor}`)), timeoutMs);
  });
  try {
    await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
