/**
 * Open-loop load generator process, forked by the latency and decide scenarios. A writer
 * sends ingest requests (open-loop-drivers.ts), a reader sends GetProfile queries, and a
 * decider sends Decide calls, each on a channel drawn from DECIDE_CHANNELS with a small
 * context.
 *
 * In a step, requests follow a fixed schedule: request k is due at start + k / rate,
 * whether or not earlier requests have completed. Each latency is measured from the time
 * the request was due, not from when it was written. So a slow server, or a sender that
 * fell behind its schedule, shows in the latency instead of silently lowering the load
 * (coordinated omission). A batch's latency is recorded once per event in it. Requests
 * that fail are counted by status and not recorded as latencies.
 *
 * A generator with `maxOutstandingRequests` requests in flight stops the step there and
 * reports it as overloaded, so a server that cannot keep up ends the step instead of
 * queueing requests without bound.
 *
 * Requests: 'start' (OpenLoopConfig), 'closedLoop', 'step', 'sampleProfiles', 'finish'.
 */
import { status, type ServiceError } from '@grpc/grpc-js';
import type { Histogram } from 'hdr-histogram-js';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { splitAcceptedCounts } from './correctness.js';
import { BatchEncoder } from './events.js';
import type { GeneratorReport } from './generator.js';
import { storedIndexes, type BatchAck } from './ingest-stream.js';
import { serveIpc } from './ipc.js';
import { DecisionCounter, type DecisionTally } from './decision-tally.js';
import {
  createDecideSender,
  createIngestSender,
  createQuerySender,
  type DecideSender,
  type IngestDriver,
  type IngestSender,
  type QuerySender,
} from './open-loop-drivers.js';
import { createLatencyHistogram, encodeHistogram, recordMs } from './latency.js';
import { PauseMonitor, type PauseReport, type SlowCall } from './pause-monitor.js';
import { createRandom } from './random.js';
import { sleep } from './report.js';
import { loadWorkload, type ProfileRef, type Workload, type WorkloadConfig } from './workloads.js';

export interface OpenLoopConfig {
  address: string;
  role: 'writer' | 'reader' | 'decider';
  generatorId: number;
  /** Makes messageIds unique across runs and generators. */
  runTag: string;
  seed: number;
  driver: IngestDriver;
  /** Events per request of the batch and stream drivers; the unary driver sends 1. */
  batchSize: number;
  /** The writer's workload; a reader has none. */
  workload: WorkloadConfig | null;
  maxOutstandingRequests: number;
  /** Deadline of each unary call, in milliseconds. */
  callTimeoutMs: number;
}

export interface ClosedLoopRequest {
  durationMs: number;
  /** Requests kept in flight at any time. */
  concurrency: number;
}

export interface ClosedLoopReport {
  durationMs: number;
  acknowledgedEvents: number;
  resourceExhaustedRequests: number;
  otherErrorRequests: number;
  firstError: string | null;
  /** Per-event latency from write to acknowledgement, encoded by encodeHistogram. */
  latency: string;
}

export interface StepRequest {
  /** When request 0 is due, in Unix epoch milliseconds, shared by every generator of the step. */
  startAtEpochMs: number;
  requestsPerSecond: number;
  durationMs: number;
  /** Offset of this generator's schedule, as a fraction of the interval, so that generators interleave. */
  phase: number;
  /** Reader and decider only: the profiles to query, drawn uniformly with the generator's seeded random numbers. */
  profiles?: ProfileRef[];
}

