/**
 * Values larger than one NATS message carries (the server's max_payload, 1 MB by default),
 * stored as parts in a JetStream stream: each part is one message, and a value is named by
 * the stream sequences of its parts. The snapshot store keeps a large profile snapshot this
 * way, with a small record in its KV bucket that points to the parts. A shard query sends a
 * large reply this way too, and only the reference goes over request and reply.
 *
 * Parts never change. A new version of a value is written as new parts, and the old ones
 * are deleted once nothing points to them. A reader that finds a part gone, because the
 * value was replaced while it read, gets null and reads the reference again. Deleting a
 * stream message leaves no marker behind, which a deleted KV key would.
 *
 * Reads go to the stream leader, so a part written before its reference is always found.
 */
import { createHash } from 'node:crypto';
import { jetstream, jetstreamManager, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { RtcdpError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { isNoMessage, isNotFound } from './event-stream.js';
import { retryOnTimeout, waitForStreamReady } from './stream-ready.js';

/** The location of a value's parts: their stream sequences in order, the value's length and its SHA-256. */
export interface PartsRef {
  sequences: number[];
  bytes: number;
  sha256: string;
}

export interface LargeValueStreamOptions {
  /** Stream name: letters, digits, `-` and `_`. */
  stream: string;
  /** The one subject the stream's parts are published on. */
  subject: string;
  replicas: number;
  /** How long a part stays when nothing deletes it, in ms; 0 keeps parts until they are deleted. */
  maxAgeMs: number;
  /** Timeout of each publish, read and delete, in ms. */
  requestTimeoutMs: number;
  logger: Logger;
}

/** Room left in a message for headers and protocol overhead, in bytes. */
const MESSAGE_OVERHEAD_BYTES = 4_096;
/** The smallest part, whatever the server's max_payload, in bytes. */
const MIN_PART_BYTES = 1_024;
/** NATS's default max_payload, assumed until the server's INFO message arrives. */
const DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576;
const NANOS_PER_MS = 1_000_000;

/** A value whose parts do not match the length and digest of its reference. */
export class CorruptValueError extends RtcdpError {
  readonly code = 'CORRUPT_VALUE';
}

/**
 * The largest value that one message on `connection` can carry, leaving room for headers:
 * a value over it must be stored as parts.
 */
export function messageLimitBytes(connection: NatsConnection): number {
  const maxPayload = connection.info?.max_payload ?? DEFAULT_MAX_PAYLOAD_BYTES;
  return Math.max(MIN_PART_BYTES, maxPayload - MESSAGE_OVERHEAD_BYTES);
}

export class LargeValueStream {
  readonly #connection: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #options: LargeValueStreamOptions;

  private constructor(connection: NatsConnection, jsm: JetStreamManager, options: LargeValueStreamOptions) {
    this.#connection = connection;
    this.#js = jetstream(connection, { timeout: options.requestTimeoutMs });
    this.#jsm = jsm;
    this.#options = options;
  }

  /**
   * Creates the stream when it is missing and waits until it serves requests. Requests that
   * time out are sent again until STREAM_READY_TIMEOUT_MS, because a NATS cluster busy
   * electing leaders for new streams can leave them unanswered.
   */
  static open(connection: NatsConnection, options: LargeValueStreamOptions): Promise<LargeValueStream> {
    return retryOnTimeout(
      () => LargeValueStream.#open(connection, options),
      () => options.logger.warn({ stream: options.stream }, 'a JetStream request timed out while opening a stream; retrying'),
    );
  }

  static async #open(connection: NatsConnection, options: LargeValueStreamOptions): Promise<LargeValueStream> {
    const jsm = await jetstreamManager(connection, { timeout: options.requestTimeoutMs });
    const existing = await jsm.streams.info(options.stream).catch((error: unknown) => {
      if (isNotFound(error)) return null;
      throw error;
    });
    if (existing === null) {
      await jsm.streams.add({
        name: options.stream,
        subjects: [options.subject],
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        num_replicas: options.replicas,
        max_age: options.maxAgeMs * NANOS_PER_MS,
      });
      options.logger.info({ stream: options.stream, replicas: options.replicas }, 'created a stream for large values');
    }
    await waitForStreamReady(options.stream, () => jsm.streams.info(options.stream));
    return new LargeValueStream(connection, jsm, options);
  }

  /** The largest value one message carries on this connection now; see messageLimitBytes. */
  get messageLimitBytes(): number {
    return messageLimitBytes(this.#connection);
  }

  /** Stores `value` as parts of at most messageLimitBytes each. On failure, deletes the parts already stored. */
  async write(value: Uint8Array): Promise<PartsRef> {
    const partBytes = this.messageLimitBytes;
    const parts: Uint8Array[] = [];
    for (let start = 0; start < value.length; start += partBytes) parts.push(value.subarray(start, start + partBytes));

    const published = await Promise.allSettled(parts.map((part) => this.#js.publish(this.#options.subject, part)));
    const sequences = published.map((outcome) => (outcome.status === 'fulfilled' ? outcome.value.seq : 0));
    const failed = published.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
    if (failed !== undefined) {
      await this.#deleteQuietly(sequences.filter((sequence) => sequence > 0));
      throw failed.reason;
    }
    return { sequences, bytes: value.length, sha256: sha256Of(value) };
  }

  /**
   * Reads a value back. Returns null when one of its parts is gone, which means the value
   * was replaced and its parts deleted. Throws CorruptValueError when the parts do not match
   * the reference's length and digest.
   */
  async read(ref: PartsRef): Promise<Uint8Array | null> {
    const parts = await Promise.all(ref.sequences.map((sequence) => this.#readPart(sequence)));
    if (parts.some((part) => part === null)) return null;

    const value = Buffer.concat(parts as Uint8Array[]);
    if (value.length !== ref.bytes || sha256Of(value) !== ref.sha256) {
      throw new CorruptValueError(
        `the parts at sequences ${ref.sequences.join(', ')} of stream ${this.#options.stream} hold ${value.length} bytes that do not match their reference (${ref.bytes} bytes, SHA-256 ${ref.sha256})`,
      );
    }
    return value;
  }

  /** Deletes a value's parts. Parts already gone are skipped; a failed delete is logged, and the part stays until maxAgeMs if any. */
  async remove(ref: PartsRef): Promise<void> {
    await this.#deleteQuietly(ref.sequences);
  }

  async #readPart(sequence: number): Promise<Uint8Array | null> {
    try {
      const message = await this.#jsm.streams.getMessage(this.#options.stream, { seq: sequence });
      return message?.data ?? null;
    } catch (error) {
      if (isNoMessage(error)) return null;
      throw error;
    }
  }

  async #deleteQuietly(sequences: readonly number[]): Promise<void> {
    await Promise.all(
      sequences.map(async (sequence) => {
        try {
          await this.#jsm.streams.deleteMessage(this.#options.stream, sequence, false);
        } catch (error) {
          if (!isDeletedAlready(error)) this.#options.logger.warn({ err: error, stream: this.#options.stream, sequence }, 'deleting a part of a large value failed; it stays in the stream');
        }
      }),
    );
  }
}

/** Returns whether a delete failed because the message is gone: JetStream's code 10057 with "no message found". */
function isDeletedAlready(error: unknown): boolean {
  return isNoMessage(error) || (error instanceof JetStreamApiError && error.code === 10057 && /no message found/.test(error.message));
}

function sha256Of(value: Uint8Array): string {
  return createHash('sha256').update(value).digest('base64url');
}
