/**
 * Sends the events of source files over IngestService.IngestStream: batches in, one
 * response per batch out, with a bounded number of batches awaiting a response.
 *
 * A stream that fails with RESOURCE_EXHAUSTED or UNAVAILABLE is opened again after a
 * backoff, and every unacknowledged batch is sent again. Resending is safe because the
 * server deduplicates events by messageId, so an event stored before the failure comes
 * back as a duplicate.
 */
import { randomUUID } from 'node:crypto';
import { type ClientDuplexStream, type ServiceError, status } from '@grpc/grpc-js';
import { MultiBar, type SingleBar } from 'cli-progress';
import { AbortedError, RtcdpError, throwIfAborted } from '../common/errors.js';
import type { RawEvent } from '../profiles/event.js';
import { rawEventToProto } from '../profiles/segment-json.js';
import type { Event } from '../proto/gen/rtcdp/v1/event.js';
import {
  EventStatus,
  type IngestBatchRequest,
  type IngestBatchResponse,
  type IngestServiceClient,
} from '../proto/gen/rtcdp/v1/ingest.js';
import { createIngestClient, describeServiceError, writeKeyMetadata } from './client.js';
import type { Source } from './sources/index.js';

export const DEFAULT_BATCH_SIZE = 500;

/**
 * Maximum JSON size of the events of one batch, in bytes. The server's default limit is
 * 512,000 bytes of normalised event JSON (`DEFAULT_EVENT_LIMITS` in profiles/validation.ts),
 * and 450 KB leaves room for the fields that normalisation adds, such as receivedAt.
 */
export const DEFAULT_MAX_BATCH_BYTES = 450_000;

export const DEFAULT_CONCURRENCY = 8;

/** Maximum number of stream openings in a row without a response in between, the first one included. */
export const DEFAULT_MAX_ATTEMPTS = 10;

/** Time without any response, while batches are awaiting one, after which the stream is opened again. */
export const DEFAULT_RESPONSE_TIMEOUT_MS = 60_000;

const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5_000;
const MAX_KEPT_REJECTIONS = 10;
const PROGRESS_INTERVAL_MS = 2_000;
const FINISH_TIMEOUT_MS = 5_000;
/** Deeper events are client errors: 32 JSON levels are 64 protobuf levels, below the decoder's 100. */
const MAX_SENDABLE_DEPTH = 32;
/** grpc-js's default receive limit of 4 MiB, less room for the rest of the request. */
const MAX_SENDABLE_EVENT_BYTES = 4 * 1024 * 1024 - 64 * 1024;
const RETRYABLE_CODES = new Set<number>([status.RESOURCE_EXHAUSTED, status.UNAVAILABLE]);

export interface SendOptions {
  /** HOST:PORT of an rtcdp node. */
  server: string;
  /** Write key that selects the workspace. Without one, a dev-mode server uses "default". */
  writeKey?: string;
  /** Maximum events per batch. */
  batchSize?: number;
  /** Maximum JSON bytes of the events of one batch. A larger single event is sent alone. */
  maxBatchBytes?: number;
  /** Maximum batches sent and not yet acknowledged. */
  concurrency?: number;
  maxAttempts?: number;
  responseTimeoutMs?: number;
  /** "auto" shows a progress bar when stderr is a TTY and a progress line every 2 s otherwise. */
  progress?: 'auto' | 'off';
  /** Receives one-line notices, such as reconnections. Defaults to stderr. */
  notice?: (line: string) => void;
  signal?: AbortSignal;
}

/** An event that was not stored: rejected by the server, or unreadable on the client. */
export interface Rejection {
  file: string;
  /** 1-based line of the event in its file. */
  line: number;
  code: string;
  field: string;
  message: string;
}

export interface SendSummary {
  /** Events sent to the server, each counted once however often it was resent. */
  sent: number;
  accepted: number;
  duplicates: number;
  rejected: number;
  /** Lines or rows that never became an event, such as invalid JSON. */
  clientErrors: number;
  /** The first rejections and client errors found, at most 10, in file order. */
  firstRejections: Rejection[];
  elapsedMs: number;
  /** An identifier of an acknowledged event, a user id when there is one, for example queries. */
  exampleIdentifier?: { type: 'user_id' | 'anonymous_id'; value: string };
}

