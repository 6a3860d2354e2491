/**
 * Profile snapshots in a replicated KV bucket, so that a node taking over a shard from a
 * dead node can rebuild its profiles: the snapshot, then the log after its position.
 *
 * Writes are fenced per key. Each write expects the revision this owner last loaded or wrote,
 * and each value carries the writer's lease epoch. When the revision moved, the stored epoch
 * decides: a newer epoch means this node lost the shard (ShardFencedError), an older one
 * means a stale owner wrote in between and is overwritten. So a stale owner never replaces
 * a newer owner's snapshot, and a shard checkpoint never covers a snapshot that was lost.
 *
 * A snapshot too large for one NATS message (max_payload) is written as parts to a stream
 * (large-values.ts) first, and the key then gets a small record that points to them, under
 * the same fencing. Once a newer record replaces it, this node deletes the parts that the
 * old record pointed to, when it has read or written that record. A load that finds a part gone reads the key again.
 *
 * On NATS the bucket has direct gets off, so every read goes to the stream leader and
 * returns the latest write: a stale read could load a profile older than the checkpoint.
 *
 * NOTE: parts are left behind when their write's outcome is unknown (a timeout of the
 * record's write, or a node that dies between the two writes), and when a node that never
 * read the old record replaces it. They take space in the parts stream until it is purged.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { ProfileSnapshot } from '../../profiles/profile.js';
import { RtcdpError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { decode, encode, encodeWithEncodedField } from '../../storage/codec.js';
import { ShardFencedError } from '../errors.js';
import { KvConflictError, type KvStore } from '../../storage/kv-store.js';
import { NatsKvStore } from '../kv/nats-kv-store.js';
import { LargeValueStream, type PartsRef } from './large-values.js';

export const SNAPSHOT_BUCKET = 'rtcdp-snapshots';
export const SNAPSHOT_PARTS_STREAM = 'RTCDP_SNAPSHOT_PARTS';
const SNAPSHOT_PARTS_SUBJECT = 'rtcdp.parts.snapshots';
/** A record that contains its snapshot. */
const INLINE_RECORD_VERSION = 1;
/** A record that points to the parts of an inline record too large for one message. */
const PARTS_RECORD_VERSION = 2;
/** Reads of a key whose record pointed to parts that were gone, before a load gives up. */
const MAX_LOAD_ATTEMPTS = 5;

/** A record of version 1 contains `snapshot`. One of version 2 contains `parts`, which join into a version 1 record. */
interface StoredSnapshot {
  version: number;
  epoch: number;
  snapshot?: ProfileSnapshot;
  parts?: PartsRef;
}

/** A snapshot so large that even the record of its parts does not fit one NATS message. */
export class SnapshotTooLargeError extends RtcdpError {
  readonly code = 'SNAPSHOT_TOO_LARGE';
}

/** A stored snapshot that cannot be read back: its parts keep disappearing, or do not decode. */
export class SnapshotUnreadableError extends RtcdpError {
  readonly code = 'SNAPSHOT_UNREADABLE';
}

export interface LoadedSnapshot {
  snapshot: ProfileSnapshot;
  revision: number;
}

export interface SnapshotWrite {
  workspace: string;
  shard: number;
  profileId: string;
  /** The snapshot, or its encoding by storage/codec.ts, which the record then copies as bytes. */
  snapshot: ProfileSnapshot | Uint8Array;
  /** Revision this owner last loaded or wrote; undefined when it has none. */
  expectedRevision: number | undefined;
}

/** An encoded snapshot write, waiting to be committed. */
export interface PreparedSnapshot {
  key: string;
  value: Uint8Array;
  shard: number;
  profileId: string;
  expectedRevision: number | undefined;
  epoch: number;
}

export class SnapshotStore {
  readonly #kv: KvStore;
  readonly #parts: LargeValueStream | undefined;
  /** The parts that each key's record points to, as far as this node has read or written them. */
  readonly #partsByKey = new Map<string, PartsRef>();

  /** `kv` must return the latest write on every read. Without `parts`, every snapshot is written whole to `kv`. */
  constructor(kv: KvStore, parts?: LargeValueStream) {
    this.#kv = kv;
    this.#parts = parts;
  }

  static async open(connection: NatsConnection, options: { replicas: number; requestTimeoutMs: number; logger: Logger }): Promise<SnapshotStore> {
    const kv = await NatsKvStore.open(connection, { bucket: SNAPSHOT_BUCKET, replicas: options.replicas, allowDirect: false });
    const parts = await LargeValueStream.open(connection, {
      stream: SNAPSHOT_PARTS_STREAM,
      subject: SNAPSHOT_PARTS_SUBJECT,
      replicas: options.replicas,
      maxAgeMs: 0,
      requestTimeoutMs: options.requestTimeoutMs,
      logger: options.logger,
    });
    return new SnapshotStore(kv, parts);
  }

