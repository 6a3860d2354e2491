/**
 * The profile actor of one shard in cluster mode. Snapshots go to the shared bucket in NATS
 * (fenced by the lease epoch) before the local RocksDB write that keeps the profile's
 * history. A profile
 * loads from NATS, because the shard's previous owner may have been another node, unless its
 * local snapshot is known to be current.
 *
 * A local snapshot is current when it was written in the shard's current tenure chain: an
 * unbroken run of this node's own tenures, each ended by a completed handoff, with no other
 * owner in between. Every local snapshot records the chain it was written in, so a snapshot
 * from before another node's tenure is never taken for a current one.
 */
import type { ActorBehavior } from '../actors/types.js';
import type { ProfileActivation } from '../profiles/activation.js';
import type { ClusterTimerIndex } from './nats/timer-index.js';
import type { ProfileMessage } from '../profiles/evaluator.js';
import { capturePersist, parseActorKey, type PersistCapture, type ProfileBehavior } from '../profiles/profile-behavior.js';
import { fromSnapshot, type AppliedEvent, type ProfileSnapshot, type ProfileState } from '../profiles/profile.js';
import { decode } from '../storage/codec.js';
import { keys } from '../storage/keys.js';
import type { Store, WriteOp } from '../storage/store.js';
import { ShardFencedError } from './errors.js';
import type { SnapshotStore } from './nats/snapshot-store.js';

export interface ClusterProfileBehaviorOptions {
  shard: number;
  /** Fencing epoch of this node's lease on the shard. */
  epoch: number;
  /** The tenure chain this tenure belongs to: the epoch of its first tenure. */
  chain: number;
  /** The id of the cluster's NATS state, written with the chain: epochs of another cluster's state mean nothing here. */
  clusterId: string;
  /** The cluster's activation stream, which each persist publishes the profiles' new activations to first. */
  activations: { publish(activations: readonly ProfileActivation[]): Promise<void> };
  /** The cluster's timer index, which each persist updates first for profiles whose due time changed. */
  timers: ClusterTimerIndex;
  snapshots: SnapshotStore;
  local: ProfileBehavior;
  store: Store;
  /** Whether this node's lease on the shard is still valid; checked before every write. */
  isOwner: () => boolean;
  /** Called once when a write finds that another node owns the shard now. */
  onFenced: (error: ShardFencedError) => void;
}

export class ClusterProfileBehavior implements ActorBehavior<ProfileState, ProfileMessage> {
  readonly #options: ClusterProfileBehaviorOptions;
  /** Profiles loaded from the local snapshot and from NATS. */
  readonly loads = { local: 0, nats: 0 };

  constructor(options: ClusterProfileBehaviorOptions) {
    this.#options = options;
  }

  async load(key: string): Promise<ProfileState | undefined> {
    const { workspace, profileId } = parseActorKey(key);
    await this.#options.local.prepare(workspace);
    const [snapshot, chain] = await this.#options.store.getMany([keys.snapshot(workspace, profileId), keys.clusterSnapshotChain(workspace, profileId)]);
    if (snapshot !== null && chain !== null && chain.toString() === this.#chainMarker()) {
      this.loads.local += 1;
      // The KV revision is unknown, so the first write finds it through a revision conflict.
      return fromSnapshot(decode<ProfileSnapshot>(snapshot));
    }

    this.loads.nats += 1;
    const loaded = await this.#options.snapshots.load(workspace, this.#options.shard, profileId);
    if (loaded === null) return undefined;

    const state = fromSnapshot(loaded.snapshot);
    state.snapshotRevision = loaded.revision;
    return state;
  }

  create(key: string): ProfileState {
    return this.#options.local.create(key);
  }

  handle(state: ProfileState, message: ProfileMessage): ProfileState {
    return this.#options.local.handle(state, message);
  }

  persistSoon(state: ProfileState, message: ProfileMessage): boolean {
    return this.#options.local.persistSoon(state, message);
  }

  /**
   * Sends the outgoing records, writes the activations and timers, then the snapshots to
   * NATS, then the local copy. Records and activations go first: a new owner that loads a
   * snapshot skips the messages in it, so it would never produce them again. Everything is
   * captured before the first await, because the actors go on applying events while the
   * writes are in flight, and the local write covers exactly the events captured.
   */
  async persist(snapshots: Array<{ key: string; state: ProfileState }>): Promise<void> {
    const { shard, epoch } = this.#options;
    if (!this.#options.isOwner()) throw new ShardFencedError(shard, epoch, epoch, 'snapshot write after the lease expired');

    const captured: PersistCapture[] = snapshots.map(({ state }) => capturePersist(state));
    const prepared = snapshots.map(({ state }, i) =>
      this.#options.snapshots.prepare({ workspace: state.workspace, shard, profileId: state.profileId, snapshot: captured[i].snapshot, expectedRevision: state.snapshotRevision }, epoch),
    );

    const activations = snapshots.flatMap(({ state }, i) => state.activations.slice(0, captured[i].activations));
    const timers = snapshots.flatMap(({ state }, i) =>
      captured[i].nextEvaluationMs === state.indexedEvaluationMs ? [] : [{ shard, workspace: state.workspace, profileId: state.profileId, dueMs: captured[i].nextEvaluationMs }],
    );
    const covered = snapshots.map(({ state }, i) => ({ state, outgoing: captured[i].outgoing }));
    await this.#options.local.sendOutgoing(covered);
    try {
      await this.#options.activations.publish(activations);
      await this.#options.timers.write(timers);
      await Promise.all(
        prepared.map(async (snapshot, i) => {
          snapshots[i].state.snapshotRevision = await this.#options.snapshots.commit(snapshot);
        }),
      );
    } catch (error) {
      if (error instanceof ShardFencedError) this.#options.onFenced(error);
      throw error;
    }

    const chain = this.#chainMarker();
    const chainOps: WriteOp[] = snapshots.map(({ state }) => ({ type: 'put', key: keys.clusterSnapshotChain(state.workspace, state.profileId), value: chain }));
    await this.#options.local.persist(snapshots, chainOps, captured, true);
  }

  /** The value stored with each local snapshot: the cluster id and the tenure chain. */
  #chainMarker(): string {
    return `${this.#options.clusterId}/${this.#options.chain}`;
  }

  deadLetter(key: string, message: ProfileMessage, error: unknown, attempts: number): Promise<void> {
    return this.#options.local.deadLetter(key, message, error, attempts);
  }
}
