/**
 * Cluster membership through a KvStore. Each node writes its key `member.<nodeId>` on
 * every heartbeat and polls the `member.` keys of all nodes.
 *
 * A node counts as alive while its key keeps changing. This node dates every revision it
 * reads on its own monotonic clock and never reads another node's clock. A member is gone
 * once this node has not seen its revision change for `memberTimeoutMs`, or as soon as
 * its key is deleted, which is how a node leaves gracefully.
 */
import { randomUUID } from 'node:crypto';
import { ConfigError } from '../common/errors.js';
import { Lifecycle, type LifecycleState } from '../common/lifecycle.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { systemClock, type Clock } from './clock.js';
import { compareNodeIds, describeValue, NODE_ID_PATTERN, requireDurationMs, requireNodeId, requireNonEmptyString } from './coordination-options.js';
import { KvConflictError, type KvEntry, type KvStore } from '../storage/kv-store.js';
import { decodeJsonValue, encodeJsonValue, isRecord } from './kv-json.js';
import { FailureStreak, PeriodicTask } from './periodic-task.js';

export const MEMBER_KEY_PREFIX = 'member.';

/** The value of a `member.<nodeId>` key. */
export interface MemberInfo {
  nodeId: string;
  /** Random id of the process run, new on every start, which distinguishes a restarted node from its predecessor. */
  incarnation: string;
  /** Address where the node serves gRPC, such as `10.0.0.5:50051`. */
  grpcAddress: string;
  /** Wall-clock start time as ISO 8601, for display only: liveness never uses it. */
  startedAt: string;
  /** Count of heartbeats written by this incarnation, starting at 1. */
  heartbeat: number;
}

export interface MembershipOptions {
  kv: KvStore;
  /** This node's id: 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'. */
  nodeId: string;
  grpcAddress: string;
  /** Time between two heartbeat writes of this node's key. Default 1,000 ms. */
  heartbeatIntervalMs?: number;
  /**
   * Time after which a member whose key has not changed counts as gone, measured on this
   * node's clock. At least 2 × heartbeatIntervalMs + pollIntervalMs, so that one lost
   * heartbeat does not drop a node. Default 5,000 ms.
   */
  memberTimeoutMs?: number;
  /** Time between two reads of all member keys. Default 500 ms. */
  pollIntervalMs?: number;
  clock?: Clock;
  logger?: Logger;
}

interface ResolvedMembershipOptions {
  kv: KvStore;
  nodeId: string;
  grpcAddress: string;
  heartbeatIntervalMs: number;
  memberTimeoutMs: number;
  pollIntervalMs: number;
  clock: Clock;
  logger: Logger;
}

/** This node's latest observation of one member key. */
interface ObservedKey {
  revision: number;
  /** The decoded value, or null when the value is invalid. */
  member: MemberInfo | null;
  /**
   * Time on this node's clock before which the revision was not yet written, or null when
   * this node cannot tell (a key that was already there when this node started).
   */
  writtenAfterMs: number | null;
}

/** A heartbeat write of this node, with the time on this node's clock at which it was sent. */
interface OwnWrite {
  revision: number;
  sentAtMs: number;
}

/** Validates membership options once and fills in defaults. Throws ConfigError naming the option and the rule. */
export function resolveMembershipOptions(options: MembershipOptions): ResolvedMembershipOptions {
  if (options.kv === undefined || options.kv === null) throw new ConfigError('kv is required: pass the KvStore of the cluster bucket');

  const heartbeatIntervalMs = requireDurationMs('heartbeatIntervalMs', options.heartbeatIntervalMs ?? 1_000);
  const memberTimeoutMs = requireDurationMs('memberTimeoutMs', options.memberTimeoutMs ?? 5_000);
  const pollIntervalMs = requireDurationMs('pollIntervalMs', options.pollIntervalMs ?? 500);

  const minimumTimeoutMs = 2 * heartbeatIntervalMs + pollIntervalMs;
  if (memberTimeoutMs < minimumTimeoutMs) {
    throw new ConfigError(
      `memberTimeoutMs must be at least 2 × heartbeatIntervalMs + pollIntervalMs (${minimumTimeoutMs} ms), received ${describeValue(memberTimeoutMs)}`,
    );
  }

  return {
    kv: options.kv,
    nodeId: requireNodeId('nodeId', options.nodeId),
    grpcAddress: requireNonEmptyString('grpcAddress', options.grpcAddress),
    heartbeatIntervalMs,
    memberTimeoutMs,
    pollIntervalMs,
    clock: options.clock ?? systemClock,
    logger: options.logger ?? silentLogger(),
  };
}