export interface StepReport {
  scheduledRequests: number;
  sentRequests: number;
  /** Requests completed, with a response or an error, by the end of the step's wait. */
  completedRequests: number;
  /** Events in the requests that completed without a gRPC error, whatever each event's status. */
  acknowledgedEvents: number;
  acceptedEvents: number;
  rejectedEvents: number;
  resourceExhaustedRequests: number;
  resourceExhaustedEvents: number;
  otherErrorRequests: number;
  otherErrorEvents: number;
  firstError: string | null;
  /** The step stopped early because maxOutstandingRequests requests were in flight. */
  overloaded: boolean;
  /** How late requests were written after they were due, in milliseconds. */
  sendLagP99Ms: number;
  sendLagMaxMs: number;
  /** When the last response of the step arrived, in Unix epoch milliseconds. */
  lastResponseEpochMs: number;
  /** Per-event latency from the due time to the response, encoded by encodeHistogram. */
  latency: string;
  /** The pauses of this generator's thread during the step. */
  pauses: PauseReport | null;
  /** Decider only: the calls slower than SLOW_CALL_MS, at most MAX_SLOW_CALLS of them. */
  slowCalls: SlowCall[];
}

export type OpenLoopReport = Pick<GeneratorReport, 'firstCustomer' | 'acceptedPerCustomer' | 'otherProfiles' | 'fatalError'> & {
  /** Events of requests whose outcome stayed unknown after every resend; nonzero makes the expected counts unknown. */
  unresolvedEvents: number;
  resentRequests: number;
  eventSizes: { protobufBytes: number };
  cpuMs: number;
  /** A decider's decisions over the whole run; null for writers and readers. */
  decisions: DecisionTally | null;
};

interface WriteRequest {
  bytes: Buffer;
  /** The workload's profile slot of each event. */
  slots: Int32Array;
  /** Sent before without a response, so it may have been stored. */
  resent: boolean;
}

/** How long a step waits for its last responses beyond the call deadline, in milliseconds. */
const RESPONSE_MARGIN_MS = 5_000;
/** Attempts to learn the outcome of a request that failed with an unknown outcome, at the end of the run. */
const RESEND_ATTEMPTS = 5;
const OVERLOAD_BACKOFF_MS = 20;
/** A Decide call slower than this (the goal's p99) is listed in its step's report, so that the harness can line it up with pauses. */
const SLOW_CALL_MS = 5;
const MAX_SLOW_CALLS = 5_000;

/** Channels of the Decide calls, drawn uniformly per call. */
export const DECIDE_CHANNELS = ['web', 'app'] as const;
const PAGES = ['/', '/products', '/cart', '/checkout', '/account'];
const REFERRERS = ['search', 'email', 'social', 'direct'];
const DEVICES = ['desktop', 'mobile', 'tablet'];

class OpenLoopGenerator {
  readonly #config: OpenLoopConfig;
  readonly #workload: Workload | null;
  readonly #encoder: BatchEncoder;
  readonly #ingest: IngestSender | null;
  readonly #query: QuerySender | null;
  readonly #decide: DecideSender | null;
  readonly #decisions = new DecisionCounter();
  readonly #pauses = new PauseMonitor();
  readonly #random: () => number;
  readonly #acceptedPerProfile: Int32Array;
  /** Requests that failed without a known outcome, sent again by 'finish'. */
  readonly #uncertain: WriteRequest[] = [];
  #outstanding = 0;
  #nextBatch = 0;
  #protobufBytes = 0;

  constructor(config: OpenLoopConfig, workload: Workload | null) {
    this.#config = config;
    this.#workload = workload;
    this.#encoder = new BatchEncoder(`${config.runTag}-o${config.generatorId}`, createRandom(config.seed + 1));
    this.#random = createRandom(config.seed + 2);
    this.#ingest = config.role === 'writer' ? createIngestSender(config.driver, config.address, config.callTimeoutMs) : null;
    this.#query = config.role === 'reader' ? createQuerySender(config.address, config.callTimeoutMs) : null;
    this.#decide = config.role === 'decider' ? createDecideSender(config.address, config.callTimeoutMs) : null;
    this.#acceptedPerProfile = new Int32Array(workload?.profileCount ?? 0);
  }