/** The stream failed in a way that a retry did not fix, or cannot fix. */
export class SendError extends RtcdpError {
  readonly code = 'SEND_FAILED';
}

interface ResolvedOptions extends Required<Omit<SendOptions, 'writeKey' | 'signal'>> {
  writeKey?: string;
  signal?: AbortSignal;
}

interface Batch {
  request: IngestBatchRequest;
  /** File and line of each event, by index in the batch. */
  origins: Array<{ file: string; line: number }>;
  exampleIdentifier?: SendSummary['exampleIdentifier'];
}

/**
 * Sends every event of `sources`, in order, and returns the tallies once every batch is
 * acknowledged. Throws SendError when the stream fails for good, and AbortedError when
 * `options.signal` aborts.
 */
export async function sendSources(sources: readonly Source[], options: SendOptions): Promise<SendSummary> {
  const resolved = resolveOptions(options);
  const tally = new Tally(sources.map((source) => source.file));
  const progress = await SendProgress.start(sources, resolved, tally);
  const client = createIngestClient(resolved.server);
  const streamWindow = new StreamWindow(client, resolved, progress.notice, (batch, response) => {
    tally.addResponse(batch, response);
    progress.update();
  });

  try {
    await sendAllBatches(sources, resolved, streamWindow, tally);
    await streamWindow.finish();
    return tally.summary();
  } catch (error) {
    throw withAcknowledgedCount(error, tally);
  } finally {
    streamWindow.close();
    client.close();
    progress.stop();
  }
}

function resolveOptions(options: SendOptions): ResolvedOptions {
  return {
    server: options.server,
    writeKey: options.writeKey,
    batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE,
    maxBatchBytes: options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES,
    concurrency: options.concurrency ?? DEFAULT_CONCURRENCY,
    maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    responseTimeoutMs: options.responseTimeoutMs ?? DEFAULT_RESPONSE_TIMEOUT_MS,
    progress: options.progress ?? 'auto',
    notice: options.notice ?? ((line) => process.stderr.write(`${line}\n`)),
    signal: options.signal,
  };
}

async function sendAllBatches(
  sources: readonly Source[],
  options: ResolvedOptions,
  streamWindow: StreamWindow,
  tally: Tally,
): Promise<void> {
  const builder = new BatchBuilder(options.batchSize, options.maxBatchBytes);

  const sendBatch = async (batch: Batch | undefined) => {
    if (batch !== undefined) {
      await streamWindow.send(batch);
      tally.sent += batch.request.events.length;
    }
  };

  for (const source of sources) {
    for await (const item of source.items()) {
      // A file of unreadable lines never waits on the stream, so the abort is checked here too.
      throwIfAborted(options.signal, 'send');
      if (item.kind === 'error') {
        const { line, code, field, message } = item;
        tally.addClientError({ file: source.file, line, code, field, message });
        continue;
      }

      const origin = { file: source.file, line: item.line };
      const jsonBytes = measureSendable(item.event, origin, tally);
      const event = jsonBytes === undefined ? undefined : toProto(item.event, source.file, item.line, tally);
      if (event !== undefined) {
        await sendBatch(builder.add(event, jsonBytes!, origin));
      }
    }
  }

  await sendBatch(builder.take());
}

/**
 * Returns the event's size in bytes of JSON, or records a client error and returns undefined
 * for an event no server could take. Sent anyway, such an event would fail its whole batch
 * or the whole send. A request over grpc-js's 4 MiB receive limit fails with
 * RESOURCE_EXHAUSTED. Nesting past the protobuf decoder's 100 levels fails the request, and
 * each JSON object level is two protobuf levels (Struct and Value).
 */
