/**
 * Probe process, forked by the harness for the cluster scenario. For each probe customer
 * (one per shard) it runs write+read cycles one after another: Ingest one track event, then
 * GetProfile, which in cluster mode waits until the owner has applied every event the
 * stream stored before the query. A cycle succeeds when the profile's eventCount equals
 * the events this probe got acknowledged for the customer. After each cycle the probe
 * waits `intervalMs`.
 *
 * A write that fails is sent again in the next cycle with the same messageId. ACCEPTED
 * and DUPLICATE both mean the event is stored once, because the messageId is new to the
 * cluster unless an earlier, unacknowledged attempt stored it.
 *
 * Every cycle is recorded with epoch-millisecond times, so the harness can compute
 * latencies and pauses around the moments it stopped a node.
 *
 * Requests: 'start' (ProbeConfig), 'pause', 'resume', 'firstSuccesses' and 'stop'. After
 * 'pause' no cycle starts, and it resolves once no cycle runs. 'firstSuccesses' returns
 * per customer the end of the first successful cycle that started at or after a time.
 * 'stop' returns the ProbeReport.
 */
import { status } from '@grpc/grpc-js';
import { callUnary, createIngestClient, createProfileClient, isServiceError, statusName, writeKeyMetadata } from '../cli/client.js';
import { Event } from '../proto/gen/rtcdp/v1/event.js';
import { EventStatus, type IngestServiceClient } from '../proto/gen/rtcdp/v1/ingest.js';
import type { ProfileServiceClient } from '../proto/gen/rtcdp/v1/profile.js';
import { serveIpc } from './ipc.js';
import { sleep } from './report.js';

export interface ProbeCustomer {
  userId: string;
  shard: number;
}

export interface ProbeConfig {
  /** gRPC addresses. Customer i starts at addresses[i % length] and moves to the next after an UNAVAILABLE, CANCELLED or DEADLINE_EXCEEDED call. */
  addresses: string[];
  customers: ProbeCustomer[];
  /** Wait between the end of one cycle and the start of the next, per customer, in milliseconds. */
  intervalMs: number;
  /** Deadline of each gRPC call, in milliseconds. */
  callTimeoutMs: number;
  /** Makes messageIds unique across runs. */
  runTag: string;
  /** No cycle starts after this long, even without a 'stop' request, in milliseconds. */
  maxRunMs: number;
}

export type ProbeOutcome = 'ok' | 'write-failed' | 'read-failed' | 'stale' | 'excess' | 'rejected';

export interface ProbeCycle {
  /** Index into ProbeConfig.customers. */
  customer: number;
  /** Milliseconds since the Unix epoch. */
  startMs: number;
  /** When the write was acknowledged, or null when it failed. */
  ackMs: number | null;
  endMs: number;
  outcome: ProbeOutcome;
}

export interface ProbeReport {
  cycles: ProbeCycle[];
  /** Events stored per customer, as acknowledged to the probe. */
  storedEvents: number[];
  /** Failed cycles by outcome and gRPC status, for example "read-failed UNAVAILABLE". */
  failures: Record<string, number>;
  /** The first failure messages, at most 10. */
  firstFailures: string[];
  /** eventCount read for each customer after the probing stopped, -1 when not found, null when the read failed. */
  finalEventCounts: Array<number | null>;
}

/** Outcomes after which a customer moves to the next address. */
const SWITCH_CODES = new Set<number>([status.UNAVAILABLE, status.CANCELLED, status.DEADLINE_EXCEEDED]);
const MAX_FAILURE_MESSAGES = 10;
/** Maximum wait of 'pause' and 'stop' for running cycles, beyond the call deadlines. */
const SETTLE_MARGIN_MS = 5_000;

interface CustomerState {
  userId: string;
  stored: number;
  /** messageId of a write that has not been acknowledged yet. */
  pendingMessageId: string | null;
  nextMessage: number;
  addressIndex: number;
  /** Set after a REJECTED write, which a valid probe event never gets. The customer then stops probing. */
  halted: boolean;
}

