/**
 * Replies too large for one NATS message (max_payload), sent in chunks over core NATS. The
 * responder keeps the encoded reply in memory and sends only its manifest as the reply. The
 * requester then sends a request to the responder's chunk subject, and the responder
 * publishes the chunks in order to the requester's inbox, which NATS delivers in that order.
 * Nothing is written to JetStream, so a reply that no requester fetches costs memory only
 * until it expires.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { RtcdpError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { decode, encode } from '../../storage/codec.js';
import { messageLimitBytes } from './large-values.js';

/** The manifest of a chunked reply: where to fetch it, and its size and digest to check it. */
export interface ChunkedReply {
  /** The responder's chunk subject. */
  subject: string;
  id: string;
  chunks: number;
  bytes: number;
  sha256: string;
}

export interface ReplyChunksOptions {
  /** How long an unfetched reply is kept, in ms. */
  keepMs: number;
  /** Bytes of unfetched replies kept at most; a reply past it is rejected as retryable. */
  maxKeptBytes: number;
  logger: Logger;
}

const CHUNK_SUBJECT_PREFIX = 'rtcdp.rpc.chunks';

/** A large reply that could not be kept or fetched. */
export class ChunkedReplyError extends RtcdpError {
  readonly code = 'REPLY_TOO_LARGE';
  override readonly retryable: boolean;

  constructor(message: string, retryable: boolean) {
    super(message);
    this.retryable = retryable;
  }
}

interface PendingReply {
  bytes: Uint8Array;
  timer: NodeJS.Timeout;
}

export class ReplyChunks {
  readonly #connection: NatsConnection;
  readonly #options: ReplyChunksOptions;
  readonly #subject: string;
  readonly #pending = new Map<string, PendingReply>();
  #pendingBytes = 0;
  #subscription: Subscription | null = null;

  constructor(connection: NatsConnection, options: ReplyChunksOptions) {
    this.#connection = connection;
    this.#options = options;
    this.#subject = `${CHUNK_SUBJECT_PREFIX}.${randomBytes(12).toString('base64url')}`;
  }

  /** Starts serving chunk requests on this process's subject. */
  start(): void {
    this.#subscription = this.#connection.subscribe(this.#subject, { callback: (error, message) => (error === null ? this.#send(message) : undefined) });
  }

  /** Stops serving chunk requests and drops every reply not fetched yet. */
  stop(): void {
    this.#subscription?.unsubscribe();
    this.#subscription = null;
    for (const pending of this.#pending.values()) clearTimeout(pending.timer);
    this.#pending.clear();
    this.#pendingBytes = 0;
  }

  /** The largest reply one message carries on this connection now, in bytes. */
  get messageLimitBytes(): number {
    return messageLimitBytes(this.#connection);
  }

  /** Keeps `bytes` for a requester to fetch and returns its manifest. Throws ChunkedReplyError (retryable) when too much is kept already. */
  keep(bytes: Uint8Array): ChunkedReply {
    if (this.#pendingBytes + bytes.length > this.#options.maxKeptBytes) {
      throw new ChunkedReplyError(
        `the reply has ${bytes.length} bytes, more than one NATS message carries, and the node already keeps ${this.#pendingBytes} bytes of large replies for their requesters; retry shortly`,
        true,
      );
    }

    const id = randomBytes(12).toString('base64url');
    const timer = setTimeout(() => this.#drop(id), this.#options.keepMs);
    timer.unref();
    this.#pending.set(id, { bytes, timer });
    this.#pendingBytes += bytes.length;
    const chunks = Math.ceil(bytes.length / this.messageLimitBytes);
    return { subject: this.#subject, id, chunks, bytes: bytes.length, sha256: sha256Of(bytes) };
  }

  #send(message: Msg): void {
    let id: string;
    try {
      id = decode<{ id: string }>(Buffer.from(message.data)).id;
    } catch (error) {
      this.#options.logger.warn({ err: error, subject: message.subject }, 'a request for a large reply could not be decoded; it was ignored');
      return;
    }
    const pending = this.#pending.get(id);
    if (pending === undefined || message.reply === undefined) {
      this.#options.logger.warn({ replyId: id }, 'a requester requested a large reply that expired or was sent already; it times out and sends its query again');
      return;
    }
    this.#drop(id);

    const size = this.messageLimitBytes;
    for (let start = 0; start < pending.bytes.length; start += size) {
      this.#connection.publish(message.reply, pending.bytes.subarray(start, start + size));
    }
  }

  #drop(id: string): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    clearTimeout(pending.timer);
    this.#pending.delete(id);
    this.#pendingBytes -= pending.bytes.length;
  }
}

/**
 * Fetches a chunked reply from its responder within `timeoutMs`. Throws ChunkedReplyError
 * when the chunks do not all arrive or do not match the manifest.
 */
export async function fetchChunkedReply(connection: NatsConnection, reply: ChunkedReply, timeoutMs: number): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  const messages = await connection.requestMany(reply.subject, encode({ id: reply.id }), { strategy: 'count', maxMessages: reply.chunks, maxWait: timeoutMs });
  for await (const message of messages) chunks.push(message.data);

  const bytes = Buffer.concat(chunks);
  if (chunks.length !== reply.chunks || bytes.length !== reply.bytes || sha256Of(bytes) !== reply.sha256) {
    throw new ChunkedReplyError(`received ${chunks.length} of the ${reply.chunks} chunks of a ${reply.bytes}-byte reply within ${timeoutMs} ms, or chunks that do not match it`, true);
  }
  return bytes;
}

function sha256Of(value: Uint8Array): string {
  return createHash('sha256').update(value).digest('base64url');
}
