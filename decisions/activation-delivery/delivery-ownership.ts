/**
 * Decides which webhook destinations this node delivers now. A cluster node passes one
 * that holds a KV lease per destination (cluster/webhook-leases.ts), so one node at a time
 * delivers each destination. Without one, the node delivers every destination itself.
 */
export interface OwnershipListener {
  /** This node holds the destination's lease from now on, in tenure `epoch`: start its loop. */
  acquired(destination: string, epoch: number): void;
  /** This node's lease of the destination has ended or is no longer valid: stop its loop. */
  lost(destination: string): void;
}

export interface DeliveryOwnership {
  /** Starts competing for every destination's lease. Listener calls follow for each change. */
  start(listener: OwnershipListener): void;

  /**
   * Gives up this node's lease of a destination whose loop stopped because another node
   * wrote its cursor, so that the node competes for the lease again. Calls `lost` first
   * when the lease was still counted as held.
   */
  relinquish(destination: string): Promise<void>;

  /** Returns the node id that the destination's lease names, or null when no node holds it. */
  readHolder(destination: string): Promise<string | null>;

  /** Stops competing. No listener call follows, and leases held now stay held until releaseAll. */
  stopCompeting(): Promise<void>;

  /** Releases every lease this node holds, so that other nodes take them without waiting for the ttl. */
  releaseAll(): Promise<void>;
}
