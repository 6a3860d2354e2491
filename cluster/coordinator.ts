/**
 * The coordinator: the one node, elected through the `coordinator` lease, that publishes
 * which node should own each shard.
 *
 * Every node runs a Coordinator. It acts only while it holds a valid lease and no member
 * has joined for stableForMs. A member that leaves does not restart that wait. Then it
 * computes a balanced placement over the alive members, starting from the shards' current
 * holders (see balancedAssignment), and moves shards toward it.
 * At most maxConcurrentMoves of the moving shards are held by live members at a time
 * (see planMoves). A move has finished once the shard's lease names its new owner. Nodes
 * read the result through an AssignmentWatcher and take or release shard leases.
 */
import { ConfigError } from '../common/errors.js';
import { Lifecycle, type LifecycleState } from '../common/lifecycle.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { applyMoves, balancedAssignment, holdersAfterMoves, movesInProgress, planMoves, type ShardAssignment, type ShardHolders } from './assignment.js';
import { ASSIGNMENT_KEY, decodeAssignment, encodeAssignment, type Assignment } from './assignment-watcher.js';
import { systemClock, type Clock } from './clock.js';
import { compareNodeIds, describeValue, requireDurationMs, requireNodeId, requirePositiveInteger } from './coordination-options.js';
import { KvLease } from './kv-lease.js';
import { KvConflictError, type KvStore } from '../storage/kv-store.js';
import { FailureStreak, PeriodicTask } from './periodic-task.js';

/** The KV key of the coordinator lease, whose value is a KvLeaseRecord. */
export const COORDINATOR_KEY = 'coordinator';

/** The alive members, normally this node's Membership. */
export interface MemberSource {
  members(): ReadonlyArray<{ nodeId: string }>;
}

export interface CoordinatorOptions {
  kv: KvStore;
  nodeId: string;
  membership: MemberSource;
  /** Number of shards, numbered from 0. Must be the same on every node. */
  shardCount: number;
  /**
   * Reads the holder of each shard lease (`shard.<n>`), with null or no entry for a free
   * shard. The shard lease module decodes its records, so this module does not depend on
   * their format.
   */
  readShardHolders: () => Promise<ShardHolders>;
  /** Lifetime of the coordinator lease after its last confirmed write. Default 5,000 ms. */
  leaseTtlMs?: number;
  /** Time between two renewals, or two attempts to take the lease. At most (leaseTtlMs - stallMarginMs) / 2. Default 1,000 ms. */
  renewIntervalMs?: number;
  /** Extra wait before taking over a lease that stopped changing, for clock rate differences. Default 1,000 ms. */
  takeoverMarginMs?: number;
  /** Time by which the holder ends its lease early, for a stall between a check and a write. Less than leaseTtlMs. Default 1,000 ms. */
  stallMarginMs?: number;
  /**
   * Time the member list must stay the same after a member joined before the coordinator
   * moves shards. Members that leave do not restart it. Default 3,000 ms.
   */
  stableForMs?: number;
  /** Maximum number of shards moving away from a live member that still holds them. Default 2. */
  maxConcurrentMoves?: number;
  /** Time between two reconcile passes, which read shard holders and publish moves. Default 500 ms. */
  reconcileIntervalMs?: number;
  clock?: Clock;
  logger?: Logger;
}

export interface ResolvedCoordinatorOptions {
  kv: KvStore;
  nodeId: string;
  membership: MemberSource;
  shardCount: number;
  readShardHolders: () => Promise<ShardHolders>;
  leaseTtlMs: number;
  renewIntervalMs: number;
  takeoverMarginMs: number;
  stallMarginMs: number;
  stableForMs: number;
  maxConcurrentMoves: number;
  reconcileIntervalMs: number;
  clock: Clock;
  logger: Logger;
}

/** The largest shard count, the same limit as the node's `shards` option. */
const MAX_SHARD_COUNT = 65_536;

/** Validates coordinator options once and fills in defaults. Throws ConfigError naming the option and the rule. */
export function resolveCoordinatorOptions(options: CoordinatorOptions): ResolvedCoordinatorOptions {
  for (const name of ['kv', 'membership', 'readShardHolders'] as const) {
    if (options[name] === undefined || options[name] === null) throw new ConfigError(`${name} is required`);
  }

  const leaseTtlMs = requireDurationMs('leaseTtlMs', options.leaseTtlMs ?? 5_000);
  const stallMarginMs = requireDurationMs('stallMarginMs', options.stallMarginMs ?? 1_000);
  const renewIntervalMs = requireDurationMs('renewIntervalMs', options.renewIntervalMs ?? 1_000);
  if (stallMarginMs >= leaseTtlMs) {
    throw new ConfigError(`stallMarginMs must be less than leaseTtlMs (${leaseTtlMs} ms), received ${describeValue(stallMarginMs)}`);
  }
  const maxRenewIntervalMs = Math.floor((leaseTtlMs - stallMarginMs) / 2);
  if (renewIntervalMs > maxRenewIntervalMs) {
    throw new ConfigError(
      `renewIntervalMs must be at most (leaseTtlMs - stallMarginMs) / 2 (${maxRenewIntervalMs} ms), so that one failed renewal does not end the lease, received ${describeValue(renewIntervalMs)}`,
    );
  }

  return {
    kv: options.kv,
    nodeId: requireNodeId('nodeId', options.nodeId),
    membership: options.membership,
    shardCount: requirePositiveInteger('shardCount', options.shardCount, MAX_SHARD_COUNT),
    readShardHolders: options.readShardHolders,
    leaseTtlMs,
    renewIntervalMs,
    takeoverMarginMs: requireDurationMs('takeoverMarginMs', options.takeoverMarginMs ?? 1_000),
    stallMarginMs,
    stableForMs: requireDurationMs('stableForMs', options.stableForMs ?? 3_000),
    maxConcurrentMoves: requirePositiveInteger('maxConcurrentMoves', options.maxConcurrentMoves ?? 2, MAX_SHARD_COUNT),
    reconcileIntervalMs: requireDurationMs('reconcileIntervalMs', options.reconcileIntervalMs ?? 500),
    clock: options.clock ?? systemClock,
    logger: options.logger ?? silentLogger(),
  };
}

