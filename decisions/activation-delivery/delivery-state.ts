/**
 * A webhook destination's durable state: its cursor (the activation sequence it has
 * delivered up to) and its dead letters (batches it gave up on). An embedded node keeps it
 * in its RocksDB (RocksDbDeliveryState), a cluster node in the cluster's KV bucket
 * `rtcdp-webhooks` (KvDeliveryState), which every node reads.
 */
import { RtcdpError } from '../../common/errors.js';
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
  /** When a replay was requested, ms since the epoch. Present only while the replay is queued. */
  replayQueuedAtMs?: number;
}

/** The dead letters that a replay request chooses: all of them, or those with these first sequences. */
export type ReplaySelection = { all: true } | { firstSequences: readonly number[] };

/** A replay request named a first sequence that is not a dead letter of the destination. */
export class DeadLetterNotFoundError extends RtcdpError {
  readonly code = 'WEBHOOK_DEAD_LETTER_NOT_FOUND';
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

  /**
   * Marks the chosen dead letters as queued for replay and returns how many are queued.
   * Throws DeadLetterNotFoundError naming every first sequence that is not a dead letter,
   * before it marks any.
   */
  queueReplays(selection: ReplaySelection, nowMs: number): Promise<number>;

  /** Returns up to `limit` dead letters queued for replay, oldest batch first. */
  listQueuedReplays(limit: number): Promise<WebhookDeadLetter[]>;

  /** Deletes a dead letter whose replay was delivered. */
  deleteDeadLetter(firstSequence: number): Promise<void>;

  /**
   * Stores a dead letter whose replay failed for good, with its new attempts, status, error
   * and failedAtMs and without the queued marker. The KV implementation keeps a replay
   * that was queued again meanwhile.
   */
  writeFailedReplay(deadLetter: WebhookDeadLetter): Promise<void>;

  /**
   * Returns how many attempts of the batch that starts at `firstSequence` failed so far, as
   * writeAttempts stored them, so that a restarted loop counts on towards maxAttempts. Returns
   * 0 when the stored count belongs to another batch or none is stored.
   */
  readAttempts(firstSequence: number): Promise<number>;

  /** Stores how many attempts of the batch that starts at `firstSequence` failed. */
  writeAttempts(firstSequence: number, attempts: number): Promise<void>;
}

/** The stored count of failed attempts of a destination's next live batch. */
export interface FailedAttemptsRecord {
  /** Format version of the record. */
  version: 1;
  /** The sequence of the batch's first activation. */
  firstSequence: number;
  attempts: number;
}

/** Returns the first sequences of `selection` that none of `deadLetters` has, in the order given. */
export function missingSequences(selection: ReplaySelection, deadLetters: readonly WebhookDeadLetter[]): number[] {
  if ('all' in selection) return [];
  const known = new Set(deadLetters.map((deadLetter) => deadLetter.firstSequence));
  return [...new Set(selection.firstSequences)].filter((sequence) => !known.has(sequence));
}

/** Returns the dead letters that `selection` chooses. */
export function selectDeadLetters(selection: ReplaySelection, deadLetters: readonly WebhookDeadLetter[]): WebhookDeadLetter[] {
  if ('all' in selection) return [...deadLetters];
  const chosen = new Set(selection.firstSequences);
  return deadLetters.filter((deadLetter) => chosen.has(deadLetter.firstSequence));
}

export function deadLetterNotFound(destination: string, missing: readonly number[]): DeadLetterNotFoundError {
  const list = missing.join(', ');
  return new DeadLetterNotFoundError(
    `webhook destination ${destination} has no dead letter with first sequence ${list}; list them with \`rtcdp webhooks dead-letters ${destination}\``,
  );
}
