/**
 * DecisionService over gRPC on loopback: Decide with a context, receipts, the action
 * withheld for a control group, and bad requests rejected with the field and the rule.
 */
import { Metadata, status } from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { callUnary, createDecisionClient } from '../../cli/client.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import type { DecisionServiceClient } from '../../proto/gen/rtcdp/v1/decisions.js';
import { ingestBatch, startTestNode, type TestNode } from '../helpers/grpc-node.js';

const RULES = `apiVersion: rtcdp/v1
kind: DecisionRule
metadata: { name: pricing_help }
spec:
  action: open_chat
  channels: [web]
  eligibility: 'has(context.page) && context.page == "/pricing"'
  priority: '2.0'
---
apiVersion: rtcdp/v1
kind: DecisionRule
metadata: { name: default_banner }
spec: { channels: [web], priority: '1.0' }
`;

async function setUp(t: Test): Promise<{ node: TestNode; client: DecisionServiceClient }> {
  const node = await startTestNode(t);
  await new DefinitionRegistry(node.rtcdp.node.definitionStore).apply('default', [{ name: 'rules.yaml', content: RULES }]);
  await ingestBatch(node, [{ type: 'track', event: 'Viewed', userId: 'u1', messageId: 'm1' }]);
  const client = createDecisionClient(node.rtcdp.address);
  t.teardown(() => client.close());
  return { node, client };
}

t.test('decisions api - the context chooses the rule, and receipts explain it', async (t) => {
  const { client } = await setUp(t);
  const decide = (context: object) => callUnary(client.decide.bind(client), { identifier: { type: 'user_id', value: 'u1' }, channel: 'web', context }, new Metadata());

  const onPricing = await decide({ page: '/pricing' });
  t.equal(onPricing.action, 'open_chat');
  t.same(
    onPricing.receipt?.candidates.map((candidate) => [candidate.rule, candidate.outcome, candidate.priority]),
    [
      ['pricing_help', 'chosen', 2],
      ['default_banner', 'lower_priority', 1],
    ],
  );
  t.same(onPricing.receipt?.context, { page: '/pricing' });

  const elsewhere = await decide({ page: '/home' });
  t.equal(elsewhere.action, 'default_banner', 'a rule without an action returns its name');
  t.same(
    elsewhere.receipt?.candidates.map((candidate) => [candidate.rule, candidate.outcome, candidate.priority]),
    [
      ['default_banner', 'chosen', 1],
      ['pricing_help', 'not_eligible', undefined],
    ],
  );

  const receipts = await callUnary(client.listReceipts.bind(client), { identifier: { type: 'user_id', value: 'u1' } }, new Metadata());
  t.same(
    receipts.receipts.map((receipt) => receipt.chosen?.action),
    ['default_banner', 'open_chat'],
    'newest first',
  );
});

t.test('decisions api - bad requests and unknown profiles', async (t) => {
  const { client } = await setUp(t);
  const decide = (request: object) => callUnary(client.decide.bind(client), { channel: '', context: {}, ...request }, new Metadata());

  await t.rejects(decide({ identifier: { type: 'user_id', value: 'nobody' } }), { code: status.NOT_FOUND });
  await t.rejects(decide({}), { code: status.INVALID_ARGUMENT, details: 'identifier is required: set identifier.type and identifier.value' });
  await t.rejects(decide({ identifier: { type: 'user_id', value: 'u1' }, channel: 'c'.repeat(65) }), {
    code: status.INVALID_ARGUMENT,
    details: 'channel must be at most 64 characters, received 65',
  });
});

t.test('decisions api - context over 32768 bytes', async (t) => {
  const { client } = await setUp(t);
  const decide = (context: object) => callUnary(client.decide.bind(client), { identifier: { type: 'user_id', value: 'u1' }, channel: 'web', context }, new Metadata());
  const large = { note: 'x'.repeat(40_000) };

  await t.rejects(decide(large), {
    code: status.INVALID_ARGUMENT,
    details: 'context must be at most 32768 bytes as JSON, received 40011',
  });

  const receipts = await callUnary(client.listReceipts.bind(client), { identifier: { type: 'user_id', value: 'u1' } }, new Metadata());
  t.equal(receipts.receipts.length, 0, 'a rejected call stores no receipt');

  const small = await decide({ note: 'x'.repeat(30_000) });
  t.equal(small.action, 'default_banner', 'a context under the limit is accepted');
});

t.test('decisions api - channel names follow the rules of rule channels', async (t) => {
  const { client } = await setUp(t);
  await t.rejects(callUnary(client.decide.bind(client), { identifier: { type: 'user_id', value: 'u1' }, channel: 'wéb', context: {} }, new Metadata()), {
    code: status.INVALID_ARGUMENT,
    details: 'channel must be empty or a letter followed by letters, digits, "_", ".", ":" or "-", received "wéb"',
  });
});
