/**
 * Shard ownership through leases in a KvStore, one key per shard (`shard.<n>`).
 *
 * Only a successful compare-and-set write decides ownership, because reads may be stale.
 * A lease counts as valid until the time this node SENT its last confirmed write, plus
 * leaseTtlMs - stallMarginMs, on this node's monotonic clock. Another node takes the lease
 * over only after the key's revision has stayed the same for leaseTtlMs + takeoverMarginMs
 * on the taker's own clock. So a holder stops claiming the shard at least
 * stallMarginMs + takeoverMarginMs before a taker can write, and no node ever compares
 * its clock with another node's.
 *
 * The fencing epoch of a tenure is the revision of the write that acquired it. Revisions
 * grow across the store, so every new tenure has a higher epoch than the one before.
 */
import type { Logger } from '../../common/logger.js';
import { Lifecycle, type LifecycleState } from '../../common/lifecycle.js';
import type { TimerHandle } from '../clock.js';
import { KvConflictError, type KvEntry, type KvStore } from '../../storage/kv-store.js';
import type { ShardOwnership } from '../ownership.js';
import { resolveShardLeaseOptions, type ResolvedShardLeaseOptions, type ShardLeaseOptions } from './lease-options.js';
import { decodeLeaseRecord, encodeLeaseRecord, leaseEpoch, type LeaseRecord, type PreviousHolder } from './lease-record.js';

/**
 * Why acquire() did not take a lease:
 * - `held`: the holder renewed or another node took the lease while this node waited.
 * - `conflict`: the compare-and-set write lost to another writer.
 * - `expired`: the write succeeded, but its reply came after the lease stopped being valid.
 *   The record names this node, so the next acquire() takes it without waiting.
 * - `stopped`: stop() was called.
 */
export type AcquireFailure = 'held' | 'conflict' | 'expired' | 'stopped';

export type AcquireResult =
  | {
      acquired: true;
      epoch: number;
      /**
       * The tenure before this one, or null when the key did not exist. A new owner uses it
       * to decide what state it can trust. Its local state of the shard is current only when
       * `holder` and `incarnation` are its own, and `released` false means that the holder
       * may not have flushed its state.
       */
      previous: PreviousHolder | null;
    }
  | { acquired: false; reason: AcquireFailure };

type StepDownReason = 'expired' | 'lost' | 'stopped' | 'release failed';

interface Tenure {
  readonly shard: number;
  readonly key: string;
  readonly epoch: number;
  readonly previous: PreviousHolder | null;
  /** Revision of this node's last confirmed write of the key. */
  revision: number;
  /** Monotonic time until which the lease counts as valid. */
  validUntilMs: number;
  /** `releasing` already makes owns() false, so no owner overlaps the next one. */
  status: 'owned' | 'releasing' | 'ended';
  renewTimer: TimerHandle | null;
  deadlineTimer: TimerHandle | null;
  /** The renewal in flight; it settles after its result is applied to this tenure. */
  renewing: Promise<void> | null;
  /** Renewals that failed with a transient error since the last confirmed one. */
  failedRenewals: number;
  /** A write failed with a transient error and may have been applied, at a revision this node has not seen. */
  unconfirmedWrite: boolean;
}

/** A pause of acquire() between two reads of another node's lease. */
interface Sleep {
  shard: number;
  timer: TimerHandle;
  resolve: (completed: boolean) => void;
}

const COMPONENT = 'shard leases';

/** Returns the KV key of a shard's lease. */
export function leaseKey(shard: number): string {
  return `shard.${shard}`;
}

export class ShardLeases implements ShardOwnership {
  readonly options: ResolvedShardLeaseOptions;
  readonly #kv: KvStore;
  readonly #logger: Logger;
  readonly #lifecycle: Lifecycle;
  readonly #tenures = new Map<number, Tenure>();
  readonly #acquiring = new Map<number, Promise<AcquireResult>>();
  readonly #releasing = new Map<number, Promise<boolean>>();
  readonly #listeners = new Set<(shard: number, owned: boolean) => void>();
  /** Per lease key, the earliest time this node read its current revision. */
  readonly #observations = new Map<string, { revision: number; atMs: number }>();
  /** Waits of acquire() in progress, which stop() cancels. */
  readonly #sleeps = new Set<Sleep>();

