/**
 * Definition tests on an embedded node with real RocksDB: stored histories replayed under
 * the current and the proposed definitions, with the expected entries and exits computed
 * here from the events each profile was sent.
 */
import t, { type Test } from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import type { SegmentComparison } from '../../decisions/evaluation/definition-test.js';
import type { RawEvent } from '../../profiles/event.js';

const WORKSPACE = 'w';
const NOW_MS = Date.parse('2024-05-01T00:00:00Z');
const DAY_MS = 86_400_000;

const TRAITS = `
apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: orders }
spec: { kind: count, event: Order Completed }
---
apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: spend }
spec: { kind: sum, event: Order Completed, property: revenue }
`;

const segment = (name: string, condition: string) => `apiVersion: rtcdp/v1\nkind: Segment\nmetadata: { name: ${name} }\nspec: { condition: '${condition}' }\n`;

/** Orders per user; u5 only identifies, so it has a profile without orders. */
const ORDERS: Record<string, number> = { u1: 1, u2: 2, u3: 3, u4: 4, u5: 0, u6: 5 };
const REVENUE = 30;

function eventsOf(userId: string, orders: number): RawEvent[] {
  const events: RawEvent[] = [{ type: 'identify', userId, messageId: `${userId}-identify`, traits: { plan: 'pro' }, timestamp: new Date(NOW_MS - 10 * DAY_MS).toISOString() }];
  for (let i = 0; i < orders; i++) {
    events.push({
      type: 'track',
      event: 'Order Completed',
      userId,
      messageId: `${userId}-order-${i}`,
      timestamp: new Date(NOW_MS - (i + 1) * DAY_MS).toISOString(),
      properties: { revenue: REVENUE },
    });
  }
  return events;
}

async function apply(node: RtcdpNode, content: string): Promise<void> {
  const outcome = await new DefinitionRegistry(node.definitionStore).apply(WORKSPACE, [{ name: 'definitions.yaml', content }]);
  if (outcome.issues.length > 0) throw new Error(`definitions rejected: ${JSON.stringify(outcome.issues)}`);
}

/** Starts a node with the traits and `frequent` (3 orders or more) applied and every user's events stored. */
async function startNode(t: Test): Promise<RtcdpNode> {
  const node = await RtcdpNode.start({ dataDir: t.testdir(), actors: { snapshotIntervalMs: 20 } });
  t.teardown(() => node.drain());
  await apply(node, TRAITS + '---\n' + segment('frequent', 'computed.orders >= 3'));
  for (const [userId, orders] of Object.entries(ORDERS)) await node.ingest(WORKSPACE, eventsOf(userId, orders));
  return node;
}

/** Profile ids of the users whose order count passes `test`, in key order. */
function profilesWith(test: (orders: number) => boolean): string[] {
  return Object.entries(ORDERS)
    .filter(([, orders]) => test(orders))
    .map(([userId]) => `user:${userId}`)
    .sort();
}

function examplesOf(comparison: SegmentComparison | undefined, transition: 'entered' | 'exited'): string[] {
  return (comparison?.examples ?? []).filter((example) => example.transition === transition).map((example) => example.profileId);
}

t.test('definition test - lower threshold enters profiles', async (t) => {
  const node = await startNode(t);
  const report = await node.testDefinitions(WORKSPACE, [{ name: 'frequent.yaml', content: segment('frequent', 'computed.orders >= 2') }], { nowMs: NOW_MS });

  t.same(report.issues, []);
  t.same(
    report.results.map((result) => `${result.change} ${result.kind}/${result.name} ${result.version}`),
    ['updated Segment/frequent 2'],
  );
  const comparison = report.comparison!;
  t.equal(comparison.profilesTested, 6);
  t.equal(comparison.eventsReplayed, 6 + 15, 'one identify per user and every order');
  t.equal(comparison.historyCut, 0);

  const frequent = comparison.segments.find((candidate) => candidate.name === 'frequent');
  const before = profilesWith((orders) => orders >= 3);
  const after = profilesWith((orders) => orders >= 2);
  t.equal(frequent?.change, 'updated');
  t.equal(frequent?.versionBefore, 1);
  t.equal(frequent?.versionAfter, 2);
  t.equal(frequent?.membersBefore, before.length);
  t.equal(frequent?.membersAfter, after.length);
  t.same(examplesOf(frequent, 'entered'), after.filter((id) => !before.includes(id)), 'u2, with 2 orders, enters');
  t.equal(frequent?.entered, 1);
  t.equal(frequent?.exited, 0);
  t.equal(frequent?.unchanged, 5);
  t.equal(frequent?.evaluationErrorsAfter, 0);
  t.equal(frequent?.storedMismatches, 0, 'the stored memberships agree with the replay under the current definitions');
  t.same(frequent?.examples[0].computedAfter, { orders: 2, spend: 2 * REVENUE }, 'an example carries its computed values');

  t.same(
    comparison.computedTraits.map((trait) => `${trait.name} ${trait.change} ${trait.valuesChanged}`),
    ['orders unchanged 0', 'spend unchanged 0'],
  );
});

