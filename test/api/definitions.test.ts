/**
 * DefinitionService against a real embedded node on loopback: Apply, ListDefinitions,
 * GetDefinition and Diff, with the workspace taken from the write key.
 */
import { Metadata, status } from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { callUnary, createDefinitionClient, writeKeyMetadata } from '../../cli/client.js';
import {
  DefinitionChange,
  type ApplyRequest,
  type ApplyResponse,
  type DefinitionServiceClient,
  type DiffRequest,
  type DiffResponse,
  type GetDefinitionRequest,
  type GetDefinitionResponse,
  type ListDefinitionsRequest,
  type ListDefinitionsResponse,
} from '../../proto/gen/rtcdp/v1/definitions.js';
import { errorCodeOf, expectServiceError, startTestNode, type TestNodeOptions } from '../helpers/grpc-node.js';

const TRAITS = `apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: orders_30d, description: Orders in the last 30 days }
spec: { kind: count, event: Order Completed, window: { days: 30 } }
---
apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: ltv }
spec: { kind: sum, event: Order Completed, property: revenue }
`;

const SEGMENTS = `apiVersion: rtcdp/v1
kind: Segment
metadata: { name: big_spenders }
spec:
  condition: computed.ltv > 100.0 && computed.orders_30d >= 2
`;

interface DefinitionCalls {
  apply(request: Partial<ApplyRequest>, metadata?: Metadata): Promise<ApplyResponse>;
  list(request: Partial<ListDefinitionsRequest>, metadata?: Metadata): Promise<ListDefinitionsResponse>;
  get(request: Partial<GetDefinitionRequest>, metadata?: Metadata): Promise<GetDefinitionResponse>;
  diff(request: Partial<DiffRequest>, metadata?: Metadata): Promise<DiffResponse>;
}

function callsOn(client: DefinitionServiceClient): DefinitionCalls {
  return {
    apply: (request, metadata = new Metadata()) => callUnary(client.apply.bind(client), { files: [], dryRun: false, prune: false, ...request }, metadata),
    list: (request, metadata = new Metadata()) => callUnary(client.listDefinitions.bind(client), { kind: '', includeDeleted: false, ...request }, metadata),
    get: (request, metadata = new Metadata()) => callUnary(client.getDefinition.bind(client), { kind: '', name: '', version: 0, ...request }, metadata),
    diff: (request, metadata = new Metadata()) => callUnary(client.diff.bind(client), { files: [], prune: false, ...request }, metadata),
  };
}

async function startDefinitionNode(t: Test, options: TestNodeOptions = {}) {
  const node = await startTestNode(t, options);
  const client = createDefinitionClient(node.rtcdp.address);
  t.teardown(() => client.close());
  return { node, calls: callsOn(client) };
}

const SET = [
  { name: 'traits.yaml', content: TRAITS },
  { name: 'segments.yaml', content: SEGMENTS },
];

t.test('definitions - apply, list and get', async (t) => {
  const { calls } = await startDefinitionNode(t);

  const applied = await calls.apply({ files: SET });
  t.same(applied.errors, []);
  t.equal(applied.dryRun, false);
  t.same(
    applied.results.map((result) => [result.kind, result.name, result.change, result.version, result.file, result.path]),
    [
      ['ComputedTrait', 'orders_30d', DefinitionChange.DEFINITION_CHANGE_CREATED, 1, 'traits.yaml', 'documents[0]'],
      ['ComputedTrait', 'ltv', DefinitionChange.DEFINITION_CHANGE_CREATED, 1, 'traits.yaml', 'documents[1]'],
      ['Segment', 'big_spenders', DefinitionChange.DEFINITION_CHANGE_CREATED, 1, 'segments.yaml', 'documents[0]'],
    ],
  );

  const listed = await calls.list({});
  t.same(listed.definitions.map((definition) => `${definition.kind}/${definition.name}@${definition.version}`), [
    'ComputedTrait/ltv@1',
    'ComputedTrait/orders_30d@1',
    'Segment/big_spenders@1',
  ]);
  const orders = listed.definitions[1];
  t.equal(orders.workspace, 'default', 'dev mode without a key uses workspace "default"');
  t.equal(orders.description, 'Orders in the last 30 days');
  t.same(orders.spec, { event: 'Order Completed', kind: 'count', window: { days: 30 } }, 'spec as a Struct');
  t.match(orders.appliedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'appliedAt is RFC 3339');
  t.equal(orders.contentHash, applied.results[0].contentHash);

  const segments = await calls.list({ kind: 'Segment' });
  t.same(segments.definitions.map((definition) => definition.name), ['big_spenders'], 'kind filter');

  const got = await calls.get({ kind: 'Segment', name: 'big_spenders' });
  t.same(got.definition?.spec, { condition: 'computed.ltv > 100.0 && computed.orders_30d >= 2' });
  t.equal(got.definition?.sourceFile, 'segments.yaml');
  t.same(got.versions.map((version) => version.version), [1]);
  t.equal(got.versions[0].spec, undefined, 'version list without spec');
});

