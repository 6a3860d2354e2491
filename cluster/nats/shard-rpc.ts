/**
 * Request and reply with the owner of a shard over NATS. The owner subscribes to its
 * shards' subjects while it hosts them; any node sends a query there. While a shard moves,
 * no owner or only a draining one responds, so the caller retries until its deadline and only
 * then fails, naming the shard and the last reason.
 *
 * A reply too large for one NATS message (max_payload) is sent in chunks (reply-chunks.ts):
 * the reply message carries only its manifest, and the requester fetches the chunks.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { errors as natsErrors, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { DeadlineError, RtcdpError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { decode, encode } from '../../storage/codec.js';
import { InvalidArgumentError, ProfileNotFoundError, ShardUnavailableError } from '../errors.js';
import { fetchChunkedReply, type ChunkedReply, type ReplyChunks } from './reply-chunks.js';

type Reply = { ok: true; value: unknown } | { ok: false; code: string; message: string; retryable: boolean };
/** The content of a reply message: the reply, or the manifest of its chunks. */
type Envelope = Reply | { chunked: ChunkedReply };

/** A shard owner that is handing the shard over or has lost it; the caller retries elsewhere. */
export class ShardMovingError extends RtcdpError {
  readonly code = 'SHARD_MOVING';
  override readonly retryable = true;
}

/** An error the owner returned whose code has no class on this side. */
export class RemoteShardError extends RtcdpError {
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

const RPC_PREFIX = 'rtcdp.rpc.shard';
/** Maximum wait for one attempt, so a request to an owner that just died is retried soon. */
const ATTEMPT_TIMEOUT_MS = 2_000;
const RETRY_DELAY_MS = 100;

export function shardRpcSubject(shard: number): string {
  return `${RPC_PREFIX}.${shard}`;
}

/** Serves queries for one shard with `handler` until the returned subscription is unsubscribed. */
export function serveShard(connection: NatsConnection, shard: number, handler: (request: unknown) => Promise<unknown>, logger: Logger, chunks?: ReplyChunks): Subscription {
  return serveSubject(connection, shardRpcSubject(shard), handler, logger.child({ shard }), chunks);
}

/**
 * Serves requests on `subject` with `handler`; errors travel back with their code. Replies
 * too large for one message are sent in chunks through `chunks`; without it, the requester
 * gets REPLY_TOO_LARGE.
 */
export function serveSubject(connection: NatsConnection, subject: string, handler: (request: unknown) => Promise<unknown>, logger: Logger, chunks?: ReplyChunks): Subscription {
  return connection.subscribe(subject, {
    callback: (error, message) => {
      if (error !== null) {
        logger.error({ err: error, subject }, 'request subscription failed');
        return;
      }

      void (async () => {
        let reply: Reply;
        try {
          reply = { ok: true, value: await handler(decode(Buffer.from(message.data))) };
        } catch (failure) {
          if (!(failure instanceof RtcdpError)) logger.error({ err: failure, subject }, 'request failed');
          reply = toReply(failure);
        }
        respond(connection, message, reply, { subject, logger, chunks });
      })();
    },
  });
}

/**
 * Sends the reply, or the manifest of its chunks when it is too large for one message. The
 * client throws on a message over the server's max_payload (1 MB by default), so without
 * `chunks` the requester gets REPLY_TOO_LARGE instead of the node crashing.
 */
function respond(connection: NatsConnection, message: Msg, reply: Reply, context: { subject: string; logger: Logger; chunks?: ReplyChunks }): void {
  const { subject, logger, chunks } = context;
  const bytes = encode(reply);
  if (chunks !== undefined && bytes.length > chunks.messageLimitBytes) {
    respondInChunks(message, bytes, chunks, context);
    return;
  }

  try {
    message.respond(bytes);
  } catch (error) {
    const maxPayload = connection.info?.max_payload;
    logger.error({ err: error, subject, replyBytes: bytes.length, maxPayload }, 'sending the reply failed');
    if (maxPayload === undefined || bytes.length <= maxPayload) return;

    const failure = new ReplyTooLargeError(`the reply has ${bytes.length} bytes, more than NATS carries in one message (max_payload ${maxPayload}); raise max_payload in the NATS server's configuration`);
    respondQuietly(message, toReply(failure), context);
  }
}

function respondInChunks(message: Msg, bytes: Uint8Array, chunks: ReplyChunks, context: { subject: string; logger: Logger }): void {
  let chunked: ChunkedReply;
  try {
    chunked = chunks.keep(bytes);
  } catch (error) {
    context.logger.warn({ err: error, subject: context.subject, replyBytes: bytes.length }, 'keeping a large reply for its requester failed; it gets a retryable REPLY_TOO_LARGE');
    respondQuietly(message, toReply(error), context);
    return;
  }
  respondQuietly(message, { chunked }, context);
}

function respondQuietly(message: Msg, envelope: Envelope, context: { subject: string; logger: Logger }): void {
  try {
    message.respond(encode(envelope));
  } catch (error) {
    context.logger.error({ err: error, subject: context.subject }, 'sending the reply failed; the requester times out');
  }
}

/** A reply that NATS cannot carry in one message, from a responder that cannot send it in chunks. */
export class ReplyTooLargeError extends RtcdpError {
  readonly code = 'REPLY_TOO_LARGE';
}

function toReply(error: unknown): Reply {
  if (error instanceof RtcdpError) return { ok: false, code: error.code, message: error.message, retryable: error.retryable };
  return { ok: false, code: 'INTERNAL', message: 'internal error; the owner node log has the details', retryable: false };
}

/** Sends a query to the shard's owner, retrying while the shard has no owner, until `timeoutMs` passes. */
export async function requestShard<T>(connection: NatsConnection, shard: number, request: unknown, timeoutMs: number): Promise<T> {
  return requestSubject<T>(connection, shardRpcSubject(shard), request, timeoutMs, `shard ${shard}`);
}

/**
 * Sends a request to `subject`, retrying while it has no subscriber, the request times out,
 * or the responder returns a retryable error, until `timeoutMs` passes. `target` names what
 * the subject reaches, for the error message. A reply sent in chunks is fetched from its
 * responder within the same deadline.
 */
export async function requestSubject<T>(connection: NatsConnection, subject: string, request: unknown, timeoutMs: number, target: string): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let reason = 'no attempt was made';

