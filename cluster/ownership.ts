/**
 * Which shards this node may apply events for. Cluster mode leases shards through NATS KV
 * with a fencing epoch; in embedded mode the one node owns every shard for good.
 */
export interface ShardOwnership {
  /** Whether this node holds the shard's lease now. */
  owns(shard: number): boolean;
  /** The fencing epoch of this node's lease on the shard; writes with an older epoch are rejected. */
  epoch(shard: number): number;
  /** Calls `listener` when this node gains or loses a shard. Returns a function that unsubscribes. */
  onChange(listener: (shard: number, owned: boolean) => void): () => void;
}

export class LocalShardOwnership implements ShardOwnership {
  owns(): boolean {
    return true;
  }

  epoch(): number {
    return 1;
  }

  onChange(): () => void {
    return () => {};
  }
}
