/**
 * WebhookService: the webhook destinations a node delivers the caller's workspace's
 * activations to, with their cursors, delivery counters and dead letters, and replay
 * requests for those dead letters. A node started without destinations returns empty
 * lists. In cluster mode the cursor, the lease holder and the dead letters come from the
 * cluster's webhook bucket, and the counters are those of the node that serves the call.
 */
import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import { RtcdpError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { assertWorkspaceName } from '../cluster/arguments.js';
import { InvalidArgumentError } from '../cluster/errors.js';
import type { ReplaySelection, WebhookDeadLetter as StoredDeadLetter } from '../decisions/activation-delivery/delivery-state.js';
import type { WebhookDispatcher } from '../decisions/activation-delivery/webhook-dispatcher.js';
import {
  ListWebhookDeadLettersRequest,
  ListWebhookDestinationsRequest,
  ReplayWebhookDeadLettersRequest,
  WebhookServiceService,
  type ListWebhookDeadLettersResponse,
  type ListWebhookDestinationsResponse,
  type ReplayWebhookDeadLettersResponse,
  type WebhookDeadLetter,
  type WebhookDestinationStatus,
} from '../proto/gen/rtcdp/v1/webhooks.js';
import { workspaceOf, type AuthOptions } from './auth.js';
import { toServiceError } from './status.js';
import { assertWellFormed, strictDeserializer, type MalformedRequest } from './strict-decoding.js';

/** Largest page of ListWebhookDeadLetters. */
export const MAX_DEAD_LETTER_PAGE = 1_000;
const DEFAULT_DEAD_LETTER_PAGE = 100;

/** The caller's workspace has no webhook destination by the name given on this node. */
export class WebhookDestinationNotFoundError extends RtcdpError {
  readonly code = 'WEBHOOK_DESTINATION_NOT_FOUND';
}

export const webhookServiceDefinition = {
  ...WebhookServiceService,
  listWebhookDestinations: {
    ...WebhookServiceService.listWebhookDestinations,
    requestDeserialize: strictDeserializer(ListWebhookDestinationsRequest, 'rtcdp.v1.ListWebhookDestinationsRequest'),
  },
  listWebhookDeadLetters: {
    ...WebhookServiceService.listWebhookDeadLetters,
    requestDeserialize: strictDeserializer(ListWebhookDeadLettersRequest, 'rtcdp.v1.ListWebhookDeadLettersRequest'),
  },
  replayWebhookDeadLetters: {
    ...WebhookServiceService.replayWebhookDeadLetters,
    requestDeserialize: strictDeserializer(ReplayWebhookDeadLettersRequest, 'rtcdp.v1.ReplayWebhookDeadLettersRequest'),
  },
};

/**
 * `dispatcherOf` returns the node's dispatcher, or null on a node started without
 * destinations or before its dispatcher starts, since the server may start first.
 */
export function createWebhookService(dispatcherOf: () => WebhookDispatcher | null, auth: AuthOptions, logger: Logger): UntypedServiceImplementation {
  const log = logger.child({ service: 'WebhookService' });

  return {
    listWebhookDestinations(
      call: ServerUnaryCall<ListWebhookDestinationsRequest | MalformedRequest, ListWebhookDestinationsResponse>,
      callback: sendUnaryData<ListWebhookDestinationsResponse>,
    ) {
      void (async () => {
        assertWellFormed(call.request);
        const workspace = workspaceOf(call.metadata, auth);
        assertWorkspaceName(workspace);
        const dispatcher = dispatcherOf();
        if (dispatcher === null) return { destinations: [], workspace, clusterMode: false };

        const destinations = await Promise.all(dispatcher.destinations(workspace).map((destination) => destinationStatus(dispatcher, destination.name)));
        return { destinations, workspace, clusterMode: dispatcher.shared };
      })().then(
        (response) => callback(null, response),
        (error) => callback(toServiceError(error, log, { method: 'ListWebhookDestinations' })),
      );
    },

    listWebhookDeadLetters(
      call: ServerUnaryCall<ListWebhookDeadLettersRequest | MalformedRequest, ListWebhookDeadLettersResponse>,
      callback: sendUnaryData<ListWebhookDeadLettersResponse>,
    ) {
      void (async () => {
        const request = assertWellFormed(call.request);
        const workspace = workspaceOf(call.metadata, auth);
        assertWorkspaceName(workspace);
        const limit = parseLimit(request.limit);
        const dispatcher = requireDestination(dispatcherOf(), request.destination, workspace);
        const deadLetters = await dispatcher.listDeadLetters(request.destination, limit, request.afterSequence);
        return { deadLetters: deadLetters.map(deadLetterToProto), nextAfterSequence: deadLetters.at(-1)?.firstSequence ?? request.afterSequence };
      })().then(
        (response) => callback(null, response),
        (error) => callback(toServiceError(error, log, { method: 'ListWebhookDeadLetters' })),
      );
    },

    replayWebhookDeadLetters(
      call: ServerUnaryCall<ReplayWebhookDeadLettersRequest | MalformedRequest, ReplayWebhookDeadLettersResponse>,
      callback: sendUnaryData<ReplayWebhookDeadLettersResponse>,
    ) {
      void (async () => {
        const request = assertWellFormed(call.request);
        const workspace = workspaceOf(call.metadata, auth);
        assertWorkspaceName(workspace);
        const selection = parseReplaySelection(request);
        const dispatcher = requireDestination(dispatcherOf(), request.destination, workspace);

        const queued = await dispatcher.queueReplays(request.destination, selection);
        log.info({ workspace, destination: request.destination, queued }, 'webhook dead letters queued for replay');
        return { queued };
      })().then(
        (response) => callback(null, response),
        (error) => callback(toServiceError(error, log, { method: 'ReplayWebhookDeadLetters' })),
      );
    },
  };
}

/** Returns the dispatcher when it delivers a destination of that name in the workspace; throws WebhookDestinationNotFoundError otherwise. */
function requireDestination(dispatcher: WebhookDispatcher | null, name: string, workspace: string): WebhookDispatcher {
  const destinations = dispatcher?.destinations(workspace) ?? [];
  if (dispatcher === null || !destinations.some((candidate) => candidate.name === name)) {
    throw notFound(name, workspace, destinations.map((candidate) => candidate.name));
  }
  return dispatcher;
}

function parseReplaySelection(request: ReplayWebhookDeadLettersRequest): ReplaySelection {
  if (request.all && request.firstSequences.length > 0) throw new InvalidArgumentError('all and first_sequences exclude each other: replay every dead letter or the listed ones');
  if (request.all) return { all: true };
  if (request.firstSequences.length === 0) throw new InvalidArgumentError('name the dead letters to replay: set all, or list their first_sequences');

  const invalid = request.firstSequences.find((sequence) => !Number.isSafeInteger(sequence) || sequence < 1);
  if (invalid !== undefined) throw new InvalidArgumentError(`first_sequences must be activation sequences from 1, received ${invalid}`);
  return { firstSequences: request.firstSequences };
}

async function destinationStatus(dispatcher: WebhookDispatcher, name: string): Promise<WebhookDestinationStatus> {
  const { destination, stats, cursor, deliveringNode } = await dispatcher.status(name);
  return { name, url: destination.url.href, types: destination.types, ...stats, cursor, deliveringNode: deliveringNode ?? '' };
}

function parseLimit(limit: number): number {
  if (limit === 0) return DEFAULT_DEAD_LETTER_PAGE;
  if (limit > MAX_DEAD_LETTER_PAGE) throw new InvalidArgumentError(`limit must be at most ${MAX_DEAD_LETTER_PAGE}, got ${limit}`);
  return limit;
}

function notFound(name: string, workspace: string, names: string[]): WebhookDestinationNotFoundError {
  if (name === '') return new WebhookDestinationNotFoundError(`destination is empty: name a webhook destination of workspace ${workspace}`);
  const known = names.length === 0 ? `this node delivers to no destination of workspace ${workspace}` : `the destinations of workspace ${workspace} on this node are ${names.join(', ')}`;
  return new WebhookDestinationNotFoundError(`no webhook destination is named ${JSON.stringify(name)}: ${known}`);
}

function deadLetterToProto(deadLetter: StoredDeadLetter): WebhookDeadLetter {
  return {
    destination: deadLetter.destination,
    firstSequence: deadLetter.firstSequence,
    lastSequence: deadLetter.lastSequence,
    attempts: deadLetter.attempts,
    status: deadLetter.status ?? 0,
    error: deadLetter.error,
    failedAt: new Date(deadLetter.failedAtMs).toISOString(),
    activationsJson: JSON.stringify(deadLetter.activations),
    replayQueued: deadLetter.replayQueuedAtMs !== undefined,
  };
}
