/**
 * NATS references, forked by the harness in one of three roles (argv[2]).
 *
 * Core NATS: a subscriber and a publisher. The publisher publishes each event of the ingest
 * load as one core NATS message (its protobuf bytes, no JetStream, no persistence) to a
 * local nats-server. The subscriber counts them and, after every `batchSize` messages,
 * publishes the count on an acknowledgement subject. The publisher keeps at most
 * `inFlightBatches` batches unacknowledged, as a load generator does on an IngestStream, so
 * the subscriber never falls behind far enough for nats-server to drop it as a slow consumer.
 *
 * JetStream: a jetstream-publisher publishes each event to a stream with a message id and
 * counts JetStream's acknowledgements, as a cluster node appends an event to its log. It
 * keeps at most `inFlightBatches` batches unacknowledged too.
 *
 * Subscriber: argv[3] is SubscriberConfig as JSON; it sends 'ready' once subscribed, and
 * serves 'stats'. Publishers: serve 'run' (PublisherRun), which returns PublisherReport.
 * Every role exits on SIGTERM or when the IPC channel closes.
 */
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { skipSettledRequestErrors } from '../../cluster/nats/settled-requests.js';
import { sendEvent, serveIpc } from '../ipc.js';
import { encodeEventBatches, type PayloadOptions } from './payloads.js';

export const EVENTS_SUBJECT = 'rtcdp.bench.events';
export const ACKS_SUBJECT = 'rtcdp.bench.acks';

export interface SubscriberConfig {
  url: string;
  batchSize: number;
}

export interface PublisherRun extends PayloadOptions {
  url: string;
  inFlightBatches: number;
  warmupS: number;
  durationS: number;
  /** For a jetstream-publisher: the subjects it publishes to, `<subjectPrefix>.<shard>`, and the prefix of its message ids. */
  jetstream?: { subjectPrefix: string; shards: number; messageIdPrefix: string };
}

export interface PublisherReport {
  /** Events published over the whole run, warm-up included. */
  sentEvents: number;
  /** Events the subscriber acknowledged in the window. */
  windowEvents: number;
  /** From the end of the warm-up to the last acknowledgement, in seconds. */
  windowSeconds: number;
  /** Publish-to-acknowledgement time of each batch of the window, in ms. */
  batchLatenciesMs: Float64Array;
  messageBytes: number;
  cpuMs: number;
}

/** Wakes a publisher that waits for an acknowledgement, or its timeout, whichever comes first. */
class AckSignal {
  #wake: (() => void) | null = null;

  /** Resolves at the next notify(), or after `timeoutMs`. */
  wait(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve();
      }, Math.max(1, timeoutMs));
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/** Distinct batches encoded up front; the publisher sends them in a cycle. */
const PAYLOAD_BATCHES = 64;

/** How long the publisher waits for outstanding acknowledgements after the window, in milliseconds. */
const ACK_WAIT_MS = 10_000;

function cpuMs(): number {
  const cpu = process.cpuUsage();
  return (cpu.user + cpu.system) / 1_000;
}

async function runSubscriber(config: SubscriberConfig): Promise<void> {
  const connection = await connect({ servers: config.url, name: 'rtcdp-bench-subscriber' });
  let received = 0;

  connection.subscribe(EVENTS_SUBJECT, {
    callback: () => {
      received++;
      if (received % config.batchSize === 0) connection.publish(ACKS_SUBJECT, String(received));
    },
  });
  await connection.flush();

  serveIpc({ stats: () => ({ received, cpuMs: cpuMs() }) }, () => process.exit(1));
  process.on('SIGTERM', () => void connection.close().finally(() => process.exit(0)));
  sendEvent('ready', { pid: process.pid });
}

class Publisher {
  readonly #run: PublisherRun;
  readonly #connection: NatsConnection;
  readonly #batches: Buffer[][];
  #acknowledgedEvents = 0;
  #lastAckAt = 0;
  readonly #sentAt: number[] = [];
  #latencies: number[] = [];
  #recordLatencies = false;
  readonly #acks = new AckSignal();

  constructor(run: PublisherRun, connection: NatsConnection) {
    this.#run = run;
    this.#connection = connection;
    this.#batches = encodeEventBatches(PAYLOAD_BATCHES, run);
  }

