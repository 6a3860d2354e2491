/**
 * Request and reply with the owner of a shard over NATS. The owner subscribes to its
 * shards' subjects while it hosts them; any node sends a query there. While a shard moves,
 * no owner or only a draining one responds, so the caller retries until its deadline and only
 * then fails, naming the shard and the last reason.
 *
 * A reply too large for one NATS message (max_payload) goes to the replies stream in parts
 * (large-values.ts), and the message carries only where they are. The requester reads the
 * parts and deletes them; parts it never reads expire with the stream's maximum age.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { errors as natsErrors, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { DeadlineError, RtcdpError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { decode, encode } from '../../storage/codec.js';
import { InvalidArgumentError, ProfileNotFoundError, ShardUnavailableError } from '../errors.js';
import { LargeValueStream, type PartsRef } from './large-values.js';

type Reply = { ok: true; value: unknown } | { ok: false; code: string; message: string; retryable: boolean };
/** The content of a reply message: the reply, or the location of its parts. */
type Envelope = Reply | { parts: PartsRef };

export const REPLY_PARTS_STREAM = 'RTCDP_REPLY_PARTS';
const REPLY_PARTS_SUBJECT = 'rtcdp.parts.replies';
/** How long the parts of a reply that no requester read stay, in ms. */
const REPLY_PARTS_MAX_AGE_MS = 5 * 60_000;

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

/** Opens the stream that carries replies too large for one message, creating it when missing. */
export function openReplyParts(connection: NatsConnection, options: { replicas: number; requestTimeoutMs: number; logger: Logger }): Promise<LargeValueStream> {
  return LargeValueStream.open(connection, { ...options, stream: REPLY_PARTS_STREAM, subject: REPLY_PARTS_SUBJECT, maxAgeMs: REPLY_PARTS_MAX_AGE_MS });
}

/** Serves queries for one shard with `handler` until the returned subscription is unsubscribed. */
export function serveShard(connection: NatsConnection, shard: number, handler: (request: unknown) => Promise<unknown>, logger: Logger, replyParts?: LargeValueStream): Subscription {
  return serveSubject(connection, shardRpcSubject(shard), handler, logger.child({ shard }), replyParts);
}

/**
 * Serves requests on `subject` with `handler`; errors travel back with their code. Replies
 * too large for one message go to `replyParts`; without it, the requester gets
 * REPLY_TOO_LARGE.
 */
export function serveSubject(connection: NatsConnection, subject: string, handler: (request: unknown) => Promise<unknown>, logger: Logger, replyParts?: LargeValueStream): Subscription {
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
        await respond(connection, message, reply, { subject, logger, replyParts });
      })();
    },
  });
}

/**
 * Sends the reply, or its parts and then where they are when it is too large for one
 * message. The client throws on a message over the server's max_payload (1 MB by default),
 * so without `replyParts` the requester gets REPLY_TOO_LARGE instead of the node crashing.
 */
async function respond(connection: NatsConnection, message: Msg, reply: Reply, context: { subject: string; logger: Logger; replyParts?: LargeValueStream }): Promise<void> {
  const { subject, logger, replyParts } = context;
  const bytes = encode(reply);
  if (replyParts !== undefined && bytes.length > replyParts.messageLimitBytes) {
    await respondInParts(message, bytes, replyParts, context);
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

async function respondInParts(message: Msg, bytes: Uint8Array, replyParts: LargeValueStream, context: { subject: string; logger: Logger }): Promise<void> {
  let parts: PartsRef;
  try {
    parts = await replyParts.write(bytes);
  } catch (error) {
    context.logger.error({ err: error, subject: context.subject, replyBytes: bytes.length }, 'storing the parts of a large reply failed');
    const failure = new ReplyTooLargeError(`the reply has ${bytes.length} bytes, more than NATS carries in one message, and storing it in parts failed: ${(error as Error).message}`, { retryable: true });
    respondQuietly(message, toReply(failure), context);
    return;
  }
  respondQuietly(message, { parts }, context);
}

function respondQuietly(message: Msg, envelope: Envelope, context: { subject: string; logger: Logger }): void {
  try {
    message.respond(encode(envelope));
  } catch (error) {
    context.logger.error({ err: error, subject: context.subject }, 'sending the reply failed; the requester times out');
  }
}

/** A reply that NATS cannot carry in one message, and that could not be sent in parts. */
export class ReplyTooLargeError extends RtcdpError {
  readonly code = 'REPLY_TOO_LARGE';
  override readonly retryable: boolean;

  constructor(message: string, options: { retryable?: boolean } = {}) {
    super(message);
    this.retryable = options.retryable ?? false;
  }
}

function toReply(error: unknown): Reply {
  if (error instanceof RtcdpError) return { ok: false, code: error.code, message: error.message, retryable: error.retryable };
  return { ok: false, code: 'INTERNAL', message: 'internal error; the owner node log has the details', retryable: false };
}

/** Sends a query to the shard's owner, retrying while the shard has no owner, until `timeoutMs` passes. */
export async function requestShard<T>(connection: NatsConnection, shard: number, request: unknown, timeoutMs: number, replyParts?: LargeValueStream): Promise<T> {
  return requestSubject<T>(connection, shardRpcSubject(shard), request, timeoutMs, `shard ${shard}`, replyParts);
}

/**
 * Sends a request to `subject`, retrying while it has no subscriber, the request times out,
 * or the responder returns a retryable error, until `timeoutMs` passes. `target` names what
 * the subject reaches, for the error message. A reply sent in parts is read from
 * `replyParts`, which must be the stream the responder uses.
 */
export async function requestSubject<T>(connection: NatsConnection, subject: string, request: unknown, timeoutMs: number, target: string, replyParts?: LargeValueStream): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let reason = 'no attempt was made';

  for (;;) {
    // The client rejects a timeout under 1 ms with an error that would hide the last real reason.
    const remaining = Math.floor(deadline - performance.now());
    if (remaining < 1) break;

    try {
      const message = await connection.request(subject, encode(request), { timeout: Math.min(remaining, ATTEMPT_TIMEOUT_MS) });
      const reply = await openEnvelope(decode<Envelope>(Buffer.from(message.data)), replyParts);
      if (reply === null) {
        reason = 'the parts of the reply were gone before they were read';
        continue;
      }
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

/** Returns the reply an envelope carries, reading and then deleting its parts; null when they are gone. */
async function openEnvelope(envelope: Envelope, replyParts: LargeValueStream | undefined): Promise<Reply | null> {
  if (!('parts' in envelope)) return envelope;
  if (replyParts === undefined) throw new ReplyTooLargeError(`the reply of ${envelope.parts.bytes} bytes was sent in parts, which this caller cannot read`);

  const bytes = await replyParts.read(envelope.parts);
  if (bytes === null) return null;
  await replyParts.remove(envelope.parts);
  return decode<Reply>(Buffer.from(bytes));
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