function measureSendable(raw: RawEvent, origin: { file: string; line: number }, tally: Tally): number | undefined {
  if (exceedsDepth(raw, MAX_SENDABLE_DEPTH)) {
    const message = `event is nested more than ${MAX_SENDABLE_DEPTH} levels deep; rtcdp accepts at most 10 levels by default`;
    tally.addClientError({ ...origin, code: 'NESTING_TOO_DEEP', field: '', message });
    return undefined;
  }

  const bytes = Buffer.byteLength(JSON.stringify(raw));
  if (bytes > MAX_SENDABLE_EVENT_BYTES) {
    const message = `event is ${bytes} bytes as JSON, over the ${MAX_SENDABLE_EVENT_BYTES} bytes one request can carry; rtcdp accepts at most 32 KiB per event by default`;
    tally.addClientError({ ...origin, code: 'EVENT_TOO_LARGE', field: '', message });
    return undefined;
  }
  return bytes;
}

/** Checks whether objects and arrays nest deeper than `maxDepth` levels, looking no deeper than that. */
function exceedsDepth(value: unknown, maxDepth: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (maxDepth === 0) return true;
  for (const child of Object.values(value)) if (exceedsDepth(child, maxDepth - 1)) return true;
  return false;
}

function toProto(raw: RawEvent, file: string, line: number, tally: Tally): Event | undefined {
  try {
    return rawEventToProto(raw);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // rawEventToProto starts its messages with the field at fault: "context must be a JSON object, ...".
    const field = /^([\w.[\]]+) must /.exec(message)?.[1] ?? '';
    tally.addClientError({ file, line, code: 'INVALID_EVENT', field, message });
    return undefined;
  }
}

function withAcknowledgedCount(error: unknown, tally: Tally): unknown {
  if (!(error instanceof SendError)) {
    return error;
  }

  const acknowledged = tally.acknowledged;
  if (acknowledged === 0) {
    return error;
  }

  return new SendError(
    `${error.message} (${acknowledged} of ${tally.sent} events sent were acknowledged. ` +
      'Sending the files again is safe because the server deduplicates by messageId.)',
    { cause: error },
  );
}

/** Groups events into batches of at most `maxEvents` events and `maxBytes` bytes of JSON. */
class BatchBuilder {
  #events: Event[] = [];
  #origins: Batch['origins'] = [];
  #bytes = 0;
  #exampleIdentifier: Batch['exampleIdentifier'];

  constructor(
    private readonly maxEvents: number,
    private readonly maxBytes: number,
  ) {}

  /** Adds an event of `bytes` bytes of JSON. Returns the earlier events as a complete batch when this one does not fit with them. */
  add(event: Event, bytes: number, origin: { file: string; line: number }): Batch | undefined {
    const full = this.#events.length >= this.maxEvents || this.#bytes + bytes > this.maxBytes;
    const complete = full ? this.take() : undefined;

    this.#events.push(event);
    this.#origins.push(origin);
    this.#bytes += bytes;
    this.#noteIdentifier(event);
    return complete;
  }

  take(): Batch | undefined {
    if (this.#events.length === 0) {
      return undefined;
    }

    const batch: Batch = {
      request: { batchId: randomUUID(), events: this.#events },
      origins: this.#origins,
      exampleIdentifier: this.#exampleIdentifier,
    };
    this.#events = [];
    this.#origins = [];
    this.#bytes = 0;
    this.#exampleIdentifier = undefined;
    return batch;
  }

  #noteIdentifier(event: Event): void {
    if (this.#exampleIdentifier?.type === 'user_id') {
      return;
    }

    if (event.userId !== '') {
      this.#exampleIdentifier = { type: 'user_id', value: event.userId };
    } else if (event.anonymousId !== '' && this.#exampleIdentifier === undefined) {
      this.#exampleIdentifier = { type: 'anonymous_id', value: event.anonymousId };
    }
  }
}

/** Counts of a send and the first rejections. */
class Tally {
  sent = 0;
  accepted = 0;
  duplicates = 0;
  rejected = 0;
  clientErrors = 0;
  readonly #rejections: Rejection[] = [];
  readonly #startedAt = Date.now();
  #exampleIdentifier: SendSummary['exampleIdentifier'];

  constructor(private readonly files: readonly string[]) {}

