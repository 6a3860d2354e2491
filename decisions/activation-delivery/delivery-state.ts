/**
 * A webhook destination's durable state: its cursor (the activation sequence it has
 * delivered up to) and its dead letters (batches it gave up on). An embedded node keeps it
 * in its RocksDB (RocksDbDeliveryState), a cluster node in the cluster's KV bucket
 * `rtcdp-webhooks` (KvDeliveryState), which every node reads.
 */
import type { WebhookActivation } from './webhook-payload.js';

/** A batch that failed `attempts` times, or once with a status that a retry cannot change. */
export interface WebhookDeadLetter {
  /** Format version of the record. */
  version: 1;
  destination: string;
  workspace: string;
  firstSequence: number;
  lastSequence: number;
  /** The activations of the batch as the requests carried them. */
  activations: WebhookActivation[];
  attempts: number;
  /** HTTP status of the last attempt; absent after a network error or a timeout. */
  status?: number;
  /** The failure of the last attempt, such as `received HTTP 400: …`. */
  error: string;
  /** When delivery gave up, ms since the epoch. */
  failedAtMs: number;
}

export interface DeliveryState {
  /** Returns the sequence delivered up to, 0 for a destination that has delivered nothing. */
  readCursor(): Promise<number>;

  /**
   * Returns the cursor that a starting delivery loop resumes after. The KV implementation
   * also rewrites the cursor with compare-and-set, so that from then on the cursor writes
   * of a node that delivered the destination before fail with KvConflictError.
   */
  claimCursor(): Promise<number>;

  /**
   * Stores the cursor. The KV implementation throws KvConflictError when another node
   * wrote the cursor since this node claimed or last wrote it.
   */
  writeCursor(afterSequence: number): Promise<void>;

  /** Stores a dead letter and moves the cursor past it; throws KvConflictError as writeCursor does. */
  writeDeadLetter(deadLetter: WebhookDeadLetter, afterSequence: number): Promise<void>;

  /** Returns the destination's dead letters whose first sequence is after `afterSequence`, oldest batch first. */
  listDeadLetters(limit?: number, afterSequence?: number): Promise<WebhookDeadLetter[]>;
}
