/**
 * ActivationService: pages through a workspace's activation log and streams new activations
 * as they are stored. A subscription sends what is stored after the client's sequence, then
 * waits for more. It follows gRPC flow control, so a slow client slows only its own stream.
 */
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { once } from 'node:events';
import type { Logger } from '../common/logger.js';
import { assertWorkspaceName } from '../cluster/arguments.js';
import { InvalidArgumentError, OutOfRangeError } from '../cluster/errors.js';
import type { ActivationFeed } from '../cluster/serving-node.js';
import { ACTIVATION_TYPES, type ActivationType } from '../profiles/activation.js';
import type { StoredActivation } from '../profiles/activation-log.js';
import {
  ActivationServiceService,
  ListActivationsRequest,
  SubscribeActivationsRequest,
  type Activation,
  type ListActivationsResponse,
} from '../proto/gen/rtcdp/v1/activations.js';
import { workspaceOf, type AuthOptions } from './auth.js';
import { toServiceError } from './status.js';
import { assertWellFormed, strictDeserializer, type MalformedRequest } from './strict-decoding.js';

/** Largest page of ListActivations. */
export const MAX_ACTIVATION_PAGE = 1_000;
const DEFAULT_ACTIVATION_PAGE = 100;
/** Activations a subscription reads from the log at a time. */
const SUBSCRIPTION_PAGE = 500;

export const activationServiceDefinition = {
  ...ActivationServiceService,
  listActivations: {
    ...ActivationServiceService.listActivations,
    requestDeserialize: strictDeserializer(ListActivationsRequest, 'rtcdp.v1.ListActivationsRequest'),
  },
  subscribeActivations: {
    ...ActivationServiceService.subscribeActivations,
    requestDeserialize: strictDeserializer(SubscribeActivationsRequest, 'rtcdp.v1.SubscribeActivationsRequest'),
  },
};

/** `stopping` aborts when the server stops, which ends every subscription with OK. */
export function createActivationService(feed: ActivationFeed, auth: AuthOptions, logger: Logger, stopping: AbortSignal): UntypedServiceImplementation {
  const log = logger.child({ service: 'ActivationService' });

  return {
    listActivations(call: ServerUnaryCall<ListActivationsRequest | MalformedRequest, ListActivationsResponse>, callback: sendUnaryData<ListActivationsResponse>) {
      void (async () => {
        const request = assertWellFormed(call.request);
        const workspace = workspaceOf(call.metadata, auth);
        assertWorkspaceName(workspace);
        const page = await feed.list(workspace, { afterSequence: request.afterSequence, limit: parseLimit(request.limit), types: parseTypes(request.types) });
        return { activations: page.activations.map(activationToProto), nextAfterSequence: page.nextAfterSequence, latestSequence: page.visibleSequence };
      })().then(
        (response) => callback(null, response),
        (error) => callback(toServiceError(error, log, { method: 'ListActivations' })),
      );
    },

    subscribeActivations(call: ServerWritableStream<SubscribeActivationsRequest | MalformedRequest, Activation>) {
      const cancelled = new AbortController();
      const onStop = () => cancelled.abort();
      call.on('cancelled', onStop);
      stopping.addEventListener('abort', onStop, { once: true });

      stream(call, feed, auth, cancelled.signal)
        .then(
          () => call.end(),
          // grpc-js sends the status of an 'error' event, but destroy() closes the stream without a status.
          (error) => call.emit('error', toServiceError(error, log, { method: 'SubscribeActivations' })),
        )
        .finally(() => stopping.removeEventListener('abort', onStop));
    },
  };
}

async function stream(
  call: ServerWritableStream<SubscribeActivationsRequest | MalformedRequest, Activation>,
  feed: ActivationFeed,
  auth: AuthOptions,
  signal: AbortSignal,
): Promise<void> {
  const request = assertWellFormed(call.request);
  const workspace = workspaceOf(call.metadata, auth);
  assertWorkspaceName(workspace);
  const types = parseTypes(request.types);

  let after = request.afterSequence;
  let firstPage = true;
  while (!signal.aborted) {
    const page = await feed.list(workspace, { afterSequence: after, limit: SUBSCRIPTION_PAGE, types });
    if (firstPage) assertWithinLog(workspace, after, page.endSequence);
    firstPage = false;
    for (const activation of page.activations) {
      if (signal.aborted) return;
      if (!call.write(activationToProto(activation))) await once(call, 'drain', { signal }).catch(() => undefined);
    }
    const caughtUp = page.nextAfterSequence >= page.visibleSequence;
    after = page.nextAfterSequence;
    if (caughtUp) await feed.waitBeyond(workspace, after, signal);
  }
}

/**
 * Rejects a subscription's cursor past the newest stored activation. No such cursor was read
 * from this log: it may come from before the node's data directory was deleted, and waiting
 * on it would skip every activation stored until the log reached it again. ListActivations
 * takes such a cursor, because its response shows latest_sequence next to the empty page,
 * and clients ask past the end to learn it.
 */
function assertWithinLog(workspace: string, afterSequence: number, endSequence: number): void {
  if (afterSequence <= endSequence) return;
  throw new OutOfRangeError(
    `after_sequence ${afterSequence} is past the newest activation sequence of workspace ${JSON.stringify(workspace)}, ${endSequence}, so it was not read from this log; ` +
      `pass a sequence the log returned, latest_sequence of ListActivations for only new activations, or 0 for all that are kept`,
  );
}

function parseLimit(limit: number): number {
  if (limit === 0) return DEFAULT_ACTIVATION_PAGE;
  if (limit > MAX_ACTIVATION_PAGE) throw new InvalidArgumentError(`limit must be at most ${MAX_ACTIVATION_PAGE}, received ${limit}`);
  return limit;
}

function parseTypes(types: string[]): ActivationType[] {
  for (const [i, type] of types.entries()) {
    if (!(ACTIVATION_TYPES as readonly string[]).includes(type)) {
      throw new InvalidArgumentError(`types[${i}] must be one of ${ACTIVATION_TYPES.join(', ')}, received ${JSON.stringify(type)}`);
    }
  }
  return types as ActivationType[];
}

export function activationToProto(activation: StoredActivation): Activation {
  const { cause } = activation;
  return {
    sequence: activation.sequence,
    id: activation.id,
    type: activation.type,
    profileId: activation.profileId,
    name: activation.name,
    definitionVersion: activation.definitionVersion,
    at: new Date(activation.atMs).toISOString(),
    cause: {
      kind: cause.kind,
      shard: cause.kind === 'event' ? cause.shard : 0,
      sequence: cause.kind === 'event' ? cause.sequence : 0,
      messageId: cause.kind === 'event' || cause.kind === 'merge' ? cause.messageId : '',
      due: cause.kind === 'timer' ? new Date(cause.dueMs).toISOString() : '',
      rule: cause.kind === 'merge' ? cause.rule : '',
    },
    action: activation.action ?? '',
    channel: activation.channel ?? '',
    step: activation.step ?? '',
  };
}
