/**
 * Delivers a node's activations to webhook destinations: one delivery loop per destination,
 * each with its own cursor, rate limit and dead letters in the node's RocksDB. It reads
 * through the ActivationFeed interface, so it runs on the embedded node's activation log and
 * on a cluster node's JetStream stream alike. README.md in this folder describes the requests.
 */
import { Lifecycle } from '../../common/lifecycle.js';
import type { Logger } from '../../common/logger.js';
import type { ActivationFeed } from '../../cluster/serving-node.js';
import type { Store } from '../../storage/store.js';
import { DeliveryState, type WebhookDeadLetter } from './delivery-state.js';
import { DestinationDelivery, type DestinationStats, type RetryPolicy } from './destination-delivery.js';
import type { WebhookDestination } from './webhook-config.js';
import { systemClock, type Clock } from './token-bucket.js';

export interface WebhookDispatcherOptions {
  /** Validated destinations (webhook-config.ts); names must be unique. */
  destinations: readonly WebhookDestination[];
  feed: ActivationFeed;
  /** The node's RocksDB, which keeps each destination's cursor and dead letters. It must stay open until `stop` resolves. */
  store: Store;
  logger: Logger;
  /** Delay before the second attempt of a batch, doubled for each later one. Default 1,000 ms. */
  retryBaseDelayMs?: number;
  /** Maximum delay between two attempts, before jitter. Default 60,000 ms. */
  retryMaxDelayMs?: number;
  /** Maximum Retry-After wait honoured. A longer one is cut to this. Default 600,000 ms. */
  maxRetryAfterMs?: number;
  /** How long `stop` lets requests in flight finish before it aborts them. Default 5,000 ms. */
  stopGraceMs?: number;
  /** Jitter source, uniform in [0, 1). Default Math.random. */
  random?: () => number;
  clock?: Clock;
}

export class WebhookDispatcher {
  readonly #lifecycle: Lifecycle;
  readonly #logger: Logger;
  readonly #stopGraceMs: number;
  readonly #deliveries = new Map<string, DestinationDelivery>();
  readonly #states = new Map<string, DeliveryState>();
  #stopping: Promise<void> | null = null;

  constructor(options: WebhookDispatcherOptions) {
    this.#logger = options.logger.child({ component: 'webhooks' });
    this.#lifecycle = new Lifecycle('webhook-dispatcher', this.#logger);
    this.#stopGraceMs = nonNegative('stopGraceMs', options.stopGraceMs ?? 5_000);
    const retry: RetryPolicy = {
      baseDelayMs: nonNegative('retryBaseDelayMs', options.retryBaseDelayMs ?? 1_000),
      maxDelayMs: nonNegative('retryMaxDelayMs', options.retryMaxDelayMs ?? 60_000),
      maxRetryAfterMs: nonNegative('maxRetryAfterMs', options.maxRetryAfterMs ?? 600_000),
      random: options.random ?? Math.random,
    };

    for (const destination of options.destinations) {
      if (this.#deliveries.has(destination.name)) throw new RangeError(`destinations contains the name ${JSON.stringify(destination.name)} twice; names must be unique`);
      const state = new DeliveryState(options.store, destination.workspace, destination.name);
      const logger = this.#logger.child({ destination: destination.name, workspace: destination.workspace });
      this.#states.set(destination.name, state);
      this.#deliveries.set(destination.name, new DestinationDelivery({ destination, feed: options.feed, state, retry, clock: options.clock ?? systemClock, logger }));
    }
  }

  get state() {
    return this.#lifecycle.state;
  }

  /** Starts every destination's loop. Each reads its stored cursor first and resumes after it. */
  start(): void {
    this.#lifecycle.assert('start', 'created');
    this.#lifecycle.set('starting', { destinations: this.#deliveries.size });
    for (const delivery of this.#deliveries.values()) delivery.start();
    this.#lifecycle.set('running');
  }

  /**
   * Stops every loop: waits, backoffs and rate-limit waits end at once, and requests in
   * flight get `stopGraceMs` to finish before they are aborted. Calling it again returns
   * the same stop.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#lifecycle.set('draining');
      await Promise.all([...this.#deliveries.values()].map((delivery) => delivery.stop(this.#stopGraceMs)));
      this.#lifecycle.set('stopped');
    })();
    return this.#stopping;
  }

  /** Returns the destinations that deliver `workspace`'s activations, by name. */
  destinations(workspace: string): WebhookDestination[] {
    return [...this.#deliveries.values()]
      .map((delivery) => delivery.destination)
      .filter((destination) => destination.workspace === workspace)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Returns the counters of a destination. Throws RangeError for an unknown name. */
  stats(destination: string): DestinationStats {
    return this.#delivery(destination).stats;
  }

  /**
   * Returns a destination's dead letters whose first sequence is after `afterSequence`,
   * oldest batch first. Throws RangeError for an unknown name.
   */
  async listDeadLetters(destination: string, limit = 100, afterSequence = 0): Promise<WebhookDeadLetter[]> {
    this.#lifecycle.assert('listDeadLetters', 'created', 'running', 'draining');
    this.#delivery(destination);
    return (this.#states.get(destination) as DeliveryState).listDeadLetters(limit, afterSequence);
  }

  #delivery(destination: string): DestinationDelivery {
    const delivery = this.#deliveries.get(destination);
    if (delivery === undefined) throw new RangeError(`no webhook destination is named ${JSON.stringify(destination)}`);
    return delivery;
  }
}

function nonNegative(option: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${option} must be a non-negative number of ms, received ${value}`);
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
