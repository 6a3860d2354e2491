/**
 * A shard's checkpoints in the cluster KV bucket: per workspace, the stream sequence up to
 * which every event is in a stored snapshot. The owner writes the record by compare-and-set
 * with its lease epoch in it, and a new owner writes it once before it starts, so a stale
 * owner's next checkpoint fails and makes it stop. The record also lists every node that
 * has owned the shard, because each of them stores the history of the events it applied.
 */
import { decode, encode } from '../storage/codec.js';
import { ShardFencedError } from './errors.js';
import { KvConflictError, type KvStore } from '../storage/kv-store.js';

const SHARD_STATE_VERSION = 1;

export interface ShardState {
  version: number;
  epoch: number;
  nodeId: string;
  checkpoints: Record<string, number>;
  /** Nodes that have owned the shard, in the order they first took it. Absent in records written before the list existed. */
  historyNodes?: string[];
}

/** Returns the nodes that have owned the shard as the record lists them: for a record written before the list existed, only its last owner. */
export function historyNodesOf(state: ShardState): string[] {
  return state.historyNodes ?? [state.nodeId];
}

export function shardStateKey(shard: number): string {
  return `shard-state.${shard}`;
}

/** The state record of one shard as its current owner writes it. */
export class ShardStateRecord {
  readonly #kv: KvStore;
  readonly #shard: number;
  readonly #epoch: number;
  readonly #nodeId: string;
  #historyNodes: string[];
  #revision: number | undefined;
  #checkpoints: Record<string, number>;

  private constructor(kv: KvStore, shard: number, epoch: number, nodeId: string, revision: number | undefined, checkpoints: Record<string, number>, historyNodes: string[]) {
    this.#kv = kv;
    this.#shard = shard;
    this.#epoch = epoch;
    this.#nodeId = nodeId;
    this.#revision = revision;
    this.#checkpoints = checkpoints;
    this.#historyNodes = historyNodes;
  }

  /**
   * Takes the shard's record for a new lease: reads it, then writes it back with `epoch`.
   * A read may be stale, so only the successful compare-and-set confirms the checkpoints.
   */
  static async claim(kv: KvStore, shard: number, epoch: number, nodeId: string): Promise<ShardStateRecord> {
    const entry = await kv.get(shardStateKey(shard));
    const stored = entry === null ? null : decode<ShardState>(Buffer.from(entry.value));
    if (stored !== null && stored.epoch > epoch) throw new ShardFencedError(shard, epoch, stored.epoch, 'claiming the shard state');

    // After a stale read the write below finds a newer revision and writes the older
    // checkpoints over it. That is safe: the feed starts earlier and profiles skip the
    // events they already applied.
    const earlier = stored === null ? [] : historyNodesOf(stored);
    const historyNodes = earlier.includes(nodeId) ? earlier : [...earlier, nodeId];
    const record = new ShardStateRecord(kv, shard, epoch, nodeId, entry?.revision, stored?.checkpoints ?? {}, historyNodes);
    await record.write(record.#checkpoints);
    return record;
  }

  /** Checkpoints as of the last successful write. */
  get checkpoints(): Readonly<Record<string, number>> {
    return this.#checkpoints;
  }

  /**
   * Writes new checkpoints. Throws ShardFencedError when a newer owner wrote the record
   * since. A write by an older owner in between is overwritten.
   */
  async write(checkpoints: Record<string, number>): Promise<void> {
    const key = shardStateKey(this.#shard);

    for (;;) {
      try {
        const value = encode({ version: SHARD_STATE_VERSION, epoch: this.#epoch, nodeId: this.#nodeId, checkpoints, historyNodes: this.#historyNodes } satisfies ShardState);
        this.#revision = this.#revision === undefined ? await this.#kv.create(key, value) : await this.#kv.update(key, value, this.#revision);
        this.#checkpoints = { ...checkpoints };
        return;
      } catch (error) {
        if (!(error instanceof KvConflictError)) throw error;
      }

      const entry = await this.#kv.get(key);
      const stored = entry === null ? null : decode<ShardState>(Buffer.from(entry.value));
      const storedEpoch = stored?.epoch ?? 0;
      if (storedEpoch > this.#epoch) throw new ShardFencedError(this.#shard, this.#epoch, storedEpoch, 'checkpoint');
      // The claim's read may have been stale, so keep the owners the record lists now.
      if (stored !== null) this.#historyNodes = [...new Set([...historyNodesOf(stored), ...this.#historyNodes])];
      this.#revision = entry?.revision;
    }
  }
}
