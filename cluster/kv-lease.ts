/**
 * A lease on one KV key that names the node allowed to do one job, such as publishing the
 * shard assignment (the `coordinator` key) or delivering one webhook destination.
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

/** The value of a lease key. */
export interface KvLeaseRecord {
  /** Node id of the holder. */
  holder: string;
  /** Random id of the holder's KvLease instance, which distinguishes a restarted node from its predecessor. */
  incarnation: string;
  /** The holder's lease ttl in milliseconds. A taker waits at least this long after the last change. */
  ttlMs: number;
}

export interface KvLeaseSettings {
  kv: KvStore;
  /** The lease key, a valid key of the KV store. */
  key: string;
  /** Name of the leased job, such as `coordinator`, which the log messages include: "acquired coordinator lease". */
  label: string;
  nodeId: string;
  clock: Clock;
  logger: Logger;
  ttlMs: number;
  takeoverMarginMs: number;
  stallMarginMs: number;
}

export class KvLease {
  readonly incarnation = randomUUID();
  readonly #settings: KvLeaseSettings;
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

  constructor(settings: KvLeaseSettings) {
    this.#settings = settings;
    this.#logger = settings.logger;
    this.#readFailures = new FailureStreak(this.#logger, `${settings.label} lease read`);
    this.#renewFailures = new FailureStreak(this.#logger, `${settings.label} lease renewal`);
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
      await this.#settings.kv.delete(this.#settings.key, revision);
      this.#logger.info({ epoch }, `released ${this.#settings.label} lease`);
    } catch (error) {
      if (error instanceof KvConflictError) {
        this.#logger.info({ epoch }, `${this.#settings.label} lease changed before its release; another node holds it`);
      } else {
        this.#logger.warn({ err: error, epoch }, `failed to release ${this.#settings.label} lease; another node takes it over after its ttl`);
      }
    }
  }

  async #renew(revision: number): Promise<void> {
    const sentAtMs = this.#settings.clock.nowMs();
    try {
      this.#revision = await this.#settings.kv.update(this.#settings.key, this.#encodeRecord(), revision);
      this.#validUntilMs = sentAtMs + this.#settings.ttlMs - this.#settings.stallMarginMs;
      this.#renewFailures.succeeded({ epoch: this.#epoch });
    } catch (error) {
      if (error instanceof KvConflictError) {
        // Either another node took the lease, or a renewal whose reply was lost changed
        // the revision. The next read shows which: the record names this instance only in
        // the second case.
        this.#revision = null;
        this.#logger.warn({ epoch: this.#epoch }, `${this.#settings.label} lease changed by another write; checking who holds it`);
        return;
      }
      this.#renewFailures.failed(error, { epoch: this.#epoch, validForMs: Math.max(0, this.#validUntilMs - this.#settings.clock.nowMs()) });
    }
  }

  async #tryAcquire(): Promise<void> {
    const { kv, clock } = this.#settings;
    let entry: KvEntry | null;
    try {
      entry = await kv.get(this.#settings.key);
      this.#readFailures.succeeded();
    } catch (error) {
      this.#readFailures.failed(error, { key: this.#settings.key });
      return;
    }
    const readAtMs = clock.nowMs();

    if (entry === null) {
      await this.#write('create', null, () => kv.create(this.#settings.key, this.#encodeRecord()));
      return;
    }

    const record = parseKvLeaseRecord(entry);
    if (record !== null && record.holder === this.#settings.nodeId && record.incarnation === this.incarnation) {
      await this.#write('resume', record, () => kv.update(this.#settings.key, this.#encodeRecord(), entry.revision));
      return;
    }

    if (this.#observed?.revision !== entry.revision) {
      this.#observed = { revision: entry.revision, firstReadAtMs: readAtMs };
      return;
    }
    // An unreadable record gets this node's own ttl, so it can be replaced after a wait as well.
    const holderTtlMs = record?.ttlMs ?? this.#settings.ttlMs;
    if (readAtMs - this.#observed.firstReadAtMs < holderTtlMs + this.#settings.takeoverMarginMs) return;

    await this.#write('take over', record, () => kv.update(this.#settings.key, this.#encodeRecord(), entry.revision));
  }

  /** Runs an acquiring compare-and-set write and starts a tenure when it succeeds. */
  async #write(kind: 'create' | 'resume' | 'take over', previous: KvLeaseRecord | null, write: () => Promise<number>): Promise<void> {
    const sentAtMs = this.#settings.clock.nowMs();
    let revision: number;
    try {
      revision = await write();
    } catch (error) {
      this.#observed = null;
      if (error instanceof KvConflictError) {
        this.#logger.debug({ kind }, `another node wrote the ${this.#settings.label} lease first`);
      } else {
        this.#logger.warn({ err: error, kind }, `failed to write ${this.#settings.label} lease`);
      }
      return;
    }

    this.#observed = null;
    this.#revision = revision;
    this.#validUntilMs = sentAtMs + this.#settings.ttlMs - this.#settings.stallMarginMs;
    if (kind === 'resume' && this.#epoch !== null) {
      this.#logger.info({ epoch: this.#epoch }, `resumed ${this.#settings.label} lease after an unconfirmed renewal`);
      return;
    }
    this.#epoch = revision;
    this.#logger.info({ epoch: revision, kind, previousHolder: previous?.holder ?? null }, `acquired ${this.#settings.label} lease`);
  }

  #encodeRecord(): Uint8Array {
    const record: KvLeaseRecord = { holder: this.#settings.nodeId, incarnation: this.incarnation, ttlMs: this.#settings.ttlMs };
    return encodeJsonValue(record);
  }
}

/** Decodes a lease key's value. Returns null unless every field is valid. */
export function parseKvLeaseRecord(entry: KvEntry): KvLeaseRecord | null {
  const value = decodeJsonValue(entry.value);
  if (!isRecord(value)) return null;

  const { holder, incarnation, ttlMs } = value;
  if (typeof holder !== 'string' || holder === '' || typeof incarnation !== 'string' || incarnation === '') return null;
  if (!Number.isInteger(ttlMs) || (ttlMs as number) < 1 || (ttlMs as number) > MAX_TIMER_DELAY_MS) return null;
  return { holder, incarnation, ttlMs: ttlMs as number };
}
