/**
 * Delivers one partition of the event log to the customer actors, in sequence order.
 * Embedded mode: records come from the log's live append notifications while the consumer
 * keeps up, and when it has fallen behind, or replays after a restart, it reads them back
 * from the log, whose sequences have no gaps. Cluster mode: a shard feed offers every record
 * after the checkpoint in stream order, with gaps between sequences.
 * Either way each record from the checkpoint to the head is delivered exactly once.
 */
import type { ActorSystem } from '../actors/actor-system.js';
import type { DeliveryCallbacks } from '../actors/types.js';
import type { Logger } from '../common/logger.js';
import { isIdentityCommand, type IdentityCommandMessage, type LogEntry } from '../profiles/identity-commands.js';
import { profileIdOf } from '../profiles/identifiers.js';
import { actorKey } from '../profiles/profile-behavior.js';
import type { ProfileMessage } from '../profiles/evaluator.js';
import type { AppliedEvent, ProfileState } from '../profiles/profile.js';
import { decode } from '../storage/codec.js';
import type { EventLog, LogRecord, PartitionId } from '../storage/event-log.js';
import { Watermark } from './watermark.js';

/** Records read from the log at a time when catching up. */
const READ_PAGE_SIZE = 1_000;

export interface PartitionConsumerOptions {
  partition: PartitionId;
  /** The log to read back from when behind; its sequences have no gaps. Without it, offer() is the only source. */
  log?: EventLog;
  actors: ActorSystem<ProfileState, ProfileMessage>;
  /** Sequence up to which every record is already reflected in persisted snapshots. */
  checkpoint: number;
  logger: Logger;
  /** Called once per record when its actor has handled it (or dead-lettered it). */
  onApplied: () => void;
  /**
   * Reads the history an unmerge command replays into the message, before the command is
   * delivered. Without it, unmerges leave the survivor's state as it is.
   */
  readUnmergeHistory?: (message: IdentityCommandMessage) => Promise<void>;
}

