import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../common/logger.js';
import { InvalidArgumentError } from '../cluster/errors.js';
import type { ServingNode } from '../cluster/serving-node.js';
import type { Identifier } from '../profiles/identifiers.js';
import { GetProfileRequest, ListProfileEventsRequest, ProfileServiceService, type GetProfileResponse, type ListProfileEventsResponse } from '../proto/gen/rtcdp/v1/profile.js';
import { workspaceOf, type AuthOptions } from './auth.js';
import { eventToProto } from './convert.js';
import { profileToProto } from './profile-view.js';
import { toServiceError } from './status.js';
import { assertWellFormed, strictDeserializer, type MalformedRequest } from './strict-decoding.js';

export const profileServiceDefinition = {
  ...ProfileServiceService,
  getProfile: { ...ProfileServiceService.getProfile, requestDeserialize: strictDeserializer(GetProfileRequest, 'rtcdp.v1.GetProfileRequest') },
  listProfileEvents: {
    ...ProfileServiceService.listProfileEvents,
    requestDeserialize: strictDeserializer(ListProfileEventsRequest, 'rtcdp.v1.ListProfileEventsRequest'),
  },
};

export function createProfileService(node: ServingNode, auth: AuthOptions, logger: Logger): UntypedServiceImplementation {
  const log = logger.child({ service: 'ProfileService' });

  return {
    getProfile(call: ServerUnaryCall<GetProfileRequest | MalformedRequest, GetProfileResponse>, callback: sendUnaryData<GetProfileResponse>) {
      void (async () => {
        const request = assertWellFormed(call.request);
        const profile = await node.getProfile(workspaceOf(call.metadata, auth), requireIdentifier(request.identifier));
        return { profile: profileToProto(profile) };
      })().then(
        (response) => callback(null, response),
        (error) => callback(toServiceError(error, log, { method: 'GetProfile' })),
      );
    },

    listProfileEvents(call: ServerUnaryCall<ListProfileEventsRequest | MalformedRequest, ListProfileEventsResponse>, callback: sendUnaryData<ListProfileEventsResponse>) {
      void (async () => {
        const request = assertWellFormed(call.request);
        const page = await node.listProfileEvents(workspaceOf(call.metadata, auth), requireIdentifier(request.identifier), {
          pageSize: request.pageSize,
          pageToken: request.pageToken,
        });
        return {
          events: page.events.map(eventToProto),
          nextPageToken: page.nextPageToken,
          unavailableNodes: page.unavailableNodes,
          departedNodes: page.departedNodes,
          profileIds: page.events.map((event) => event.profileId ?? ''),
        };
      })().then(
        (response) => callback(null, response),
        (error) => callback(toServiceError(error, log, { method: 'ListProfileEvents' })),
      );
    },
  };
}

/** Returns the request's identifier, or throws INVALID_ARGUMENT when it is missing. */
export function requireIdentifier(identifier: Identifier | undefined, field = 'identifier'): Identifier {
  if (identifier === undefined || identifier.type === '') throw new InvalidArgumentError(`${field} is required: set ${field}.type and ${field}.value`);
  return identifier;
}
