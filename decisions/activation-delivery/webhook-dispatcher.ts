/**
 * Delivers a node's activations to webhook destinations: one delivery loop per destination,
 * each with its own cursor, rate limit and dead letters. It reads through the
 * ActivationFeed interface, so it runs on the embedded node's activation log and on a
 * cluster node's JetStream stream alike. An embedded node keeps the cursors in its RocksDB
 * and runs every loop. A cluster node keeps them in the cluster's KV bucket and runs a
 * destination's loop only while its DeliveryOwnership holds the destination's lease.
 * README.md in this folder describes the requests.
 */
import { Lifecycle } from '../../common/lifecycle.js';
import type { Logger } from '../../common/logger.js';
import type { ActivationFeed } from '../../cluster/serving-node.js';
import type { Store } from '../../storage/store.js';
import type { DeliveryOwnership } from './delivery-ownership.js';
import type { DeliveryState, ReplaySelection, WebhookDeadLetter } from './delivery-state.js';
import { DestinationDelivery, emptyDestinationStats, type DestinationStats, type RetryPolicy } from './destination-delivery.js';
import { RocksDbDeliveryState } from './rocksdb-delivery-state.js';
import type { WebhookDestination } from './webhook-config.js';
import { systemClock, type Clock } from './token-bucket.js';

export interface WebhookDispatcherOptions {
  /** Validated destinations (webhook-config.ts); names must be unique. */
  destinations: readonly WebhookDestination[];
  feed: ActivationFeed;
  /**
   * The embedded node's RocksDB, which keeps each destination's cursor and dead letters. It
   * must stay open until `stop` resolves. Give either this or `createState`.
   */
  store?: Store;
  /** Returns the state of a destination, such as a KvDeliveryState in cluster mode. Give either this or `store`. */
  createState?: (destination: WebhookDestination) => DeliveryState;
  /** Decides which destinations this node delivers. Default: every destination, always. */
  ownership?: DeliveryOwnership;
  logger: Logger;
  /** Delay before the second attempt of a batch, doubled for each later one. Default 1,000 ms. */
  retryBaseDelayMs?: number;
  /** Maximum delay between two attempts, before jitter. Default 60,000 ms. */
  retryMaxDelayMs?: number;
  /** Maximum Retry-After wait honoured. A longer one is cut to this. Default 600,000 ms. */
  maxRetryAfterMs?: number;
  /** How long stopping a loop lets its request in flight finish before it aborts it. Default 5,000 ms. */
  stopGraceMs?: number;
  /**
   * Time between two checks for queued replays while a loop waits for activations. Cluster
   * nodes set it, because another node may store the replay request. Default: no periodic
   * check, since every replay request of an embedded node goes through this dispatcher.
   */
  replayPollIntervalMs?: number;
  /** Jitter source, uniform in [0, 1). Default Math.random. */
  random?: () => number;
  clock?: Clock;
}

/** A destination as `rtcdp webhooks list` shows it. */
export interface DestinationStatus {
  destination: WebhookDestination;
  /** This node's counters since it started. */
  stats: DestinationStats;
  /** The stored cursor, which every node of a cluster shares. */
  cursor: number;
  /** Node id of the node whose lease lets it deliver the destination now; null in embedded mode or while no node holds the lease. */
  deliveringNode: string | null;
}

/** One destination's state and the delivery loop that runs while this node delivers it. */
interface DestinationSlot {
  destination: WebhookDestination;
  state: DeliveryState;
  stats: DestinationStats;
  logger: Logger;
  delivery: DestinationDelivery | null;
  /** Starts and stops of the loop, one after another. */
  transitions: Promise<void>;
}

export class WebhookDispatcher {
  readonly #lifecycle: Lifecycle;
  readonly #logger: Logger;
  readonly #stopGraceMs: number;
  readonly #retry: RetryPolicy;
  readonly #feed: ActivationFeed;
  readonly #clock: Clock;
  readonly #ownership: DeliveryOwnership | null;
  readonly #replayPollIntervalMs: number | undefined;
  readonly #slots = new Map<string, DestinationSlot>();
  #stopping: Promise<void> | null = null;

