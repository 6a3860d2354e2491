/**
 * A load driver and a count check for cluster tests that run nodes as child processes.
 *
 * The driver sends track events for a fixed set of customers over gRPC, each batch to a
 * random running node. It retries a batch with the same messageIds after a retryable
 * failure, so an event stored by an attempt whose reply was lost comes back as DUPLICATE,
 * which counts as acknowledged. Per customer it records the set of acknowledged
 * messageIds, which is exactly the set of events the cluster must apply once each.
 */
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { callUnary, createIngestClient, createProfileClient, isServiceError, statusName } from '../../cli/client.js';
import { rawEventToProto } from '../../profiles/segment-json.js';
import type { Event } from '../../proto/gen/rtcdp/v1/event.js';
import { EventStatus, type IngestServiceClient } from '../../proto/gen/rtcdp/v1/ingest.js';
import type { ProfileServiceClient } from '../../proto/gen/rtcdp/v1/profile.js';

/** gRPC codes after which the same batch is sent again: the node is gone, busy, or the reply was lost. */
const RETRYABLE_CODES = new Set<number>([status.UNAVAILABLE, status.RESOURCE_EXHAUSTED, status.DEADLINE_EXCEEDED, status.CANCELLED]);
const RETRY_DELAY_MS = 100;
const NO_TARGET_DELAY_MS = 100;

/** gRPC clients per node address, created on first use. */
export class ClusterClients {
  readonly #ingest = new Map<string, IngestServiceClient>();
  readonly #profiles = new Map<string, ProfileServiceClient>();

  ingest(address: string): IngestServiceClient {
    let client = this.#ingest.get(address);
    if (client === undefined) {
      client = createIngestClient(address);
      this.#ingest.set(address, client);
    }
    return client;
  }

  profiles(address: string): ProfileServiceClient {
    let client = this.#profiles.get(address);
    if (client === undefined) {
      client = createProfileClient(address);
      this.#profiles.set(address, client);
    }
    return client;
  }

