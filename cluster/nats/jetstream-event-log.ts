/**
 * The event log on a JetStream stream: one subject per workspace and shard. Any node may
 * append; an append resolves once JetStream has acknowledged every event, which on a stream
 * of R replicas means a majority of them stored it. Sequences are stream sequences, so a
 * partition's records have gaps where other partitions' records sit.
 *
 * Deduplication uses JetStream message ids (`<workspace>:<messageId>`) and so lasts only the
 * stream's duplicate window. Pruning purges a subject; JetStream does not forget message ids
 * when it purges, so a pruned event sent again within the window is still a duplicate.
 */
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../../common/logger.js';
import type { AppendListener, AppendOutcome, AppendRequest, EventLog, LogRecord, PartitionId } from '../../storage/event-log.js';
import { EventLogUnavailableError } from '../errors.js';
import { ensureEventStream, type EventStreamOptions } from './event-stream.js';
import { ALL_EVENTS_FILTER, EVENT_STREAM, eventMessageId, eventSubject, parseEventSubject } from './subjects.js';

export interface JetStreamEventLogOptions extends EventStreamOptions {
  connection: NatsConnection;
  /** How long an append waits for JetStream's acknowledgement. */
  publishTimeoutMs: number;
  logger: Logger;
}

/** A stored record with the time JetStream stored it. */
export interface TimedLogRecord extends LogRecord {
  storedAtMs: number;
}

/** How long a read waits for messages that the subject's head sequence reports as stored. */
const READ_EXPIRES_MS = 5_000;

export class JetStreamEventLog implements EventLog {
  readonly #options: JetStreamEventLogOptions;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #listeners = new Set<AppendListener>();

  private constructor(options: JetStreamEventLogOptions, jsm: JetStreamManager) {
    this.#options = options;
    this.#jsm = jsm;
    this.#js = jetstream(options.connection);
  }

  /** Opens the log, creating the event stream when it does not exist. */
  static async open(options: JetStreamEventLogOptions): Promise<JetStreamEventLog> {
    const jsm = await jetstreamManager(options.connection);
    await ensureEventStream(jsm, options, options.logger);
    return new JetStreamEventLog(options, jsm);
  }

  async append(requests: AppendRequest[]): Promise<AppendOutcome[]> {
    const firstIndex = new Map<string, number>();
    const publishes = requests.map((request, index) => {
      const id = eventMessageId(request.workspace, request.messageId);
      if (firstIndex.has(id)) return Promise.resolve<AppendOutcome>({ status: 'duplicate' });
      firstIndex.set(id, index);
      return this.#publish(request, id);
    });
    return Promise.all(publishes);
  }

  async #publish(request: AppendRequest, id: string): Promise<AppendOutcome> {
    let ack;
    try {
      ack = await this.#js.publish(eventSubject(request), request.payload, { msgID: id, timeout: this.#options.publishTimeoutMs });
    } catch (error) {
      throw new EventLogUnavailableError(`JetStream did not acknowledge event ${request.messageId} for shard ${request.shard}: ${(error as Error).message}`, { cause: error });
    }
    if (ack.duplicate) return { status: 'duplicate' };

    // Acknowledgements of one connection arrive in stream order, so listeners see each
    // partition's records in sequence order.
    if (this.#listeners.size > 0) {
      const record: LogRecord = { workspace: request.workspace, shard: request.shard, sequence: ack.seq, messageId: request.messageId, payload: request.payload, value: request.value };
      for (const listener of this.#listeners) listener([record]);
    }
    return { status: 'appended', sequence: ack.seq };
  }

  async read(partition: PartitionId, afterSequence: number, limit: number): Promise<LogRecord[]> {
    const records = await this.readTimed(partition, afterSequence, limit);
    return records.map(({ storedAtMs: _storedAtMs, ...record }) => record);
  }

  /** Reads like read(), with the time each record was stored. */
  async readTimed(partition: PartitionId, afterSequence: number, limit: number): Promise<TimedLogRecord[]> {
    const head = await this.headSequence(partition);
    if (head <= afterSequence || limit <= 0) return [];

    const consumer = await this.#js.consumers.get(EVENT_STREAM, {
      filter_subjects: eventSubject(partition),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: afterSequence + 1,
    });
    const messages = await consumer.fetch({ max_messages: limit, expires: READ_EXPIRES_MS });
    const records: TimedLogRecord[] = [];
    for await (const message of messages) {
      records.push({
        ...partition,
        sequence: message.seq,
        messageId: messageIdOf(message.headers?.get('Nats-Msg-Id') ?? '', partition.workspace),
        payload: Buffer.from(message.data),
        storedAtMs: Number(message.timestampNanos / 1_000_000n),
      });
      if (message.seq >= head || records.length >= limit) break;
    }
    return records;
  }

  async headSequence(partition: PartitionId): Promise<number> {
    const last = await this.#jsm.streams.getMessage(EVENT_STREAM, { last_by_subj: eventSubject(partition) });
    return last?.seq ?? 0;
  }

  async partitions(): Promise<PartitionId[]> {
    const info = await this.#jsm.streams.info(EVENT_STREAM, { subjects_filter: ALL_EVENTS_FILTER });
    const subjects = Object.keys(info.state.subjects ?? {});
    return subjects.map(parseEventSubject).filter((partition): partition is PartitionId => partition !== null);
  }

  async prune(partition: PartitionId, upToSequence: number, appendedBeforeMs: number): Promise<number> {
    let cut = 0;
    let after = 0;
    for (;;) {
      const page = await this.readTimed(partition, after, 1_000);
      const old = page.filter((record) => record.sequence <= upToSequence && record.storedAtMs < appendedBeforeMs);
      if (old.length > 0) cut = old[old.length - 1].sequence;
      if (old.length < page.length || page.length === 0) break;
      after = page[page.length - 1].sequence;
    }
    if (cut === 0) return 0;

    const purged = await this.#jsm.streams.purge(EVENT_STREAM, { filter: eventSubject(partition), seq: cut + 1 });
    return purged.purged;
  }

  onAppend(listener: AppendListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#listeners.clear();
  }
}

function messageIdOf(natsMessageId: string, workspace: string): string {
  const prefix = `${workspace}:`;
  return natsMessageId.startsWith(prefix) ? natsMessageId.slice(prefix.length) : natsMessageId;
}
