/**
 * The coordinator lease: one KV key, `coordinator`, that names the node allowed to
 * publish the shard assignment.
 *
 * Only a successful compare-and-set write decides who holds it, because reads may be
 * stale. The holder counts its lease as valid until the time it SENT its last confirmed
 * write plus ttlMs - stallMarginMs, on its own monotonic clock. Another node takes the
 * lease over only after the key's revision has stayed the same for ttlMs +
 * takeoverMarginMs on the taker's own clock, counted from the first read that returned
 * that revision. That read came after the holder's write, so the holder stops acting at
 * least stallMarginMs + takeoverMarginMs before a taker can write, and no node compares
 * its clock with another node's.
 *
 * The epoch of a tenure is the revision of the write that acquired the lease. Revisions
 * grow across the bucket, so each new holder has a higher epoch than the one before, even
 * when the key was deleted in between.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../common/logger.js';
import type { Clock } from './clock.js';
import { MAX_TIMER_DELAY_MS } from './coordination-options.js';
import { KvConflictError, type KvEntry, type KvStore } from '../storage/kv-store.js';
import { decodeJsonValue, encodeJsonValue, isRecord } from './kv-json.js';
import { FailureStreak } from './periodic-task.js';

export const COORDINATOR_KEY = 'coordinator';

/** The value of the `coordinator` key. */
export interface CoordinatorLeaseRecord {
  /** Node id of the holder. */
  holder: string;
  /** Random id of the holder's Coordinator instance, which distinguishes a restarted node from its predecessor. */
  incarnation: string;
  /** The holder's lease ttl in milliseconds. A taker waits at least this long after the last change. */
  ttlMs: number;
}

export interface CoordinatorLeaseSettings {
  kv: KvStore;
  nodeId: string;
  clock: Clock;
  logger: Logger;
  ttlMs: number;
  takeoverMarginMs: number;
  stallMarginMs: number;
}

export class CoordinatorLease {
  readonly incarnation = randomUUID();
  readonly #settings: CoordinatorLeaseSettings;
  readonly #logger: Logger;
  readonly #readFailures: FailureStreak;
  readonly #renewFailures: FailureStreak;

  /** Revision of this node's last confirmed write while it holds the lease, else null. */
  #revision: number | null = null;
  /** Revision of the write that acquired the current tenure. Kept after a failed renewal, for a tenure that turns out to be intact. */
  #epoch: number | null = null;
  #validUntilMs = -Infinity;
  /** A revision of another holder's record that this node waits on, and when this node first read it. */
  #observed: { revision: number; firstReadAtMs: number } | null = null;

  constructor(settings: CoordinatorLeaseSettings) {
    this.#settings = settings;
    this.#logger = settings.logger;
    this.#readFailures = new FailureStreak(this.#logger, 'coordinator lease read');
    this.#renewFailures = new FailureStreak(this.#logger, 'coordinator lease renewal');
  }

  /** Returns whether this node holds the lease and it is still valid by this node's clock now. */
  isValid(): boolean {
    return this.#revision !== null && this.#settings.clock.nowMs() < this.#validUntilMs;
  }

  /** The epoch of this node's tenure while it holds the lease, else null. */
  get epoch(): number | null {
    return this.#revision === null ? null : this.#epoch;
  }

  /**
   * Renews the lease when this node holds it, and otherwise takes it when the key is
   * missing, names this instance, or has not changed for the holder's ttl plus the
   * takeover margin. Logs KV failures and never throws.
   */
  async maintain(): Promise<void> {
    if (this.#revision !== null) {
      await this.#renew(this.#revision);
      if (this.#revision !== null) return;
    }
    await this.#tryAcquire();
  }

  /** Deletes the key when this node holds the lease, so another node takes it without waiting. */
  async release(): Promise<void> {
    const revision = this.#revision;
    const epoch = this.#epoch;
    this.#revision = null;
    this.#epoch = null;
    this.#validUntilMs = -Infinity;
    if (revision === null) return;

    try {
      await this.#settings.kv.delete(COORDINATOR_KEY, revision);
      this.#logger.info({ epoch }, 'released coordinator lease');
    } catch (error) {
      if (error instanceof KvConflictError) {
        this.#logger.info({ epoch }, 'coordinator lease changed before its release; another node holds it');
      } else {
        this.#logger.warn({ err: error, epoch }, 'failed to release coordinator lease; another node takes it over after its ttl');
      }
    }
  }

  async #renew(revision: number): Promise<void> {
    const sentAtMs = this.#settings.clock.nowMs();
    try {
      this.#revision = await this.#settings.kv.update(COORDINATOR_KEY, this.#encodeRecord(), revision);
      this.#validUntilMs = sentAtMs + this.#settings.ttlMs - this.#settings.stallMarginMs;
      this.#renewFailures.succeeded({ epoch: this.#epoch });
    } catch (error) {
      if (error instanceof KvConflictError) {
        // Either another node took the lease, or a renewal whose reply was lost changed
        // the revision. The next read shows which: the record names this instance only in
        // the second case.
        this.#revision = null;
        this.#logger.warn({ epoch: this.#epoch }, 'coordinator lease changed by another write; checking who holds it');
        return;
      }
      this.#renewFailures.failed(error, { epoch: this.#epoch, validForMs: Math.max(0, this.#validUntilMs - this.#settings.clock.nowMs()) });
    }
  }