class Probe {
  readonly #config: ProbeConfig;
  readonly #ingest: IngestServiceClient[];
  readonly #profiles: ProfileServiceClient[];
  readonly #customers: CustomerState[];
  readonly #cycles: ProbeCycle[] = [];
  readonly #failures: Record<string, number> = {};
  readonly #failureMessages: string[] = [];
  readonly #deadline: number;
  #loops: Promise<void>[] = [];
  #running = 0;
  #paused = false;
  #stopped = false;
  #resume: () => void = () => {};
  #resumed: Promise<void> = Promise.resolve();

  constructor(config: ProbeConfig) {
    if (config.addresses.length === 0) throw new Error('probe config lists no address. Pass at least one in "addresses".');
    this.#config = config;
    this.#ingest = config.addresses.map((address) => createIngestClient(address));
    this.#profiles = config.addresses.map((address) => createProfileClient(address));
    this.#customers = config.customers.map((customer, index) => ({
      userId: customer.userId,
      stored: 0,
      pendingMessageId: null,
      nextMessage: 0,
      addressIndex: index % config.addresses.length,
      halted: false,
    }));
    this.#deadline = Date.now() + config.maxRunMs;
  }

  start(): void {
    this.#loops = this.#customers.map((_, index) => this.#probeLoop(index));
  }

  async pause(): Promise<void> {
    if (!this.#paused) {
      this.#paused = true;
      this.#resumed = new Promise((resolve) => (this.#resume = resolve));
    }
    await this.#waitIdle();
  }

  resume(): void {
    this.#paused = false;
    this.#resume();
  }

  /** Per customer: the end of the first successful cycle that started at or after `sinceMs`, or null. */
  firstSuccesses(sinceMs: number): Array<number | null> {
    const found: Array<number | null> = this.#customers.map(() => null);
    for (const cycle of this.#cycles) {
      if (cycle.outcome === 'ok' && cycle.startMs >= sinceMs && found[cycle.customer] === null) found[cycle.customer] = cycle.endMs;
    }
    return found;
  }

  async stop(): Promise<ProbeReport> {
    this.#stopped = true;
    this.resume();
    await Promise.race([Promise.all(this.#loops), sleep(this.#config.callTimeoutMs * 2 + SETTLE_MARGIN_MS)]);

    const finalEventCounts = await Promise.all(this.#customers.map((_, index) => this.#readEventCount(index).catch(() => null)));
    for (const client of [...this.#ingest, ...this.#profiles]) client.close();

    return {
      cycles: this.#cycles,
      storedEvents: this.#customers.map((customer) => customer.stored),
      failures: this.#failures,
      firstFailures: this.#failureMessages,
      finalEventCounts,
    };
  }

  async #waitIdle(): Promise<void> {
    const deadline = Date.now() + this.#config.callTimeoutMs * 2 + SETTLE_MARGIN_MS;
    while (this.#running > 0 && Date.now() < deadline) await sleep(5);
    if (this.#running > 0) throw new Error(`pause timed out: ${this.#running} probe cycles were still running ${this.#config.callTimeoutMs * 2 + SETTLE_MARGIN_MS} ms after the request`);
  }

  async #probeLoop(index: number): Promise<void> {
    const customer = this.#customers[index];
    while (!this.#stopped && !customer.halted && Date.now() < this.#deadline) {
      if (this.#paused) {
        await this.#resumed;
        continue;
      }

      this.#running++;
      try {
        this.#cycles.push(await this.#cycle(index));
      } finally {
        this.#running--;
      }
      await sleep(this.#config.intervalMs);
    }
  }

  /** One write+read for customer `index`. */
  async #cycle(index: number): Promise<ProbeCycle> {
    const customer = this.#customers[index];
    const startMs = epochNow();
    const done = (ackMs: number | null, outcome: ProbeOutcome): ProbeCycle => ({ customer: index, startMs, ackMs, endMs: epochNow(), outcome });

    customer.pendingMessageId ??= `${this.#config.runTag}-${customer.userId}-${customer.nextMessage++}`;
    let result;
    try {
      const response = await callUnary(this.#ingest[customer.addressIndex].ingest.bind(this.#ingest[customer.addressIndex]), { event: probeEvent(customer) }, writeKeyMetadata(undefined), this.#config.callTimeoutMs);
      result = response.result;
    } catch (error) {
      this.#recordFailure('write-failed', error, customer);
      return done(null, 'write-failed');
    }

    if (result?.status !== EventStatus.EVENT_STATUS_ACCEPTED && result?.status !== EventStatus.EVENT_STATUS_DUPLICATE) {
      this.#recordFailure('rejected', new Error(`${result?.code} ${result?.field}: ${result?.message}`), customer);
      customer.halted = true;
      return done(null, 'rejected');
    }
    customer.stored++;
    customer.pendingMessageId = null;
    const ackMs = epochNow();

    let eventCount: number;
    try {
      eventCount = await this.#readEventCount(index);
    } catch (error) {
      this.#recordFailure('read-failed', error, customer);
      return done(ackMs, 'read-failed');
    }

    if (eventCount === customer.stored) return done(ackMs, 'ok');
    const outcome = eventCount < customer.stored ? 'stale' : 'excess';
    this.#recordFailure(outcome, new Error(`eventCount ${eventCount}, expected ${customer.stored}`), customer);
    return done(ackMs, outcome);
  }

  /** eventCount of customer `index`, -1 when the profile does not exist. */
  async #readEventCount(index: number): Promise<number> {
    const customer = this.#customers[index];
    const client = this.#profiles[customer.addressIndex];
    try {
      const response = await callUnary(client.getProfile.bind(client), { identifier: { type: 'user_id', value: customer.userId } }, writeKeyMetadata(undefined), this.#config.callTimeoutMs);
      return response.profile?.eventCount ?? -1;
    } catch (error) {
      if (isServiceError(error) && error.code === status.NOT_FOUND) return -1;
      throw error;
    }
  }

  #recordFailure(outcome: ProbeOutcome, error: unknown, customer: CustomerState): void {
    const code = isServiceError(error) ? statusName(error.code) : '';
    const key = code === '' ? outcome : `${outcome} ${code}`;
    this.#failures[key] = (this.#failures[key] ?? 0) + 1;

    if (this.#failureMessages.length < MAX_FAILURE_MESSAGES) {
      this.#failureMessages.push(`${new Date().toISOString()} ${customer.userId} via ${this.#config.addresses[customer.addressIndex]}: ${key}: ${(error as Error).message}`);
    }
    if (isServiceError(error) && SWITCH_CODES.has(error.code)) {
      customer.addressIndex = (customer.addressIndex + 1) % this.#config.addresses.length;
    }
  }
}

function probeEvent(customer: CustomerState): Event {
  return Event.fromPartial({
    type: 'track',
    event: 'Probe Sent',
    messageId: customer.pendingMessageId ?? undefined,
    timestamp: new Date().toISOString(),
    userId: customer.userId,
  });
}

function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

let probe: Probe | null = null;

function requireProbe(): Probe {
  if (probe === null) throw new Error('probe has not been started. Send "start" first.');
  return probe;
}

serveIpc(
  {
    start: (config: ProbeConfig) => {
      probe = new Probe(config);
      probe.start();
      return null;
    },
    pause: async () => {
      await requireProbe().pause();
      return null;
    },
    resume: () => {
      requireProbe().resume();
      return null;
    },
    firstSuccesses: (sinceMs: number) => requireProbe().firstSuccesses(sinceMs),
    stop: () => requireProbe().stop(),
  },
  () => process.exit(1),
);

process.on('SIGTERM', () => process.exit(0));
