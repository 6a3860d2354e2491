/**
 * The published shard assignment, KV key `assignment`, and the watcher through which
 * nodes read it. Only the coordinator writes the key, with compare-and-set.
 */
import { Lifecycle, type LifecycleState } from '../common/lifecycle.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { systemClock, type Clock } from './clock.js';
import { NODE_ID_PATTERN, requireDurationMs } from './coordination-options.js';
import type { KvEntry, KvStore } from '../storage/kv-store.js';
import { decodeJsonValue, encodeJsonValue, isRecord } from './kv-json.js';
import { FailureStreak, PeriodicTask } from './periodic-task.js';

export const ASSIGNMENT_KEY = 'assignment';

export interface Assignment {
  /** Count of writes of the key, starting at 1. */
  version: number;
  /** Epoch of the coordinator lease under which this version was written. */
  coordinatorEpoch: number;
  /** Node id of the coordinator that wrote it. */
  coordinator: string;
  /** Owner of each shard by shard number. A shard missing from the map has no owner yet. */
  shards: ReadonlyMap<number, string>;
  /** KV revision of the entry. */
  revision: number;
}

export function encodeAssignment(assignment: Omit<Assignment, 'revision'>): Uint8Array {
  const shards = Object.fromEntries([...assignment.shards].sort(([a], [b]) => a - b).map(([shard, owner]) => [String(shard), owner]));
  return encodeJsonValue({ version: assignment.version, coordinatorEpoch: assignment.coordinatorEpoch, coordinator: assignment.coordinator, shards });
}

/** Decodes the `assignment` key's value. Returns null unless every field is valid. */
export function decodeAssignment(entry: KvEntry): Assignment | null {
  const value = decodeJsonValue(entry.value);
  if (!isRecord(value) || !isRecord(value.shards)) return null;

  const { version, coordinatorEpoch, coordinator } = value;
  if (!Number.isSafeInteger(version) || (version as number) < 1) return null;
  if (!Number.isSafeInteger(coordinatorEpoch) || (coordinatorEpoch as number) < 1) return null;
  if (typeof coordinator !== 'string' || !NODE_ID_PATTERN.test(coordinator)) return null;

  const shards = new Map<number, string>();
  for (const [key, owner] of Object.entries(value.shards)) {
    const shard = Number(key);
    if (!Number.isSafeInteger(shard) || shard < 0 || String(shard) !== key) return null;
    if (typeof owner !== 'string' || !NODE_ID_PATTERN.test(owner)) return null;
    shards.set(shard, owner);
  }
  return { version: version as number, coordinatorEpoch: coordinatorEpoch as number, coordinator, shards, revision: entry.revision };
}

export interface AssignmentWatcherOptions {
  kv: KvStore;
  /** Time between two reads of the assignment. Default 500 ms. */
  pollIntervalMs?: number;
  clock?: Clock;
  logger?: Logger;
}

/**
 * Polls the published assignment and reports each new version. A read that returns an
 * older revision than the last one seen, as a stale read can, is ignored.
 */
export class AssignmentWatcher {
  readonly #kv: KvStore;
  readonly #logger: Logger;
  readonly #lifecycle: Lifecycle;
  readonly #polls: PeriodicTask;
  readonly #readFailures: FailureStreak;
  readonly #listeners = new Set<(assignment: Assignment) => void>();
  #current: Assignment | null = null;
  /** Revision of the last entry that failed to decode, so it is reported once. */
  #invalidRevision: number | null = null;

  constructor(options: AssignmentWatcherOptions) {
    const pollIntervalMs = requireDurationMs('pollIntervalMs', options.pollIntervalMs ?? 500);
    this.#kv = options.kv;
    this.#logger = (options.logger ?? silentLogger()).child({ component: 'assignment-watcher' });
    this.#lifecycle = new Lifecycle('assignment watcher', this.#logger);
    this.#polls = new PeriodicTask('assignment poll', options.clock ?? systemClock, pollIntervalMs, () => this.#poll(), this.#logger);
    this.#readFailures = new FailureStreak(this.#logger, 'assignment read');
  }

  get state(): LifecycleState {
    return this.#lifecycle.state;
  }

  /** Starts polling; the first read is sent at once. */
  start(): void {
    this.#lifecycle.assert('start', 'created');
    this.#lifecycle.set('starting');
    this.#polls.start();
    this.#lifecycle.set('running');
  }

  async stop(): Promise<void> {
    if (this.#lifecycle.is('stopped', 'draining')) return;
    this.#lifecycle.set('draining');
    await this.#polls.stop();
    this.#lifecycle.set('stopped');
  }

  /** Returns the newest assignment read so far, or null before the first one. */
  current(): Assignment | null {
    return this.#current;
  }

  /** Calls `listener` with each new version. Returns a function that unsubscribes. */
  onChange(listener: (assignment: Assignment) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async #poll(): Promise<void> {
    let entry: KvEntry | null;
    try {
      entry = await this.#kv.get(ASSIGNMENT_KEY);
      this.#readFailures.succeeded();
    } catch (error) {
      this.#readFailures.failed(error, { key: ASSIGNMENT_KEY });
      return;
    }
    if (entry === null || (this.#current !== null && entry.revision <= this.#current.revision)) return;

    const assignment = decodeAssignment(entry);
    if (assignment === null) {
      if (this.#invalidRevision !== entry.revision) this.#logger.warn({ key: ASSIGNMENT_KEY, revision: entry.revision }, 'ignoring assignment with an invalid value');
      this.#invalidRevision = entry.revision;
      return;
    }

    this.#current = assignment;
    this.#logger.debug({ version: assignment.version, coordinatorEpoch: assignment.coordinatorEpoch, revision: assignment.revision }, 'read new assignment');
    for (const listener of this.#listeners) {
      try {
        listener(assignment);
      } catch (error) {
        this.#logger.error({ err: error }, 'assignment listener failed');
      }
    }
  }
}
