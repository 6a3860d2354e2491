/**
 * A KvStore on a JetStream KV bucket (`@nats-io/kv`). The bucket keeps one value per key
 * (history 1), and a revision is the bucket stream's sequence number, so revisions grow
 * across the whole bucket, as the KvStore interface requires.
 *
 * Keys must match NATS KV's rules: the characters `-/_=.a-zA-Z0-9`, with dots separating
 * non-empty tokens (no leading, trailing or double dot). Methods throw RangeError for
 * any other key, before a request is sent.
 *
 * Only features of nats-server 2.9 are used.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { JetStreamApiCodes, JetStreamApiError, jetstream, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV, type KvOptions } from '@nats-io/kv';
import { ConfigError } from '../../common/errors.js';
import { retryOnTimeout, waitForStreamReady } from '../nats/stream-ready.js';
import { KvConflictError, type KvEntry, type KvStore } from '../../storage/kv-store.js';

export interface NatsKvStoreOptions {
  /** Bucket name: letters, digits, `-` and `_`. The stream behind it is `KV_<bucket>`. */
  bucket: string;
  /** Servers that keep a copy of the bucket: 1, 3 or 5. Default 1. */
  replicas?: number;
  /** Timeout of each JetStream request, in milliseconds. Default 1,000. */
  requestTimeoutMs?: number;
  /**
   * Whether any replica may serve reads (JetStream direct get). False sends every read to
   * the stream leader, so a read returns the latest write. Default: what the client picks
   * for a new bucket (true on nats-server 2.9 and later). Applies when the bucket is created.
   */
  allowDirect?: boolean;
}

const KEY_PATTERN = /^[-/_=.a-zA-Z0-9]+$/;
const BUCKET_PATTERN = /^[-_a-zA-Z0-9]+$/;
const ALLOWED_REPLICAS = [1, 3, 5];
/** Header that marks a delete or purge marker in a KV stream. */
const KV_OPERATION_HEADER = 'KV-Operation';
/** Keys list() reads at once. */
const LIST_READS_IN_FLIGHT = 100;
/** Short, so that a lease write whose request was lost is retried well within the lease. */
const DEFAULT_REQUEST_TIMEOUT_MS = 1_000;

export class NatsKvStore implements KvStore {
  readonly #kv: KV;
  readonly #jsm: JetStreamManager;
  readonly #streamName: string;
  /** Subject prefix of every key, `$KV.<bucket>.`. */
  readonly #subjectPrefix: string;

  private constructor(kv: KV, jsm: JetStreamManager, bucket: string) {
    this.#kv = kv;
    this.#jsm = jsm;
    this.#streamName = `KV_${bucket}`;
    this.#subjectPrefix = `$KV.${bucket}.`;
  }

  /**
   * Opens the bucket, creating it with history 1 when it does not exist, and waits until
   * its stream is ready (see stream-ready.ts). Throws ConfigError when the name or replicas
   * are invalid, or when an existing bucket has another replica count or history.
   */
  static async open(nc: NatsConnection, options: NatsKvStoreOptions): Promise<NatsKvStore> {
    const { bucket } = options;
    const replicas = options.replicas ?? 1;
    if (typeof bucket !== 'string' || !BUCKET_PATTERN.test(bucket)) {
      throw new ConfigError(`bucket must be a non-empty name of letters, digits, '-' and '_', received ${JSON.stringify(bucket)}`);
    }
    if (!ALLOWED_REPLICAS.includes(replicas)) {
      throw new ConfigError(`replicas must be 1, 3 or 5, received ${replicas}`);
    }

    const js = jetstream(nc, { timeout: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS });
    const kv = await createBucket(js, bucket, { replicas, history: 1, ...(options.allowDirect === undefined ? {} : { allow_direct: options.allowDirect }) });
    await waitForStreamReady(`KV_${bucket}`, async () => (await kv.status()).streamInfo);
    const status = await kv.status();
    if (status.replicas !== replicas || status.history !== 1) {
      throw new ConfigError(
        `KV bucket ${bucket} exists with replicas ${status.replicas} and history ${status.history}, ` +
          `but replicas ${replicas} and history 1 were requested. Change the stream KV_${bucket} or choose another bucket.`,
      );
    }
    // The bucket exists by now, so the manager skips its account check request.
    return new NatsKvStore(kv, await js.jetstreamManager(false), bucket);
  }

  async get(key: string): Promise<KvEntry | null> {
    assertKey(key);
    const entry = await this.#kv.get(key);
    // A deleted key reads as its delete or purge marker.
    if (entry === null || entry.operation !== 'PUT') return null;
    return { key, value: entry.value, revision: entry.revision };
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    assertKey(key);
    // The client's create also succeeds on a deleted key, by updating its delete marker.
    return this.#write(key, `create of key ${key} failed because the key exists`, () => this.#kv.create(key, value));
  }

