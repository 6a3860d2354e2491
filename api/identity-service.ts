/**
 * IdentityService: quarantined identity links (list, approve, reject), explanations of why
 * two identifiers share a profile, and unmerges, through the node's IdentityAdmin. Both
 * modes serve it.
 */
import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../common/logger.js';
import { InvalidArgumentError } from '../cluster/errors.js';
import type { IdentityOperations, UnmergeResult } from '../cluster/identity-admin.js';
import type { Explanation, ExplainStep } from '../identity/identity-graph.js';
import type { QuarantineRecord, QuarantineStatus } from '../identity/identity-records.js';
import type { Identifier } from '../profiles/identifiers.js';
import {
  DecideLinkRequest,
  ExplainLinkRequest,
  IdentityServiceService,
  ListQuarantineRequest,
  UnmergeProfileRequest,
  type ExplainLinkResponse,
  type LinkStep,
  type ListQuarantineResponse,
  type QuarantinedLink,
  type UnmergeProfileResponse,
} from '../proto/gen/rtcdp/v1/identity.js';
import { workspaceOf, type AuthOptions } from './auth.js';
import { requireIdentifier } from './profile-service.js';
import { profileToProto } from './profile-view.js';
import { toServiceError } from './status.js';
import { assertWellFormed, strictDeserializer, type MalformedRequest } from './strict-decoding.js';

const STATUSES: readonly QuarantineStatus[] = ['pending', 'approved', 'rejected'];

export const identityServiceDefinition = {
  ...IdentityServiceService,
  listQuarantine: { ...IdentityServiceService.listQuarantine, requestDeserialize: strictDeserializer(ListQuarantineRequest, 'rtcdp.v1.ListQuarantineRequest') },
  approveLink: { ...IdentityServiceService.approveLink, requestDeserialize: strictDeserializer(DecideLinkRequest, 'rtcdp.v1.DecideLinkRequest') },
  rejectLink: { ...IdentityServiceService.rejectLink, requestDeserialize: strictDeserializer(DecideLinkRequest, 'rtcdp.v1.DecideLinkRequest') },
  explainLink: { ...IdentityServiceService.explainLink, requestDeserialize: strictDeserializer(ExplainLinkRequest, 'rtcdp.v1.ExplainLinkRequest') },
  unmergeProfile: { ...IdentityServiceService.unmergeProfile, requestDeserialize: strictDeserializer(UnmergeProfileRequest, 'rtcdp.v1.UnmergeProfileRequest') },
};

export function createIdentityService(admin: IdentityOperations, auth: AuthOptions, logger: Logger): UntypedServiceImplementation {
  const log = logger.child({ service: 'IdentityService' });
  const unary = <Request, Response>(method: string, handle: (request: Request, workspace: string) => Promise<Response>) =>
    (call: ServerUnaryCall<Request | MalformedRequest, Response>, callback: sendUnaryData<Response>) => {
      void (async () => handle(assertWellFormed(call.request), workspaceOf(call.metadata, auth)))().then(
        (response) => callback(null, response),
        (error) => callback(toServiceError(error, log, { method })),
      );
    };

  return {
    listQuarantine: unary<ListQuarantineRequest, ListQuarantineResponse>('ListQuarantine', async (request, workspace) => {
      const links = await admin.listQuarantine(workspace, parseStatus(request.status));
      return { links: links.map(linkToProto) };
    }),
    approveLink: unary<DecideLinkRequest, QuarantinedLink>('ApproveLink', async (request, workspace) => linkToProto(await admin.approve(workspace, requireId(request.id)))),
    rejectLink: unary<DecideLinkRequest, QuarantinedLink>('RejectLink', async (request, workspace) => linkToProto(await admin.reject(workspace, requireId(request.id)))),
    explainLink: unary<ExplainLinkRequest, ExplainLinkResponse>('ExplainLink', async (request, workspace) => {
      const explanation = await admin.explain(workspace, requireIdentifier(request.first, 'first'), requireIdentifier(request.second, 'second'));
      return explanationToProto(explanation);
    }),
    unmergeProfile: unary<UnmergeProfileRequest, UnmergeProfileResponse>('UnmergeProfile', async (request, workspace) => {
      const result = await admin.unmerge(workspace, requireIdentifier(request.profile, 'profile'), requireMerged(request));
      return unmergeToProto(result);
    }),
  };
}

function parseStatus(status: string): QuarantineStatus | undefined {
  if (status === '') return undefined;
  if (!(STATUSES as readonly string[]).includes(status)) throw new InvalidArgumentError(`status must be empty or one of ${STATUSES.join(', ')}, received ${JSON.stringify(status)}`);
  return status as QuarantineStatus;
}

function requireId(id: string): string {
  if (id === '') throw new InvalidArgumentError('id is required: the id of a quarantined link, as ListQuarantine returns it');
  return id;
}

/**
 * Returns the merged profile an unmerge request names: its id, or an identifier it brought
 * in. The generated decoder keeps both members of the oneof when a client sends both, so
 * both being set is rejected here rather than one silently winning.
 */
function requireMerged(request: UnmergeProfileRequest): Identifier | string {
  const { mergedProfileId, mergedIdentifier } = request;
  if (mergedProfileId !== undefined && mergedIdentifier !== undefined) {
    throw new InvalidArgumentError('set either merged_profile_id or merged_identifier, not both');
  }
  if (mergedIdentifier !== undefined) return requireIdentifier(mergedIdentifier, 'merged_identifier');
  if (mergedProfileId === undefined || mergedProfileId === '') {
    throw new InvalidArgumentError('merged_profile_id or merged_identifier is required: the id of the profile merged in (for example anon:a1), or an identifier it brought in');
  }
  return mergedProfileId;
}

function linkToProto(record: QuarantineRecord): QuarantinedLink {
  return {
    id: record.id,
    identifier: record.identifier,
    profileId: record.profileId,
    otherProfileId: record.otherProfileId ?? '',
    reason: record.reason,
    message: record.message,
    messageId: record.messageId,
    at: new Date(record.atMs).toISOString(),
    status: record.status,
    decidedAt: record.decidedAtMs === undefined ? '' : new Date(record.decidedAtMs).toISOString(),
    probability: record.probability ?? 0,
  };
}

function explanationToProto(explanation: Explanation): ExplainLinkResponse {
  return { profileId: explanation.profileId, steps: explanation.steps.map(stepToProto) };
}

function stepToProto(step: ExplainStep): LinkStep {
  const common = { kind: step.kind, profileId: step.profileId, messageId: step.messageId, rule: step.rule, at: new Date(step.atMs).toISOString() };
  if (step.kind === 'linked') return { ...common, identifier: step.identifier, intoProfileId: '', via: step.via, from: [], into: [] };
  return { ...common, identifier: undefined, intoProfileId: step.intoProfileId, via: undefined, from: step.from, into: step.into };
}

function unmergeToProto(result: UnmergeResult): UnmergeProfileResponse {
  const { plan } = result;
  return {
    unmergeId: plan.id,
    survivorProfileId: plan.survivor,
    restoredProfileId: plan.restored,
    profiles: plan.profiles,
    restoredIdentifiers: plan.restoredIdentifiers,
    survivorIdentifiers: plan.survivorIdentifiers,
    survivor: profileToProto(result.survivor),
    restored: profileToProto(result.restored),
  };
}