  async #tryAcquire(): Promise<void> {
    const { kv, clock } = this.#settings;
    let entry: KvEntry | null;
    try {
      entry = await kv.get(COORDINATOR_KEY);
      this.#readFailures.succeeded();
    } catch (error) {
      this.#readFailures.failed(error, { key: COORDINATOR_KEY });
      return;
    }
    const readAtMs = clock.nowMs();

    if (entry === null) {
      await this.#write('create', null, () => kv.create(COORDINATOR_KEY, this.#encodeRecord()));
      return;
    }

    const record = parseCoordinatorLeaseRecord(entry);
    if (record !== null && record.holder === this.#settings.nodeId && record.incarnation === this.incarnation) {
      await this.#write('resume', record, () => kv.update(COORDINATOR_KEY, this.#encodeRecord(), entry.revision));
      return;
    }

    if (this.#observed?.revision !== entry.revision) {
      this.#observed = { revision: entry.revision, firstReadAtMs: readAtMs };
      return;
    }
    // An unreadable record gets this node's own ttl, so it can be replaced after a wait as well.
    const holderTtlMs = record?.ttlMs ?? this.#settings.ttlMs;
    if (readAtMs - this.#observed.firstReadAtMs < holderTtlMs + this.#settings.takeoverMarginMs) return;

    await this.#write('take over', record, () => kv.update(COORDINATOR_KEY, this.#encodeRecord(), entry.revision));
  }

  /** Runs an acquiring compare-and-set write and starts a tenure when it succeeds. */
  async #write(kind: 'create' | 'resume' | 'take over', previous: CoordinatorLeaseRecord | null, write: () => Promise<number>): Promise<void> {
    const sentAtMs = this.#settings.clock.nowMs();
    let revision: number;
    try {
      revision = await write();
    } catch (error) {
      this.#observed = null;
      if (error instanceof KvConflictError) {
        this.#logger.debug({ kind }, 'another node wrote the coordinator lease first');
      } else {
        this.#logger.warn({ err: error, kind }, 'failed to write coordinator lease');
      }
      return;
    }

    this.#observed = null;
    this.#revision = revision;
    this.#validUntilMs = sentAtMs + this.#settings.ttlMs - this.#settings.stallMarginMs;
    if (kind === 'resume' && this.#epoch !== null) {
      this.#logger.info({ epoch: this.#epoch }, 'resumed coordinator lease after an unconfirmed renewal');
      return;
    }
    this.#epoch = revision;
    this.#logger.info({ epoch: revision, kind, previousHolder: previous?.holder ?? null }, 'acquired coordinator lease');
  }

  #encodeRecord(): Uint8Array {
    const record: CoordinatorLeaseRecord = { holder: this.#settings.nodeId, incarnation: this.incarnation, ttlMs: this.#settings.ttlMs };
    return encodeJsonValue(record);
  }
}

/** Decodes the `coordinator` key's value. Returns null unless every field is valid. */
export function parseCoordinatorLeaseRecord(entry: KvEntry): CoordinatorLeaseRecord | null {
  const value = decodeJsonValue(entry.value);
  if (!isRecord(value)) return null;

  const { holder, incarnation, ttlMs } = value;
  if (typeof holder !== 'string' || holder === '' || typeof incarnation !== 'string' || incarnation === '') return null;
  if (!Number.isInteger(ttlMs) || (ttlMs as number) < 1 || (ttlMs as number) > MAX_TIMER_DELAY_MS) return null;
  return { holder, incarnation, ttlMs: ttlMs as number };
}