  async update(key: string, value: Uint8Array, expectedRevision: number): Promise<number> {
    assertKey(key);
    // No key is at revision 0 or less, and the client would read 0 as "the key must not exist".
    if (!(expectedRevision >= 1)) throw new KvConflictError(`update of key ${key} expected revision ${expectedRevision}, which no key has`);

    // NOTE: a deleted key's delete marker has a revision too, and an update that expects it
    // succeeds. No method of this interface returns that revision.
    return this.#write(key, `update of key ${key} expected revision ${expectedRevision}, but the key is at another revision or deleted`, () =>
      this.#kv.update(key, value, expectedRevision),
    );
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    assertKey(key);
    return this.#kv.put(key, value);
  }

  async delete(key: string, expectedRevision?: number): Promise<void> {
    assertKey(key);
    if (expectedRevision === undefined) {
      await this.#kv.delete(key);
      return;
    }

    // The client sends no revision check for previousSeq 0, so 0 would delete unconditionally.
    if (!(expectedRevision >= 1)) throw new KvConflictError(`delete of key ${key} expected revision ${expectedRevision}, which no key has`);
    await this.#write(key, `delete of key ${key} expected revision ${expectedRevision}, but the key is at another revision or deleted`, async () => {
      await this.#kv.delete(key, { previousSeq: expectedRevision });
      return 0;
    });
  }

  /**
   * Reads the last value of every key under the filter subject that covers `prefix`, and
   * keeps the keys that start with `prefix`. The subject filter ends at the last dot of
   * the prefix, so `shard.1` reads `shard.>` and keeps `shard.1`, `shard.10` and so on.
   *
   * The keys come from the stream's subject list and each value from a get of its
   * subject's last message. The stream leader serves both requests, so the result is
   * current. No consumer is created: after a SIGKILL of one server of a three-server
   * nats-server 2.9.10 cluster, about half the ephemeral consumer creations got no reply,
   * for the whole 50 s that a local test ran.
   */
  async list(prefix = ''): Promise<KvEntry[]> {
    if (prefix !== '') assertKeyPrefix(prefix);
    const tokens = prefix.slice(0, prefix.lastIndexOf('.') + 1);
    const info = await this.#jsm.streams.info(this.#streamName, { subjects_filter: `${this.#subjectPrefix}${tokens}>` });
    const keys = Object.keys(info.state.subjects ?? {})
      .map((subject) => subject.slice(this.#subjectPrefix.length))
      .filter((key) => key.startsWith(prefix));

    const entries: KvEntry[] = [];
    for (let start = 0; start < keys.length; start += LIST_READS_IN_FLIGHT) {
      const read = await Promise.all(keys.slice(start, start + LIST_READS_IN_FLIGHT).map((key) => this.#readLast(key)));
      entries.push(...read.filter((entry): entry is KvEntry => entry !== null));
    }
    return entries.sort((a, b) => a.key.localeCompare(b.key));
  }

  /** Reads a key's last message from the stream leader; null when it is a delete marker or gone. */
  async #readLast(key: string): Promise<KvEntry | null> {
    const message = await this.#jsm.streams.getMessage(this.#streamName, { last_by_subj: `${this.#subjectPrefix}${key}` });
    if (message === null) return null;
    const operation = message.header?.get(KV_OPERATION_HEADER);
    if (operation === 'DEL' || operation === 'PURGE') return null;
    return { key, value: message.data, revision: message.seq };
  }

  /** Runs a conditional write and turns the server's "wrong last sequence" error into KvConflictError. */
  async #write(key: string, conflictMessage: string, write: () => Promise<number>): Promise<number> {
    try {
      return await write();
    } catch (error) {
      if (isWrongLastSequence(error)) throw new KvConflictError(conflictMessage, { cause: error });
      throw error;
    }
  }
}

/**
 * Creates the bucket, or opens it when it exists without comparing its configuration
 * (Kvm.create). A timed-out attempt is repeated (see retryOnTimeout).
 */
function createBucket(js: JetStreamClient, bucket: string, options: Partial<KvOptions>): Promise<KV> {
  return retryOnTimeout(() => new Kvm(js).create(bucket, options));
}

/**
 * Returns whether JetStream rejected a write because the key's last revision was not the
 * expected one. nats-server 2.9.10 returns API error code 10071 ("wrong last sequence:
 * N"). Newer servers may return 10164 when the last sequence is unknown.
 */
function isWrongLastSequence(error: unknown): boolean {
  if (error instanceof JetStreamApiError) {
    return error.code === JetStreamApiCodes.StreamWrongLastSequence || error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown;
  }
  return error instanceof Error && /wrong last sequence/i.test(error.message);
}

function assertKey(key: string): void {
  if (typeof key !== 'string' || !KEY_PATTERN.test(key) || key.startsWith('.') || key.endsWith('.') || key.includes('..')) {
    throw new RangeError(
      `invalid NATS KV key ${JSON.stringify(key)}: use the characters -/_=.a-zA-Z0-9, with dots only between non-empty tokens`,
    );
  }
}

/** A prefix may end with a dot, but must otherwise be a valid key. */
function assertKeyPrefix(prefix: string): void {
  if (!KEY_PATTERN.test(prefix) || prefix.startsWith('.') || prefix.includes('..')) {
    throw new RangeError(
      `invalid NATS KV key prefix ${JSON.stringify(prefix)}: use the characters -/_=.a-zA-Z0-9, with dots only between non-empty tokens`,
    );
  }
}
