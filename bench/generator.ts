/**
 * Load generator process, forked by the harness. It streams batches over one IngestStream
 * call with up to `inFlightBatches` unacknowledged, and counts every accepted event per
 * customer, so the harness can compare those counts with the profiles' eventCount.
 *
 * A stream that fails (RESOURCE_EXHAUSTED when the node has too many events in flight, or
 * any other error) is reopened after a backoff, and its unacknowledged batches are sent
 * again with the same messageIds. The node reports an event that an earlier attempt had
 * stored as a duplicate, and the generator counts that duplicate as stored, so every
 * stored event is counted once. With several addresses (the nodes of a cluster), a stream
 * that fails with anything but RESOURCE_EXHAUSTED is reopened on the next address.
 *
 * Requests: 'start' (GeneratorConfig), 'mark' (resets the measured window), 'progress',
 * 'stop' (stops sending, waits for outstanding acknowledgements, returns GeneratorReport).
 * Event: 'finished' once a profiles workload has sent and acknowledged every event.
 */
import { status, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { BatchEncoder, checkBatchDecodes } from './events.js';
import { createRawIngestClient, storedIndexes, type BatchAck } from './ingest-stream.js';
import { sendEvent, serveIpc } from './ipc.js';
import { createRandom } from './random.js';
import { splitAcceptedCounts } from './correctness.js';
import { loadWorkload, type ProfileRef, type Workload, type WorkloadConfig } from './workloads.js';

export interface GeneratorConfig {
  /** gRPC addresses in order of preference. After a failed stream the generator moves to the next one, wrapping around. */
  addresses: string[];
  generatorId: number;
  /** Makes messageIds unique across runs and generators. */
  runTag: string;
  seed: number;
  batchSize: number;
  inFlightBatches: number;
  workload: WorkloadConfig;
  /** Sending stops after this long even without a 'stop' request, in milliseconds. */
  maxSendMs: number;
  /**
   * Events per second this generator sends at most, counted from its start; undefined or 0
   * sends as fast as acknowledgements allow. Batches sent again after a failed stream count too.
   */
  maxEventsPerSecond?: number;
}

export interface GeneratorProgress {
  sentEvents: number;
  /** Events stored by this generator's requests: ACCEPTED, plus DUPLICATE in batches sent again after a failed stream. */
  acceptedEvents: number;
  /** Accepted events acknowledged since the last 'mark'. */
  windowAcceptedEvents: number;
  overloadRetries: number;
  finished: boolean;
}

export interface GeneratorReport extends GeneratorProgress {
  /** Every DUPLICATE acknowledged, including those counted in acceptedEvents. */
  duplicateEvents: number;
  /** DUPLICATE events of batches sent again, which an unacknowledged earlier attempt had stored. */
  resentStoredEvents: number;
  /** Times the generator moved to another address after a failed stream. */
  addressSwitches: number;
  /** The address the generator sent to last. */
  address: string;
  rejectedEvents: number;
  ackedBatches: number;
  /** Batches sent but never acknowledged; nonzero means the run is incomplete. */
  unacknowledgedBatches: number;
  streamErrors: number;
  /** Reason the generator stopped early, or null. */
  fatalError: string | null;
  firstRejection: string | null;
  lastStreamError: string | null;
  /** Write-to-acknowledgement time of each batch acknowledged since the last 'mark', in ms. */
  batchLatenciesMs: Float64Array;
  /** Accepted events per customer: counts[i] is customer firstCustomer + i. */
  firstCustomer: number;
  acceptedPerCustomer: Int32Array;
  /** Accepted events of the profiles that are not a numbered customer's userId (anonymous or replayed ones), for those with any. */
  otherProfiles: OtherProfileCounts;
  eventSizes: { jsonBytes: number; protobufBytes: number };
  /** CPU time this process used, in ms. */
  cpuMs: number;
}

/** Accepted events per profile, for profiles named by their identifier. */
export interface OtherProfileCounts {
  profiles: ProfileRef[];
  accepted: Int32Array;
}

interface Batch {
  id: string;
  bytes: Buffer;
  /** The workload's profile slot of each event. */
  slots: Int32Array;
  sentAt: number;
  /** Times the batch was written to a stream. */
  sends: number;
}

/** How long 'stop' waits for outstanding batches to be acknowledged, in milliseconds. */
const ACK_WAIT_MS = 60_000;

/** Stream failures other than RESOURCE_EXHAUSTED tolerated before the generator gives up. */
const MAX_STREAM_ERRORS = 20;

const OVERLOAD_BACKOFF_MS = 20;
const ERROR_BACKOFF_MS = 200;

class Generator {
  readonly #config: GeneratorConfig;
  readonly #workload: Workload;
  readonly #encoder: BatchEncoder;
  #addressIndex = 0;
  #client: ReturnType<typeof createRawIngestClient>;
  readonly #acceptedPerProfile: Int32Array;
  readonly #outstanding: Batch[] = [];
  readonly #resend: Batch[] = [];
  #call: ClientDuplexStream<Buffer, BatchAck> | null = null;
  #wake: (() => void) | null = null;
  #stopRequested = false;
  /** performance.now() before which no batch is sent, after a stream failure. */
  #retryAt = 0;
  #sending: Promise<void> = Promise.resolve();
  /** performance.now() when sending started, from which maxEventsPerSecond is counted. */
  #startedAt = 0;
  /** Events written to a stream, sends again included, for the rate limit. */
  #writtenEvents = 0;
  #nextBatch = 0;
  #latencies = new Float64Array(1_024);
  #latencyCount = 0;
  #eventSizes = { jsonBytes: 0, protobufBytes: 0 };
  readonly #counters = {
    sentEvents: 0,
    acceptedEvents: 0,
    windowAcceptedEvents: 0,
    duplicateEvents: 0,
    resentStoredEvents: 0,
    addressSwitches: 0,
    rejectedEvents: 0,
    ackedBatches: 0,
    overloadRetries: 0,
    streamErrors: 0,
    firstRejection: null as string | null,
    lastStreamError: null as string | null,
    fatalError: null as string | null,
  };

  constructor(config: GeneratorConfig, workload: Workload) {
    if (config.addresses.length === 0) throw new Error('generator config lists no address. Pass at least one in "addresses".');
    this.#config = config;
    this.#workload = workload;
    this.#encoder = new BatchEncoder(`${config.runTag}-${config.generatorId}`, createRandom(config.seed + 1));
    this.#client = createRawIngestClient(config.addresses[0]);
    this.#acceptedPerProfile = new Int32Array(workload.profileCount);
  }

  start(): void {
    this.#startedAt = performance.now();
    this.#sending = this.#sendLoop().catch((error) => {
      this.#counters.fatalError ??= (error as Error).message;
    });
  }

  mark(): GeneratorProgress {
    this.#counters.windowAcceptedEvents = 0;
    this.#latencyCount = 0;
    return this.progress();
  }

  progress(): GeneratorProgress {
    const { sentEvents, acceptedEvents, windowAcceptedEvents, overloadRetries } = this.#counters;
    return { sentEvents, acceptedEvents, windowAcceptedEvents, overloadRetries, finished: this.#finished() };
  }

  async stop(): Promise<GeneratorReport> {
    this.#stopRequested = true;
    this.#notify();
    await this.#sending;
    this.#call?.end();
    this.#client.close();

    const cpu = process.cpuUsage();
    return {
      ...this.progress(),
      ...this.#counters,
      unacknowledgedBatches: this.#outstanding.length + this.#resend.length,
      address: this.#config.addresses[this.#addressIndex],
      batchLatenciesMs: this.#latencies.slice(0, this.#latencyCount),
      ...splitAcceptedCounts(this.#workload, this.#acceptedPerProfile),
      eventSizes: this.#eventSizes,
      cpuMs: (cpu.user + cpu.system) / 1_000,
    };
  }

  #finished(): boolean {
    return !this.#workload.hasMore() && this.#outstanding.length === 0 && this.#resend.length === 0;
  }

  /** Sends until stopped, the workload is done or maxSendMs passes, then waits (bounded) for acknowledgements. */
  async #sendLoop(): Promise<void> {
    const sendDeadline = Date.now() + this.#config.maxSendMs;

    while (!this.#stopRequested && Date.now() < sendDeadline && (this.#workload.hasMore() || this.#resend.length > 0)) {
      await this.#sendOne();
    }

    const ackDeadline = Date.now() + ACK_WAIT_MS;
    while ((this.#outstanding.length > 0 || this.#resend.length > 0) && Date.now() < ackDeadline && this.#counters.fatalError === null) {
      if (this.#resend.length > 0) await this.#sendOne();
      else await this.#waitForChange(ackDeadline - Date.now());
    }

    if (this.#finished()) sendEvent('finished', this.progress());
  }

  async #sendOne(): Promise<void> {
    if (this.#counters.fatalError !== null) throw new Error(this.#counters.fatalError);
    if (this.#counters.streamErrors > MAX_STREAM_ERRORS) {
      throw new Error(`gave up after ${this.#counters.streamErrors} stream errors; last: ${this.#counters.lastStreamError}`);
    }

    const backoffMs = this.#retryAt - performance.now();
    if (backoffMs > 0) {
      await this.#waitForChange(backoffMs);
      return;
    }

    if (this.#outstanding.length >= this.#config.inFlightBatches) {
      await this.#waitForChange(1_000);
      return;
    }

    const paceMs = this.#paceMs();
    if (paceMs > 0) {
      await this.#waitForChange(paceMs);
      return;
    }

    const batch = this.#resend.shift() ?? this.#buildBatch();
    if (batch === null) {
      await this.#waitForChange(1_000);
      return;
    }

    batch.sentAt = performance.now();
    batch.sends++;
    this.#writtenEvents += batch.slots.length;
    this.#outstanding.push(batch);
    const call = this.#openCall();
    if (!call.write(batch.bytes)) await this.#waitForChange(1_000);
  }

  /** Time until the next batch keeps the rate at or below maxEventsPerSecond, in ms; 0 sends now. */
  #paceMs(): number {
    const rate = this.#config.maxEventsPerSecond ?? 0;
    if (rate <= 0) return 0;
    return this.#startedAt + (this.#writtenEvents / rate) * 1_000 - performance.now();
  }

  #buildBatch(): Batch | null {
    if (!this.#workload.hasMore()) return null;

    const slots = new Int32Array(this.#config.batchSize);
    this.#encoder.begin();
    const count = this.#workload.fill(this.#encoder, slots, this.#config.batchSize);
    const id = `${this.#config.generatorId}-${this.#nextBatch++}`;
    const bytes = this.#encoder.finish(id);

    if (this.#nextBatch === 1) this.#eventSizes = checkBatchDecodes(bytes, count);
    this.#counters.sentEvents += count;
    return { id, bytes, slots: slots.subarray(0, count), sentAt: 0, sends: 0 };
  }

  #openCall(): ClientDuplexStream<Buffer, BatchAck> {
    if (this.#call !== null) return this.#call;

    const call = this.#client.ingestStream();
    call.on('data', (ack: BatchAck) => this.#onAck(ack));
    call.on('error', (error: ServiceError) => this.#onStreamError(call, error));
    call.on('drain', () => this.#notify());
    this.#call = call;
    return call;
  }

  #onAck(ack: BatchAck): void {
    const batch = this.#outstanding.shift();
    if (batch === undefined || batch.id !== ack.batchId) {
      this.#counters.fatalError ??= `acknowledgement for batch "${ack.batchId}" arrived out of order; expected "${batch?.id}"`;
      this.#notify();
      return;
    }

    this.#recordLatency(performance.now() - batch.sentAt);
    this.#countAccepted(batch, ack);
    this.#counters.duplicateEvents += ack.duplicates;
    this.#counters.rejectedEvents += ack.rejected;
    this.#counters.ackedBatches++;
    this.#notify();
  }

  #countAccepted(batch: Batch, ack: BatchAck): void {
    const resent = batch.sends > 1;
    const stored = resent ? ack.accepted + ack.duplicates : ack.accepted;
    this.#counters.acceptedEvents += stored;
    this.#counters.windowAcceptedEvents += stored;
    if (resent) this.#counters.resentStoredEvents += ack.duplicates;

    if (stored === batch.slots.length) {
      for (const slot of batch.slots) this.#acceptedPerProfile[slot]++;
      return;
    }

    const { indexes, firstRejection } = storedIndexes(ack, resent);
    for (const index of indexes) this.#acceptedPerProfile[batch.slots[index]]++;
    this.#counters.firstRejection ??= firstRejection;
  }

  /**
   * Puts every unacknowledged batch back in front of the resend queue and reopens the stream
   * after a backoff, on the next address unless the node was only overloaded.
   */
  #onStreamError(call: ClientDuplexStream<Buffer, BatchAck>, error: ServiceError): void {
    if (this.#call !== call) return;
    this.#call = null;

    const overloaded = error.code === status.RESOURCE_EXHAUSTED;
    if (overloaded) this.#counters.overloadRetries++;
    else {
      this.#counters.streamErrors++;
      this.#counters.lastStreamError = `${this.#config.addresses[this.#addressIndex]}: ${status[error.code] ?? error.code}: ${error.details}`;
      this.#switchAddress();
    }

    this.#resend.unshift(...this.#outstanding.splice(0));
    this.#retryAt = performance.now() + (overloaded ? OVERLOAD_BACKOFF_MS : ERROR_BACKOFF_MS);
    this.#notify();
  }

  #switchAddress(): void {
    if (this.#config.addresses.length < 2) return;
    this.#client.close();
    this.#addressIndex = (this.#addressIndex + 1) % this.#config.addresses.length;
    this.#client = createRawIngestClient(this.#config.addresses[this.#addressIndex]);
    this.#counters.addressSwitches++;
  }

  #recordLatency(ms: number): void {
    if (this.#latencyCount === this.#latencies.length) {
      const grown = new Float64Array(this.#latencies.length * 2);
      grown.set(this.#latencies);
      this.#latencies = grown;
    }
    this.#latencies[this.#latencyCount++] = ms;
  }

  /** Resolves on the next acknowledgement, stream error, drain or stop, or after `timeoutMs`. */
  #waitForChange(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#notify(), Math.max(1, timeoutMs));
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

let generator: Generator | null = null;

function requireGenerator(): Generator {
  if (generator === null) throw new Error('generator has not been started; send "start" first');
  return generator;
}

serveIpc(
  {
    start: async (config: GeneratorConfig) => {
      generator = new Generator(config, await loadWorkload(config.workload, config.seed));
      generator.start();
      return null;
    },
    mark: () => requireGenerator().mark(),
    progress: () => requireGenerator().progress(),
    stop: () => requireGenerator().stop(),
  },
  () => process.exit(1),
);

process.on('SIGTERM', () => process.exit(0));