t.test('definitions - update keeps versions', async (t) => {
  const { calls } = await startDefinitionNode(t);
  await calls.apply({ files: SET });

  const again = await calls.apply({ files: SET });
  t.same(
    again.results.map((result) => result.change),
    Array(3).fill(DefinitionChange.DEFINITION_CHANGE_UNCHANGED),
    'the same set again changes nothing',
  );

  const changed = SEGMENTS.replace('>= 2', '>= 3');
  const dryRun = await calls.apply({ files: [{ name: 'segments.yaml', content: changed }], dryRun: true });
  t.equal(dryRun.dryRun, true);
  t.equal(dryRun.results[0].change, DefinitionChange.DEFINITION_CHANGE_UPDATED, 'dry run reports the update');
  t.equal((await calls.get({ kind: 'Segment', name: 'big_spenders' })).definition?.version, 1, 'dry run stores nothing');

  const updated = await calls.apply({ files: [{ name: 'segments.yaml', content: changed }] });
  t.same([updated.results[0].change, updated.results[0].previousVersion, updated.results[0].version], [DefinitionChange.DEFINITION_CHANGE_UPDATED, 1, 2]);

  const latest = await calls.get({ kind: 'Segment', name: 'big_spenders' });
  t.equal(latest.definition?.version, 2);
  t.match(latest.definition?.spec?.condition, '>= 3');
  t.same(latest.versions.map((version) => version.version), [1, 2]);

  const first = await calls.get({ kind: 'Segment', name: 'big_spenders', version: 1 });
  t.match(first.definition?.spec?.condition, '>= 2', 'version 1 is kept');
});

t.test('definitions - validation errors', async (t) => {
  const { calls } = await startDefinitionNode(t);
  const bad = `apiVersion: rtcdp/v1
kind: Campaign
metadata: { name: offer }
spec: {}
---
apiVersion: rtcdp/v1
kind: Segment
metadata: { name: broken }
spec:
  condition: eventCount > 1 &&
`;

  const response = await calls.apply({ files: [{ name: 'traits.yaml', content: TRAITS }, { name: 'segments.yaml', content: bad }] });
  t.same(response.results, [], 'no results');
  t.same(
    response.errors.map((error) => [error.file, error.path, error.line]),
    [
      ['segments.yaml', 'documents[0].kind', 2],
      ['segments.yaml', 'documents[1].spec.condition', 10],
    ],
  );
  t.equal(response.errors[0].message, 'must be one of ComputedTrait, Segment, DecisionRule, ContactPolicy, ScoringModel, Journey, got "Campaign"');
  t.match(response.errors[1].message, 'is not a valid CEL expression: Unexpected token: EOF (at line 1, column 18 of the condition)');
  t.same((await calls.list({})).definitions, [], 'nothing stored, the valid traits included');

  const diff = await calls.diff({ files: [{ name: 'segments.yaml', content: bad }] });
  t.equal(diff.errors.length, 2, 'Diff reports the same errors');
  t.same(diff.diffs, []);
});