  async load(workspace: string, shard: number, profileId: string): Promise<LoadedSnapshot | null> {
    const key = snapshotKey(workspace, shard, profileId);
    for (let attempt = 1; ; attempt++) {
      const entry = await this.#kv.get(key);
      if (entry === null) return null;

      const stored = decode<StoredSnapshot>(Buffer.from(entry.value));
      if (stored.parts === undefined) return { snapshot: stored.snapshot!, revision: entry.revision };

      const whole = await this.#readParts(stored.parts, profileId);
      if (whole !== null) {
        this.#partsByKey.set(key, stored.parts);
        return { snapshot: whole.snapshot!, revision: entry.revision };
      }
      if (attempt === MAX_LOAD_ATTEMPTS) {
        throw new SnapshotUnreadableError(`the snapshot of profile ${profileId} points to parts that are gone, after ${attempt} reads of its record`);
      }
    }
  }

  /** Writes one snapshot for an owner of lease `epoch`; returns the new revision. */
  write(write: SnapshotWrite, epoch: number): Promise<number> {
    return this.commit(this.prepare(write, epoch));
  }

  /** Encodes a snapshot now, so that later changes to the profile do not reach the write. */
  prepare(write: SnapshotWrite, epoch: number): PreparedSnapshot {
    const key = snapshotKey(write.workspace, write.shard, write.profileId);
    const value =
      write.snapshot instanceof Uint8Array
        ? encodeWithEncodedField({ version: INLINE_RECORD_VERSION, epoch }, 'snapshot', write.snapshot)
        : encode({ version: INLINE_RECORD_VERSION, epoch, snapshot: write.snapshot } satisfies StoredSnapshot);
    return { key, value, shard: write.shard, profileId: write.profileId, expectedRevision: write.expectedRevision, epoch };
  }

  /**
   * Writes a prepared snapshot; returns the new revision. A record too large for one
   * message goes to the parts stream first. Its parts are deleted again when the write is
   * fenced, and kept when the outcome is unknown, because the record may point to them.
   */
  async commit(prepared: PreparedSnapshot): Promise<number> {
    const parts = this.#parts !== undefined && prepared.value.length > this.#parts.messageLimitBytes ? await this.#parts.write(prepared.value) : undefined;
    const value = parts === undefined ? prepared.value : encode({ version: PARTS_RECORD_VERSION, epoch: prepared.epoch, parts } satisfies StoredSnapshot);
    if (parts !== undefined && value.length > this.#parts!.messageLimitBytes) {
      await this.#parts!.remove(parts);
      throw new SnapshotTooLargeError(`the snapshot of profile ${prepared.profileId} has ${prepared.value.length} bytes in ${parts.sequences.length} parts, too many for one record; raise max_payload in the NATS servers' configuration`);
    }

    let revision: number;
    try {
      revision = await this.#compareAndSet(prepared, value);
    } catch (error) {
      if (parts !== undefined && error instanceof ShardFencedError) await this.#parts!.remove(parts);
      throw error;
    }
    await this.#replaced(prepared.key, parts);
    return revision;
  }

  async #compareAndSet(prepared: PreparedSnapshot, value: Uint8Array): Promise<number> {
    const { key, epoch } = prepared;
    let expected = prepared.expectedRevision;

    for (;;) {
      try {
        return expected === undefined ? await this.#kv.create(key, value) : await this.#kv.update(key, value, expected);
      } catch (error) {
        if (!(error instanceof KvConflictError)) throw error;
      }

      const current = await this.#kv.get(key);
      const stored = current === null ? undefined : decode<StoredSnapshot>(Buffer.from(current.value));
      const currentEpoch = stored?.epoch ?? 0;
      if (currentEpoch > epoch) throw new ShardFencedError(prepared.shard, epoch, currentEpoch, `snapshot of profile ${prepared.profileId}`);
      if (stored?.parts !== undefined) this.#partsByKey.set(key, stored.parts);
      expected = current?.revision;
    }
  }

  /** Records what the key's record now points to, and deletes the parts of the record it replaced. */
  async #replaced(key: string, parts: PartsRef | undefined): Promise<void> {
    const previous = this.#partsByKey.get(key);
    if (parts === undefined) this.#partsByKey.delete(key);
    else this.#partsByKey.set(key, parts);
    if (previous !== undefined && previous !== parts) await this.#parts?.remove(previous);
  }

  /** Joins and decodes the parts of a record; null when a part is gone. */
  async #readParts(parts: PartsRef, profileId: string): Promise<StoredSnapshot | null> {
    if (this.#parts === undefined) throw new SnapshotUnreadableError(`the snapshot of profile ${profileId} is stored in parts, which this store was opened without`);
    const whole = await this.#parts.read(parts);
    return whole === null ? null : decode<StoredSnapshot>(Buffer.from(whole));
  }
}

/** Profile ids may contain any character, so the key carries them in base64url. */
function snapshotKey(workspace: string, shard: number, profileId: string): string {
  return `${workspace}.${shard}.${Buffer.from(profileId).toString('base64url')}`;
}
