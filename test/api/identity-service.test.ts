/**
 * IdentityService.UnmergeProfile over gRPC on loopback: request validation and the status
 * codes of the identity errors an unmerge raises before it changes anything. The split
 * itself is tested through the CLI in test/cli/identity-admin-commands.test.ts.
 */
import { Metadata, status } from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { callUnary, createIdentityClient } from '../../cli/client.js';
import type { IdentityServiceClient, UnmergeProfileRequest, UnmergeProfileResponse } from '../../proto/gen/rtcdp/v1/identity.js';
import { errorCodeOf, expectServiceError, ingestBatch, startTestNode, type TestNode } from '../helpers/grpc-node.js';

const u1 = { type: 'user_id', value: 'u1' };
const a1 = { type: 'anonymous_id', value: 'a1' };

async function startWithClient(t: Test): Promise<{ node: TestNode; client: IdentityServiceClient }> {
  const node = await startTestNode(t);
  const client = createIdentityClient(node.rtcdp.address);
  t.teardown(() => client.close());
  return { node, client };
}

function unmerge(client: IdentityServiceClient, request: UnmergeProfileRequest): Promise<UnmergeProfileResponse> {
  return callUnary(client.unmergeProfile.bind(client), request, new Metadata());
}

t.test('identity service - unmerge rejects a request without its fields', async (t) => {
  const { client } = await startWithClient(t);
  const cases: Array<[string, UnmergeProfileRequest, string]> = [
    ['no profile', { mergedProfileId: 'anon:a1' }, 'profile is required: set profile.type and profile.value'],
    ['profile without a type', { profile: { type: '', value: 'u1' }, mergedProfileId: 'anon:a1' }, 'profile is required: set profile.type and profile.value'],
    ['neither merged field', { profile: u1 }, 'merged_profile_id or merged_identifier is required: the id of the profile merged in (for example anon:a1), or an identifier it brought in'],
    ['empty merged_profile_id', { profile: u1, mergedProfileId: '' }, 'merged_profile_id or merged_identifier is required: the id of the profile merged in (for example anon:a1), or an identifier it brought in'],
    ['both merged fields', { profile: u1, mergedProfileId: 'anon:a1', mergedIdentifier: a1 }, 'set either merged_profile_id or merged_identifier, not both'],
    ['merged_identifier without a type', { profile: u1, mergedIdentifier: { type: '', value: 'a1' } }, 'merged_identifier is required: set merged_identifier.type and merged_identifier.value'],
  ];

  for (const [name, request, message] of cases) {
    const error = await expectServiceError(unmerge(client, request));
    t.equal(error.code, status.INVALID_ARGUMENT, `${name}: status is INVALID_ARGUMENT`);
    t.equal(errorCodeOf(error), 'INVALID_ARGUMENT', `${name}: trailer code`);
    t.equal(error.details, message, `${name}: message names the field`);
  }
});

t.test('identity service - unmerge errors map to status codes', async (t) => {
  const { node, client } = await startWithClient(t);
  const response = await ingestBatch(node, [
    { type: 'identify', userId: 'u1', messageId: 'u1-identify' },
    { type: 'page', name: 'Home', anonymousId: 'a1', messageId: 'a1-page' },
  ]);
  t.equal(response.accepted, 2, 'both profiles exist');

  const unknown = await expectServiceError(unmerge(client, { profile: { type: 'user_id', value: 'nobody' }, mergedIdentifier: a1 }));
  t.equal(unknown.code, status.NOT_FOUND, 'unknown survivor: status is NOT_FOUND');
  t.equal(errorCodeOf(unknown), 'PROFILE_NOT_FOUND', 'unknown survivor: trailer code');
  t.match(unknown.details, 'user_id "nobody"', 'unknown survivor: message names the identifier');

  const unknownMerged = await expectServiceError(unmerge(client, { profile: u1, mergedProfileId: 'anon:nobody' }));
  t.equal(unknownMerged.code, status.NOT_FOUND, 'unknown merged profile: status is NOT_FOUND');
  t.equal(errorCodeOf(unknownMerged), 'PROFILE_NOT_FOUND', 'unknown merged profile: trailer code');
  t.match(unknownMerged.details, 'anon:nobody', 'unknown merged profile: message names the profile');

  const byIdentifier = await expectServiceError(unmerge(client, { profile: u1, mergedIdentifier: a1 }));
  t.equal(byIdentifier.code, status.FAILED_PRECONDITION, 'identifier never merged in: status is FAILED_PRECONDITION');
  t.equal(errorCodeOf(byIdentifier), 'NOT_MERGED', 'identifier never merged in: trailer code');

  const byProfileId = await expectServiceError(unmerge(client, { profile: u1, mergedProfileId: 'anon:a1' }));
  t.equal(byProfileId.code, status.FAILED_PRECONDITION, 'profile never merged in: status is FAILED_PRECONDITION');
  t.equal(errorCodeOf(byProfileId), 'NOT_MERGED', 'profile never merged in: trailer code');
  t.match(byProfileId.details, 'anon:a1', 'profile never merged in: message names the profile');
});
