/**
 * The cluster's activation log: a JetStream stream (RTCDP_ACTIVATIONS) with one subject per
 * workspace. A shard's owner publishes a profile's activations before it commits the
 * snapshot that produced them, so an activation is never lost when its owner dies. The
 * next owner replays the events after the snapshot and publishes the same activations with
 * the same message ids, which JetStream drops within its duplicate window.
 *
 * Every node serves the whole log. The cursor is the stream sequence: it increases in the
 * order activations were stored, with gaps where other workspaces' activations are.
 */
import { DeliverPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../../common/logger.js';
import type { ActivationType, ProfileActivation } from '../../profiles/activation.js';
import type { ActivationPage, ListActivationsOptions, StoredActivation } from '../../profiles/activation-log.js';
import { decode, encode } from '../../storage/codec.js';
import type { ActivationFeed } from '../serving-node.js';
import { isNoMessage, isNotFound } from './event-stream.js';
import { retryOnTimeout, waitForStreamReady } from './stream-ready.js';

export const ACTIVATION_STREAM = 'RTCDP_ACTIVATIONS';
const ACTIVATION_PREFIX = 'rtcdp.activations';
const NANOS_PER_MS = 1_000_000;
/** How long a page read waits for the next message before it counts the log as read to its end. */
const FETCH_EXPIRES_MS = 1_000;

export interface ActivationStreamOptions {
  replicas: number;
  /** How long activations stay in the stream. */
  maxAgeMs: number;
  /** How long JetStream drops a republished activation id. */
  duplicateWindowMs: number;
  publishTimeoutMs: number;
  logger: Logger;
}

export function activationSubject(workspace: string): string {
  return `${ACTIVATION_PREFIX}.${workspace}`;
}

export class JetStreamActivationLog implements ActivationFeed {
  readonly #connection: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #options: ActivationStreamOptions;

  private constructor(connection: NatsConnection, jsm: JetStreamManager, options: ActivationStreamOptions) {
    this.#connection = connection;
    this.#js = jetstream(connection);
    this.#jsm = jsm;
    this.#options = options;
  }

  /**
   * Creates the stream when it is missing and waits until it serves requests. Requests that
   * time out are sent again until STREAM_READY_TIMEOUT_MS, because a NATS cluster busy
   * electing leaders for new streams can leave them unanswered.
   */
  static open(connection: NatsConnection, options: ActivationStreamOptions): Promise<JetStreamActivationLog> {
    return retryOnTimeout(
      () => JetStreamActivationLog.#open(connection, options),
      () => options.logger.warn({ stream: ACTIVATION_STREAM }, 'a JetStream request timed out while opening the activation stream; retrying'),
    );
  }

  static async #open(connection: NatsConnection, options: ActivationStreamOptions): Promise<JetStreamActivationLog> {
    const jsm = await jetstreamManager(connection);
    const existing = await jsm.streams.info(ACTIVATION_STREAM).catch((error: unknown) => {
      if (isNotFound(error)) return null;
      throw error;
    });
    if (existing === null) {
      await jsm.streams.add({
        name: ACTIVATION_STREAM,
        subjects: [`${ACTIVATION_PREFIX}.>`],
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        num_replicas: options.replicas,
        max_age: options.maxAgeMs * NANOS_PER_MS,
        duplicate_window: options.duplicateWindowMs * NANOS_PER_MS,
      });
      options.logger.info({ stream: ACTIVATION_STREAM, replicas: options.replicas }, 'created the activation stream');
    }
    await waitForStreamReady(ACTIVATION_STREAM, () => jsm.streams.info(ACTIVATION_STREAM));
    return new JetStreamActivationLog(connection, jsm, options);
  }

  /** Publishes activations, each with its id as the message id. Rejects when JetStream does not acknowledge one. */
  async publish(activations: readonly ProfileActivation[]): Promise<void> {
    await Promise.all(
      activations.map((activation) =>
        this.#js.publish(activationSubject(activation.workspace), encode(activation), { msgID: activation.id, timeout: this.#options.publishTimeoutMs }),
      ),
    );
  }

  async list(workspace: string, options: ListActivationsOptions = {}): Promise<ActivationPage> {
    const after = options.afterSequence ?? 0;
    const limit = options.limit ?? 100;
    const types = options.types !== undefined && options.types.length > 0 ? new Set<ActivationType>(options.types) : undefined;
    const visible = await this.#lastSequence(workspace);
    if (visible <= after) {
      // Expired activations take the workspace's newest with them, but not the stream's last sequence.
      const end = visible < after ? await this.#streamLastSequence() : visible;
      return { activations: [], visibleSequence: visible, nextAfterSequence: Math.max(after, visible), endSequence: end };
    }

    const consumer = await this.#js.consumers.get(ACTIVATION_STREAM, {
      filter_subjects: activationSubject(workspace),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: after + 1,
    });
    const activations: StoredActivation[] = [];
    let last = after;
    try {
      while (activations.length < limit && last < visible) {
        const batch = await consumer.fetch({ max_messages: Math.min(limit - activations.length, 256), expires: FETCH_EXPIRES_MS });
        let received = 0;
        for await (const message of batch) {
          received += 1;
          last = message.seq;
          const stored = { ...decode<ProfileActivation>(Buffer.from(message.data)), sequence: message.seq };
          if (types === undefined || types.has(stored.type)) activations.push(stored);
          if (activations.length >= limit || last >= visible) break;
        }
        if (received === 0) break;
      }
    } finally {
      await consumer.delete().catch(() => undefined);
    }
    const nextAfterSequence = activations.length >= limit ? last : Math.max(last, visible);
    return { activations, visibleSequence: visible, nextAfterSequence, endSequence: visible };
  }

  /** Resolves once the workspace has an activation after `afterSequence`, or when `signal` aborts. */
  async waitBeyond(workspace: string, afterSequence: number, signal: AbortSignal): Promise<void> {
    const subscription = this.#connection.subscribe(activationSubject(workspace), { max: 1 });
    const onAbort = () => subscription.unsubscribe();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      // Subscribed first, so an activation stored during the check still wakes the wait.
      if ((await this.#lastSequence(workspace)) > afterSequence || signal.aborted) return;
      for await (const _ of subscription) return;
    } finally {
      signal.removeEventListener('abort', onAbort);
      subscription.unsubscribe();
    }
  }

  /** Returns the sequence of the newest message of the stream, in any workspace, whether or not it expired since. */
  async #streamLastSequence(): Promise<number> {
    const info = await this.#jsm.streams.info(ACTIVATION_STREAM);
    return info.state.last_seq;
  }

  /** Returns the stream sequence of the workspace's newest activation, 0 when it has none. */
  async #lastSequence(workspace: string): Promise<number> {
    try {
      const message = await this.#jsm.streams.getMessage(ACTIVATION_STREAM, { last_by_subj: activationSubject(workspace) });
      return message?.seq ?? 0;
    } catch (error) {
      if (isNoMessage(error)) return 0;
      throw error;
    }
  }
}