  constructor(options: WebhookDispatcherOptions) {
    this.#logger = options.logger.child({ component: 'webhooks' });
    this.#lifecycle = new Lifecycle('webhook-dispatcher', this.#logger);
    this.#stopGraceMs = nonNegative('stopGraceMs', options.stopGraceMs ?? 5_000);
    this.#retry = {
      baseDelayMs: nonNegative('retryBaseDelayMs', options.retryBaseDelayMs ?? 1_000),
      maxDelayMs: nonNegative('retryMaxDelayMs', options.retryMaxDelayMs ?? 60_000),
      maxRetryAfterMs: nonNegative('maxRetryAfterMs', options.maxRetryAfterMs ?? 600_000),
      random: options.random ?? Math.random,
    };
    this.#feed = options.feed;
    this.#clock = options.clock ?? systemClock;
    this.#ownership = options.ownership ?? null;
    this.#replayPollIntervalMs = options.replayPollIntervalMs === undefined ? undefined : positive('replayPollIntervalMs', options.replayPollIntervalMs);

    const createState = stateFactory(options);
    for (const destination of options.destinations) {
      if (this.#slots.has(destination.name)) throw new RangeError(`destinations contains the name ${JSON.stringify(destination.name)} twice; names must be unique`);
      const logger = this.#logger.child({ destination: destination.name, workspace: destination.workspace });
      this.#slots.set(destination.name, { destination, state: createState(destination), stats: emptyDestinationStats(), logger, delivery: null, transitions: Promise.resolve() });
    }
  }

  get state() {
    return this.#lifecycle.state;
  }

  /** Whether the nodes of a cluster share the destinations' state, and a lease decides which node delivers each. */
  get shared(): boolean {
    return this.#ownership !== null;
  }

