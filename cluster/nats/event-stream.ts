/**
 * Creates the JetStream stream that contains the event log, or checks the one that exists.
 * Only stream options of nats-server 2.9 are used.
 */
import { RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import type { Logger } from '../../common/logger.js';
import { waitForStreamReady } from './stream-ready.js';
import { ALL_EVENTS_FILTER, EVENT_STREAM } from './subjects.js';

export interface EventStreamOptions {
  /** Servers that keep a copy of each event: 1 on a single server, 3 in production. */
  replicas: number;
  /** How long JetStream remembers a message id to drop a resent event. */
  duplicateWindowMs: number;
  /** How long events stay in the stream. A shard must be checkpointed within it, or its unapplied events are lost. */
  maxAgeMs: number;
}

const NANOS_PER_MS = 1_000_000;

/**
 * Creates the event stream when it is missing, and waits until it is ready (see
 * stream-ready.ts). Logs a warning when the existing stream differs from `options`.
 */
export async function ensureEventStream(jsm: JetStreamManager, options: EventStreamOptions, logger: Logger): Promise<void> {
  const wanted: Partial<StreamConfig> & { name: string } = {
    name: EVENT_STREAM,
    subjects: [ALL_EVENTS_FILTER],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    num_replicas: options.replicas,
    duplicate_window: options.duplicateWindowMs * NANOS_PER_MS,
    max_age: options.maxAgeMs * NANOS_PER_MS,
  };

  const existing = await jsm.streams.info(EVENT_STREAM).catch((error: unknown) => {
    if (isNotFound(error)) return null;
    throw error;
  });
  if (existing === null) {
    await jsm.streams.add(wanted);
    logger.info({ stream: EVENT_STREAM, replicas: options.replicas }, 'created the event stream');
    await waitForStreamReady(EVENT_STREAM, () => jsm.streams.info(EVENT_STREAM));
    return;
  }

  const config = existing.config;
  if (config.num_replicas !== options.replicas || config.duplicate_window !== wanted.duplicate_window || config.max_age !== wanted.max_age) {
    logger.warn(
      { stream: EVENT_STREAM, replicas: config.num_replicas, duplicateWindowMs: config.duplicate_window / NANOS_PER_MS, maxAgeMs: config.max_age / NANOS_PER_MS },
      'the event stream exists with other settings than this node was given; it keeps its own',
    );
  }
  await waitForStreamReady(EVENT_STREAM, () => jsm.streams.info(EVENT_STREAM));
}

/** Returns whether a JetStream API error means "stream not found" (error code 10059). */
export function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && 'code' in error && (error as { code: unknown }).code === 10059;
}

/** Returns whether a JetStream API error means "no message found" (error code 10037). */
export function isNoMessage(error: unknown): boolean {
  return typeof error === 'object' && error !== null && 'code' in error && (error as { code: unknown }).code === 10037;
}
