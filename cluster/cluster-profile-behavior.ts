/**
 * The profile actor of one shard in cluster mode. It loads a profile from the shared
 * snapshot bucket in NATS, because the shard's previous owner may have been another node,
 * and it persists each snapshot there (fenced by the lease epoch) before the local RocksDB
 * write that keeps the profile's history and identifiers.
 */
import type { ActorBehavior } from '../actors/types.js';
import { parseActorKey, type ProfileBehavior } from '../profiles/profile-behavior.js';
import { fromSnapshot, toSnapshot, type AppliedEvent, type ProfileState } from '../profiles/profile.js';
import { ShardFencedError } from './errors.js';
import type { SnapshotStore } from './nats/snapshot-store.js';

export interface ClusterProfileBehaviorOptions {
  shard: number;
  /** Fencing epoch of this node's lease on the shard. */
  epoch: number;
  snapshots: SnapshotStore;
  local: ProfileBehavior;
  /** Whether this node's lease on the shard is still valid; checked before every write. */
  isOwner: () => boolean;
  /** Called once when a write finds that another node owns the shard now. */
  onFenced: (error: ShardFencedError) => void;
}

export class ClusterProfileBehavior implements ActorBehavior<ProfileState, AppliedEvent> {
  readonly #options: ClusterProfileBehaviorOptions;

  constructor(options: ClusterProfileBehaviorOptions) {
    this.#options = options;
  }

  async load(key: string): Promise<ProfileState | undefined> {
    const { workspace, profileId } = parseActorKey(key);
    const loaded = await this.#options.snapshots.load(workspace, this.#options.shard, profileId);
    if (loaded === null) return undefined;

    const state = fromSnapshot(loaded.snapshot);
    state.snapshotRevision = loaded.revision;
    return state;
  }

  create(key: string): ProfileState {
    return this.#options.local.create(key);
  }

  handle(state: ProfileState, applied: AppliedEvent): ProfileState {
    return this.#options.local.handle(state, applied);
  }

  async persist(snapshots: Array<{ key: string; state: ProfileState }>): Promise<void> {
    const { shard, epoch } = this.#options;
    if (!this.#options.isOwner()) throw new ShardFencedError(shard, epoch, epoch, 'snapshot write after the lease expired');

    // SnapshotStore.write encodes the snapshot before its first await, so each write
    // captures the state as it is now, while the actors go on applying events.
    try {
      await Promise.all(
        snapshots.map(async ({ state }) => {
          const write = { workspace: state.workspace, shard, profileId: state.profileId, snapshot: toSnapshot(state), expectedRevision: state.snapshotRevision };
          state.snapshotRevision = await this.#options.snapshots.write(write, epoch);
        }),
      );
    } catch (error) {
      if (error instanceof ShardFencedError) this.#options.onFenced(error);
      throw error;
    }

    await this.#options.local.persist(snapshots);
  }

  deadLetter(key: string, applied: AppliedEvent, error: unknown, attempts: number): Promise<void> {
    return this.#options.local.deadLetter(key, applied, error, attempts);
  }
}
