/**
 * Starts an embedded rtcdp: one node on its own RocksDB and the gRPC server in front of it,
 * in this process, with no external services.
 */
import type { Logger } from '../common/logger.js';
import { RtcdpNode } from '../cluster/node.js';
import type { NodeOptions } from '../cluster/node-options.js';
import type { WebhookDestination } from '../decisions/activation-delivery/webhook-config.js';
import { startWebhookDispatcher, type WebhookDispatcher } from '../decisions/activation-delivery/webhook-dispatcher.js';
import { ApiServer } from './server.js';

export interface EmbeddedOptions extends Omit<NodeOptions, 'logger'> {
  host?: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  logger: Logger;
  /** Calls without a write key go to the "default" workspace. */
  devMode?: boolean;
  /** Write key to workspace. */
  writeKeys?: Map<string, string>;
  /** How long `stop` waits for calls and mailboxes to finish. Default 30,000 ms. */
  drainTimeoutMs?: number;
  /** Webhook destinations that receive the node's activations. Default: none. */
  webhooks?: readonly WebhookDestination[];
}

export interface EmbeddedRtcdp {
  /** "host:port" of the gRPC server. */
  address: string;
  node: RtcdpNode;
  server: ApiServer;
  /** Delivers activations to the webhook destinations; null without destinations. */
  webhooks: WebhookDispatcher | null;
  /** Stops taking calls, drains the node (applies and persists everything acknowledged) and closes RocksDB. */
  stop(): Promise<void>;
}

export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedRtcdp> {
  const { host, port, devMode, writeKeys, drainTimeoutMs, webhooks: destinations, ...nodeOptions } = options;
  const node = await RtcdpNode.start(nodeOptions);
  let webhooks: WebhookDispatcher | null = null;
  const server = new ApiServer(node, {
    host,
    port,
    logger: options.logger,
    auth: { devMode: devMode ?? false, writeKeys: writeKeys ?? new Map() },
    webhooks: () => webhooks,
  });

  let address: string;
  try {
    address = await server.start();
  } catch (error) {
    await node.drain();
    throw error;
  }
  webhooks = startWebhookDispatcher(node, destinations, options.logger);

  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= (async () => {
      await server.stop({ graceMs: 5_000 });
      // The dispatcher writes its cursors to the node's RocksDB, so it stops before the node closes it.
      await webhooks?.stop();
      await node.drain({ timeoutMs: drainTimeoutMs ?? 30_000 });
    })();
    return stopping;
  };

  return { address, node, server, webhooks, stop };
}
