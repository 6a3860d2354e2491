/**
 * A KvStore on a JetStream KV bucket (`@nats-io/kv`). The bucket keeps one value per key
 * (history 1), and a revision is the bucket stream's sequence number, so revisions grow
 * across the whole bucket, as the KvStore interface requires.
 *
 * Keys must match NATS KV's rules: the characters `-/_=.a-zA-Z0-9`, with dots separating
 * non-empty tokens (no leading, trailing or double dot). Methods throw RangeError for
 * any other key, before a request is sent.
 *
 * Only features of nats-server 2.9 are used: list() reads through a consumer with one
 * filter subject, because multiple filter subjects need 2.10.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { DeliverPolicy, JetStreamApiCodes, JetStreamApiError, jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { ConfigError } from '../../common/errors.js';
import { KvConflictError, type KvEntry, type KvStore } from './kv-store.js';

export interface NatsKvStoreOptions {
  /** Bucket name: letters, digits, `-` and `_`. The stream behind it is `KV_<bucket>`. */
  bucket: string;
  /** Servers that keep a copy of the bucket: 1, 3 or 5. Default 1. */
  replicas?: number;
  /** Timeout of each JetStream request, in milliseconds. Default: the connection's timeout. */
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
/** How long list() waits for the bucket's entries to arrive. */
const LIST_EXPIRES_MS = 5_000;

export class NatsKvStore implements KvStore {
  readonly #kv: KV;
  readonly #js: JetStreamClient;
  readonly #streamName: string;
  /** Subject prefix of every key, `$KV.<bucket>.`. */
  readonly #subjectPrefix: string;

  private constructor(kv: KV, js: JetStreamClient, bucket: string) {
    this.#kv = kv;
    this.#js = js;
    this.#streamName = `KV_${bucket}`;
    this.#subjectPrefix = `$KV.${bucket}.`;
  }

  /**
   * Opens the bucket, creating it with history 1 when it does not exist. Throws
   * ConfigError when the name or replicas are invalid, or when an existing bucket has
   * another replica count or history.
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

    const js = jetstream(nc, { timeout: options.requestTimeoutMs });
    // Kvm.create opens the bucket when it exists, without comparing its configuration.
    const kv = await new Kvm(js).create(bucket, { replicas, history: 1, ...(options.allowDirect === undefined ? {} : { allow_direct: options.allowDirect }) });
    const status = await kv.status();
    if (status.replicas !== replicas || status.history !== 1) {
      throw new ConfigError(
        `KV bucket ${bucket} exists with replicas ${status.replicas} and history ${status.history}, ` +
          `but replicas ${replicas} and history 1 were requested. Change the stream KV_${bucket} or choose another bucket.`,
      );
    }
    return new NatsKvStore(kv, js, bucket);
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
   * Keys written while the list runs arrive again as new messages, so the read goes on
   * until the consumer has nothing pending, and keeps each key's highest revision.
   */
  async list(prefix = ''): Promise<KvEntry[]> {
    if (prefix !== '') assertKeyPrefix(prefix);
    const tokens = prefix.slice(0, prefix.lastIndexOf('.') + 1);
    const consumer = await this.#js.consumers.get(this.#streamName, {
      filter_subjects: `${this.#subjectPrefix}${tokens}>`,
      deliver_policy: DeliverPolicy.LastPerSubject,
    });

    try {
      const latest = new Map<string, KvEntry | null>();
      let pending = (await consumer.info(true)).num_pending;
      const deadline = Date.now() + LIST_EXPIRES_MS;

      while (pending > 0) {
        if (Date.now() > deadline) {
          throw new Error(`list of KV stream ${this.#streamName} timed out after ${LIST_EXPIRES_MS} ms with ${pending} entries still pending`);
        }
        const messages = await consumer.fetch({ max_messages: pending, expires: Math.max(1, deadline - Date.now()) });
        for await (const message of messages) {
          const key = message.subject.slice(this.#subjectPrefix.length);
          const operation = message.headers?.get(KV_OPERATION_HEADER);
          const deleted = operation === 'DEL' || operation === 'PURGE';
          latest.set(key, deleted ? null : { key, value: message.data, revision: message.seq });
          pending = message.info.pending;
          if (pending === 0) break;
        }
      }

      const entries = [...latest.values()].filter((entry): entry is KvEntry => entry !== null && entry.key.startsWith(prefix));
      return entries.sort((a, b) => a.key.localeCompare(b.key));
    } finally {
      // The consumer is ephemeral, and the server would remove it after 5 minutes unused.
      await consumer.delete().catch(() => undefined);
    }
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