  /**
   * Without ownership, starts every destination's loop. With it, starts competing for the
   * destinations' leases, and a loop starts once its lease is held. Each loop claims the
   * stored cursor first and resumes after it.
   */
  start(): void {
    this.#lifecycle.assert('start', 'created');
    this.#lifecycle.set('starting', { destinations: this.#slots.size, shared: this.#ownership !== null });
    this.#lifecycle.set('running');

    if (this.#ownership === null) {
      for (const slot of this.#slots.values()) void this.#startLoop(slot);
      return;
    }
    this.#ownership.start({
      acquired: (destination) => void this.#startLoop(this.#slot(destination)),
      lost: (destination) => void this.#stopLoop(this.#slot(destination)),
    });
  }

  /**
   * Stops every loop: waits, backoffs and rate-limit waits end at once, and requests in
   * flight get `stopGraceMs` to finish before they are aborted. Then it releases every
   * lease this node holds, so another node takes over at once. Calling it again returns
   * the same stop.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#lifecycle.set('draining');
      await this.#ownership?.stopCompeting();
      await Promise.all([...this.#slots.values()].map((slot) => this.#stopLoop(slot)));
      await this.#ownership?.releaseAll();
      this.#lifecycle.set('stopped');
    })();
    return this.#stopping;
  }

  /** Returns the destinations that deliver `workspace`'s activations, by name. */
  destinations(workspace: string): WebhookDestination[] {
    return [...this.#slots.values()]
      .map((slot) => slot.destination)
      .filter((destination) => destination.workspace === workspace)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Returns this node's counters of a destination. Throws RangeError for an unknown name. */
  stats(destination: string): DestinationStats {
    return { ...this.#slot(destination).stats };
  }

  /** Reads the stored cursor and the lease holder of a destination. Throws RangeError for an unknown name. */
  async status(destination: string): Promise<DestinationStatus> {
    const slot = this.#slot(destination);
    const [cursor, deliveringNode] = await Promise.all([slot.state.readCursor(), this.#ownership?.readHolder(destination) ?? null]);
    return { destination: slot.destination, stats: { ...slot.stats }, cursor, deliveringNode };
  }

  /**
   * Returns a destination's dead letters whose first sequence is after `afterSequence`,
   * oldest batch first. Throws RangeError for an unknown name.
   */
  async listDeadLetters(destination: string, limit = 100, afterSequence = 0): Promise<WebhookDeadLetter[]> {
    this.#lifecycle.assert('listDeadLetters', 'created', 'running', 'draining');
    return this.#slot(destination).state.listDeadLetters(limit, afterSequence);
  }

  /**
   * Queues the chosen dead letters for replay by whichever node delivers the destination,
   * and wakes this node's loop when it runs. Returns how many are queued. Throws RangeError
   * for an unknown name and DeadLetterNotFoundError for an unknown first sequence.
   */
  async queueReplays(destination: string, selection: ReplaySelection): Promise<number> {
    this.#lifecycle.assert('queueReplays', 'running');
    const slot = this.#slot(destination);
    const queued = await slot.state.queueReplays(selection, this.#clock.now());
    slot.logger.info({ queued, selection }, 'dead letters queued for replay');
    slot.delivery?.wakeForReplays();
    return queued;
  }

  #startLoop(slot: DestinationSlot): Promise<void> {
    slot.transitions = slot.transitions.then(() => {
      if (!this.#lifecycle.is('running') || slot.delivery !== null) return;
      slot.delivery = new DestinationDelivery({
        destination: slot.destination,
        feed: this.#feed,
        state: slot.state,
        retry: this.#retry,
        clock: this.#clock,
        logger: slot.logger,
        stats: slot.stats,
        replayPollIntervalMs: this.#replayPollIntervalMs,
        onFenced: () => void this.#onFenced(slot),
      });
      slot.delivery.start();
    });
    return slot.transitions;
  }

  #stopLoop(slot: DestinationSlot): Promise<void> {
    slot.transitions = slot.transitions.then(async () => {
      const delivery = slot.delivery;
      if (delivery === null) return;
      slot.delivery = null;
      await delivery.stop(this.#stopGraceMs);
    });
    return slot.transitions;
  }

  /** Ends this node's tenure after another node wrote the cursor, so that the node competes for the lease again. */
  async #onFenced(slot: DestinationSlot): Promise<void> {
    await this.#stopLoop(slot);
    await this.#ownership?.relinquish(slot.destination.name);
  }

  #slot(destination: string): DestinationSlot {
    const slot = this.#slots.get(destination);
    if (slot === undefined) throw new RangeError(`no webhook destination is named ${JSON.stringify(destination)}`);
    return slot;
  }
}

function stateFactory(options: WebhookDispatcherOptions): (destination: WebhookDestination) => DeliveryState {
  if ((options.store === undefined) === (options.createState === undefined)) throw new TypeError('give the webhook dispatcher either store or createState');
  if (options.createState !== undefined) return options.createState;

  const store = options.store as Store;
  return (destination) => new RocksDbDeliveryState(store, destination.workspace, destination.name);
}

function nonNegative(option: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${option} must be a non-negative number of ms, received ${value}`);
  return value;
}

function positive(option: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${option} must be a positive number of ms, received ${value}`);
  return value;
}

/** Starts a dispatcher on a node's activation feed and RocksDB, or returns null when there are no destinations. */
export function startWebhookDispatcher(
  node: { readonly activations: ActivationFeed; readonly store: Store },
  destinations: readonly WebhookDestination[] | undefined,
  logger: Logger,
): WebhookDispatcher | null {
  if (destinations === undefined || destinations.length === 0) return null;
  const dispatcher = new WebhookDispatcher({ destinations, feed: node.activations, store: node.store, logger });
  dispatcher.start();
  return dispatcher;
}
