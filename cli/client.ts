/**
 * gRPC clients of the rtcdp services for the CLI. Connections are plaintext (insecure
 * credentials), so use them on a trusted network or through a TLS-terminating proxy.
 */
import {
  type CallOptions,
  type ClientOptions,
  type ClientUnaryCall,
  Metadata,
  type ServiceError,
  credentials,
  status,
} from '@grpc/grpc-js';
import { ERROR_CODE_TRAILER } from '../api/status.js';
import { ActivationServiceClient } from '../proto/gen/rtcdp/v1/activations.js';
import { WebhookServiceClient } from '../proto/gen/rtcdp/v1/webhooks.js';
import { DecisionServiceClient } from '../proto/gen/rtcdp/v1/decisions.js';
import { DefinitionServiceClient } from '../proto/gen/rtcdp/v1/definitions.js';
import { IdentityServiceClient } from '../proto/gen/rtcdp/v1/identity.js';
import { IngestServiceClient } from '../proto/gen/rtcdp/v1/ingest.js';
import { ProfileServiceClient } from '../proto/gen/rtcdp/v1/profile.js';
import { CommandFailure } from './common.js';

/**
 * Deadline of a unary call, in milliseconds. It is longer than a node's query timeout (5 s
 * embedded, 10 s in cluster mode), so a call that the node gives up on shows its reason.
 */
export const DEFAULT_DEADLINE_MS = 15_000;

// A profile event page holds up to 1000 events, which can pass grpc-js's 4 MiB default.
const CLIENT_OPTIONS: Partial<ClientOptions> = {
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
};

export function createIngestClient(server: string): IngestServiceClient {
  return new IngestServiceClient(server, credentials.createInsecure(), CLIENT_OPTIONS);
}

export function createProfileClient(server: string): ProfileServiceClient {
  return new ProfileServiceClient(server, credentials.createInsecure(), CLIENT_OPTIONS);
}

export function createActivationClient(server: string): ActivationServiceClient {
  return new ActivationServiceClient(server, credentials.createInsecure(), CLIENT_OPTIONS);
}

export function createWebhookClient(server: string): WebhookServiceClient {
  return new WebhookServiceClient(server, credentials.createInsecure(), CLIENT_OPTIONS);
}

export function createDecisionClient(server: string): DecisionServiceClient {
  return new DecisionServiceClient(server, credentials.createInsecure(), CLIENT_OPTIONS);
}

export function createDefinitionClient(server: string): DefinitionServiceClient {
  return new DefinitionServiceClient(server, credentials.createInsecure(), CLIENT_OPTIONS);
}

export function createIdentityClient(server: string): IdentityServiceClient {
  return new IdentityServiceClient(server, credentials.createInsecure(), CLIENT_OPTIONS);
}

/**
 * Builds call metadata that carries the write key as "authorization: Bearer KEY".
 * Without a key the metadata is empty, and a server in dev mode uses the "default" workspace.
 */
export function writeKeyMetadata(writeKey: string | undefined): Metadata {
  const metadata = new Metadata();
  if (writeKey !== undefined && writeKey !== '') {
    metadata.set('authorization', `Bearer ${writeKey}`);
  }

  return metadata;
}

type UnaryMethod<Request, Response> = (
  request: Request,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Response) => void,
) => ClientUnaryCall;

/** Calls a unary method with a deadline and resolves with its response or rejects with its ServiceError. */
export function callUnary<Request, Response>(
  method: UnaryMethod<Request, Response>,
  request: Request,
  metadata: Metadata,
  timeoutMs: number = DEFAULT_DEADLINE_MS,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    method(request, metadata, { deadline: Date.now() + timeoutMs }, (error, response) => {
      if (error) {
        reject(error);
        return;
      }
      resolve(response);
    });
  });
}

export function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).code === 'number' && 'metadata' in error;
}

/** Returns the gRPC status name of a code, for example "UNAVAILABLE" for 14. */
export function statusName(code: number): string {
  return status[code] ?? `status ${code}`;
}

/** Formats a gRPC error as "CODE: details", the details being the server's message. */
export function describeServiceError(error: ServiceError): string {
  return `${statusName(error.code)}: ${serviceErrorDetails(error)}`;
}

/** Returns the details of a gRPC error, or its message when the details are empty. */
export function serviceErrorDetails(error: ServiceError): string {
  const details = error.details === '' ? error.message : error.details;
  // grpc-js ends connection errors with "Resolution note: " even when it has no note.
  return details.replace(/[.\s]*Resolution note:\s*$/, '');
}

/**
 * Describes a call that ran out of time: the node's own message when the node gave up
 * waiting (it names what it waited for), else the client's deadline.
 */
export function deadlineFailure(error: ServiceError, server: string): CommandFailure {
  const details = serviceErrorDetails(error);
  if (details !== '' && !/^deadline exceeded/i.test(details)) return new CommandFailure(`${server} timed out: ${details}`);
  return new CommandFailure(`request to ${server} timed out after ${DEFAULT_DEADLINE_MS / 1000} s`);
}

/** Returns the failure of a call that found no node at `server`, with what to check. */
export function unreachable(error: ServiceError, server: string): CommandFailure {
  // A node that returns UNAVAILABLE itself sends its error code, so it is reachable, but
  // something it depends on is not, such as the NATS servers of a cluster node.
  if (error.metadata?.get(ERROR_CODE_TRAILER).length > 0) {
    return new CommandFailure(`the node at ${server} cannot serve the request now: ${serviceErrorDetails(error)}. Retry shortly; in cluster mode, check that its NATS servers run`);
  }
  return new CommandFailure(`cannot reach rtcdp at ${server}: ${serviceErrorDetails(error)}. Check --server, or start a node there (npm start, or rtcdp dev)`);
}

/**
 * Turns a failed call to a node at `server` into a one-line CommandFailure. `service` names
 * the service for UNIMPLEMENTED, with `unimplementedHint` after it. Other errors pass through.
 */
export function describeCallFailure(error: unknown, server: string, service: string, unimplementedHint = ''): unknown {
  if (!isServiceError(error)) return error;

  switch (error.code) {
    case status.UNAVAILABLE:
      return unreachable(error, server);
    case status.DEADLINE_EXCEEDED:
      return deadlineFailure(error, server);
    case status.UNIMPLEMENTED:
      return new CommandFailure(`${server} does not serve ${service}${unimplementedHint}`);
    case status.UNAUTHENTICATED:
    case status.PERMISSION_DENIED:
      return new CommandFailure(`${server} rejected the write key: ${serviceErrorDetails(error)}. Pass a write key the node was started with, or none to a node in dev mode`);
    case status.NOT_FOUND:
    case status.ABORTED:
    case status.INVALID_ARGUMENT:
    case status.FAILED_PRECONDITION:
    case status.OUT_OF_RANGE:
      return new CommandFailure(serviceErrorDetails(error));
    default:
      return new CommandFailure(`request to ${server} failed: ${describeServiceError(error)}`);
  }
}