  get acknowledged(): number {
    return this.accepted + this.duplicates + this.rejected;
  }

  addClientError(rejection: Rejection): void {
    this.clientErrors += 1;
    this.#keep(rejection);
  }

  addResponse(batch: Batch, response: IngestBatchResponse): void {
    this.#countStatuses(batch, response);

    for (const result of response.results) {
      if (result.status === EventStatus.EVENT_STATUS_REJECTED) {
        const origin = batch.origins[result.index] ?? { file: '?', line: 0 };
        this.#keep({ ...origin, code: result.code, field: result.field, message: result.message });
      }
    }

    if (this.#exampleIdentifier?.type !== 'user_id' && batch.exampleIdentifier !== undefined) {
      this.#exampleIdentifier = batch.exampleIdentifier;
    }
  }

  summary(): SendSummary {
    const fileOrder = (rejection: Rejection) => this.files.indexOf(rejection.file);
    const inFileOrder = (a: Rejection, b: Rejection) => fileOrder(a) - fileOrder(b) || a.line - b.line;
    return {
      sent: this.sent,
      accepted: this.accepted,
      duplicates: this.duplicates,
      rejected: this.rejected,
      clientErrors: this.clientErrors,
      firstRejections: [...this.#rejections].sort(inFileOrder),
      elapsedMs: Date.now() - this.#startedAt,
      exampleIdentifier: this.#exampleIdentifier,
    };
  }

  /** Counts from the per-event results when there is one per event, otherwise from the response's totals. */
  #countStatuses(batch: Batch, response: IngestBatchResponse): void {
    if (response.results.length !== batch.request.events.length) {
      this.accepted += response.accepted;
      this.duplicates += response.duplicates;
      this.rejected += response.rejected;
      return;
    }

    for (const result of response.results) {
      if (result.status === EventStatus.EVENT_STATUS_ACCEPTED) {
        this.accepted += 1;
      } else if (result.status === EventStatus.EVENT_STATUS_DUPLICATE) {
        this.duplicates += 1;
      } else {
        this.rejected += 1;
      }
    }
  }

  // NOTE: rejections are kept in the order they are found. Server rejections arrive a few
  // batches after the client errors of the same lines, so a later line's client error can
  // take a place that an earlier line's server rejection would have had.
  #keep(rejection: Rejection): void {
    if (this.#rejections.length < MAX_KEPT_REJECTIONS) {
      this.#rejections.push(rejection);
    }
  }
}

/**
 * An IngestStream call with at most `concurrency` batches awaiting a response. It opens
 * the call again after a retryable failure and resends the batches still awaiting one.
 */
class StreamWindow {
  /** Batches written and not yet acknowledged, in the order they were sent. */
  readonly #pending = new Map<string, Batch>();
  #stream: ClientDuplexStream<IngestBatchRequest, IngestBatchResponse> | undefined;
  /** Incremented whenever a call is opened or dropped, so handlers of an old call do nothing. */
  #generation = 0;
  #failedAttempts = 0;
  #finishing = false;
  #serverClosed = false;
  #failure: Error | undefined;
  #lastActivityAt = Date.now();
  #reconnectTimer: NodeJS.Timeout | undefined;
  #waiters: Array<() => void> = [];
  readonly #watchdog: NodeJS.Timeout;
  readonly #onAbort = () => this.#fail(new AbortedError('send'));

  constructor(
    private readonly client: IngestServiceClient,
    private readonly options: ResolvedOptions,
    private readonly notice: (line: string) => void,
    private readonly onResponse: (batch: Batch, response: IngestBatchResponse) => void,
  ) {
    this.#watchdog = setInterval(() => this.#checkResponseTimeout(), 1_000);
    this.#watchdog.unref();
    options.signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (options.signal?.aborted) {
      this.#onAbort();
    }
  }