t.test('definition test - higher threshold, new trait, deleted segment', async (t) => {
  const node = await startNode(t);
  await apply(node, segment('pro', 'traits.plan == "pro"'));
  const proposed = [
    TRAITS,
    'apiVersion: rtcdp/v1\nkind: ComputedTrait\nmetadata: { name: biggest }\nspec: { kind: max, event: Order Completed, property: revenue }\n',
    segment('frequent', 'computed.orders >= 4'),
    segment('big', 'computed.spend > 100.0'),
  ].join('---\n');
  const report = await node.testDefinitions(WORKSPACE, [{ name: 'all.yaml', content: proposed }], { nowMs: NOW_MS, prune: true });
  const comparison = report.comparison!;

  t.same(
    comparison.segments.map((candidate) => `${candidate.name} ${candidate.change} ${candidate.membersBefore} -> ${candidate.membersAfter}`),
    ['big created 0 -> 2', 'frequent updated 3 -> 2', 'pro deleted 6 -> 0'],
  );
  const frequent = comparison.segments.find((candidate) => candidate.name === 'frequent');
  t.same(examplesOf(frequent, 'exited'), profilesWith((orders) => orders === 3), 'u3, with 3 orders, exits');
  t.same(examplesOf(frequent, 'entered'), []);

  const big = comparison.segments.find((candidate) => candidate.name === 'big');
  t.same(examplesOf(big, 'entered'), profilesWith((orders) => orders * REVENUE > 100));
  t.equal(big?.versionBefore, 0);
  t.equal(big?.storedMismatches, 0, 'a segment that is not stored has nothing to disagree with');

  const pro = comparison.segments.find((candidate) => candidate.name === 'pro');
  t.equal(pro?.exited, 6, 'a deleted segment exits every member');
  t.equal(pro?.versionAfter, 0);

  t.same(
    comparison.computedTraits.map((trait) => `${trait.name} ${trait.change} ${trait.valuesChanged}`),
    ['biggest created 6', 'orders unchanged 0', 'spend unchanged 0'],
  );
  t.same(
    (await node.definitionStore.listLatest(WORKSPACE)).map((version) => `${version.name}@${version.version}`),
    ['orders@1', 'spend@1', 'frequent@1', 'pro@1'],
    'nothing was stored',
  );
});

t.test('definition test - samples and cut histories', async (t) => {
  const node = await startNode(t);
  const files = [{ name: 'frequent.yaml', content: segment('frequent', 'computed.orders >= 2') }];

  const first = await node.testDefinitions(WORKSPACE, files, { nowMs: NOW_MS, profiles: 2 });
  t.equal(first.comparison?.profilesTested, 2);
  t.equal(first.comparison?.eventsReplayed, 2 + ORDERS.u1 + ORDERS.u2, 'the first snapshot keys are those of u1 and u2');

  const named = await node.testDefinitions(WORKSPACE, files, {
    nowMs: NOW_MS,
    identifiers: [
      { type: 'user_id', value: 'u6' },
      { type: 'user_id', value: 'u2' },
      { type: 'user_id', value: 'u6' },
    ],
  });
  t.equal(named.comparison?.profilesTested, 2, 'each profile is tested once');
  t.same(named.comparison?.segments[0].examples.map((example) => example.profileId), ['user:u2']);

  const cut = await node.testDefinitions(WORKSPACE, files, { nowMs: NOW_MS, maxHistoryEvents: 3 });
  t.equal(cut.comparison?.maxHistoryEvents, 3);
  t.same(cut.comparison?.historyCutExamples, profilesWith((orders) => orders + 1 > 3));
  t.equal(cut.comparison?.historyCut, 3);
  t.equal(cut.comparison?.eventsReplayed, 2 + 3 + 3 + 3 + 1 + 3);
});