export class Coordinator {
  readonly options: ResolvedCoordinatorOptions;
  readonly #logger: Logger;
  readonly #lifecycle: Lifecycle;
  readonly #lease: KvLease;
  readonly #renewals: PeriodicTask;
  readonly #reconciles: PeriodicTask;
  readonly #reconcileFailures: FailureStreak;

  /** Sorted ids of the alive members at the last reconcile pass. */
  #memberIds: string[] = [];
  #membersChangedAtMs = 0;
  /**
   * The balanced placement for #memberIds, computed from the shard holders once per member
   * list and tenure, so that a new coordinator starts from where the shards are.
   */
  #target: ShardAssignment | null = null;
  /** Epoch of the tenure this node last acted under, to log each change of leadership once. */
  #leadingEpoch: number | null = null;
  /** The assignment this node wrote last in its current tenure; no other node writes it meanwhile. */
  #published: Assignment | null = null;

  constructor(options: CoordinatorOptions) {
    this.options = resolveCoordinatorOptions(options);
    const { kv, nodeId, clock } = this.options;
    this.#logger = this.options.logger.child({ component: 'coordinator', coordinatorId: nodeId });
    this.#lifecycle = new Lifecycle('coordinator', this.#logger);
    this.#lease = new KvLease({
      kv,
      key: COORDINATOR_KEY,
      label: 'coordinator',
      nodeId,
      clock,
      logger: this.#logger,
      ttlMs: this.options.leaseTtlMs,
      takeoverMarginMs: this.options.takeoverMarginMs,
      stallMarginMs: this.options.stallMarginMs,
    });
    this.#renewals = new PeriodicTask('coordinator lease', clock, this.options.renewIntervalMs, () => this.#lease.maintain(), this.#logger);
    this.#reconciles = new PeriodicTask('coordinator reconcile', clock, this.options.reconcileIntervalMs, () => this.#reconcile(), this.#logger);
    this.#reconcileFailures = new FailureStreak(this.#logger, 'coordinator reconcile');
  }

  get state(): LifecycleState {
    return this.#lifecycle.state;
  }

  /** Returns whether this node holds a valid coordinator lease now. */
  isLeader(): boolean {
    return this.#lifecycle.is('running') && this.#lease.isValid();
  }

  /** The epoch of this node's coordinator lease while it holds one, else null. */
  get epoch(): number | null {
    return this.#lease.epoch;
  }

  /**
   * Starts competing for the lease at once, and reconciling after reconcileIntervalMs. The
   * first pass reads the member list, so the stable window starts then.
   */
  start(): void {
    this.#lifecycle.assert('start', 'created');
    const { shardCount, maxConcurrentMoves, stableForMs, leaseTtlMs } = this.options;
    this.#lifecycle.set('starting', { shardCount, maxConcurrentMoves, stableForMs, leaseTtlMs });
    this.#renewals.start();
    this.#reconciles.start(this.options.reconcileIntervalMs);
    this.#lifecycle.set('running');
  }

  /** Stops reconciling and releases the lease, so another node takes over without waiting for the ttl. */
  async stop(): Promise<void> {
    if (this.#lifecycle.is('stopped', 'draining')) return;
    if (this.#lifecycle.is('created')) {
      this.#lifecycle.set('stopped');
      return;
    }

    this.#lifecycle.set('draining');
    await this.#reconciles.stop();
    await this.#renewals.stop();
    await this.#lease.release();
    this.#leadingEpoch = null;
    this.#published = null;
    this.#lifecycle.set('stopped');
  }

  async #reconcile(): Promise<void> {
    const nowMs = this.options.clock.nowMs();
    this.#trackMembers(nowMs);
    const epoch = this.#trackLeadership();
    if (epoch === null || this.#memberIds.length === 0) return;
    if (nowMs - this.#membersChangedAtMs < this.options.stableForMs) return;

    try {
      await this.#publishMoves(epoch);
      this.#reconcileFailures.succeeded({ epoch });
    } catch (error) {
      this.#published = null;
      this.#reconcileFailures.failed(error, { epoch });
    }
  }

  /**
   * Records the member list. A member that joined restarts the stable window. Members that
   * left do not: their shards have no owner until they move, and the member timeout has
   * already waited for them.
   */
  #trackMembers(nowMs: number): void {
    const ids = [...new Set(this.options.membership.members().map((member) => member.nodeId))].sort(compareNodeIds);
    if (ids.join(',') === this.#memberIds.join(',')) return;

    const joined = ids.filter((id) => !this.#memberIds.includes(id));
    const left = this.#memberIds.filter((id) => !ids.includes(id));
    this.#memberIds = ids;
    this.#target = null;
    if (joined.length > 0) this.#membersChangedAtMs = nowMs;
    if (this.#leadingEpoch === null) return;

    if (joined.length > 0) {
      this.#logger.info({ epoch: this.#leadingEpoch, members: ids, joined, left, stableForMs: this.options.stableForMs }, 'member list changed; waiting for it to stay stable');
    } else {
      this.#logger.info({ epoch: this.#leadingEpoch, members: ids, left }, 'members left; moving their shards without waiting');
    }
  }

  /** Returns the epoch when this node may act as coordinator now, else null. Logs each change. */
  #trackLeadership(): number | null {
    const epoch = this.#lease.isValid() ? this.#lease.epoch : null;
    if (epoch === this.#leadingEpoch) return epoch;

    if (this.#leadingEpoch !== null) this.#logger.warn({ epoch: this.#leadingEpoch }, 'stopped acting as coordinator: lease lost or no longer valid');
    if (epoch !== null) this.#logger.info({ epoch, members: this.#memberIds }, 'acting as coordinator');
    this.#leadingEpoch = epoch;
    this.#published = null;
    this.#target = null;
    return epoch;
  }

  async #publishMoves(epoch: number): Promise<void> {
    const { kv, nodeId, shardCount, maxConcurrentMoves } = this.options;
    const published = this.#published ?? (await this.#readPublished());
    if (published !== null && published.coordinatorEpoch > epoch) {
      this.#logger.warn({ epoch, publishedEpoch: published.coordinatorEpoch }, 'assignment was written under a newer coordinator epoch; not writing');
      return;
    }

    const holders = await this.options.readShardHolders();
    const publishedShards = published?.shards ?? new Map<number, string>();
    const inProgress = movesInProgress(publishedShards, holders);
    this.#target ??= balancedAssignment(shardCount, this.#memberIds, holdersAfterMoves(holders, inProgress, this.#memberIds));
    const moves = planMoves(holders, this.#target, maxConcurrentMoves, inProgress, new Set(this.#memberIds));
    const shards = applyMoves(publishedShards, holders, this.#target, moves);
    if (published !== null && sameShards(shards, published.shards)) return;

    // The reads above took time, and the lease may have ended meanwhile.
    if (!this.#lease.isValid() || this.#lease.epoch !== epoch) return;
    const next = { version: (published?.version ?? 0) + 1, coordinatorEpoch: epoch, coordinator: nodeId, shards };
    let revision: number;
    try {
      revision = published === null ? await kv.create(ASSIGNMENT_KEY, encodeAssignment(next)) : await kv.update(ASSIGNMENT_KEY, encodeAssignment(next), published.revision);
    } catch (error) {
      if (!(error instanceof KvConflictError)) throw error;
      this.#published = null;
      this.#logger.info({ epoch, expectedRevision: published?.revision ?? null }, 'assignment changed since it was read; reading it again at the next pass');
      return;
    }

    this.#published = { ...next, revision };
    this.#logger.info(
      { epoch, version: next.version, members: this.#memberIds, moves, pendingMoves: movesInProgress(shards, holders).size },
      moves.length > 0 ? 'published shard moves' : 'published shard assignment',
    );
  }

  /**
   * Reads the assignment through list(), which the KvStore contract keeps current, unlike
   * get(): a stale version would make every compare-and-set write fail. get() is the
   * fallback for a list that leaves the key out (see the NOTE in Membership).
   */
  async #readPublished(): Promise<Assignment | null> {
    const { kv } = this.options;
    const listed = (await kv.list(ASSIGNMENT_KEY)).find((candidate) => candidate.key === ASSIGNMENT_KEY);
    const entry = listed ?? (await kv.get(ASSIGNMENT_KEY));
    if (entry === null) return null;

    const assignment = decodeAssignment(entry);
    if (assignment === null) {
      // The next write replaces the invalid value, at the revision read here.
      this.#logger.warn({ key: ASSIGNMENT_KEY, revision: entry.revision }, 'replacing assignment with an invalid value');
      return { version: 0, coordinatorEpoch: 0, coordinator: this.options.nodeId, shards: new Map(), revision: entry.revision };
    }
    return assignment;
  }
}

function sameShards(a: ShardAssignment, b: ShardAssignment): boolean {
  if (a.size !== b.size) return false;
  for (const [shard, owner] of a) if (b.get(shard) !== owner) return false;
  return true;
}