export function memberKey(nodeId: string): string {
  return `${MEMBER_KEY_PREFIX}${nodeId}`;
}

/**
 * Registers this node, heartbeats, and keeps the list of alive members. Changes of that
 * list are seen at the next poll, so within pollIntervalMs plus the time of one KV list.
 */
export class Membership {
  readonly nodeId: string;
  /** New for every Membership, so each process run registers as a new incarnation. */
  readonly incarnation = randomUUID();
  readonly #options: ResolvedMembershipOptions;
  readonly #logger: Logger;
  readonly #lifecycle: Lifecycle;
  readonly #key: string;
  readonly #heartbeats: PeriodicTask;
  readonly #polls: PeriodicTask;
  readonly #heartbeatFailures: FailureStreak;
  readonly #pollFailures: FailureStreak;
  readonly #listeners = new Set<(members: MemberInfo[]) => void>();

  readonly #observed = new Map<string, ObservedKey>();
  /** This node's recent heartbeat writes, oldest first, to date the revisions of other keys. */
  #ownWrites: OwnWrite[] = [];
  /** Send time of the last KV list that succeeded. */
  #lastListSentAtMs: number | null = null;
  #startedAt = '';
  #heartbeat = 0;
  #alive: MemberInfo[] = [];
  /** Node id, incarnation and address of each alive member, to detect a change of the list. */
  #aliveSignature = '';

  constructor(options: MembershipOptions) {
    this.#options = resolveMembershipOptions(options);
    this.nodeId = this.#options.nodeId;
    this.#key = memberKey(this.nodeId);
    this.#logger = this.#options.logger.child({ component: 'membership', nodeId: this.nodeId });
    this.#lifecycle = new Lifecycle('membership', this.#logger);

    const { clock, heartbeatIntervalMs, pollIntervalMs } = this.#options;
    this.#heartbeats = new PeriodicTask('membership heartbeat', clock, heartbeatIntervalMs, () => this.#heartbeatOnce(), this.#logger);
    this.#polls = new PeriodicTask('membership poll', clock, pollIntervalMs, () => this.#poll(), this.#logger);
    this.#heartbeatFailures = new FailureStreak(this.#logger, 'membership heartbeat');
    this.#pollFailures = new FailureStreak(this.#logger, 'membership poll');
  }

  get state(): LifecycleState {
    return this.#lifecycle.state;
  }

  /**
   * Writes this node's key, reads the member keys once, and starts heartbeating and
   * polling. Throws the KV error when the first write fails, and the state becomes failed.
   */
  async start(): Promise<void> {
    this.#lifecycle.assert('start', 'created');
    this.#lifecycle.set('starting', { incarnation: this.incarnation, grpcAddress: this.#options.grpcAddress });
    this.#startedAt = new Date().toISOString();

    try {
      await this.#writeHeartbeat();
    } catch (error) {
      this.#lifecycle.set('failed', { err: error });
      throw error;
    }

    await this.#poll();
    this.#heartbeats.start(this.#options.heartbeatIntervalMs);
    this.#polls.start(this.#options.pollIntervalMs);
    this.#lifecycle.set('running');
  }