  async measure(): Promise<PublisherReport> {
    this.#connection.subscribe(ACKS_SUBJECT, { callback: (_error, message) => this.#onAck(Number(message.string())) });
    await this.#connection.flush();

    const startedAt = performance.now();
    const markAt = startedAt + this.#run.warmupS * 1_000;
    const endAt = markAt + this.#run.durationS * 1_000;
    let sentBatches = 0;
    let markedEvents = -1;

    while (performance.now() < endAt) {
      if (markedEvents < 0 && performance.now() >= markAt) {
        markedEvents = this.#acknowledgedEvents;
        this.#recordLatencies = true;
      }

      const unacknowledged = sentBatches - this.#acknowledgedEvents / this.#run.batchSize;
      if (unacknowledged >= this.#run.inFlightBatches) {
        await this.#acks.wait(Math.min(1_000, endAt - performance.now()));
        continue;
      }

      for (const payload of this.#batches[sentBatches % this.#batches.length]) this.#connection.publish(EVENTS_SUBJECT, payload);
      this.#sentAt.push(performance.now());
      sentBatches++;
    }

    const ackDeadline = performance.now() + ACK_WAIT_MS;
    while (this.#acknowledgedEvents < sentBatches * this.#run.batchSize && performance.now() < ackDeadline) {
      await this.#acks.wait(ackDeadline - performance.now());
    }

    const windowStart = markedEvents < 0 ? this.#acknowledgedEvents : markedEvents;
    return {
      sentEvents: sentBatches * this.#run.batchSize,
      windowEvents: this.#acknowledgedEvents - windowStart,
      windowSeconds: Math.max(0, this.#lastAckAt - markAt) / 1_000,
      batchLatenciesMs: Float64Array.from(this.#latencies),
      messageBytes: this.#batches[0][0].byteLength,
      cpuMs: cpuMs(),
    };
  }

  #onAck(count: number): void {
    const now = performance.now();
    const batchIndex = count / this.#run.batchSize - 1;
    if (this.#recordLatencies && this.#sentAt[batchIndex] !== undefined) this.#latencies.push(now - this.#sentAt[batchIndex]);

    this.#acknowledgedEvents = count;
    this.#lastAckAt = now;
    this.#acks.notify();
  }

}

/**
 * Publishes the load to a JetStream stream, one message per event with a message id, and
 * counts a batch as acknowledged once JetStream acknowledged each of its events.
 */
class JetStreamPublisher {
  readonly #run: PublisherRun;
  readonly #settings: NonNullable<PublisherRun['jetstream']>;
  readonly #connection: NatsConnection;
  readonly #batches: Buffer[][];
  #acknowledgedEvents = 0;
  #unacknowledgedBatches = 0;
  #lastAckAt = 0;
  #latencies: number[] = [];
  #recordLatencies = false;
  #failure: unknown = null;
  readonly #acks = new AckSignal();

  constructor(run: PublisherRun, connection: NatsConnection) {
    if (run.jetstream === undefined) throw new TypeError('a jetstream-publisher needs "jetstream" in its run');
    this.#run = run;
    this.#settings = run.jetstream;
    this.#connection = connection;
    this.#batches = encodeEventBatches(PAYLOAD_BATCHES, run);
  }

  async measure(): Promise<PublisherReport> {
    const js = jetstream(this.#connection, { timeout: ACK_WAIT_MS });
    const startedAt = performance.now();
    const markAt = startedAt + this.#run.warmupS * 1_000;
    const endAt = markAt + this.#run.durationS * 1_000;
    let sentEvents = 0;
    let markedEvents = -1;

    while (performance.now() < endAt && this.#failure === null) {
      if (markedEvents < 0 && performance.now() >= markAt) {
        markedEvents = this.#acknowledgedEvents;
        this.#recordLatencies = true;
      }
      if (this.#unacknowledgedBatches >= this.#run.inFlightBatches) {
        await this.#acks.wait(Math.min(1_000, endAt - performance.now()));
        continue;
      }

      const batch = this.#batches[(sentEvents / this.#run.batchSize) % this.#batches.length];
      const first = sentEvents;
      const acks = batch.map((payload, i) => {
        const sequence = first + i;
        return js.publish(`${this.#settings.subjectPrefix}.${sequence % this.#settings.shards}`, payload, { msgID: `${this.#settings.messageIdPrefix}-${sequence}` });
      });
      sentEvents += batch.length;
      this.#track(acks, batch.length, performance.now());
    }

    const ackDeadline = performance.now() + ACK_WAIT_MS;
    while (this.#unacknowledgedBatches > 0 && this.#failure === null && performance.now() < ackDeadline) {
      await this.#acks.wait(ackDeadline - performance.now());
    }
    if (this.#failure !== null) throw this.#failure;

    const windowStart = markedEvents < 0 ? this.#acknowledgedEvents : markedEvents;
    return {
      sentEvents,
      windowEvents: this.#acknowledgedEvents - windowStart,
      windowSeconds: Math.max(0, this.#lastAckAt - markAt) / 1_000,
      batchLatenciesMs: Float64Array.from(this.#latencies),
      messageBytes: this.#batches[0][0].byteLength,
      cpuMs: cpuMs(),
    };
  }

  #track(acks: Promise<unknown>[], events: number, sentAt: number): void {
    this.#unacknowledgedBatches++;
    const recording = this.#recordLatencies;
    Promise.all(acks).then(
      () => {
        const now = performance.now();
        if (recording) this.#latencies.push(now - sentAt);
        this.#acknowledgedEvents += events;
        this.#unacknowledgedBatches--;
        this.#lastAckAt = now;
        this.#acks.notify();
      },
      (error: unknown) => {
        this.#failure ??= error;
        this.#acks.notify();
      },
    );
  }


}

async function runPublisher(role: 'publisher' | 'jetstream-publisher'): Promise<void> {
  let connection: NatsConnection | null = null;

  serveIpc(
    {
      run: async (run: PublisherRun) => {
        // The client set up as the nodes set it up, so the reference measures the same client work.
        skipSettledRequestErrors();
        connection = await connect({ servers: run.url, name: `rtcdp-bench-${role}`, noAsyncTraces: true });
        return role === 'publisher' ? new Publisher(run, connection).measure() : new JetStreamPublisher(run, connection).measure();
      },
    },
    () => process.exit(1),
  );
  process.on('SIGTERM', () => void (connection?.close() ?? Promise.resolve()).finally(() => process.exit(0)));
  sendEvent('ready', { pid: process.pid });
}

const role = process.argv[2];
if (role === 'subscriber') await runSubscriber(JSON.parse(process.argv[3] ?? '{}') as SubscriberConfig);
else if (role === 'publisher' || role === 'jetstream-publisher') await runPublisher(role);
else throw new Error(`nats-reference.ts needs the role "subscriber", "publisher" or "jetstream-publisher" as its first argument, received "${role}"`);
