/**
 * Webhook delivery in cluster mode: one KvLease per destination in the `rtcdp-webhooks`
 * bucket, so that one node at a time delivers each destination. Every node configured with
 * a destination competes for its lease. The holder runs the destination's delivery loop,
 * and when it stops or dies another node takes the lease over and resumes after the cursor
 * in the same bucket (KvDeliveryState).
 *
 * A node notices that its lease ended at the next maintenance pass, so up to
 * renewIntervalMs after it ended, and then gives the request in flight the dispatcher's
 * stop grace. A taker starts at least stallMarginMs + takeoverMarginMs after the end, and
 * its cursor claim makes any later cursor write of the old holder fail. So a batch can
 * reach the receiver twice around a takeover, but the cursor never moves backwards.
 */
import { ConfigError } from '../common/errors.js';
import { Lifecycle } from '../common/lifecycle.js';
import type { Logger } from '../common/logger.js';
import type { DeliveryOwnership, OwnershipListener } from '../decisions/activation-delivery/delivery-ownership.js';
import { KvDeliveryState } from '../decisions/activation-delivery/kv-delivery-state.js';
import { RocksDbDeliveryState } from '../decisions/activation-delivery/rocksdb-delivery-state.js';
import type { WebhookDestination } from '../decisions/activation-delivery/webhook-config.js';
import { WebhookDispatcher } from '../decisions/activation-delivery/webhook-dispatcher.js';
import { webhookKeys } from '../decisions/activation-delivery/webhook-kv-keys.js';
import type { KvStore } from '../storage/kv-store.js';
import type { Store } from '../storage/store.js';
import { systemClock, type Clock } from './clock.js';
import { describeValue, requireDurationMs, requireNodeId } from './coordination-options.js';
import { KvLease, parseKvLeaseRecord } from './kv-lease.js';
import { PeriodicTask } from './periodic-task.js';
import type { ActivationFeed } from './serving-node.js';

/** The cluster's bucket of webhook delivery leases, cursors and dead letters. */
export const WEBHOOK_BUCKET = 'rtcdp-webhooks';

/** How often an idle delivery loop checks the bucket for replays that another node queued. */
const REPLAY_POLL_INTERVAL_MS = 1_000;

export interface WebhookLeaseTimings {
  /** Lifetime of a delivery lease after its last confirmed write. Default 10,000 ms. */
  webhookLeaseTtlMs?: number;
  /** Time between two renewals of the leases, or two attempts to take them. At most (ttl - stall margin) / 2. Default 2,000 ms. */
  webhookLeaseRenewIntervalMs?: number;
}

export interface WebhookLeasesOptions extends WebhookLeaseTimings {
  kv: KvStore;
  nodeId: string;
  destinations: readonly WebhookDestination[];
  logger: Logger;
  clock?: Clock;
}

interface ResolvedTimings {
  ttlMs: number;
  renewIntervalMs: number;
  /** Time by which the holder ends its lease early, for a stall between a check and a write. */
  stallMarginMs: number;
  /** Extra wait before taking over a lease that stopped changing, for clock rate differences. */
  takeoverMarginMs: number;
}

/** One destination's lease and the tenure of the last `acquired` notification. */
interface DestinationLease {
  destination: WebhookDestination;
  key: string;
  lease: KvLease;
  logger: Logger;
  /** Epoch of the tenure in the last `acquired` notification, until the `lost` one; null when none is held. */
  heldEpoch: number | null;
  /** Set by relinquish; the next maintenance pass releases the lease before it competes again. */
  releaseRequested: boolean;
}

/** Validates the lease timings once. Throws ConfigError naming the option and the rule. */
export function resolveWebhookLeaseTimings(options: WebhookLeaseTimings): ResolvedTimings {
  const ttlMs = requireDurationMs('webhookLeaseTtlMs', options.webhookLeaseTtlMs ?? 10_000);
  const renewIntervalMs = requireDurationMs('webhookLeaseRenewIntervalMs', options.webhookLeaseRenewIntervalMs ?? 2_000);
  // The same margins as shard leases (cluster-node.ts).
  const stallMarginMs = Math.min(1_500, Math.floor(ttlMs / 3));
  const takeoverMarginMs = Math.min(1_000, Math.floor(ttlMs / 5));

  const maxRenewIntervalMs = Math.floor((ttlMs - stallMarginMs) / 2);
  if (renewIntervalMs > maxRenewIntervalMs) {
    throw new ConfigError(
      `webhookLeaseRenewIntervalMs must be at most (webhookLeaseTtlMs - ${stallMarginMs} ms stall margin) / 2 (${maxRenewIntervalMs} ms), so that one failed renewal does not end the lease, received ${describeValue(renewIntervalMs)}`,
    );
  }
  return { ttlMs, renewIntervalMs, stallMarginMs, takeoverMarginMs };
}

export class WebhookLeases implements DeliveryOwnership {
  readonly #kv: KvStore;
  readonly #logger: Logger;
  readonly #lifecycle: Lifecycle;
  readonly #leases = new Map<string, DestinationLease>();
  readonly #maintenance: PeriodicTask;
  #listener: OwnershipListener | null = null;