  /** Waits for room in the window, then writes the batch. The first call opens the stream. */
  async send(batch: Batch): Promise<void> {
    if (this.#generation === 0) {
      this.#open();
    }

    await this.#waitUntil(() => this.#pending.size < this.options.concurrency && this.#stream !== undefined);

    if (this.#pending.size === 0) {
      this.#lastActivityAt = Date.now();
    }
    this.#pending.set(batch.request.batchId, batch);
    // The window bounds what is buffered, so the return value of write() is not needed.
    this.#stream?.write(batch.request);
  }

  /**
   * Waits until every batch is acknowledged, then half-closes the call and waits up to
   * 5 s for the server to end it, so that the call ends with OK instead of CANCELLED.
   */
  async finish(): Promise<void> {
    if (this.#generation === 0) {
      return;
    }

    await this.#waitUntil(() => this.#pending.size === 0 && this.#stream !== undefined);
    this.#finishing = true;
    this.#stream?.end();

    const timeout = new Promise<void>((resolve) => setTimeout(resolve, FINISH_TIMEOUT_MS).unref());
    await Promise.race([this.#waitUntil(() => this.#serverClosed), timeout]);
  }

  close(): void {
    clearInterval(this.#watchdog);
    clearTimeout(this.#reconnectTimer);
    this.options.signal?.removeEventListener('abort', this.#onAbort);
    this.#dropStream();
  }

  #open(): void {
    const generation = ++this.#generation;
    const metadata = writeKeyMetadata(this.options.writeKey);
    const stream = this.client.ingestStream(metadata);
    const isCurrent = () => generation === this.#generation;

    stream.on('data', (response: IngestBatchResponse) => isCurrent() && this.#acknowledge(response));
    stream.on('error', (error: ServiceError) => isCurrent() && !this.#finishing && this.#handleFailure(error));
    stream.on('status', (callStatus: { code: number }) => {
      if (!isCurrent()) {
        return;
      }
      if (this.#finishing) {
        this.#serverClosed = true;
        this.#wake();
      } else if (callStatus.code === status.OK) {
        this.#handleFailure(closedEarlyError(this.#pending.size));
      }
    });

    this.#stream = stream;
    this.#lastActivityAt = Date.now();
    for (const batch of this.#pending.values()) {
      stream.write(batch.request);
    }
    this.#wake();
  }

  #acknowledge(response: IngestBatchResponse): void {
    const batch = this.#pending.get(response.batchId);
    if (batch === undefined) {
      this.#fail(new SendError(`server returned a response for unknown batch "${response.batchId}"`));
      return;
    }

    this.#pending.delete(response.batchId);
    this.#failedAttempts = 0;
    this.#lastActivityAt = Date.now();
    this.onResponse(batch, response);
    this.#wake();
  }

  #handleFailure(error: ServiceError): void {
    this.#dropStream();
    this.#failedAttempts += 1;
    const reason = describeServiceError(error);

    if (!isRetryable(error)) {
      this.#fail(new SendError(`ingest stream to ${this.options.server} failed: ${reason}`));
      return;
    }
    if (this.#failedAttempts >= this.options.maxAttempts) {
      const attempts = this.options.maxAttempts;
      this.#fail(new SendError(`ingest stream to ${this.options.server} failed ${attempts} times in a row: ${reason}`));
      return;
    }

    this.#scheduleReconnect(reason);
  }

  #scheduleReconnect(reason: string): void {
    const delayMs = backoffDelay(this.#failedAttempts);
    this.notice(
      `ingest stream failed (${reason}); reconnecting in ${delayMs} ms, attempt ${this.#failedAttempts + 1} ` +
        `of ${this.options.maxAttempts}, to resend ${this.#pending.size} unacknowledged batches`,
    );

    // This timer stays ref'd because, while it waits, nothing else may keep the process alive.
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#open();
    }, delayMs);
  }

  #checkResponseTimeout(): void {
    const silentMs = Date.now() - this.#lastActivityAt;
    if (this.#stream === undefined || this.#pending.size === 0 || silentMs < this.options.responseTimeoutMs) {
      return;
    }

    const seconds = Math.round(silentMs / 1000);
    this.#handleFailure(syntheticError(status.UNAVAILABLE, `no response for ${seconds} s`));
  }

  #dropStream(): void {
    const stream = this.#stream;
    this.#generation += 1;
    this.#stream = undefined;
    stream?.cancel();
  }

