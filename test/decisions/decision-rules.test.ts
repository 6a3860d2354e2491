/**
 * Decision rules evaluated in the profile actors of an embedded node on real RocksDB:
 * priorities, caps, cooldowns, the contact policy, control groups, triggers, receipts, and
 * caps that hold under concurrent calls and across a restart.
 */
import t from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import type { DecisionReceipt } from '../../profiles/decision-state.js';
import type { RawEvent } from '../../profiles/event.js';

const WORKSPACE = 'w';
const user = (value: string) => ({ type: 'user_id', value });

const DEFINITIONS = `
apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: orders }
spec: { kind: count, event: Order Completed }
---
apiVersion: rtcdp/v1
kind: DecisionRule
metadata: { name: upgrade }
spec:
  action: show_upgrade
  channels: [web]
  eligibility: computed.orders >= 2
  priority: double(computed.orders) * 2.0
  caps: [{ max: 1, window: { days: 1 } }]
---
apiVersion: rtcdp/v1
kind: DecisionRule
metadata: { name: welcome }
spec:
  channels: [web, app]
  priority: '1.5'
  cooldown: { hours: 1 }
---
apiVersion: rtcdp/v1
kind: DecisionRule
metadata: { name: survey }
spec:
  channels: [web]
  priority: '0.1'
---
apiVersion: rtcdp/v1
kind: DecisionRule
metadata: { name: cart_reminder }
spec:
  action: send_cart_email
  channels: [email]
  trigger: { event: Cart Abandoned, condition: 'context.value > 50.0' }
---
apiVersion: rtcdp/v1
kind: ContactPolicy
metadata: { name: default }
spec:
  caps: [{ max: 2, window: { days: 1 }, channel: web }]
`;

const order = (userId: string, messageId: string): RawEvent => ({ type: 'track', event: 'Order Completed', userId, messageId });

async function startNode(dataDir: string): Promise<RtcdpNode> {
  return RtcdpNode.start({ dataDir, actors: { snapshotIntervalMs: 20 } });
}

async function apply(node: RtcdpNode, content: string): Promise<void> {
  const outcome = await new DefinitionRegistry(node.definitionStore).apply(WORKSPACE, [{ name: 'rules.yaml', content }]);
  if (outcome.issues.length > 0) throw new Error(`definitions rejected: ${JSON.stringify(outcome.issues)}`);
}

const outcomes = (receipt: DecisionReceipt) => receipt.candidates.map((candidate) => `${candidate.rule}:${candidate.outcome}`);

t.test('decisions - priority, caps, cooldown and the contact policy', async (t) => {
  const node = await startNode(t.testdir());
  t.teardown(() => node.drain());
  await apply(node, DEFINITIONS);
  await node.ingest(WORKSPACE, [order('u1', 'o1'), order('u1', 'o2'), order('u1', 'o3')]);

  const first = await node.decide(WORKSPACE, user('u1'), { channel: 'web', context: {} });
  t.same(first.chosen && [first.chosen.rule, first.chosen.action, first.chosen.priority], ['upgrade', 'show_upgrade', 6], 'the highest priority wins');
  t.same(outcomes(first), ['upgrade:chosen', 'welcome:lower_priority', 'survey:lower_priority'], 'rules of other channels are not candidates');

  const second = await node.decide(WORKSPACE, user('u1'), { channel: 'web', context: {} });
  t.equal(second.chosen?.rule, 'welcome', 'the capped rule gives way to the next');
  t.same(outcomes(second), ['welcome:chosen', 'survey:lower_priority', 'upgrade:capped']);
  t.equal(second.candidates.find((candidate) => candidate.rule === 'upgrade')?.detail, '1 of at most 1 in 1 d');

  const third = await node.decide(WORKSPACE, user('u1'), { channel: 'web', context: {} });
  t.equal(third.chosen, null, 'two decisions on web today reach the contact policy');
  t.same(outcomes(third), ['survey:contact_policy', 'upgrade:capped', 'welcome:cooldown'], 'rules without a priority after the others, by name');
  t.equal(third.candidates[0].detail, '2 of at most 2 decisions on channel web in 1 d');

  const app = await node.decide(WORKSPACE, user('u1'), { channel: 'app', context: {} });
  t.same(outcomes(app), ['welcome:cooldown'], 'the cooldown holds on every channel of the rule');

  const receipts = await node.listReceipts(WORKSPACE, user('u1'));
  t.same(
    receipts.map((receipt) => receipt.decisionId),
    [app, third, second, first].map((receipt) => receipt.decisionId),
    'receipts newest first',
  );
});

t.test('decisions - concurrent calls never both pass a cap of one', async (t) => {
  const node = await startNode(t.testdir());
  t.teardown(() => node.drain());
  await apply(node, DEFINITIONS);
  await node.ingest(WORKSPACE, [order('u2', 'o1'), order('u2', 'o2')]);

  const receipts = await Promise.all(Array.from({ length: 8 }, () => node.decide(WORKSPACE, user('u2'), { channel: 'web', context: {} })));
  t.equal(receipts.filter((receipt) => receipt.chosen?.rule === 'upgrade').length, 1, 'exactly one upgrade');
  t.equal(receipts.filter((receipt) => receipt.chosen !== null).length, 2, 'the contact policy allows two decisions on web');
});

