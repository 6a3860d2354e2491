/**
 * The node's gRPC server: IngestService, ProfileService, WebhookService, DefinitionService
 * when the node keeps definitions, standard health checking and server reflection (so grpcurl works
 * without the proto files).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import { Lifecycle } from '../common/lifecycle.js';
import type { Logger } from '../common/logger.js';
import type { ServingNode } from '../cluster/serving-node.js';
import type { AuthOptions } from './auth.js';
import { activationServiceDefinition, createActivationService } from './activation-service.js';
import { createDecisionService, decisionServiceDefinition } from './decision-service.js';
import { createDefinitionService, definitionServiceDefinition } from './definition-service.js';
import { createIdentityService, identityServiceDefinition } from './identity-service.js';
import { createIngestService, ingestServiceDefinition } from './ingest-service.js';
import { createProfileService, profileServiceDefinition } from './profile-service.js';
import { createWebhookService, webhookServiceDefinition } from './webhook-service.js';
import type { WebhookDispatcher } from '../decisions/activation-delivery/webhook-dispatcher.js';

const PROTO_ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'proto');
const SERVICES = ['rtcdp.v1.IngestService', 'rtcdp.v1.ProfileService', 'rtcdp.v1.WebhookService'];
const PROTO_FILES = ['rtcdp/v1/event.proto', 'rtcdp/v1/ingest.proto', 'rtcdp/v1/profile.proto', 'rtcdp/v1/webhooks.proto'];
const DEFINITION_SERVICE = 'rtcdp.v1.DefinitionService';
const DEFINITION_PROTO_FILE = 'rtcdp/v1/definitions.proto';
const ACTIVATION_SERVICE = 'rtcdp.v1.ActivationService';
const ACTIVATION_PROTO_FILE = 'rtcdp/v1/activations.proto';
const DECISION_SERVICE = 'rtcdp.v1.DecisionService';
const DECISION_PROTO_FILE = 'rtcdp/v1/decisions.proto';
const IDENTITY_SERVICE = 'rtcdp.v1.IdentityService';
const IDENTITY_PROTO_FILE = 'rtcdp/v1/identity.proto';

export interface ApiServerOptions {
  /** Interface to listen on. Default 127.0.0.1. */
  host?: string;
  /** TCP port; 0 picks a free one. Default 50051. */
  port?: number;
  auth: AuthOptions;
  logger: Logger;
  /** Largest request accepted, in bytes; larger ones fail with RESOURCE_EXHAUSTED. Default 4 MiB. */
  maxReceiveMessageBytes?: number;
  /** Returns the node's webhook dispatcher, or null without destinations. Default: none. */
  webhooks?: () => WebhookDispatcher | null;
}

export class ApiServer {
  readonly #server: Server;
  readonly #health: HealthImplementation;
  readonly #logger: Logger;
  readonly #lifecycle: Lifecycle;
  /** Names reported by the health service: '' for the server and each service it serves. */
  readonly #healthNames: string[];
  /** Aborted when the server stops, which ends the activation subscriptions. */
  readonly #stopping = new AbortController();
  #address = '';