t.test('definition test - merged profiles not sampled', async (t) => {
  const node = await RtcdpNode.start({ dataDir: t.testdir(), actors: { snapshotIntervalMs: 20 } });
  t.teardown(() => node.drain());
  await apply(node, TRAITS + '---\n' + segment('frequent', 'computed.orders >= 3'));
  await node.ingest(WORKSPACE, [{ type: 'identify', userId: 'u1', messageId: 'u1-identify' }]);
  await node.ingest(WORKSPACE, [{ type: 'page', name: 'Home', anonymousId: 'a1', messageId: 'a1-page' }]);
  await node.ingest(WORKSPACE, [{ type: 'identify', userId: 'u1', anonymousId: 'a1', messageId: 'u1-link' }]);
  await node.ingest(WORKSPACE, eventsOf('u2', 1));
  t.equal((await node.getProfile(WORKSPACE, { type: 'user_id', value: 'u1' })).merges[0]?.profileId, 'anon:a1', 'the visitor is merged into u1');

  const files = [{ name: 'frequent.yaml', content: segment('frequent', 'computed.orders >= 1') }];
  const result = await node.testDefinitions(WORKSPACE, files, { nowMs: NOW_MS, profiles: 3 });
  t.equal(result.comparison?.profilesTested, 2, 'the merged visitor is part of u1, not a profile of its own');
  t.same(result.comparison?.segments[0].examples.map((example) => example.profileId), ['user:u2']);
});

t.test('definition test - bad input', async (t) => {
  const node = await startNode(t);
  const files = [{ name: 'frequent.yaml', content: segment('frequent', 'computed.orders >= 2') }];

  await t.rejects(node.testDefinitions(WORKSPACE, files, { profiles: 0 }), { code: 'INVALID_ARGUMENT', message: 'profiles must be an integer from 1 to 10000, received 0' });
  await t.rejects(node.testDefinitions(WORKSPACE, files, { profiles: 10_001 }), { code: 'INVALID_ARGUMENT', message: 'profiles must be an integer from 1 to 10000, received 10001' });
  await t.rejects(node.testDefinitions(WORKSPACE, files, { profiles: 5, identifiers: [{ type: 'user_id', value: 'u1' }] }), {
    code: 'INVALID_ARGUMENT',
    message: /^profiles and identifiers are exclusive/,
  });
  await t.rejects(node.testDefinitions(WORKSPACE, []), { code: 'INVALID_ARGUMENT', message: 'files is empty: send at least one definition file' });
  await t.rejects(node.testDefinitions(WORKSPACE, files, { identifiers: [{ type: 'user_id', value: 'nobody' }] }), {
    code: 'PROFILE_NOT_FOUND',
    message: 'no profile found for user_id "nobody" in this workspace',
  });

  const invalid = await node.testDefinitions(WORKSPACE, [{ name: 'bad.yaml', content: segment('frequent', 'computed.orders_90d >= 2') }]);
  t.equal(invalid.comparison, undefined, 'an invalid set evaluates nothing');
  t.same(invalid.results, []);
  t.equal(invalid.issues.length, 1);
  t.match(invalid.issues[0], { file: 'bad.yaml', path: 'documents[0].spec.condition', rule: /refers to computed trait "orders_90d"/ });
});