  /** Keeps `concurrency` requests in flight for `durationMs`: the closed loop that finds the maximum rate. */
  async closedLoop(request: ClosedLoopRequest): Promise<ClosedLoopReport> {
    const histogram = createLatencyHistogram();
    const report: ClosedLoopReport = { durationMs: 0, acknowledgedEvents: 0, resourceExhaustedRequests: 0, otherErrorRequests: 0, firstError: null, latency: '' };
    const started = performance.now();
    const endAt = started + request.durationMs;

    const worker = async () => {
      while (performance.now() < endAt) {
        const write = this.#buildRequest();
        const sentAt = performance.now();
        try {
          const ack = await this.#ingest!.send(write.bytes);
          recordMs(histogram, performance.now() - sentAt, write.slots.length);
          report.acknowledgedEvents += write.slots.length;
          this.#countStored(write, ack);
        } catch (error) {
          const overloaded = this.#onWriteError(write, error as ServiceError);
          if (overloaded) report.resourceExhaustedRequests++;
          else report.otherErrorRequests++;
          report.firstError ??= describeError(error);
          await sleep(OVERLOAD_BACKOFF_MS);
        }
      }
    };
    await Promise.all(Array.from({ length: request.concurrency }, worker));

    report.durationMs = performance.now() - started;
    report.latency = encodeHistogram(histogram);
    return report;
  }

