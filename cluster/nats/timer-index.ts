/**
 * The cluster's durable timer index: for each profile with a pending time-based evaluation
 * (a windowed trait's expiry that a segment reads, or a journey wait), its due time, in a
 * replicated KV bucket keyed by shard. A shard's owner writes a profile's entry before it
 * commits the snapshot that set it. A new owner copies its shard's entries into its own
 * RocksDB index when it takes the shard, so timers fire on time after a handoff or the loss
 * of a node.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { KvStore } from '../../storage/kv-store.js';
import { NatsKvStore } from '../kv/nats-kv-store.js';

export const TIMER_BUCKET = 'rtcdp-timers';

export interface TimerEntry {
  shard: number;
  workspace: string;
  profileId: string;
  /** 0 removes the profile's entry. */
  dueMs: number;
}

export class ClusterTimerIndex {
  readonly #kv: KvStore;

  constructor(kv: KvStore) {
    this.#kv = kv;
  }

  static async open(connection: NatsConnection, options: { replicas: number }): Promise<ClusterTimerIndex> {
    return new ClusterTimerIndex(await NatsKvStore.open(connection, { bucket: TIMER_BUCKET, replicas: options.replicas, allowDirect: false }));
  }

  /** Writes each entry, or deletes it when its due time is 0. */
  async write(entries: readonly TimerEntry[]): Promise<void> {
    await Promise.all(
      entries.map((entry) => {
        const key = timerKey(entry.shard, entry.workspace, entry.profileId);
        return entry.dueMs === 0 ? this.#kv.delete(key) : this.#kv.put(key, Buffer.from(String(entry.dueMs)));
      }),
    );
  }

  /** Returns every entry of a shard. */
  async list(shard: number): Promise<TimerEntry[]> {
    const entries = await this.#kv.list(`${shard}.`);
    return entries.map((entry) => {
      const [, workspace, encodedProfileId] = entry.key.split('.');
      return { shard, workspace, profileId: Buffer.from(encodedProfileId, 'base64url').toString(), dueMs: Number(Buffer.from(entry.value).toString()) };
    });
  }
}

/** Profile ids may contain any character, so the key carries them in base64url. Workspace names are valid key tokens. */
function timerKey(shard: number, workspace: string, profileId: string): string {
  return `${shard}.${workspace}.${Buffer.from(profileId).toString('base64url')}`;
}