  /**
   * Stops heartbeating and deletes this node's key, so other nodes drop it at their next
   * poll. When the delete fails, other nodes drop it after memberTimeoutMs.
   */
  async stop(): Promise<void> {
    if (this.#lifecycle.is('created', 'failed')) {
      this.#lifecycle.set('stopped');
      return;
    }
    if (this.#lifecycle.is('draining', 'stopped')) return;

    this.#lifecycle.set('draining');
    await this.#heartbeats.stop();
    await this.#polls.stop();
    await this.#leave();
    this.#alive = [];
    this.#aliveSignature = '';
    this.#lifecycle.set('stopped');
  }

  /** Alive members sorted by node id, as of the last poll. Empty unless running. */
  members(): MemberInfo[] {
    return this.#alive.map((member) => ({ ...member }));
  }

  /**
   * Node ids of the member keys that are still in the bucket but count as gone, sorted: nodes
   * that crashed or stalled, because a node that leaves gracefully deletes its key.
   * NOTE: the key of a node that crashed and never runs again stays until someone deletes
   * it, so its id stays in this list.
   */
  absentNodeIds(): string[] {
    const alive = new Set(this.#alive.map((member) => member.nodeId));
    const absent = new Set<string>();
    for (const observed of this.#observed.values()) {
      if (observed.member !== null && !alive.has(observed.member.nodeId)) absent.add(observed.member.nodeId);
    }
    return [...absent].sort(compareNodeIds);
  }

  /** Calls `listener` with the new member list whenever a member joins, leaves or restarts. Returns a function that unsubscribes. */
  onChange(listener: (members: MemberInfo[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async #heartbeatOnce(): Promise<void> {
    try {
      await this.#writeHeartbeat();
      this.#heartbeatFailures.succeeded();
    } catch (error) {
      this.#heartbeatFailures.failed(error, { key: this.#key });
    }
  }

  async #writeHeartbeat(): Promise<void> {
    this.#heartbeat += 1;
    const record: MemberInfo = {
      nodeId: this.nodeId,
      incarnation: this.incarnation,
      grpcAddress: this.#options.grpcAddress,
      startedAt: this.#startedAt,
      heartbeat: this.#heartbeat,
    };

    const sentAtMs = this.#options.clock.nowMs();
    const revision = await this.#options.kv.put(this.#key, encodeJsonValue(record));
    this.#ownWrites.push({ revision, sentAtMs });

    // Writes older than memberTimeoutMs cannot make a member alive any more. The latest
    // one stays, because it still dates what other nodes write after it.
    const horizonMs = this.#options.clock.nowMs() - this.#options.memberTimeoutMs;
    while (this.#ownWrites.length > 1 && this.#ownWrites[0].sentAtMs < horizonMs) this.#ownWrites.shift();
  }

  async #poll(): Promise<void> {
    const sentAtMs = this.#options.clock.nowMs();
    try {
      const entries = await this.#options.kv.list(MEMBER_KEY_PREFIX);
      const listed = new Set(entries.map((entry) => entry.key));
      const unlisted = [...this.#observed.keys()].filter((key) => !listed.has(key));
      const confirmed = await this.#readUnlisted(unlisted);
      this.#observe([...entries, ...confirmed.entries], confirmed.deleted, sentAtMs);
      this.#pollFailures.succeeded();
    } catch (error) {
      this.#pollFailures.failed(error, { prefix: MEMBER_KEY_PREFIX });
    }

    // Members expire by time, so the list is checked even when the KV read failed.
    this.#updateAlive();
  }

  /**
   * Reads each known key that a list left out, and returns the keys that are really gone.
   * NOTE: NatsKvStore.list() has been seen to leave out a key that another node was
   * rewriting at the same moment. Without this check such a member would drop out and
   * come back, and each change restarts the coordinator's stable window.
   */
  async #readUnlisted(keys: string[]): Promise<{ entries: KvEntry[]; deleted: string[] }> {
    const entries: KvEntry[] = [];
    const deleted: string[] = [];
    for (const key of keys) {
      const entry = await this.#options.kv.get(key);
      if (entry === null) {
        deleted.push(key);
      } else {
        entries.push(entry);
      }
    }
    return { entries, deleted };
  }

  #observe(entries: KvEntry[], deleted: string[], listSentAtMs: number): void {
    for (const entry of entries) {
      const known = this.#observed.get(entry.key);
      // An equal revision is unchanged, and a lower one comes from a stale read.
      if (known !== undefined && entry.revision <= known.revision) continue;

      const member = this.#decode(entry, known);
      this.#observed.set(entry.key, { revision: entry.revision, member, writtenAfterMs: this.#writtenAfterMs(entry.revision) });
    }

    for (const key of deleted) this.#observed.delete(key);
    this.#lastListSentAtMs = listSentAtMs;
  }

  /**
   * Returns a time on this node's clock before which `revision` was not yet written, or
   * null when there is none. A revision that is new since the previous list was written
   * after that list was sent. Revisions grow across the whole bucket, so a revision at or
   * above one of this node's heartbeats was written after that heartbeat was sent.
   */
  #writtenAfterMs(revision: number): number | null {
    let bound = this.#lastListSentAtMs;
    for (const write of this.#ownWrites) {
      if (write.revision <= revision && (bound === null || write.sentAtMs > bound)) bound = write.sentAtMs;
    }
    return bound;
  }

  #decode(entry: KvEntry, known: ObservedKey | undefined): MemberInfo | null {
    const member = parseMemberInfo(entry);
    if (member === null) {
      // Warn once per key until it becomes valid again, not on every heartbeat.
      if (known === undefined || known.member !== null) {
        this.#logger.warn({ key: entry.key, revision: entry.revision }, 'ignoring member key with an invalid value');
      }
      return null;
    }

    if (entry.key === this.#key && member.incarnation !== this.incarnation && known?.member?.incarnation !== member.incarnation) {
      this.#logger.warn(
        { key: entry.key, otherIncarnation: member.incarnation, otherGrpcAddress: member.grpcAddress },
        'another process writes heartbeats with this node id; give each node a unique nodeId',
      );
    }
    return member;
  }

  #updateAlive(): void {
    const nowMs = this.#options.clock.nowMs();
    const alive: MemberInfo[] = [];
    for (const observed of this.#observed.values()) {
      if (observed.member === null || observed.writtenAfterMs === null) continue;
      if (nowMs - observed.writtenAfterMs < this.#options.memberTimeoutMs) alive.push(observed.member);
    }
    alive.sort((a, b) => compareNodeIds(a.nodeId, b.nodeId));

    const signature = alive.map((member) => `${member.nodeId}/${member.incarnation}/${member.grpcAddress}`).join(',');
    if (signature === this.#aliveSignature) {
      this.#alive = alive;
      return;
    }

    const before = new Set(this.#alive.map((member) => member.nodeId));
    const after = new Set(alive.map((member) => member.nodeId));
    this.#logger.info(
      {
        members: [...after],
        joined: [...after].filter((id) => !before.has(id)),
        left: [...before].filter((id) => !after.has(id)),
      },
      'membership changed',
    );
    this.#alive = alive;
    this.#aliveSignature = signature;
    this.#notify();
  }

  #notify(): void {
    for (const listener of this.#listeners) {
      try {
        listener(this.members());
      } catch (error) {
        this.#logger.error({ err: error }, 'membership change listener failed');
      }
    }
  }

  /** Deletes this node's key, unless another incarnation has overwritten it since. */
  async #leave(): Promise<void> {
    const { kv } = this.#options;
    const lastRevision = this.#ownWrites.at(-1)?.revision;

    try {
      if (lastRevision !== undefined) {
        try {
          await kv.delete(this.#key, lastRevision);
          this.#logger.info({ key: this.#key }, 'deleted member key on leave');
          return;
        } catch (error) {
          // A heartbeat whose reply was lost may have moved the key past lastRevision.
          if (!(error instanceof KvConflictError)) throw error;
        }
      }

      const entry = await kv.get(this.#key);
      const member = entry === null ? null : parseMemberInfo(entry);
      if (entry === null || member?.incarnation !== this.incarnation) {
        this.#logger.info({ key: this.#key }, 'member key is gone or belongs to another incarnation; left it in place');
        return;
      }
      await kv.delete(this.#key, entry.revision);
      this.#logger.info({ key: this.#key }, 'deleted member key on leave');
    } catch (error) {
      this.#logger.warn({ err: error, key: this.#key }, 'failed to delete member key on leave; other nodes drop this node after memberTimeoutMs');
    }
  }
}

/** Decodes a member key's value. Returns null unless every field is valid and the node id matches the key. */
export function parseMemberInfo(entry: KvEntry): MemberInfo | null {
  const value = decodeJsonValue(entry.value);
  if (!isRecord(value)) return null;

  const { nodeId, incarnation, grpcAddress, startedAt, heartbeat } = value;
  if (typeof nodeId !== 'string' || !NODE_ID_PATTERN.test(nodeId) || entry.key !== memberKey(nodeId)) return null;
  if (typeof incarnation !== 'string' || incarnation === '') return null;
  if (typeof grpcAddress !== 'string' || typeof startedAt !== 'string') return null;
  if (!Number.isSafeInteger(heartbeat) || (heartbeat as number) < 1) return null;

  return { nodeId, incarnation, grpcAddress, startedAt, heartbeat: heartbeat as number };
}
