/**
 * Reads every workspace's events of one shard from the event stream, in stream order, with
 * a JetStream ordered consumer. That is an ephemeral consumer which the client recreates from
 * the last delivered sequence after a gap, a missed heartbeat or a reconnect, so no record is
 * skipped or repeated. The owner's progress lives in its checkpoints, not in the server.
 *
 * The client does not recreate a consumer whose server died: it asks for the consumer's
 * info, which gets no reply, until that server is back (seen with @nats-io/jetstream 3.4
 * and nats-server 2.9.10, whose ordered consumers have one replica). So the feed replaces
 * a consumer that sent neither a record nor an idle heartbeat for STALL_TIMEOUT_MS.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DeliverPolicy, jetstream, type ConsumerMessages } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../../common/logger.js';
import type { LogRecord } from '../../storage/event-log.js';
import type { StoredPayload } from './jetstream-event-log.js';
import { EVENT_STREAM, parseEventSubject, shardEventFilter } from './subjects.js';

export interface ShardFeedOptions {
  connection: NatsConnection;
  shard: number;
  /** First stream sequence to read. */
  fromSequence: number;
  /** Takes one record. When it returns a promise, the feed reads nothing more until it settles. */
  onRecord: (record: LogRecord) => void | Promise<void>;
  /** Returns a message's payload, which may be stored in parts (JetStreamEventLog.payloadOf). */
  payloadOf: (message: StoredPayload) => Promise<Buffer>;
  logger: Logger;
}

/** Messages the server may send ahead of the ones the feed has taken. */
const PREFETCH_MESSAGES = 1_000;
const RETRY_DELAY_MS = 1_000;
/** Maximum wait of one pull request. An idle consumer sends a heartbeat every half of it. */
const PULL_EXPIRES_MS = 5_000;
/** Time without a record or a heartbeat, four heartbeat intervals, after which the feed replaces its consumer. */
const STALL_TIMEOUT_MS = 10_000;
const STALL_CHECK_INTERVAL_MS = 1_000;

export class ShardFeed {
  readonly #options: ShardFeedOptions;
  #next: number;
  #unread = 0;
  #messages: ConsumerMessages | null = null;
  #stopped = false;
  /** When the consumer last sent a record or a heartbeat, or the feed last finished waiting for room. */
  #lastActivityMs = 0;
  /** Whether the feed waits for onRecord to make room, and so pulls nothing. */
  #waitingForRoom = false;
  #running: Promise<void> | null = null;

  constructor(options: ShardFeedOptions) {
    this.#options = options;
    this.#next = Math.max(1, options.fromSequence);
  }

  /** Sequence of the next record the feed will read. */
  get nextSequence(): number {
    return this.#next;
  }

  /** Records of the shard in the stream after the last one read, as the server counted them then. */
  get unreadRecords(): number {
    return this.#unread;
  }

  start(): void {
    this.#running = this.#run();
  }

  /** Stops reading; resolves once no record will be handed over any more. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#messages?.stop();
    await this.#running;
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      try {
        await this.#consume();
      } catch (error) {
        if (this.#stopped) break;
        this.#options.logger.warn({ err: error, shard: this.#options.shard, nextSequence: this.#next }, 'reading the shard from the event stream failed; retrying');
        await sleep(RETRY_DELAY_MS);
      }
    }
  }

  async #consume(): Promise<void> {
    const js = jetstream(this.#options.connection);
    const consumer = await js.consumers.get(EVENT_STREAM, {
      filter_subjects: shardEventFilter(this.#options.shard),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: this.#next,
    });
    if (this.#stopped) return;

    const messages = await consumer.consume({ max_messages: PREFETCH_MESSAGES, expires: PULL_EXPIRES_MS });
    this.#messages = messages;
    const stopWatching = this.#watchForStall(messages);
    try {
      for await (const message of messages) {
        this.#lastActivityMs = performance.now();
        if (this.#stopped) break;
        const partition = parseEventSubject(message.subject);
        if (partition === null) continue;

        const record: LogRecord = { ...partition, sequence: message.seq, messageId: '', payload: await this.#options.payloadOf(message) };
        this.#next = message.seq + 1;
        this.#unread = message.info.pending;
        const taken = this.#options.onRecord(record);
        if (taken !== undefined) await this.#waitForRoom(taken);
      }
    } finally {
      stopWatching();
    }
  }

  async #waitForRoom(taken: Promise<void>): Promise<void> {
    this.#waitingForRoom = true;
    try {
      await taken;
    } finally {
      this.#waitingForRoom = false;
      this.#lastActivityMs = performance.now();
    }
  }

  /**
   * Stops `messages` once the consumer has sent neither a record nor an idle heartbeat for
   * STALL_TIMEOUT_MS, so that #run creates a new consumer from the next sequence. Returns
   * a function that ends the watch.
   */
  #watchForStall(messages: ConsumerMessages): () => void {
    this.#lastActivityMs = performance.now();
    void (async () => {
      for await (const status of messages.status()) {
        if (status.type === 'heartbeat') this.#lastActivityMs = performance.now();
      }
    })().catch(() => undefined);

    const timer = setInterval(() => {
      const silentMs = performance.now() - this.#lastActivityMs;
      if (this.#waitingForRoom || silentMs < STALL_TIMEOUT_MS) return;
      clearInterval(timer);
      this.#options.logger.warn({ shard: this.#options.shard, nextSequence: this.#next, silentMs: Math.round(silentMs) }, 'the shard\'s event stream consumer sent nothing, not even a heartbeat; replacing it');
      messages.stop();
    }, STALL_CHECK_INTERVAL_MS);
    timer.unref();
    return () => clearInterval(timer);
  }
}
