/**
 * Starts one cluster node in this process: the node on NATS and the gRPC server in front
 * of it. The gRPC server starts first, so the node can advertise its address.
 */
import type { Logger } from '../common/logger.js';
import { ClusterNode } from '../cluster/cluster-node.js';
import type { ClusterNodeOptions } from '../cluster/cluster-options.js';
import type { ActivationFeed, ServingNode } from '../cluster/serving-node.js';
import type { DefinitionStore } from '../decisions/definitions/definition-store.js';
import type { WebhookDestination } from '../decisions/activation-delivery/webhook-config.js';
import type { WebhookDispatcher } from '../decisions/activation-delivery/webhook-dispatcher.js';
import { resolveWebhookLeaseTimings, startClusterWebhookDispatcher, type WebhookLeaseTimings } from '../cluster/webhook-leases.js';
import { NodeUnavailableError } from '../cluster/errors.js';
import type { IdentityOperations } from '../cluster/identity-admin.js';
import { ApiServer } from './server.js';

export interface ClusterProcessOptions extends Omit<ClusterNodeOptions, 'logger' | 'grpcAddress'>, WebhookLeaseTimings {
  host?: string;
  /** TCP port of the gRPC server; 0 picks a free one. */
  port: number;
  /** Address other hosts reach the gRPC server at, when it differs from host:port. */
  advertiseAddress?: string;
  logger: Logger;
  /** Calls without a write key go to the "default" workspace. */
  devMode?: boolean;
  /** Write key to workspace. */
  writeKeys?: Map<string, string>;
  /** How long `stop` waits for the shards to be handed off. Default 30,000 ms. */
  drainTimeoutMs?: number;
  /**
   * Webhook destinations that receive the cluster's activations. The nodes configured with a
   * destination compete for its lease in the `rtcdp-webhooks` bucket, and the holder
   * delivers it after the cursor stored there. Default: none.
   */
  webhooks?: readonly WebhookDestination[];
}

export interface ClusterProcess {
  /** "host:port" of the gRPC server. */
  address: string;
  node: ClusterNode;
  server: ApiServer;
  /** Delivers activations to the webhook destinations; null without destinations. */
  webhooks: WebhookDispatcher | null;
  /** Resolves once the process was stopped, by stop() or by an admin drain request. */
  stopped: Promise<void>;
  /** Stops taking calls, hands the node's shards off and disconnects from NATS. */
  stop(): Promise<void>;
}

/** Forwards calls to the node once it exists; until then they fail as retryable. */
class LateNode implements ServingNode {
  node: ClusterNode | null = null;
  readonly definitionStore: DefinitionStore = new LateDefinitionStore(() => this.#require().definitionStore);
  readonly activations: ActivationFeed = {
    list: (...args) => this.#require().activations.list(...args),
    waitBeyond: (...args) => this.#require().activations.waitBeyond(...args),
  };

  readonly identityAdmin: IdentityOperations = {
    listQuarantine: (...args) => this.#require().identityAdmin.listQuarantine(...args),
    approve: (...args) => this.#require().identityAdmin.approve(...args),
    reject: (...args) => this.#require().identityAdmin.reject(...args),
    explain: (...args) => this.#require().identityAdmin.explain(...args),
    unmerge: (...args) => this.#require().identityAdmin.unmerge(...args),
  };

  ingest(...args: Parameters<ServingNode['ingest']>) {
    return this.#require().ingest(...args);
  }

  getProfile(...args: Parameters<ServingNode['getProfile']>) {
    return this.#require().getProfile(...args);
  }

  listProfileEvents(...args: Parameters<ServingNode['listProfileEvents']>) {
    return this.#require().listProfileEvents(...args);
  }

  decide(...args: Parameters<ClusterNode['decide']>) {
    return this.#require().decide(...args);
  }

  listReceipts(...args: Parameters<ClusterNode['listReceipts']>) {
    return this.#require().listReceipts(...args);
  }

  #require(): ClusterNode {
    if (this.node === null) throw new NodeUnavailableError('node is still joining the cluster; retry shortly');
    return this.node;
  }
}

/** The cluster node's definition store, once the node exists. */
class LateDefinitionStore implements DefinitionStore {
  readonly #store: () => DefinitionStore;

  constructor(store: () => DefinitionStore) {
    this.#store = store;
  }

  listLatest(...args: Parameters<DefinitionStore['listLatest']>) {
    return this.#store().listLatest(...args);
  }

  getVersion(...args: Parameters<DefinitionStore['getVersion']>) {
    return this.#store().getVersion(...args);
  }

  listVersions(...args: Parameters<DefinitionStore['listVersions']>) {
    return this.#store().listVersions(...args);
  }

  append(...args: Parameters<DefinitionStore['append']>) {
    return this.#store().append(...args);
  }

  watch(...args: Parameters<DefinitionStore['watch']>) {
    return this.#store().watch(...args);
  }
}

export async function startClusterProcess(options: ClusterProcessOptions): Promise<ClusterProcess> {
  const { host, port, advertiseAddress, devMode, writeKeys, drainTimeoutMs, webhooks: destinations, webhookLeaseTtlMs, webhookLeaseRenewIntervalMs, ...nodeOptions } = options;
  // Checked before anything starts, so that invalid timings fail at once.
  resolveWebhookLeaseTimings({ webhookLeaseTtlMs, webhookLeaseRenewIntervalMs });
  const late = new LateNode();
  let webhooks: WebhookDispatcher | null = null;
  const server = new ApiServer(late, {
    host,
    port,
    logger: options.logger,
    auth: { devMode: devMode ?? false, writeKeys: writeKeys ?? new Map() },
    webhooks: () => webhooks,
  });
  const address = await server.start();

  let node: ClusterNode;
  try {
    node = await ClusterNode.start({ ...nodeOptions, grpcAddress: advertiseAddress ?? address });
  } catch (error) {
    await server.stop({ graceMs: 0 });
    throw error;
  }
  late.node = node;
  webhooks = startClusterWebhookDispatcher(node, destinations, { webhookLeaseTtlMs, webhookLeaseRenewIntervalMs }, options.logger);

  let stopping: Promise<void> | null = null;
  let markStopped: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (markStopped = resolve));
  const stop = () => {
    stopping ??= (async () => {
      await server.stop({ graceMs: 5_000 });
      // The dispatcher releases its leases through the node's NATS connection, so it stops before the node disconnects.
      await webhooks?.stop();
      await node.drain({ timeoutMs: drainTimeoutMs ?? 30_000 });
      markStopped();
    })();
    return stopping;
  };
  node.onDrainRequest(() => void stop());

  return { address, node, server, webhooks, stopped, stop };
}