  constructor(node: ServingNode, private readonly options: ApiServerOptions) {
    this.#logger = options.logger.child({ component: 'api' });
    this.#lifecycle = new Lifecycle('api', this.#logger);
    this.#server = new Server({ 'grpc.max_receive_message_length': options.maxReceiveMessageBytes ?? 4 * 1024 * 1024 });
    const optional = this.#optionalServices(node, options);
    this.#healthNames = ['', ...SERVICES, ...optional.map((service) => service.name)];
    this.#health = new HealthImplementation(Object.fromEntries(this.#healthNames.map((name) => [name, 'NOT_SERVING' as const])));

    this.#server.addService(ingestServiceDefinition, createIngestService(node, options.auth, this.#logger, this.#stopping.signal));
    this.#server.addService(profileServiceDefinition, createProfileService(node, options.auth, this.#logger));
    this.#server.addService(webhookServiceDefinition, createWebhookService(options.webhooks ?? (() => null), options.auth, this.#logger));
    for (const service of optional) service.add();
    this.#health.addToServer(this.#server);
    new ReflectionService(loadProtoDefinitions([...PROTO_FILES, ...optional.map((service) => service.protoFile)])).addToServer(this.#server);
  }

  /** The services that only some nodes serve: definitions, activations, decisions and identity. */
  #optionalServices(node: ServingNode, options: ApiServerOptions): Array<{ name: string; protoFile: string; add: () => void }> {
    const services: Array<{ name: string; protoFile: string; add: () => void }> = [];
    const { definitionStore, activations } = node;
    if (definitionStore !== undefined) {
      services.push({
        name: DEFINITION_SERVICE,
        protoFile: DEFINITION_PROTO_FILE,
        add: () => this.#server.addService(definitionServiceDefinition, createDefinitionService(definitionStore, options.auth, this.#logger, node.testDefinitions?.bind(node))),
      });
    }
    if (activations !== undefined) {
      services.push({
        name: ACTIVATION_SERVICE,
        protoFile: ACTIVATION_PROTO_FILE,
        add: () => this.#server.addService(activationServiceDefinition, createActivationService(activations, options.auth, this.#logger, this.#stopping.signal)),
      });
    }
    if (node.decide !== undefined && node.listReceipts !== undefined) {
      const deciding = { decide: node.decide.bind(node), listReceipts: node.listReceipts.bind(node) };
      services.push({
        name: DECISION_SERVICE,
        protoFile: DECISION_PROTO_FILE,
        add: () => this.#server.addService(decisionServiceDefinition, createDecisionService(deciding, options.auth, this.#logger)),
      });
    }
    const identityAdmin = node.identityAdmin;
    if (identityAdmin !== undefined) {
      services.push({
        name: IDENTITY_SERVICE,
        protoFile: IDENTITY_PROTO_FILE,
        add: () => this.#server.addService(identityServiceDefinition, createIdentityService(identityAdmin, options.auth, this.#logger)),
      });
    }
    return services;
  }

  /** "host:port" the server listens on, once started. */
  get address(): string {
    return this.#address;
  }

  async start(): Promise<string> {
    this.#lifecycle.set('starting');
    const host = this.options.host ?? '127.0.0.1';
    const port = await new Promise<number>((resolve, reject) => {
      this.#server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${this.options.port ?? 50051}`, ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      );
    });

    this.#address = `${host}:${port}`;
    for (const name of this.#healthNames) this.#health.setStatus(name, 'SERVING');
    this.#lifecycle.set('running', { address: this.#address });
    return this.#address;
  }

  /**
   * Reports NOT_SERVING, lets calls in progress finish for up to `graceMs`, then cancels the
   * rest. Stopping does not wait more than FORCED_CLOSE_WAIT_MS after that for the
   * connections to close, so an open connection cannot keep the node from exiting.
   */
  async stop(options: { graceMs?: number } = {}): Promise<void> {
    if (this.#lifecycle.is('stopped', 'created')) return;
    this.#lifecycle.set('draining');
    for (const name of this.#healthNames) this.#health.setStatus(name, 'NOT_SERVING');
    this.#stopping.abort();

    const closed = new Promise<boolean>((resolve) => this.#server.tryShutdown(() => resolve(true)));
    const graceMs = options.graceMs ?? 5_000;
    if (!(await resolvesWithin(closed, graceMs))) {
      this.#server.forceShutdown();
      if (!(await resolvesWithin(closed, FORCED_CLOSE_WAIT_MS))) {
        this.#logger.warn({ address: this.#address, graceMs, waitedMs: FORCED_CLOSE_WAIT_MS }, 'gRPC connections were still open after the server cancelled their calls; stopping without them');
      }
    }
    this.#lifecycle.set('stopped');
  }
}

/** How long stop waits for connections to close after forceShutdown cancelled their calls. */
const FORCED_CLOSE_WAIT_MS = 2_000;

/** Resolves with true once `promise` resolves, or with false after `timeoutMs`. */
async function resolvesWithin(promise: Promise<boolean>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** rtcdp's services and the standard health service, so reflection can describe both. */
function loadProtoDefinitions(protoFiles: readonly string[]) {
  return loadSync([...protoFiles, path.basename(healthProtoPath)], {
    includeDirs: [PROTO_ROOT, path.dirname(healthProtoPath)],
    keepCase: true,
    defaults: true,
  });
}
