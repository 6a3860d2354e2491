/**
 * DefinitionService.TestDefinitions over real gRPC on loopback: the request checks of an
 * embedded node, and the FAILED_PRECONDITION of a node that has no full profile history.
 */
import { Metadata, status } from '@grpc/grpc-js';
import t from 'tap';
import { ApiServer } from '../../api/server.js';
import { callUnary, createDefinitionClient } from '../../cli/client.js';
import { KvDefinitionStore } from '../../cluster/kv-definition-store.js';
import { MemoryKvStore } from '../../storage/memory-kv-store.js';
import type { ServingNode } from '../../cluster/serving-node.js';
import { silentLogger } from '../../common/logger.js';
import type { DefinitionServiceClient, TestDefinitionsRequest } from '../../proto/gen/rtcdp/v1/definitions.js';
import { errorCodeOf, expectServiceError, startTestNode } from '../helpers/grpc-node.js';

const SEGMENT = { name: 'segments.yaml', content: 'apiVersion: rtcdp/v1\nkind: Segment\nmetadata: { name: pro }\nspec: { condition: \'has(traits.plan) && traits.plan == "pro"\' }\n' };

function testDefinitions(client: DefinitionServiceClient, request: Partial<TestDefinitionsRequest>) {
  return callUnary(client.testDefinitions.bind(client), { files: [SEGMENT], prune: false, identifiers: [], ...request }, new Metadata());
}

t.test('TestDefinitions - request checks', async (t) => {
  const node = await startTestNode(t);
  const client = createDefinitionClient(node.rtcdp.address);
  t.teardown(() => client.close());

  const cases: Array<[Partial<TestDefinitionsRequest>, string]> = [
    [{ profiles: 0 }, 'profiles must be an integer from 1 to 10000, received 0'],
    [{ profiles: 10_001 }, 'profiles must be an integer from 1 to 10000, received 10001'],
    [{ files: [] }, 'files is empty: send at least one definition file'],
    [{ identifiers: [{ type: 'nickname', value: 'ada' }] }, 'identifiers[0].type must be one of user_id, anonymous_id, email, phone, device_id or external:TYPE, received "nickname"'],
  ];
  for (const [request, message] of cases) {
    const error = await expectServiceError(testDefinitions(client, request));
    t.equal(error.code, status.INVALID_ARGUMENT, message);
    t.equal(error.details, message);
  }

  const invalid = await testDefinitions(client, { files: [{ name: 'bad.yaml', content: 'apiVersion: rtcdp/v1\nkind: Segment\nmetadata: { name: pro }\nspec: {}\n' }] });
  t.same(
    invalid.errors.map((error) => `${error.file}: ${error.path}: ${error.message}`),
    ['bad.yaml: documents[0].spec.condition: is missing. Give a CEL expression over the profile, such as traits.plan == "pro"'],
    'an invalid set comes back as validation errors, as from Apply',
  );
  t.equal(invalid.profilesTested, 0);
  t.same(invalid.segments, []);

  const empty = await testDefinitions(client, {});
  t.equal(empty.profilesTested, 0, 'a workspace without profiles tests none');
  t.same(
    empty.segments.map((segment) => [segment.name, segment.membersBefore, segment.membersAfter]),
    [['pro', 0, 0]],
  );
});

t.test('TestDefinitions - cluster node fails precondition', async (t) => {
  // What a cluster node offers the API: a definition store, and no testDefinitions.
  const unused = () => Promise.reject(new Error('not used by this test'));
  const node: ServingNode = { ingest: unused, getProfile: unused, listProfileEvents: unused, definitionStore: new KvDefinitionStore(new MemoryKvStore()) };
  const server = new ApiServer(node, { port: 0, auth: { writeKeys: new Map(), devMode: true }, logger: silentLogger() });
  const address = await server.start();
  const client = createDefinitionClient(address);
  t.teardown(async () => {
    client.close();
    await server.stop();
  });

  const error = await expectServiceError(testDefinitions(client, {}));
  t.equal(error.code, status.FAILED_PRECONDITION);
  t.equal(errorCodeOf(error), 'UNSUPPORTED_OPERATION');
  t.match(error.details, /^TestDefinitions is available on embedded nodes only/);
});