t.test('definitions - diff', async (t) => {
  const { calls } = await startDefinitionNode(t);
  await calls.apply({ files: SET });

  const proposed = [{ name: 'traits.yaml', content: TRAITS.replace('days: 30', 'days: 7') }];
  const response = await calls.diff({ files: proposed, prune: true });
  t.same(response.errors, []);
  t.same(
    response.diffs.map((diff) => [diff.result?.kind, diff.result?.name, diff.result?.change]),
    [
      ['ComputedTrait', 'orders_30d', DefinitionChange.DEFINITION_CHANGE_UPDATED],
      ['ComputedTrait', 'ltv', DefinitionChange.DEFINITION_CHANGE_UNCHANGED],
      ['Segment', 'big_spenders', DefinitionChange.DEFINITION_CHANGE_DELETED],
    ],
  );
  t.match(response.diffs[0].unifiedDiff, '--- a/ComputedTrait/orders_30d\tversion 1\n+++ b/ComputedTrait/orders_30d\tproposed\n');
  t.match(response.diffs[0].unifiedDiff, '-    days: 30\n+    days: 7\n');
  t.equal(response.diffs[1].unifiedDiff, '', 'unchanged has no diff');
  t.match(response.diffs[2].unifiedDiff, '-  condition: computed.ltv > 100.0');

  const withoutPrune = await calls.diff({ files: proposed });
  t.equal(withoutPrune.diffs.length, 2, 'without prune nothing is removed');
  t.equal((await calls.get({ kind: 'ComputedTrait', name: 'orders_30d' })).definition?.version, 1, 'Diff stores nothing');
});

t.test('definitions - workspace from write key', async (t) => {
  const { calls } = await startDefinitionNode(t, { devMode: false, writeKeys: new Map([['key-shop-one-0001', 'shop-1'], ['key-shop-two-0002', 'shop-2']]) });
  const shop1 = writeKeyMetadata('key-shop-one-0001');
  const shop2 = writeKeyMetadata('key-shop-two-0002');

  await calls.apply({ files: [{ name: 'traits.yaml', content: TRAITS }] }, shop1);
  t.equal((await calls.list({}, shop1)).definitions.length, 2, 'shop-1 has its traits');
  t.same((await calls.list({}, shop2)).definitions, [], 'shop-2 sees none of them');

  const wrongWorkspace = TRAITS.replace('name: ltv }', 'name: ltv, workspace: shop-1 }');
  const response = await calls.apply({ files: [{ name: 'traits.yaml', content: wrongWorkspace }] }, shop2);
  t.equal(response.errors.length, 1);
  t.equal(response.errors[0].path, 'documents[1].metadata.workspace');
  t.match(response.errors[0].message, 'is "shop-1", but the write key is for workspace "shop-2"');

  const unauthenticated = await expectServiceError(calls.list({}));
  t.equal(unauthenticated.code, status.UNAUTHENTICATED, 'a call without a key is rejected');
});

t.test('definitions - request errors', async (t) => {
  const { calls } = await startDefinitionNode(t);
  await calls.apply({ files: SET });

  const noFiles = await expectServiceError(calls.apply({ files: [] }));
  t.equal(noFiles.code, status.INVALID_ARGUMENT);
  t.match(noFiles.details, 'files is empty');

  const badKind = await expectServiceError(calls.get({ kind: 'Campaign', name: 'x' }));
  t.equal(badKind.code, status.INVALID_ARGUMENT);
  t.match(badKind.details, 'kind must be one of ComputedTrait, Segment, DecisionRule, ContactPolicy, ScoringModel, Journey, received "Campaign"');

  const missing = await expectServiceError(calls.get({ kind: 'Segment', name: 'nobody' }));
  t.equal(missing.code, status.NOT_FOUND);
  t.equal(errorCodeOf(missing), 'DEFINITION_NOT_FOUND');
  t.equal(missing.details, 'no Segment named "nobody" in workspace "default"');

  const missingVersion = await expectServiceError(calls.get({ kind: 'Segment', name: 'big_spenders', version: 9 }));
  t.equal(missingVersion.code, status.NOT_FOUND);
  t.match(missingVersion.details, 'has no version 9');
});

t.test('definitions - kept across restart', async (t) => {
  const dataDir = t.testdir();
  const first = await startDefinitionNode(t, { dataDir });
  await first.calls.apply({ files: SET });
  await first.node.rtcdp.stop();

  const second = await startDefinitionNode(t, { dataDir });
  t.equal((await second.calls.list({})).definitions.length, 3, 'definitions are read back from RocksDB');
  const again = await second.calls.apply({ files: SET });
  t.ok(
    again.results.every((result) => result.change === DefinitionChange.DEFINITION_CHANGE_UNCHANGED),
    'the same set is unchanged after a restart',
  );
});