  close(): void {
    for (const client of [...this.#ingest.values(), ...this.#profiles.values()]) client.close();
    this.#ingest.clear();
    this.#profiles.clear();
  }
}

export interface ClusterLoadOptions {
  /** Number of customers; their user ids are `c0` to `c<customers - 1>`. */
  customers: number;
  /** gRPC addresses of the nodes that may take calls now; the driver picks one at random per attempt. */
  targets: () => string[];
  clients: ClusterClients;
  /** Prefix of every messageId, unique per test. */
  prefix: string;
  /** Events per batch. Default 100. */
  batchSize?: number;
  /** Batches in flight at once while the load runs. Default 4. */
  senders?: number;
  /** Deadline of one IngestBatch call. Default 5,000 ms. */
  callTimeoutMs?: number;
  /** How long one batch is retried before the driver gives up on it and records a failure. Default 120,000 ms. */
  batchTimeoutMs?: number;
}

export interface LoadStats {
  batches: number;
  /** Events acknowledged as ACCEPTED. */
  accepted: number;
  /** Events acknowledged as DUPLICATE: an earlier attempt of the same batch stored them. */
  duplicates: number;
  /** Retried attempts by gRPC status name. */
  retries: Record<string, number>;
}

export class ClusterLoad {
  readonly options: Required<ClusterLoadOptions>;
  /** Acknowledged messageIds per user id. */
  readonly acknowledged = new Map<string, Set<string>>();
  /** Why batches or events were not acknowledged; a passing test expects none. */
  readonly failures: string[] = [];
  readonly stats: LoadStats = { batches: 0, accepted: 0, duplicates: 0, retries: {} };
  #nextEvent = 0;
  #stopRequested = false;
  #aborted = false;
  #senders: Promise<void>[] = [];

  constructor(options: ClusterLoadOptions) {
    this.options = { batchSize: 100, senders: 4, callTimeoutMs: 5_000, batchTimeoutMs: 120_000, ...options };
  }

  static userId(customer: number): string {
    return `c${customer}`;
  }

  /** Total number of acknowledged events. */
  get acknowledgedEvents(): number {
    let total = 0;
    for (const ids of this.acknowledged.values()) total += ids.size;
    return total;
  }

  /** Starts sending batches with `senders` concurrent senders until stop(). */
  start(): void {
    this.#stopRequested = false;
    this.#senders = Array.from({ length: this.options.senders }, () => this.#sendUntilStopped());
  }

  /** Stops starting new batches and resolves once every batch in flight is acknowledged or has failed. */
  async stop(): Promise<void> {
    this.#stopRequested = true;
    await Promise.all(this.#senders);
    this.#senders = [];
  }

  /**
   * Stops at once: batches in flight stop retrying, and their events count neither as
   * acknowledged nor as failed. For test teardown, after which no count is checked.
   */
  abort(): void {
    this.#aborted = true;
    this.#stopRequested = true;
  }

  /** Sends `events` events, spread over the customers in turn, with `senders` concurrent senders. */
  async sendEvents(events: number): Promise<void> {
    const last = this.#nextEvent + events;
    const sender = async () => {
      while (this.#nextEvent < last && !this.#aborted) {
        const count = Math.min(this.options.batchSize, last - this.#nextEvent);
        await this.sendBatch(this.#takeEvents(count));
      }
    };
    await Promise.all(Array.from({ length: this.options.senders }, sender));
  }

  /** Sends one event for `userId` and resolves once it is acknowledged; false when the batch failed. */
  async sendOne(userId: string): Promise<boolean> {
    const index = this.#nextEvent++;
    const failuresBefore = this.failures.length;
    await this.sendBatch([this.#event(userId, index)]);
    return this.failures.length === failuresBefore;
  }

  async #sendUntilStopped(): Promise<void> {
    while (!this.#stopRequested) await this.sendBatch(this.#takeEvents(this.options.batchSize));
  }

  #takeEvents(count: number): Event[] {
    const events: Event[] = [];
    for (let i = 0; i < count; i++) {
      const index = this.#nextEvent++;
      events.push(this.#event(ClusterLoad.userId(index % this.options.customers), index));
    }
    return events;
  }

  #event(userId: string, index: number): Event {
    return rawEventToProto({ type: 'track', event: 'Viewed', userId, messageId: `${this.options.prefix}-${index}`, properties: { value: 1 } });
  }

  /** Sends one batch to random running nodes until a response acknowledges it or batchTimeoutMs passes. */
  async sendBatch(events: Event[]): Promise<void> {
    const { targets, clients, callTimeoutMs, batchTimeoutMs } = this.options;
    const deadline = Date.now() + batchTimeoutMs;
    let lastError = 'no running node to send to';

    while (Date.now() < deadline) {
      if (this.#aborted) return;
      const candidates = targets();
      if (candidates.length === 0) {
        await sleep(NO_TARGET_DELAY_MS);
        continue;
      }
      const address = candidates[Math.floor(Math.random() * candidates.length)];
      const client = clients.ingest(address);

      let results;
      try {
        const response = await callUnary(client.ingestBatch.bind(client), { events, batchId: '' }, new Metadata(), callTimeoutMs);
        results = response.results;
      } catch (error) {
        if (!isServiceError(error) || !RETRYABLE_CODES.has(error.code)) {
          this.failures.push(`batch starting with ${events[0].messageId} failed on ${address} without retry: ${describe(error)}`);
          return;
        }
        const code = statusName(error.code);
        this.stats.retries[code] = (this.stats.retries[code] ?? 0) + 1;
        lastError = `${address}: ${describe(error)}`;
        await sleep(RETRY_DELAY_MS);
        continue;
      }

      this.#record(events, results);
      return;
    }
    this.failures.push(`batch starting with ${events[0].messageId} was not acknowledged within ${batchTimeoutMs} ms; last error ${lastError}`);
  }

  #record(events: Event[], results: Array<{ index: number; messageId: string; status: EventStatus; message: string }>): void {
    this.stats.batches += 1;
    if (results.length !== events.length) {
      this.failures.push(`batch starting with ${events[0].messageId} returned ${results.length} results for ${events.length} events`);
    }
    for (const result of results) {
      const event = events[result.index];
      if (event === undefined || event.messageId !== result.messageId) {
        this.failures.push(`result ${result.index} names messageId ${result.messageId}, which is not the event at that index`);
        continue;
      }
      if (result.status === EventStatus.EVENT_STATUS_ACCEPTED) this.stats.accepted += 1;
      else if (result.status === EventStatus.EVENT_STATUS_DUPLICATE) this.stats.duplicates += 1;
      else {
        this.failures.push(`event ${result.messageId} got status ${result.status}: ${result.message}`);
        continue;
      }
      const userId = event.userId;
      let ids = this.acknowledged.get(userId);
      if (ids === undefined) {
        ids = new Set();
        this.acknowledged.set(userId, ids);
      }
      ids.add(result.messageId);
    }
  }
}

export interface CountCheckOptions {
  /** Concurrent GetProfile calls. Default 16. */
  concurrency?: number;
  /** Deadline of one GetProfile call. Default 15,000 ms. */
  callTimeoutMs?: number;
  /** How long the whole check may retry calls that fail while shards settle. Default 120,000 ms. */
  timeoutMs?: number;
  /** How many times a customer whose count is wrong is read again before it counts as a mismatch. Default 3. */
  rereads?: number;
}

export interface CountCheckResult {
  /** Customers checked: every customer of the load and every other user id with acknowledged events. */
  customers: number;
  /** Customers whose eventCount still differed from their acknowledged events after every reread. */
  mismatches: string[];
  /** Reads that returned a wrong count, including those that a reread found right. */
  wrongReads: string[];
  /** Customers whose profile no call returned before the deadline. */
  unanswered: string[];
  /** Retried GetProfile calls by gRPC status name. */
  retries: Record<string, number>;
  elapsedMs: number;
}

/**
 * Reads every customer's profile, and that of every other user id the load acknowledged
 * events for, from random running nodes and compares its eventCount
 * with the number of distinct acknowledged messageIds (a customer with none must be
 * NOT_FOUND). Calls failing with UNAVAILABLE or DEADLINE_EXCEEDED, as they do while shards
 * move, are retried until `timeoutMs`.
 */
export async function checkCounts(load: ClusterLoad, targets: () => string[], clients: ClusterClients, options: CountCheckOptions = {}): Promise<CountCheckResult> {
  const { concurrency = 16, callTimeoutMs = 15_000, timeoutMs = 120_000, rereads = 3 } = options;
  const startedAt = Date.now();
  const deadline = startedAt + timeoutMs;
  const userIds = Array.from({ length: load.options.customers }, (_, customer) => ClusterLoad.userId(customer));
  const inRange = new Set(userIds);
  userIds.push(...[...load.acknowledged.keys()].filter((userId) => !inRange.has(userId)));
  const result: CountCheckResult = { customers: userIds.length, mismatches: [], wrongReads: [], unanswered: [], retries: {}, elapsedMs: 0 };
  let next = 0;

  const checkOne = async (userId: string): Promise<void> => {
    const expected = load.acknowledged.get(userId)?.size ?? 0;
    let wrong = 0;
    while (Date.now() < deadline) {
      const count = await readEventCount(userId, targets, clients, callTimeoutMs, result.retries);
      if (count === null) continue;
      if (count === expected) return;

      result.wrongReads.push(`${userId}: eventCount ${count}, ${expected} acknowledged`);
      wrong += 1;
      if (wrong > rereads) {
        result.mismatches.push(`${userId}: eventCount ${count}, ${expected} acknowledged`);
        return;
      }
      await sleep(500);
    }
    result.unanswered.push(userId);
  };

  const checker = async () => {
    while (next < userIds.length) await checkOne(userIds[next++]);
  };
  await Promise.all(Array.from({ length: concurrency }, checker));
  result.elapsedMs = Date.now() - startedAt;
  return result;
}

/**
 * Reads one customer's eventCount from a random running node: 0 when NOT_FOUND, null after
 * a retryable failure (counted in `retries`). Throws on any other failure.
 */
export async function readEventCount(userId: string, targets: () => string[], clients: ClusterClients, callTimeoutMs: number, retries: Record<string, number> = {}): Promise<number | null> {
  const candidates = targets();
  if (candidates.length === 0) {
    await sleep(NO_TARGET_DELAY_MS);
    return null;
  }
  const address = candidates[Math.floor(Math.random() * candidates.length)];
  const client = clients.profiles(address);

  try {
    const response = await callUnary(client.getProfile.bind(client), { identifier: { type: 'user_id', value: userId } }, new Metadata(), callTimeoutMs);
    return response.profile?.eventCount ?? 0;
  } catch (error) {
    if (isServiceError(error) && error.code === status.NOT_FOUND) return 0;
    if (!isServiceError(error) || !RETRYABLE_CODES.has(error.code)) throw new Error(`GetProfile of ${userId} on ${address} failed: ${describe(error)}`, { cause: error });
    const code = statusName(error.code);
    retries[code] = (retries[code] ?? 0) + 1;
    await sleep(RETRY_DELAY_MS);
    return null;
  }
}

function describe(error: unknown): string {
  if (isServiceError(error)) return `${statusName(error.code)}: ${(error as ServiceError).details}`;
  return String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