  /** Sends one step on its fixed schedule and waits (bounded) for its responses. */
  async step(request: StepRequest): Promise<StepReport> {
    const latency = createLatencyHistogram();
    const sendLag = createLatencyHistogram();
    const report = emptyStepReport();
    const completions: Promise<void>[] = [];
    this.#pauses.take();

    const intervalMs = 1_000 / request.requestsPerSecond;
    report.scheduledRequests = Math.floor((request.durationMs / 1_000) * request.requestsPerSecond);
    const start = performance.now() + (request.startAtEpochMs - Date.now()) + request.phase * intervalMs;

    let next = 0;
    while (next < report.scheduledRequests && !report.overloaded) {
      const now = performance.now();
      const dueAt = start + next * intervalMs;
      if (dueAt > now) {
        await sleep(dueAt - now);
        continue;
      }

      // Every request due by now goes out before the event loop runs again.
      while (next < report.scheduledRequests && start + next * intervalMs <= now) {
        if (this.#outstanding >= this.#config.maxOutstandingRequests) {
          report.overloaded = true;
          break;
        }
        const due = start + next * intervalMs;
        recordMs(sendLag, performance.now() - due);
        completions.push(this.#sendScheduled(due, request, report, latency));
        next++;
      }
      await yieldToEventLoop();
    }
    report.sentRequests = next;

    await Promise.race([Promise.all(completions), sleep(this.#config.callTimeoutMs + RESPONSE_MARGIN_MS)]);
    report.sendLagP99Ms = sendLag.getValueAtPercentile(99) / 1_000;
    report.sendLagMaxMs = sendLag.maxValue / 1_000;
    report.latency = encodeHistogram(latency);
    report.pauses = this.#pauses.take();
    return report;
  }

  /** Up to `max` profiles this writer got an event stored for, drawn at random. */
  sampleProfiles(max: number): ProfileRef[] {
    const stored: number[] = [];
    this.#acceptedPerProfile.forEach((count, slot) => {
      if (count > 0) stored.push(slot);
    });
    for (let i = stored.length - 1; i > 0; i--) {
      const j = Math.floor(this.#random() * (i + 1));
      [stored[i], stored[j]] = [stored[j], stored[i]];
    }
    return stored.slice(0, max).map((slot) => this.#workload!.profileOf(slot));
  }

  /** Resends the requests whose outcome is unknown, then returns the accepted counts per profile. */
  async finish(): Promise<OpenLoopReport> {
    let unresolvedEvents = 0;
    const resentRequests = this.#uncertain.length;
    for (const write of this.#uncertain.splice(0)) {
      if (!(await this.#resend(write))) unresolvedEvents += write.slots.length;
    }

    this.#ingest?.close();
    this.#query?.close();
    this.#decide?.close();
    const cpu = process.cpuUsage();
    const counts = this.#workload === null ? { firstCustomer: 0, acceptedPerCustomer: new Int32Array(0), otherProfiles: { profiles: [], accepted: new Int32Array(0) } } : splitAcceptedCounts(this.#workload, this.#acceptedPerProfile);
    const decisions = this.#decide === null ? null : this.#decisions.tally();
    return { ...counts, fatalError: null, unresolvedEvents, resentRequests, eventSizes: { protobufBytes: this.#protobufBytes }, cpuMs: (cpu.user + cpu.system) / 1_000, decisions };
  }

  async #sendScheduled(dueAt: number, request: StepRequest, report: StepReport, latency: Histogram): Promise<void> {
    this.#outstanding++;
    try {
      if (this.#config.role === 'reader') await this.#sendQuery(dueAt, request.profiles ?? [], report, latency);
      else if (this.#config.role === 'decider') await this.#sendDecide(dueAt, request.profiles ?? [], report, latency);
      else await this.#sendWrite(dueAt, report, latency);
    } finally {
      this.#outstanding--;
      report.completedRequests++;
      report.lastResponseEpochMs = Math.max(report.lastResponseEpochMs, Date.now());
    }
  }

  async #sendWrite(dueAt: number, report: StepReport, latency: Histogram): Promise<void> {
    const write = this.#buildRequest();
    const events = write.slots.length;
    try {
      const ack = await this.#ingest!.send(write.bytes);
      recordMs(latency, performance.now() - dueAt, events);
      report.acknowledgedEvents += events;
      report.acceptedEvents += ack.accepted;
      report.rejectedEvents += ack.rejected;
      this.#countStored(write, ack);
    } catch (error) {
      if (this.#onWriteError(write, error as ServiceError)) {
        report.resourceExhaustedRequests++;
        report.resourceExhaustedEvents += events;
      } else {
        report.otherErrorRequests++;
        report.otherErrorEvents += events;
      }
      report.firstError ??= describeError(error);
    }
  }

  async #sendQuery(dueAt: number, profiles: ProfileRef[], report: StepReport, latency: Histogram): Promise<void> {
    if (profiles.length === 0) throw new Error('a reader step needs "profiles" to query');
    const profile = profiles[Math.floor(this.#random() * profiles.length)];
    try {
      await this.#query!.send(profile);
      recordMs(latency, performance.now() - dueAt);
      report.acknowledgedEvents++;
    } catch (error) {
      if ((error as ServiceError).code === status.RESOURCE_EXHAUSTED) report.resourceExhaustedRequests++;
      else report.otherErrorRequests++;
      report.firstError ??= `${profile.type} ${profile.value}: ${describeError(error)}`;
    }
  }

  async #sendDecide(dueAt: number, profiles: ProfileRef[], report: StepReport, latency: Histogram): Promise<void> {
    if (profiles.length === 0) throw new Error('a decider step needs "profiles" to query');
    const profile = profiles[Math.floor(this.#random() * profiles.length)];
    const channel = this.#pick(DECIDE_CHANNELS);
    const context = { page: this.#pick(PAGES), referrer: this.#pick(REFERRERS), device: this.#pick(DEVICES) };
    try {
      const outcome = await this.#decide!.send(profile, channel, context);
      const latencyMs = performance.now() - dueAt;
      recordMs(latency, latencyMs);
      if (latencyMs > SLOW_CALL_MS && report.slowCalls.length < MAX_SLOW_CALLS) report.slowCalls.push({ dueEpochMs: performance.timeOrigin + dueAt, latencyMs });
      report.acknowledgedEvents++;
      this.#decisions.record(`${profile.type}:${profile.value}`, channel, outcome);
    } catch (error) {
      if ((error as ServiceError).code === status.NOT_FOUND) this.#decisions.recordNotFound();
      if ((error as ServiceError).code === status.RESOURCE_EXHAUSTED) report.resourceExhaustedRequests++;
      else report.otherErrorRequests++;
      report.firstError ??= `${profile.type} ${profile.value}: ${describeError(error)}`;
    }
  }

  #pick<T>(values: readonly T[]): T {
    return values[Math.floor(this.#random() * values.length)];
  }

  #buildRequest(): WriteRequest {
    const size = this.#config.driver === 'unary' ? 1 : this.#config.batchSize;
    const slots = new Int32Array(size);
    this.#encoder.begin();
    const count = this.#workload!.fill(this.#encoder, slots, size);
    const bytes = this.#encoder.finish(this.#config.driver === 'unary' ? undefined : `${this.#config.generatorId}-${this.#nextBatch++}`);
    if (this.#protobufBytes === 0) this.#protobufBytes = Math.round(bytes.byteLength / count);
    return { bytes, slots: slots.subarray(0, count), resent: false };
  }

  /**
   * Counts a failed write. RESOURCE_EXHAUSTED on a unary call stored nothing. On a stream,
   * and for any other error, the request may have been stored, so 'finish' sends it again.
   * Returns whether the node was overloaded.
   */
  #onWriteError(write: WriteRequest, error: ServiceError): boolean {
    const overloaded = error.code === status.RESOURCE_EXHAUSTED;
    if (!overloaded || this.#config.driver === 'stream') this.#uncertain.push(write);
    return overloaded;
  }

  /**
   * Counts the events a request stored. For a request sent before without a response, a
   * DUPLICATE also counts, because only that earlier attempt can have stored the event.
   */
  #countStored(write: WriteRequest, ack: BatchAck): void {
    const stored = write.resent ? ack.accepted + ack.duplicates : ack.accepted;
    if (stored === write.slots.length) {
      for (const slot of write.slots) this.#acceptedPerProfile[slot]++;
      return;
    }
    if (stored === 0) return;

    for (const index of storedIndexes(ack, write.resent).indexes) this.#acceptedPerProfile[write.slots[index]]++;
  }

  async #resend(write: WriteRequest): Promise<boolean> {
    write.resent = true;
    for (let attempt = 0; attempt < RESEND_ATTEMPTS; attempt++) {
      try {
        this.#countStored(write, await this.#ingest!.send(write.bytes));
        return true;
      } catch {
        await sleep(200 * (attempt + 1));
      }
    }
    return false;
  }
}

function emptyStepReport(): StepReport {
  return {
    scheduledRequests: 0,
    sentRequests: 0,
    completedRequests: 0,
    acknowledgedEvents: 0,
    acceptedEvents: 0,
    rejectedEvents: 0,
    resourceExhaustedRequests: 0,
    resourceExhaustedEvents: 0,
    otherErrorRequests: 0,
    otherErrorEvents: 0,
    firstError: null,
    overloaded: false,
    sendLagP99Ms: 0,
    sendLagMaxMs: 0,
    lastResponseEpochMs: 0,
    latency: '',
    pauses: null,
    slowCalls: [],
  };
}

function describeError(error: unknown): string {
  const serviceError = error as Partial<ServiceError>;
  if (typeof serviceError.code === 'number') return `${status[serviceError.code] ?? serviceError.code}: ${serviceError.details}`;
  return error instanceof Error ? error.message : String(error);
}

let generator: OpenLoopGenerator | null = null;

function requireGenerator(): OpenLoopGenerator {
  if (generator === null) throw new Error('open-loop generator has not been started; send "start" first');
  return generator;
}

serveIpc(
  {
    start: async (config: OpenLoopConfig) => {
      const workload = config.workload === null ? null : await loadWorkload(config.workload, config.seed);
      generator = new OpenLoopGenerator(config, workload);
      return null;
    },
    closedLoop: (request: ClosedLoopRequest) => requireGenerator().closedLoop(request),
    step: (request: StepRequest) => requireGenerator().step(request),
    sampleProfiles: (max: number) => requireGenerator().sampleProfiles(max),
    finish: () => requireGenerator().finish(),
  },
  () => process.exit(1),
);

process.on('SIGTERM', () => process.exit(0));