  constructor(kv: KvStore, options: ShardLeaseOptions) {
    this.options = resolveShardLeaseOptions(options);
    this.#kv = kv;
    this.#logger = this.options.logger.child({ component: 'shard-leases', nodeId: this.options.nodeId, incarnation: this.options.incarnation });
    this.#lifecycle = new Lifecycle(COMPONENT, this.#logger);
  }

  get state(): LifecycleState {
    return this.#lifecycle.state;
  }

  start(): void {
    this.#lifecycle.assert('start', 'created');
    this.#lifecycle.set('starting');
    const { clock, logger, ...settings } = this.options;
    this.#lifecycle.set('running', { options: settings });
  }

  /** Returns whether this node holds the shard's lease and the lease is still valid by this node's clock now. */
  owns(shard: number): boolean {
    const tenure = this.#tenures.get(shard);
    // The clock check matters after a stall, because a process that resumes past the
    // deadline must report no ownership even before its deadline timer has run.
    return tenure !== undefined && tenure.status === 'owned' && this.options.clock.nowMs() < tenure.validUntilMs;
  }

  /** Returns the fencing epoch of this node's valid lease on the shard, or 0 when owns(shard) is false. */
  epoch(shard: number): number {
    return this.owns(shard) ? this.#tenures.get(shard)!.epoch : 0;
  }

  /** Returns the shards for which owns() is true now, in ascending order. */
  ownedShards(): number[] {
    return [...this.#tenures.keys()].filter((shard) => this.owns(shard)).sort((a, b) => a - b);
  }

  /**
   * Records lease entries that this node just read, for example by listing the bucket.
   * A later acquire() counts its wait for an unchanged revision from the first time this
   * node read that revision, so a dead holder's lease is taken over sooner. That is safe
   * because the revision was written before it was read, and the final compare-and-set
   * fails if it changed since.
   */
  observe(entries: readonly KvEntry[]): void {
    const atMs = this.options.clock.nowMs();
    for (const entry of entries) this.#observe(entry.key, entry.revision, atMs);
  }

  #observe(key: string, revision: number, atMs: number): { revision: number; atMs: number } {
    const known = this.#observations.get(key);
    if (known !== undefined && known.revision >= revision) return known.revision === revision ? known : { revision, atMs };
    const observation = { revision, atMs };
    this.#observations.set(key, observation);
    return observation;
  }

  /**
   * Ends the current pause of an acquire() that waits out the shard's lease, so it reads
   * the key at once rather than at its next poll. Call it when another node announces that
   * it released the lease. A read decides, so a wrong hint only costs a read.
   */
  wake(shard: number): void {
    for (const sleep of this.#sleeps) {
      if (sleep.shard !== shard) continue;
      sleep.timer.cancel();
      this.#sleeps.delete(sleep);
      sleep.resolve(true);
    }
  }

