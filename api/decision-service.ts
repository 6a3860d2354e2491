/**
 * DecisionService: Decide and ListReceipts, handled by the profile's actor through the
 * node. Only nodes that make decisions serve it.
 */
import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../common/logger.js';
import { InvalidArgumentError } from '../cluster/errors.js';
import type { DecideInput } from '../cluster/serving-node.js';
import type { DecisionReceipt } from '../profiles/decision-state.js';
import type { JsonValue } from '../profiles/event.js';
import type { Identifier } from '../profiles/identifiers.js';
import {
  DecideRequest,
  DecisionServiceService,
  ListReceiptsRequest,
  type DecideResponse,
  type ListReceiptsResponse,
  type Receipt,
} from '../proto/gen/rtcdp/v1/decisions.js';
import { workspaceOf, type AuthOptions } from './auth.js';
import { requireIdentifier } from './profile-service.js';
import { toServiceError } from './status.js';
import { assertWellFormed, strictDeserializer, type MalformedRequest } from './strict-decoding.js';

/** Maximum length of a channel name, in characters. */
const MAX_CHANNEL_LENGTH = 64;

/**
 * Maximum size of a Decide call's context as JSON, in bytes: the default maxEventBytes, so it
 * matches the largest event whose properties a trigger passes as context. Every receipt keeps
 * its context in the profile's snapshot, so without a limit a few large calls bloat it.
 */
const MAX_CONTEXT_BYTES = 32_768;

export const decisionServiceDefinition = {
  ...DecisionServiceService,
  decide: { ...DecisionServiceService.decide, requestDeserialize: strictDeserializer(DecideRequest, 'rtcdp.v1.DecideRequest') },
  listReceipts: { ...DecisionServiceService.listReceipts, requestDeserialize: strictDeserializer(ListReceiptsRequest, 'rtcdp.v1.ListReceiptsRequest') },
};

/** The node calls the service needs. */
export interface DecidingNode {
  decide(workspace: string, identifier: Identifier, request: DecideInput): Promise<DecisionReceipt>;
  listReceipts(workspace: string, identifier: Identifier): Promise<DecisionReceipt[]>;
}

export function createDecisionService(node: DecidingNode, auth: AuthOptions, logger: Logger): UntypedServiceImplementation {
  const log = logger.child({ service: 'DecisionService' });

  return {
    decide(call: ServerUnaryCall<DecideRequest | MalformedRequest, DecideResponse>, callback: sendUnaryData<DecideResponse>) {
      void (async () => {
        const request = assertWellFormed(call.request);
        const channel = parseChannel(request.channel);
        const context = parseContext(request.context);
        const receipt = await node.decide(workspaceOf(call.metadata, auth), requireIdentifier(request.identifier), { channel, context });
        const chosen = receipt.chosen;
        return { action: chosen === null || chosen.control ? '' : chosen.action, receipt: receiptToProto(receipt) };
      })().then(
        (response) => callback(null, response),
        (error) => callback(toServiceError(error, log, { method: 'Decide' })),
      );
    },

    listReceipts(call: ServerUnaryCall<ListReceiptsRequest | MalformedRequest, ListReceiptsResponse>, callback: sendUnaryData<ListReceiptsResponse>) {
      void (async () => {
        const request = assertWellFormed(call.request);
        const receipts = await node.listReceipts(workspaceOf(call.metadata, auth), requireIdentifier(request.identifier));
        return { receipts: receipts.map(receiptToProto) };
      })().then(
        (response) => callback(null, response),
        (error) => callback(toServiceError(error, log, { method: 'ListReceipts' })),
      );
    },
  };
}

/** Channel names as rules name them: a letter, then letters, digits, "_", ".", ":" or "-". */
const CHANNEL_NAME = /^[A-Za-z][A-Za-z0-9_.:-]*$/;

function parseChannel(channel: string): string {
  if (channel.length > MAX_CHANNEL_LENGTH) throw new InvalidArgumentError(`channel must be at most ${MAX_CHANNEL_LENGTH} characters, received ${channel.length}`);
  if (channel !== '' && !CHANNEL_NAME.test(channel)) {
    throw new InvalidArgumentError(`channel must be empty or a letter followed by letters, digits, "_", ".", ":" or "-", received ${JSON.stringify(channel)}`);
  }
  return channel;
}

function parseContext(context: DecideRequest['context']): Record<string, JsonValue> {
  const bytes = Buffer.byteLength(JSON.stringify(context ?? {}));
  if (bytes > MAX_CONTEXT_BYTES) throw new InvalidArgumentError(`context must be at most ${MAX_CONTEXT_BYTES} bytes as JSON, received ${bytes}`);
  return (context ?? {}) as Record<string, JsonValue>;
}

export function receiptToProto(receipt: DecisionReceipt): Receipt {
  const chosen = receipt.chosen;
  return {
    decisionId: receipt.decisionId,
    at: new Date(receipt.atMs).toISOString(),
    channel: receipt.channel,
    cause: receipt.cause.kind,
    messageId: receipt.cause.kind === 'event' ? receipt.cause.messageId : '',
    context: { ...receipt.context },
    chosen: chosen === null ? undefined : { rule: chosen.rule, version: chosen.version, action: chosen.action, controlGroup: chosen.control, priority: chosen.priority },
    candidates: receipt.candidates.map((candidate) => ({
      rule: candidate.rule,
      version: candidate.version,
      outcome: candidate.outcome,
      priority: candidate.priority ?? undefined,
      detail: candidate.detail,
    })),
  };
}