t.test('definition test - decision rules and scores', async (t) => {
  const node = await startNode(t);
  await apply(node, 'apiVersion: rtcdp/v1\nkind: DecisionRule\nmetadata: { name: loyalty }\nspec: { eligibility: computed.orders >= 4 }\n');
  const proposed = [
    'apiVersion: rtcdp/v1\nkind: DecisionRule\nmetadata: { name: loyalty }\nspec: { eligibility: computed.orders >= 2, priority: "1.0" }\n',
    'apiVersion: rtcdp/v1\nkind: DecisionRule\nmetadata: { name: welcome }\nspec: { eligibility: "has(scores.engaged) && scores.engaged < 0.5" }\n',
    'apiVersion: rtcdp/v1\nkind: ScoringModel\nmetadata: { name: engaged }\nspec: { model: logistic, intercept: -2.0, features: [{ expression: "double(eventCount)", weight: 0.5 }] }\n',
  ].join('---\n');
  const report = await node.testDefinitions(WORKSPACE, [{ name: 'rules.yaml', content: proposed }], { nowMs: NOW_MS });
  const comparison = report.comparison!;

  // Before: loyalty for 4 orders or more. After: loyalty for 2 or more (priority 1), else
  // welcome when the logistic score of the event count (identify + orders) is under 0.5.
  const score = (orders: number) => 1 / (1 + Math.exp(-(-2 + 0.5 * (orders + 1))));
  const chosenAfter = (orders: number) => (orders >= 2 ? 'loyalty' : score(orders) < 0.5 ? 'welcome' : null);
  const counts = { loyaltyBefore: 0, loyaltyAfter: 0, welcomeAfter: 0, changed: 0 };
  for (const orders of Object.values(ORDERS)) {
    const before = orders >= 4 ? 'loyalty' : null;
    const after = chosenAfter(orders);
    if (before === 'loyalty') counts.loyaltyBefore += 1;
    if (after === 'loyalty') counts.loyaltyAfter += 1;
    if (after === 'welcome') counts.welcomeAfter += 1;
    if (before !== after) counts.changed += 1;
  }
  t.same(
    comparison.rules.map((rule) => [rule.name, rule.change, rule.chosenBefore, rule.chosenAfter]),
    [
      ['loyalty', 'updated', counts.loyaltyBefore, counts.loyaltyAfter],
      ['welcome', 'created', 0, counts.welcomeAfter],
    ],
  );
  t.equal(comparison.decisionsChanged, counts.changed);
});

t.test('definition test - scoring models', async (t) => {
  const node = await startNode(t);
  const model = (name: string, feature: string, weight: number) =>
    `apiVersion: rtcdp/v1\nkind: ScoringModel\nmetadata: { name: ${name} }\nspec: { model: logistic, intercept: -2.0, features: [{ expression: "${feature}", weight: ${weight} }] }\n`;
  await apply(node, model('engaged', 'double(eventCount)', 0.5));
  const proposed = [model('engaged', 'double(eventCount)', 1.0), model('broken', 'double(traits.nothing)', 1.0)].join('---\n');
  const comparison = (await node.testDefinitions(WORKSPACE, [{ name: 'scores.yaml', content: proposed }], { nowMs: NOW_MS })).comparison!;

  // Every profile has one identify event and its orders.
  const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
  const mean = (weight: number) => Object.values(ORDERS).reduce((sum, orders) => sum + sigmoid(-2 + weight * (orders + 1)), 0) / Object.keys(ORDERS).length;
  const profiles = Object.keys(ORDERS).length;

  const [broken, engaged] = comparison.scores;
  t.match(engaged, { name: 'engaged', change: 'updated', versionBefore: 1, versionAfter: 2, scoredBefore: profiles, scoredAfter: profiles, valuesChanged: profiles, evaluationErrorsBefore: 0, evaluationErrorsAfter: 0 });
  t.ok(Math.abs(engaged.meanBefore! - mean(0.5)) < 1e-12, `mean before ${engaged.meanBefore} is ${mean(0.5)}`);
  t.ok(Math.abs(engaged.meanAfter! - mean(1.0)) < 1e-12, `mean after ${engaged.meanAfter} is ${mean(1.0)}`);
  t.same(broken, {
    name: 'broken',
    change: 'created',
    versionBefore: 0,
    versionAfter: 1,
    scoredBefore: 0,
    scoredAfter: 0,
    valuesChanged: 0,
    meanBefore: null,
    meanAfter: null,
    evaluationErrorsBefore: 0,
    evaluationErrorsAfter: profiles,
    errorExample: broken.errorExample,
  }, 'a model whose feature fails has no score and counts errors');
  t.match(broken.errorExample, /nothing/, `the example names what failed: ${broken.errorExample}`);
  t.equal(engaged.errorExample, null, 'no example without a failure');
});