export class PartitionConsumer {
  readonly partition: PartitionId;
  /** Every record at or below it has been handled by its actor. */
  readonly applied: Watermark;
  /** Every record at or below it is in a persisted snapshot: the next checkpoint. */
  readonly durable: Watermark;
  readonly #options: PartitionConsumerOptions;
  readonly #queue: LogRecord[] = [];
  #queueStart = 0;
  /** Sequence of the last record put in the queue. */
  #enqueued: number;
  /** Sequence of the last record told to its actor. */
  #delivered: number;
  readonly #delivery: Watermark;
  #running = false;
  #stopped = false;
  /** One callbacks object for every message of the partition, so telling allocates no closures. */
  readonly #callbacks: DeliveryCallbacks<AppliedEvent | IdentityCommandMessage> = {
    onApplied: (_outcome, message) => {
      this.applied.finish(message.position.sequence);
      this.#options.onApplied();
    },
    onDurable: (message) => this.durable.finish(message.position.sequence),
  };

  constructor(options: PartitionConsumerOptions) {
    this.#options = options;
    this.partition = options.partition;
    this.#enqueued = options.checkpoint;
    this.#delivered = options.checkpoint;
    this.applied = new Watermark(options.checkpoint);
    this.durable = new Watermark(options.checkpoint);
    this.#delivery = new Watermark(options.checkpoint);
  }

  /** Records told to actors but not yet handled. */
  get backlog(): number {
    return this.#delivered - this.applied.value;
  }

  /** Starts delivering from the checkpoint to the head of the log. */
  start(): void {
    this.#kick();
  }

  /** Sequence of the last record taken for delivery. */
  get lastEnqueued(): number {
    return this.#enqueued;
  }

  /** Takes records the log just appended to this partition; returns how many it took for delivery. */
  offer(records: LogRecord[]): number {
    let taken = 0;
    for (const record of records) {
      if (!this.#follows(record)) continue;
      this.#queue.push(record);
      this.#enqueued = record.sequence;
      taken += 1;
    }
    this.#kick();
    return taken;
  }

  /** Whether `record` is the next one: the next sequence when read back from a log, else any later one. */
  #follows(record: LogRecord): boolean {
    if (this.#options.log === undefined) return record.sequence > this.#enqueued;
    return record.sequence === this.#enqueued + 1;
  }

  /** Sequence up to which every record has been told to its actor. */
  get deliveredSequence(): number {
    return this.#delivery.value;
  }

  /** Resolves once every record up to `sequence` has been told to its actor. */
  delivered(sequence: number): Promise<void> {
    return this.#delivery.reach(sequence);
  }

  stop(): void {
    this.#stopped = true;
  }

  #kick(): void {
    if (this.#running || this.#stopped) return;
    this.#running = true;
    void this.#run().catch((error) => {
      this.#running = false;
      this.#options.logger.error({ err: error, ...this.partition }, 'partition delivery failed; retrying');
      setTimeout(() => this.#kick(), 100).unref();
    });
  }

  async #run(): Promise<void> {
    for (;;) {
      if (!this.#canDeliver()) break;
      if (this.#queueStart >= this.#queue.length && !(await this.#readBehind())) break;
      await this.#deliverQueued();
    }
    this.#running = false;

    // Records offered while the last read was settling found the loop still running and
    // did not start it again, so look once more before going idle.
    if (this.#canDeliver() && this.#queueStart < this.#queue.length) this.#kick();
  }

  #canDeliver(): boolean {
    return !this.#stopped && this.#options.actors.state === 'running';
  }

  /** Reads the next page from the log when the queue is empty but the log has more. */
  async #readBehind(): Promise<boolean> {
    this.#queue.length = 0;
    this.#queueStart = 0;
    const log = this.#options.log;
    if (log === undefined || (await log.headSequence(this.partition)) <= this.#enqueued) return false;

    const records = await log.read(this.partition, this.#enqueued, READ_PAGE_SIZE);
    for (const record of records) {
      if (record.sequence !== this.#enqueued + 1) continue;
      this.#queue.push(record);
      this.#enqueued = record.sequence;
    }
    return records.length > 0;
  }

  async #deliverQueued(): Promise<void> {
    while (this.#queueStart < this.#queue.length && !this.#stopped) {
      const record = this.#queue[this.#queueStart];
      const { key, message } = this.#messageOf(record);
      if (isUnmerge(message)) await this.#options.readUnmergeHistory?.(message);
      this.applied.expect(record.sequence);
      this.durable.expect(record.sequence);

      while (!this.#options.actors.tell(key, message, this.#callbacks)) {
        if (this.#options.actors.state !== 'running') return;
        await this.#options.actors.whenWritable(key);
      }

      this.#queueStart += 1;
      this.#delivered = record.sequence;
      this.#delivery.advanceTo(record.sequence);
      this.#compactQueue();
    }
  }

  /**
   * Returns the actor and message of a record: the profile the event was resolved to
   * (events logged before identity resolution name none, and go by userId or anonymousId),
   * or the profile an identity command is for.
   */
  #messageOf(record: LogRecord): { key: string; message: AppliedEvent | IdentityCommandMessage } {
    // Records appended by this process carry the entry they were encoded from.
    const entry = (record.value as LogEntry | undefined) ?? decode<LogEntry>(record.payload);
    const position = { shard: record.shard, sequence: record.sequence };
    if (isIdentityCommand(entry)) {
      return { key: actorKey(this.partition.workspace, entry.profileId), message: { kind: 'identity-command', command: entry, position } };
    }
    return { key: actorKey(this.partition.workspace, entry.profileId ?? profileIdOf(entry)), message: { event: entry, position, payload: record.payload } };
  }

  #compactQueue(): void {
    if (this.#queueStart < 4_096 || this.#queueStart * 2 < this.#queue.length) return;
    this.#queue.splice(0, this.#queueStart);
    this.#queueStart = 0;
  }

}

function isUnmerge(message: AppliedEvent | IdentityCommandMessage): message is IdentityCommandMessage {
  return (message as Partial<IdentityCommandMessage>).kind === 'identity-command' && (message as IdentityCommandMessage).command.command === 'unmerge';
}