t.test('decisions - caps and receipts survive a restart', async (t) => {
  const dataDir = t.testdir();
  const first = await startNode(dataDir);
  await apply(first, DEFINITIONS);
  await first.ingest(WORKSPACE, [order('u3', 'o1'), order('u3', 'o2')]);
  const decided = await first.decide(WORKSPACE, user('u3'), { channel: 'web', context: {} });
  t.equal(decided.chosen?.rule, 'upgrade');
  await first.drain();

  const second = await startNode(dataDir);
  t.teardown(() => second.drain());
  const again = await second.decide(WORKSPACE, user('u3'), { channel: 'web', context: {} });
  t.same(outcomes(again), ['welcome:chosen', 'survey:lower_priority', 'upgrade:capped'], 'the cap counts the decision made before the restart');
  t.equal((await second.listReceipts(WORKSPACE, user('u3'))).length, 2);
});

t.test('decisions - an event trigger decides and emits decision.made', async (t) => {
  const node = await startNode(t.testdir());
  t.teardown(() => node.drain());
  await apply(node, DEFINITIONS);
  await node.ingest(WORKSPACE, [
    { type: 'track', event: 'Cart Abandoned', userId: 'u4', messageId: 'c1', properties: { value: 10 } },
    { type: 'track', event: 'Cart Abandoned', userId: 'u4', messageId: 'c2', properties: { value: 80 } },
  ]);

  const receipts = await node.listReceipts(WORKSPACE, user('u4'));
  t.same(
    receipts.map((receipt) => [receipt.cause.kind === 'event' && receipt.cause.messageId, receipt.chosen?.action ?? null]),
    [
      ['c2', 'send_cart_email'],
      ['c1', null],
    ],
  );
  t.equal(receipts[1].candidates[0].detail, 'trigger condition is false');
  t.equal(receipts[0].channel, 'email', 'a triggered decision counts on the rule\'s channel');
  t.equal(receipts[1].channel, '', 'a trigger that chose nothing names no channel');

  let made: Array<{ action?: string; channel?: string; name: string }> = [];
  for (let attempt = 0; attempt < 200 && made.length === 0; attempt++) {
    made = (await node.activations.list(WORKSPACE, { types: ['decision.made'] })).activations;
    if (made.length === 0) await new Promise((resolve) => setTimeout(resolve, 25));
  }
  t.same(
    made.map((activation) => [activation.name, activation.action, activation.channel]),
    [['cart_reminder', 'send_cart_email', 'email']],
  );
});

t.test('decisions - control groups withhold the action by a stable hash', async (t) => {
  const node = await startNode(t.testdir());
  t.teardown(() => node.drain());
  await apply(
    node,
    `apiVersion: rtcdp/v1
kind: DecisionRule
metadata: { name: promo }
spec: { controlGroupPercent: 50 }
`,
  );
  const users = Array.from({ length: 40 }, (_, i) => `c${i}`);
  await node.ingest(
    WORKSPACE,
    users.map((userId) => order(userId, `o-${userId}`)),
  );

  for (const userId of users) {
    const receipt = await node.decide(WORKSPACE, user(userId), { channel: '', context: {} });
    const expected = fnv1a(`promo:user:${userId}`) % 10_000 < 5_000;
    t.equal(receipt.chosen?.control, expected, `${userId} is ${expected ? 'in' : 'out of'} the control group`);
  }
});

t.test('decisions - an unknown profile is not found and is not created', async (t) => {
  const node = await startNode(t.testdir());
  t.teardown(() => node.drain());
  await apply(node, DEFINITIONS);
  await t.rejects(node.decide(WORKSPACE, user('nobody'), { channel: 'web', context: {} }), { code: 'PROFILE_NOT_FOUND' });
  await t.rejects(node.getProfile(WORKSPACE, user('nobody')), { code: 'PROFILE_NOT_FOUND' });
});

/** FNV-1a 32-bit, written here independently of the code under test. */
function fnv1a(text: string): number {
  let hash = 2166136261;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= byte;
    hash = Number((BigInt(hash) * 16777619n) % 4294967296n);
  }
  return hash;
}

t.test('decisions - consent traits forbid channels, and the receipt says why', async (t) => {
  const node = await startNode(t.testdir());
  t.teardown(() => node.drain());
  await apply(node, `${DEFINITIONS}---
apiVersion: rtcdp/v1
kind: ContactPolicy
metadata: { name: consent }
spec: { consentTrait: consent }
`);
  await node.ingest(WORKSPACE, [
    { type: 'identify', userId: 'c1', messageId: 'i1', traits: { consent: { web: false } } },
    { type: 'identify', userId: 'c2', messageId: 'i2', traits: { consent: false } },
  ]);

  const noWeb = await node.decide(WORKSPACE, user('c1'), { channel: 'web', context: {} });
  t.equal(noWeb.chosen, null);
  t.same(outcomes(noWeb), ['welcome:no_consent', 'survey:no_consent', 'upgrade:not_eligible'], 'every web rule is forbidden');
  t.equal(noWeb.candidates[0].detail, 'trait consent.web is false');
  t.equal((await node.decide(WORKSPACE, user('c1'), { channel: 'app', context: {} })).chosen?.rule, 'welcome', 'other channels are allowed');

  const none = await node.decide(WORKSPACE, user('c2'), { channel: 'app', context: {} });
  t.equal(none.chosen, null);
  t.equal(none.candidates[0].detail, 'trait consent is false, which forbids every channel');
});