  constructor(options: WebhookLeasesOptions) {
    const timings = resolveWebhookLeaseTimings(options);
    const nodeId = requireNodeId('nodeId', options.nodeId);
    const clock = options.clock ?? systemClock;
    this.#kv = options.kv;
    this.#logger = options.logger.child({ component: 'webhook-leases', nodeId });
    this.#lifecycle = new Lifecycle('webhook-leases', this.#logger);

    for (const destination of options.destinations) {
      const key = webhookKeys.lease(destination.workspace, destination.name);
      const logger = this.#logger.child({ destination: destination.name, workspace: destination.workspace });
      const lease = new KvLease({ kv: options.kv, key, label: 'webhook delivery', nodeId, clock, logger, ...timings });
      this.#leases.set(destination.name, { destination, key, lease, logger, heldEpoch: null, releaseRequested: false });
    }
    this.#maintenance = new PeriodicTask('webhook lease maintenance', clock, timings.renewIntervalMs, () => this.#maintainAll(), this.#logger);
  }

  start(listener: OwnershipListener): void {
    this.#lifecycle.assert('start', 'created');
    this.#listener = listener;
    this.#lifecycle.set('running', { destinations: this.#leases.size });
    this.#maintenance.start();
  }

  async relinquish(destination: string): Promise<void> {
    const entry = this.#entry(destination);
    entry.logger.warn({ epoch: entry.heldEpoch }, 'giving up webhook delivery lease because another node wrote the cursor; competing for it again');
    entry.releaseRequested = true;
    this.#notify(entry, null);
  }

  async readHolder(destination: string): Promise<string | null> {
    const entry = await this.#kv.get(this.#entry(destination).key);
    return entry === null ? null : (parseKvLeaseRecord(entry)?.holder ?? null);
  }

  async stopCompeting(): Promise<void> {
    if (!this.#lifecycle.is('running')) return;
    this.#lifecycle.set('draining');
    await this.#maintenance.stop();
  }

  async releaseAll(): Promise<void> {
    if (this.#lifecycle.is('stopped')) return;
    await this.stopCompeting();
    await Promise.all([...this.#leases.values()].map((entry) => entry.lease.release()));
    for (const entry of this.#leases.values()) entry.heldEpoch = null;
    this.#lifecycle.set('stopped');
  }

  async #maintainAll(): Promise<void> {
    await Promise.all([...this.#leases.values()].map((entry) => this.#maintain(entry)));
  }

  async #maintain(entry: DestinationLease): Promise<void> {
    if (entry.releaseRequested) {
      entry.releaseRequested = false;
      await entry.lease.release();
    }

    await entry.lease.maintain();
    if (entry.releaseRequested || !this.#lifecycle.is('running')) return;
    this.#notify(entry, entry.lease.isValid() ? entry.lease.epoch : null);
  }

  /** Notifies the listener when the tenure that this node delivers under changes to `epoch`, null for none. */
  #notify(entry: DestinationLease, epoch: number | null): void {
    const previous = entry.heldEpoch;
    if (epoch === previous) return;
    entry.heldEpoch = epoch;

    if (previous !== null) {
      entry.logger.warn({ epoch: previous }, 'stopped delivering webhook destination: its lease ended or is no longer valid');
      this.#listener?.lost(entry.destination.name);
    }
    if (epoch !== null) {
      entry.logger.info({ epoch }, 'delivering webhook destination under its lease');
      this.#listener?.acquired(entry.destination.name, epoch);
    }
  }

  #entry(destination: string): DestinationLease {
    const entry = this.#leases.get(destination);
    if (entry === undefined) throw new RangeError(`no webhook destination is named ${JSON.stringify(destination)}`);
    return entry;
  }
}

export interface ClusterWebhookNode {
  readonly nodeId: string;
  readonly activations: ActivationFeed;
  /** The `rtcdp-webhooks` bucket. */
  readonly webhookKv: KvStore;
  /** The node's RocksDB, where cluster nodes kept their own webhook cursors before the bucket shared them. */
  readonly store: Store;
}

/**
 * Starts a dispatcher that delivers each destination while this node holds its lease, with
 * cursors and dead letters in the cluster's webhook bucket. Returns null without destinations.
 */
export function startClusterWebhookDispatcher(
  node: ClusterWebhookNode,
  destinations: readonly WebhookDestination[] | undefined,
  timings: WebhookLeaseTimings,
  logger: Logger,
): WebhookDispatcher | null {
  if (destinations === undefined || destinations.length === 0) return null;

  const nodeLogger = logger.child({ nodeId: node.nodeId });
  const ownership = new WebhookLeases({ kv: node.webhookKv, nodeId: node.nodeId, destinations, logger, ...timings });
  const dispatcher = new WebhookDispatcher({
    destinations,
    feed: node.activations,
    createState: (destination) =>
      new KvDeliveryState(node.webhookKv, {
        workspace: destination.workspace,
        destination: destination.name,
        nodeId: node.nodeId,
        logger: nodeLogger,
        // A cluster upgraded from per-node cursors goes on after the first claimer's own cursor, instead of from the oldest activation.
        initialCursor: () => new RocksDbDeliveryState(node.store, destination.workspace, destination.name).readCursor(),
      }),
    ownership,
    replayPollIntervalMs: REPLAY_POLL_INTERVAL_MS,
    logger: nodeLogger,
  });
  dispatcher.start();
  return dispatcher;
}
