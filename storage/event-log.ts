/**
 * The durable event log: one ordered partition per (workspace, shard). Embedded mode keeps
 * it in RocksDB; cluster mode implements the same interface on JetStream.
 */

export interface PartitionId {
  workspace: string;
  shard: number;
}

export interface AppendRequest extends PartitionId {
  /** Deduplicated per workspace for as long as the log keeps the record. */
  messageId: string;
  payload: Buffer;
  /** The object `payload` was encoded from. Handed to append listeners in this process so they need not decode it. */
  value?: unknown;
}

export type AppendOutcome = { status: 'appended'; sequence: number } | { status: 'duplicate' };

export interface LogRecord extends PartitionId {
  /**
   * Position in the log. It grows from record to record of a partition; the embedded log
   * numbers each partition 1, 2, 3, ... without gaps, while JetStream's stream sequences
   * leave gaps where other partitions' records sit.
   */
  sequence: number;
  messageId: string;
  payload: Buffer;
  /** The object the payload was encoded from, on records that reach listeners in the appending process. */
  value?: unknown;
}

export type AppendListener = (records: LogRecord[]) => void;

export interface EventLog {
  /**
   * Appends events; resolves, in request order, once every appended record is durable.
   * An event whose messageId is already in the log for its workspace, or earlier in the
   * same call, is not appended and comes back as a duplicate.
   */
  append(requests: AppendRequest[]): Promise<AppendOutcome[]>;

  /**
   * Returns those of `messageIds` that the log already contains for the workspace, durably, so
   * that an append of them would return `duplicate`. Ingestion skips identity resolution for
   * them, which would otherwise act on a resent event. Optional: a log that finds duplicates
   * only while it appends (JetStream) lacks it, and an id appended meanwhile is still caught
   * by append.
   */
  storedMessageIds?(workspace: string, messageIds: readonly string[]): Promise<Set<string>>;

  /** Reads up to `limit` records of a partition with sequence greater than `afterSequence`. */
  read(partition: PartitionId, afterSequence: number, limit: number): Promise<LogRecord[]>;

  /** Sequence of the last record appended to the partition, 0 when it has none. */
  headSequence(partition: PartitionId): Promise<number>;

  /** Every partition that has records. */
  partitions(): Promise<PartitionId[]>;

  /**
   * Deletes records appended before `appendedBeforeMs` up to `upToSequence`, forgetting
   * their messageIds. Returns how many were deleted; may stop early and be called again.
   */
  prune(partition: PartitionId, upToSequence: number, appendedBeforeMs: number): Promise<number>;

  /** Calls `listener` with each group of records once it is durable, in sequence order per partition. */
  onAppend(listener: AppendListener): () => void;

  close(): Promise<void>;
}