  #fail(error: Error): void {
    if (this.#failure === undefined) {
      this.#failure = error;
    }
    clearTimeout(this.#reconnectTimer);
    this.#dropStream();
    this.#wake();
  }

  async #waitUntil(condition: () => boolean): Promise<void> {
    while (this.#failure === undefined && !condition()) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }

    if (this.#failure !== undefined) {
      throw this.#failure;
    }
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) {
      resolve();
    }
  }
}

/**
 * Checks whether a reconnect may help. grpc-js reports a server that dies mid-stream as
 * UNAVAILABLE or as INTERNAL "Received RST_STREAM with code 0". Both are worth a retry,
 * because resent batches are deduplicated by messageId.
 */
function isRetryable(error: ServiceError): boolean {
  if (RETRYABLE_CODES.has(error.code)) return true;
  return error.code === status.INTERNAL && /RST_STREAM/.test(error.details ?? '');
}

/** Exponential backoff from 250 ms, doubled per failure up to 5 s, with up to 50% jitter. */
function backoffDelay(failedAttempts: number): number {
  const base = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** (failedAttempts - 1));
  return Math.round(base * (0.5 + Math.random() / 2));
}

function closedEarlyError(pendingBatches: number): ServiceError {
  return syntheticError(status.UNAVAILABLE, `server closed the stream with ${pendingBatches} batches unacknowledged`);
}

function syntheticError(code: status, details: string): ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: undefined as never });
}

/** Shows progress on stderr: a bar on a TTY, a line every 2 s otherwise, or nothing. */
class SendProgress {
  #bar: SingleBar | undefined;
  #bars: MultiBar | undefined;
  #timer: NodeJS.Timeout | undefined;
  #total = 0;
  readonly #startedAt = Date.now();

  private constructor(
    private readonly tally: Tally,
    private readonly output: (line: string) => void,
  ) {}

  static async start(sources: readonly Source[], options: ResolvedOptions, tally: Tally): Promise<SendProgress> {
    const progress = new SendProgress(tally, options.notice);
    if (options.progress === 'off') {
      return progress;
    }

    const estimates = await Promise.all(sources.map((source) => source.estimateEvents()));
    progress.#total = estimates.reduce((sum, count) => sum + count, 0);
    if (process.stderr.isTTY) {
      progress.#startBar();
    } else {
      progress.#timer = setInterval(() => progress.#printLine(), PROGRESS_INTERVAL_MS);
      progress.#timer.unref();
    }
    return progress;
  }

  /** Prints a notice without breaking the progress bar. */
  readonly notice = (line: string): void => {
    if (this.#bars !== undefined) {
      this.#bars.log(`${line}\n`);
      return;
    }
    this.output(line);
  };

  update(): void {
    const acknowledged = this.tally.acknowledged;
    if (this.#bar === undefined) {
      return;
    }

    if (acknowledged > this.#total) {
      this.#total = acknowledged;
      this.#bar.setTotal(acknowledged);
    }
    this.#bar.update(acknowledged, { sent: this.tally.sent, rate: this.#rate() });
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#bars?.stop();
    this.#bars = undefined;
    this.#bar = undefined;
  }

  #startBar(): void {
    this.#bars = new MultiBar({
      stream: process.stderr,
      // Fits 80 columns with 5-digit counts.
      format: 'sending {bar} {sent} sent, {value}/{total} acknowledged, {rate} events/s',
      barsize: 16,
    });
    this.#bar = this.#bars.create(Math.max(1, this.#total), 0, { sent: 0, rate: 0 });
  }

  #printLine(): void {
    const acknowledged = this.tally.acknowledged;
    this.output(
      `sending: ${acknowledged} of about ${this.#total} events acknowledged, ${this.tally.sent} sent, ${this.#rate()} events/s`,
    );
  }

  #rate(): number {
    const seconds = (Date.now() - this.#startedAt) / 1000;
    return seconds <= 0 ? 0 : Math.round(this.tally.acknowledged / seconds);
  }
}