  for (;;) {
    // The client rejects a timeout under 1 ms with an error that would hide the last real reason.
    const remaining = Math.floor(deadline - performance.now());
    if (remaining < 1) break;

    try {
      const message = await connection.request(subject, encode(request), { timeout: Math.min(remaining, ATTEMPT_TIMEOUT_MS) });
      const reply = await openEnvelope(connection, decode<Envelope>(Buffer.from(message.data)), Math.max(1, Math.floor(deadline - performance.now())));
      if (reply.ok) return reply.value as T;
      if (!reply.retryable) throw fromReply(reply);
      reason = `${reply.code}: ${reply.message}`;
    } catch (error) {
      if (error instanceof RtcdpError) throw error;
      reason = describeRequestFailure(error);
    }
    await sleep(Math.min(RETRY_DELAY_MS, Math.max(0, deadline - performance.now())));
  }

  throw new ShardUnavailableError(`no node responded for ${target} within ${timeoutMs} ms (${reason}); retry, because a shard may be moving or a node restarting`);
}

/**
 * Returns the reply an envelope carries, fetching its chunks within `timeoutMs`. A fetch
 * that fails comes back as a retryable error reply, so the request is sent again.
 */
async function openEnvelope(connection: NatsConnection, envelope: Envelope, timeoutMs: number): Promise<Reply> {
  if (!('chunked' in envelope)) return envelope;
  try {
    return decode<Reply>(await fetchChunkedReply(connection, envelope.chunked, timeoutMs));
  } catch (error) {
    return { ok: false, code: 'REPLY_TOO_LARGE', message: `fetching a ${envelope.chunked.bytes}-byte reply in chunks failed: ${(error as Error).message}`, retryable: true };
  }
}

function describeRequestFailure(error: unknown): string {
  if (error instanceof natsErrors.RequestError && error.isNoResponders()) return 'no node subscribes to it now';
  if (error instanceof natsErrors.TimeoutError || (error instanceof natsErrors.RequestError && error.cause instanceof natsErrors.TimeoutError)) return 'the owner did not reply in time';
  return `request failed: ${(error as Error).message}`;
}

function fromReply(reply: Extract<Reply, { ok: false }>): RtcdpError {
  switch (reply.code) {
    case 'PROFILE_NOT_FOUND':
      return new ProfileNotFoundError(reply.message);
    case 'INVALID_ARGUMENT':
      return new InvalidArgumentError(reply.message);
    case 'DEADLINE_EXCEEDED':
      return new DeadlineError(reply.message);
    default:
      return new RemoteShardError(reply.code, reply.message);
  }
}
