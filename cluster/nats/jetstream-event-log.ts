/**
 * The event log on a JetStream stream: one subject per workspace and shard. Any node may
 * append; an append resolves once JetStream has acknowledged every event, which on a stream
 * of R replicas means a majority of them stored it. Sequences are stream sequences, so a
 * partition's records have gaps where other partitions' records sit.
 *
 * Deduplication uses JetStream message ids (`<workspace>:<messageId>`) and so lasts only the
 * stream's duplicate window. Pruning purges a subject; JetStream does not forget message ids
 * when it purges, so a pruned event sent again within the window is still a duplicate.
 *
 * A record too large for one NATS message (an event stored as msgpack can be larger than its
 * JSON, and a merge hands a whole profile to its survivor) is written as parts to the stream
 * RTCDP_RECORD_PARTS first (large-values.ts). The log message then carries only where they
 * are, marked by the PAYLOAD_PARTS_HEADER header, and readers join the parts again. Parts are
 * never deleted: they expire a day after the log's maximum age, so a replay finds them.
 */
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type PubAck } from '@nats-io/jetstream';
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { RtcdpError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { decode, encode } from '../../storage/codec.js';
import type { AppendListener, AppendOutcome, AppendRequest, EventLog, LogRecord, PartitionId } from '../../storage/event-log.js';
import { EventLogUnavailableError } from '../errors.js';
import { ensureEventStream, type EventStreamOptions } from './event-stream.js';
import { LargeValueStream, type PartsRef } from './large-values.js';
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

export const RECORD_PARTS_STREAM = 'RTCDP_RECORD_PARTS';
const RECORD_PARTS_SUBJECT = 'rtcdp.parts.records';
/** How much longer than the log's records their parts are kept, in ms. */
const RECORD_PARTS_EXTRA_AGE_MS = 24 * 3_600_000;
/** Header of a log message whose data is the PartsRef of its payload rather than the payload. */
export const PAYLOAD_PARTS_HEADER = 'Rtcdp-Payload-Parts';

/** A log record whose payload parts are gone from RTCDP_RECORD_PARTS, so it cannot be applied. */
export class RecordPartsMissingError extends RtcdpError {
  readonly code = 'RECORD_PARTS_MISSING';
}

/** The fields of a stored message that its payload is read from. */
export interface StoredPayload {
  data: Uint8Array;
  headers?: MsgHdrs;
  seq: number;
}

export class JetStreamEventLog implements EventLog {
  readonly #options: JetStreamEventLogOptions;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #listeners = new Set<AppendListener>();
  readonly #parts: LargeValueStream;

  private constructor(options: JetStreamEventLogOptions, jsm: JetStreamManager, parts: LargeValueStream) {
    this.#options = options;
    this.#jsm = jsm;
    this.#js = jetstream(options.connection);
    this.#parts = parts;
  }

  /** Opens the log, creating the event stream and the stream of record parts when they do not exist. */
  static async open(options: JetStreamEventLogOptions): Promise<JetStreamEventLog> {
    const jsm = await jetstreamManager(options.connection);
    await ensureEventStream(jsm, options, options.logger);
    const parts = await LargeValueStream.open(options.connection, {
      stream: RECORD_PARTS_STREAM,
      subject: RECORD_PARTS_SUBJECT,
      replicas: options.replicas,
      maxAgeMs: options.maxAgeMs + RECORD_PARTS_EXTRA_AGE_MS,
      requestTimeoutMs: options.publishTimeoutMs,
      logger: options.logger,
    });
    return new JetStreamEventLog(options, jsm, parts);
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
      ack = await this.#publishMessage(request, id);
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

  /** Publishes a record, its payload in parts when it is too large for one message. */
  async #publishMessage(request: AppendRequest, id: string): Promise<PubAck> {
    const options = { msgID: id, timeout: this.#options.publishTimeoutMs };
    if (request.payload.length <= this.#parts.messageLimitBytes) return this.#js.publish(eventSubject(request), request.payload, options);

    const parts = await this.#parts.write(request.payload);
    const headers = natsHeaders();
    headers.set(PAYLOAD_PARTS_HEADER, '1');
    return this.#js.publish(eventSubject(request), encode(parts), { ...options, headers });
  }

  /**
   * Returns the payload of a stored log message, joined from its parts when it has them.
   * Throws RecordPartsMissingError when they are gone.
   */
  async payloadOf(message: StoredPayload): Promise<Buffer> {
    if (message.headers?.get(PAYLOAD_PARTS_HEADER) !== '1') return Buffer.from(message.data);

    const parts = decode<PartsRef>(Buffer.from(message.data));
    const payload = await this.#parts.read(parts);
    if (payload === null) {
      throw new RecordPartsMissingError(`the parts of log record ${message.seq} (${parts.bytes} bytes) are gone from stream ${RECORD_PARTS_STREAM}, so the record cannot be read`);
    }
    return Buffer.from(payload);
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
        payload: await this.payloadOf(message),
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
