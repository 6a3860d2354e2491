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
 * On NATS the bucket has direct gets off, so every read goes to the stream leader and
 * returns the latest write: a stale read could load a profile older than the checkpoint.
 *
 * NOTE: a snapshot larger than the server's max_payload cannot be written. The write fails
 * each retry, and nothing yet splits such a snapshot or stores it elsewhere.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { ProfileSnapshot } from '../../profiles/profile.js';
import { decode, encode } from '../../storage/codec.js';
import { ShardFencedError } from '../errors.js';
import { KvConflictError, type KvStore } from '../../storage/kv-store.js';
import { NatsKvStore } from '../kv/nats-kv-store.js';

export const SNAPSHOT_BUCKET = 'rtcdp-snapshots';
const SNAPSHOT_RECORD_VERSION = 1;

interface StoredSnapshot {
  version: number;
  epoch: number;
  snapshot: ProfileSnapshot;
}

export interface LoadedSnapshot {
  snapshot: ProfileSnapshot;
  revision: number;
}

export interface SnapshotWrite {
  workspace: string;
  shard: number;
  profileId: string;
  snapshot: ProfileSnapshot;
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

  /** `kv` must return the latest write on every read. */
  constructor(kv: KvStore) {
    this.#kv = kv;
  }

  static async open(connection: NatsConnection, options: { replicas: number }): Promise<SnapshotStore> {
    const kv = await NatsKvStore.open(connection, { bucket: SNAPSHOT_BUCKET, replicas: options.replicas, allowDirect: false });
    return new SnapshotStore(kv);
  }

  async load(workspace: string, shard: number, profileId: string): Promise<LoadedSnapshot | null> {
    const entry = await this.#kv.get(snapshotKey(workspace, shard, profileId));
    if (entry === null) return null;

    const stored = decode<StoredSnapshot>(Buffer.from(entry.value));
    return { snapshot: stored.snapshot, revision: entry.revision };
  }

  /** Writes one snapshot for an owner of lease `epoch`; returns the new revision. */
  write(write: SnapshotWrite, epoch: number): Promise<number> {
    return this.commit(this.prepare(write, epoch));
  }

  /** Encodes a snapshot now, so that later changes to the profile do not reach the write. */
  prepare(write: SnapshotWrite, epoch: number): PreparedSnapshot {
    const key = snapshotKey(write.workspace, write.shard, write.profileId);
    const value = encode({ version: SNAPSHOT_RECORD_VERSION, epoch, snapshot: write.snapshot } satisfies StoredSnapshot);
    return { key, value, shard: write.shard, profileId: write.profileId, expectedRevision: write.expectedRevision, epoch };
  }

  /** Writes a prepared snapshot; returns the new revision. */
  async commit(prepared: PreparedSnapshot): Promise<number> {
    const { key, value, epoch } = prepared;
    let expected = prepared.expectedRevision;

    for (;;) {
      try {
        return expected === undefined ? await this.#kv.create(key, value) : await this.#kv.update(key, value, expected);
      } catch (error) {
        if (!(error instanceof KvConflictError)) throw error;
      }

      const current = await this.#kv.get(key);
      const currentEpoch = current === null ? 0 : decode<StoredSnapshot>(Buffer.from(current.value)).epoch;
      if (currentEpoch > epoch) throw new ShardFencedError(prepared.shard, epoch, currentEpoch, `snapshot of profile ${prepared.profileId}`);
      expected = current?.revision;
    }
  }
}

/** Profile ids may contain any character, so the key carries them in base64url. */
function snapshotKey(workspace: string, shard: number, profileId: string): string {
  return `${workspace}.${shard}.${Buffer.from(profileId).toString('base64url')}`;
}