  onChange(listener: (shard: number, owned: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Takes the shard's lease. Creates the key when it does not exist, and updates a
   * released record, or one of this node's own run, at once. Any other record is updated
   * only after its revision has stayed the same for max(its ttlMs, leaseTtlMs) +
   * takeoverMarginMs on this node's clock. Resolves with the current tenure when the
   * shard is already owned. A concurrent call for the same shard gets the same promise.
   * Rejects with InvalidStateError unless running, with InvalidLeaseRecordError when the
   * stored record is invalid, and with the KvStore's error when the first read or the
   * write fails.
   */
  async acquire(shard: number): Promise<AcquireResult> {
    assertShard(shard);
    this.#lifecycle.assert('acquire a shard lease', 'running');

    const pending = this.#acquiring.get(shard);
    if (pending !== undefined) return pending;

    const attempt = this.#acquireAfterRelease(shard).finally(() => this.#acquiring.delete(shard));
    this.#acquiring.set(shard, attempt);
    return attempt;
  }

  /**
   * Gives the lease up after the caller has flushed the shard's state: writes a released
   * record, so the next node takes over without waiting for the ttl. owns() turns false
   * when the release starts, and onChange(shard, false) fires when it ends. Resolves true
   * when the released record was written, and false when the shard was not owned, the
   * lease was lost, or the write failed (then the lease expires after its ttl).
   */
  async release(shard: number): Promise<boolean> {
    assertShard(shard);
    const pending = this.#releasing.get(shard);
    if (pending !== undefined) return pending;

    await this.#acquiring.get(shard)?.catch(() => undefined);
    const tenure = this.#tenures.get(shard);
    if (tenure === undefined || tenure.status !== 'owned' || this.#releasing.has(shard)) {
      return this.#releasing.get(shard) ?? false;
    }

    const release = this.#release(tenure).finally(() => this.#releasing.delete(shard));
    this.#releasing.set(shard, release);
    return release;
  }

  /**
   * Stops every timer and wait, and steps down from every lease without releasing it, so
   * the leases expire after their ttl. Call release() first for a handover without waiting.
   */
  stop(): void {
    if (this.#lifecycle.is('stopped')) return;

    const owned = this.ownedShards();
    this.#lifecycle.set('draining', { ownedShards: owned });
    for (const sleep of this.#sleeps) {
      sleep.timer.cancel();
      sleep.resolve(false);
    }
    this.#sleeps.clear();
    for (const tenure of [...this.#tenures.values()]) this.#stepDown(tenure, 'stopped');
    this.#lifecycle.set('stopped');
  }

  async #acquireAfterRelease(shard: number): Promise<AcquireResult> {
    await this.#releasing.get(shard);
    const tenure = this.#tenures.get(shard);
    if (tenure !== undefined) {
      if (this.owns(shard)) return { acquired: true, epoch: tenure.epoch, previous: tenure.previous };
      // Validity passed before the deadline timer ran, after a stall. End that tenure first,
      // so its step-down cannot fire after the new tenure has started.
      this.#stepDown(tenure, 'expired');
    }

    const key = leaseKey(shard);
    const entry = await this.#kv.get(key);
    if (this.#stopped) return { acquired: false, reason: 'stopped' };
    if (entry === null) return this.#takeLease(shard, null);

    const record = decodeLeaseRecord(entry.value, key, entry.revision);
    if (record.released || this.#isOwnRecord(record)) return this.#takeLease(shard, { entry, record });
    return this.#waitOutLease(shard, entry, record);
  }

  /**
   * Waits until the observed revision has stayed the same for the other holder's ttl plus
   * takeoverMarginMs, then updates at that revision. Reads in between only end the wait
   * early, because a newer revision means that the holder is alive or released the lease.
   */
  async #waitOutLease(shard: number, observed: KvEntry, record: LeaseRecord): Promise<AcquireResult> {
    const { clock, leaseTtlMs, takeoverMarginMs, takeoverPollIntervalMs } = this.options;
    const waitMs = Math.max(record.ttlMs, leaseTtlMs) + takeoverMarginMs;
    const observedAtMs = this.#observe(observed.key, observed.revision, clock.nowMs()).atMs;
    this.#logger.debug({ shard, holder: record.holder, holderIncarnation: record.incarnation, revision: observed.revision, waitMs }, 'waiting out another node\'s shard lease');

    while (true) {
      const remainingMs = observedAtMs + waitMs - clock.nowMs();
      if (remainingMs <= 0) break;
      if (!(await this.#sleep(shard, Math.min(remainingMs, takeoverPollIntervalMs)))) return { acquired: false, reason: 'stopped' };

      let latest: KvEntry | null;
      try {
        latest = await this.#kv.get(observed.key);
      } catch (error) {
        // The write at the end decides. A failed read only loses the chance to stop early.
        this.#logger.debug({ shard, err: error }, 'reading a shard lease while waiting failed');
        continue;
      }
      if (this.#stopped) return { acquired: false, reason: 'stopped' };
      // A missing key or an older revision comes from a stale read, so it is ignored. The
      // final compare-and-set fails if the key did change.
      if (latest === null || latest.revision <= observed.revision) continue;

      const latestRecord = decodeLeaseRecord(latest.value, observed.key, latest.revision);
      if (latestRecord.released || this.#isOwnRecord(latestRecord)) return this.#takeLease(shard, { entry: latest, record: latestRecord });
      this.#logger.debug({ shard, holder: latestRecord.holder, revision: latest.revision }, 'shard lease was renewed while waiting');
      return { acquired: false, reason: 'held' };
    }

    return this.#takeLease(shard, { entry: observed, record });
  }

  /** Writes this node's record with compare-and-set: create when `current` is null, else update at its revision. */
  async #takeLease(shard: number, current: { entry: KvEntry; record: LeaseRecord } | null): Promise<AcquireResult> {
    const { clock, nodeId, incarnation, leaseTtlMs, stallMarginMs } = this.options;
    const key = leaseKey(shard);
    const previous: PreviousHolder | null =
      current === null
        ? null
        : {
            holder: current.record.holder,
            incarnation: current.record.incarnation,
            epoch: leaseEpoch(current.record, current.entry.revision),
            released: current.record.released,
          };
    const value = encodeLeaseRecord({ holder: nodeId, incarnation, epoch: 0, ttlMs: leaseTtlMs, released: false, previousHolder: previous });

    const sentAtMs = clock.nowMs();
    let revision: number;
    try {
      revision = current === null ? await this.#kv.create(key, value) : await this.#kv.update(key, value, current.entry.revision);
    } catch (error) {
      if (!(error instanceof KvConflictError)) throw error;
      this.#logger.debug({ shard, err: error }, 'another node wrote the shard lease first');
      return { acquired: false, reason: 'conflict' };
    }

    if (this.#stopped) {
      this.#logger.info({ shard, epoch: revision }, 'shard lease acquired after stop, left to expire');
      return { acquired: false, reason: 'stopped' };
    }
    const validUntilMs = sentAtMs + leaseTtlMs - stallMarginMs;
    if (clock.nowMs() >= validUntilMs) {
      this.#logger.warn({ shard, epoch: revision, replyAfterMs: clock.nowMs() - sentAtMs }, 'shard lease write was confirmed too late to be valid, not taking the shard');
      return { acquired: false, reason: 'expired' };
    }

    const tenure: Tenure = {
      shard,
      key,
      epoch: revision,
      previous,
      revision,
      validUntilMs,
      status: 'owned',
      renewTimer: null,
      deadlineTimer: null,
      renewing: null,
      failedRenewals: 0,
      unconfirmedWrite: false,
    };
    this.#tenures.set(shard, tenure);
    this.#scheduleDeadline(tenure);
    this.#scheduleRenewal(tenure, Math.max(0, sentAtMs + this.options.renewIntervalMs - clock.nowMs()));

    this.#logger.info({ shard, epoch: revision, previousHolder: previous }, 'shard lease acquired');
    this.#notify(shard, true);
    return { acquired: true, epoch: revision, previous };
  }

  #scheduleRenewal(tenure: Tenure, delayMs: number): void {
    tenure.renewTimer?.cancel();
    tenure.renewTimer = this.options.clock.setTimer(delayMs, () => {
      tenure.renewTimer = null;
      if (tenure.status !== 'owned' || tenure.renewing !== null) return;
      tenure.renewing = this.#renew(tenure).then((nextDelayMs) => {
        tenure.renewing = null;
        if (nextDelayMs !== null && tenure.status === 'owned') this.#scheduleRenewal(tenure, nextDelayMs);
      });
    });
  }

  /** Sends one renewal and applies its result. Returns the delay until the next one, or null when there is none. */
  async #renew(tenure: Tenure): Promise<number | null> {
    const { clock, nodeId, incarnation, leaseTtlMs, stallMarginMs, renewIntervalMs, renewRetryIntervalMs } = this.options;
    const sentAtMs = clock.nowMs();
    // A renewal timer that runs late, after a stall, must not extend a lease that already ended.
    if (sentAtMs >= tenure.validUntilMs) {
      this.#stepDown(tenure, 'expired');
      return null;
    }

    const value = encodeLeaseRecord({ holder: nodeId, incarnation, epoch: tenure.epoch, ttlMs: leaseTtlMs, released: false, previousHolder: tenure.previous });
    let revision: number;
    try {
      revision = await this.#kv.update(tenure.key, value, tenure.revision);
    } catch (error) {
      if (tenure.status === 'ended') return null;
      if (error instanceof KvConflictError) {
        // A conflict means another node wrote the key, unless it was this tenure's own
        // renewal whose reply was lost. Then renew again at once, at that revision.
        if (await this.#adoptUnconfirmedWrite(tenure)) return 0;
        this.#stepDown(tenure, 'lost', error);
        return null;
      }

      tenure.failedRenewals += 1;
      tenure.unconfirmedWrite = true;
      // The first failure of an outage logs a warning, and the repeats until the deadline log at debug level.
      const level = tenure.failedRenewals === 1 ? 'warn' : 'debug';
      this.#logger[level](
        { shard: tenure.shard, epoch: tenure.epoch, attempt: tenure.failedRenewals, validForMs: tenure.validUntilMs - clock.nowMs(), err: error },
        'shard lease renewal failed, retrying until the lease expires',
      );
      return renewRetryIntervalMs;
    }

    if (tenure.status === 'ended') {
      this.#logger.debug({ shard: tenure.shard, epoch: tenure.epoch, revision }, 'shard lease renewal confirmed after the tenure ended');
      return null;
    }
    // A release waiting for this renewal writes at the new revision.
    tenure.revision = revision;
    tenure.unconfirmedWrite = false;
    if (tenure.status !== 'owned') return null;

    if (tenure.failedRenewals > 0) {
      this.#logger.info({ shard: tenure.shard, epoch: tenure.epoch, failedRenewals: tenure.failedRenewals }, 'shard lease renewed after failures');
      tenure.failedRenewals = 0;
    }
    const validUntilMs = sentAtMs + leaseTtlMs - stallMarginMs;
    if (clock.nowMs() >= validUntilMs) {
      this.#stepDown(tenure, 'expired');
      return null;
    }
    tenure.validUntilMs = validUntilMs;
    this.#scheduleDeadline(tenure);
    return Math.max(0, sentAtMs + renewIntervalMs - clock.nowMs());
  }

  /** Steps down when the lease stops being valid without a confirmed renewal. */
  #scheduleDeadline(tenure: Tenure): void {
    const { clock } = this.options;
    tenure.deadlineTimer?.cancel();
    tenure.deadlineTimer = clock.setTimer(Math.max(0, tenure.validUntilMs - clock.nowMs()), () => {
      tenure.deadlineTimer = null;
      if (tenure.status !== 'owned') return;
      if (clock.nowMs() >= tenure.validUntilMs) this.#stepDown(tenure, 'expired');
      else this.#scheduleDeadline(tenure);
    });
  }

  async #release(tenure: Tenure): Promise<boolean> {
    const { shard, epoch } = tenure;
    tenure.status = 'releasing';
    tenure.renewTimer?.cancel();
    tenure.deadlineTimer?.cancel();
    // Writes of one tenure go one at a time, because each expects the revision of the one before.
    await tenure.renewing;
    // A renewal that found a conflict, or stop(), may have ended the tenure meanwhile.
    if (hasEnded(tenure)) return false;

    const { nodeId, incarnation, leaseTtlMs } = this.options;
    const value = encodeLeaseRecord({ holder: nodeId, incarnation, epoch, ttlMs: leaseTtlMs, released: true, previousHolder: tenure.previous });
    while (true) {
      try {
        await this.#kv.update(tenure.key, value, tenure.revision);
        break;
      } catch (error) {
        // At most one retry, because adopting a revision clears unconfirmedWrite.
        if (error instanceof KvConflictError && (await this.#adoptUnconfirmedWrite(tenure))) continue;
        this.#stepDown(tenure, error instanceof KvConflictError ? 'lost' : 'release failed', error);
        return false;
      }
    }

    this.#logger.info({ shard, epoch }, 'shard lease released');
    this.#end(tenure);
    return true;
  }

  /**
   * Checks, after a conflict, whether the key contains this tenure's own write whose reply was
   * lost. If so, adopts its revision and returns true. The read may be stale, but then the
   * next compare-and-set at the adopted revision fails, and the tenure is lost.
   */
  async #adoptUnconfirmedWrite(tenure: Tenure): Promise<boolean> {
    if (!tenure.unconfirmedWrite) return false;
    tenure.unconfirmedWrite = false;

    let entry: KvEntry | null;
    let record: LeaseRecord;
    try {
      entry = await this.#kv.get(tenure.key);
      if (entry === null) return false;
      record = decodeLeaseRecord(entry.value, entry.key, entry.revision);
    } catch (error) {
      this.#logger.debug({ shard: tenure.shard, epoch: tenure.epoch, err: error }, 'reading the shard lease after a conflict failed');
      return false;
    }

    const ownWrite = this.#isOwnRecord(record) && !record.released && leaseEpoch(record, entry.revision) === tenure.epoch;
    if (hasEnded(tenure) || !ownWrite || entry.revision <= tenure.revision) return false;
    this.#logger.info({ shard: tenure.shard, epoch: tenure.epoch, revision: entry.revision }, 'a shard lease write whose reply was lost had been applied, continuing at its revision');
    tenure.revision = entry.revision;
    return true;
  }

  #stepDown(tenure: Tenure, reason: StepDownReason, error?: unknown): void {
    if (tenure.status === 'ended') return;
    const fields = { shard: tenure.shard, epoch: tenure.epoch, reason, failedRenewals: tenure.failedRenewals, err: error };

    switch (reason) {
      case 'expired':
        this.#logger.warn(fields, 'shard lease expired without a confirmed renewal, stepping down');
        break;
      case 'lost':
        this.#logger.warn(fields, 'shard lease lost: another node wrote the key, stepping down');
        break;
      case 'release failed':
        this.#logger.warn(fields, 'shard lease release failed, stepping down. The lease expires after its ttl');
        break;
      case 'stopped':
        this.#logger.info(fields, 'stepping down from shard lease because the lease manager stopped');
        break;
    }
    this.#end(tenure);
  }

  #end(tenure: Tenure): void {
    if (tenure.status === 'ended') return;
    tenure.status = 'ended';
    tenure.renewTimer?.cancel();
    tenure.deadlineTimer?.cancel();
    if (this.#tenures.get(tenure.shard) === tenure) this.#tenures.delete(tenure.shard);
    this.#notify(tenure.shard, false);
  }

  #notify(shard: number, owned: boolean): void {
    for (const listener of this.#listeners) {
      try {
        listener(shard, owned);
      } catch (error) {
        this.#logger.error({ shard, owned, err: error }, 'shard ownership listener threw');
      }
    }
  }

  /** Resolves true after `delayMs` or when wake(shard) is called, and false when stop() cancels the wait. */
  #sleep(shard: number, delayMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const sleep: Sleep = {
        shard,
        timer: this.options.clock.setTimer(delayMs, () => {
          this.#sleeps.delete(sleep);
          resolve(true);
        }),
        resolve,
      };
      this.#sleeps.add(sleep);
    });
  }

  /** Whether this process run wrote the record, so no other process can be using the lease. */
  #isOwnRecord(record: LeaseRecord): boolean {
    return record.holder === this.options.nodeId && record.incarnation === this.options.incarnation;
  }

  get #stopped(): boolean {
    return this.#lifecycle.is('draining', 'stopped');
  }
}

function hasEnded(tenure: Tenure): boolean {
  return tenure.status === 'ended';
}

function assertShard(shard: number): void {
  if (!Number.isSafeInteger(shard) || shard < 0) {
    throw new RangeError(`shard must be a non-negative integer, received ${shard}`);
  }
}
