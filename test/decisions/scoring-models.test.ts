/**
 * Scoring models on an embedded node: a BG/NBD churn score and a logistic score, recomputed
 * as events arrive, compared with the formulas computed here, and read by a segment.
 */
import t from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import { validateDefinitionSet } from '../../decisions/definitions/validate.js';
import type { RawEvent } from '../../profiles/event.js';

const WORKSPACE = 'w';
const DAY_MS = 86_400_000;
const PARAMETERS = { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };

const DEFINITIONS = `
apiVersion: rtcdp/v1
kind: ScoringModel
metadata: { name: churn }
spec:
  model: bgnbd
  purchases: { event: Order Completed, property: revenue, periodDays: 1 }
  parameters: { r: ${PARAMETERS.r}, alpha: ${PARAMETERS.alpha}, a: ${PARAMETERS.a}, b: ${PARAMETERS.b} }
  output: probability_churned
---
apiVersion: rtcdp/v1
kind: ScoringModel
metadata: { name: engagement }
spec:
  model: logistic
  intercept: -3.0
  features:
    - { expression: 'double(eventCount)', weight: 0.5 }
---
apiVersion: rtcdp/v1
kind: Segment
metadata: { name: at_risk }
spec: { condition: 'has(scores.churn) && scores.churn > 0.5' }
`;

const order = (userId: string, messageId: string, timestampMs: number): RawEvent => ({
  type: 'track',
  event: 'Order Completed',
  userId,
  messageId,
  timestamp: new Date(timestampMs).toISOString(),
  properties: { revenue: 10 },
});

/** P(alive) of BG/NBD, written out here from the model's definition. */
function expectedAlive(x: number, tx: number, T: number): number {
  if (x === 0) return 1;
  const { r, alpha, a, b } = PARAMETERS;
  return 1 / (1 + (a / (b + x - 1)) * ((alpha + T) / (alpha + tx)) ** (r + x));
}

t.test('scoring - BG/NBD and logistic scores follow the events', async (t) => {
  const node = await RtcdpNode.start({ dataDir: t.testdir(), actors: { snapshotIntervalMs: 20 } });
  t.teardown(() => node.drain());
  const outcome = await new DefinitionRegistry(node.definitionStore).apply(WORKSPACE, [{ name: 'models.yaml', content: DEFINITIONS }]);
  t.same(outcome.issues, []);

  // Purchases on days 0, 3 and 10 of a history that ends 100 days later: x = 2, t_x = 10, T = 110.
  const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;
  const first = today - 110 * DAY_MS;
  await node.ingest(WORKSPACE, [order('u1', 'o1', first + 3_600_000), order('u1', 'o2', first + 3 * DAY_MS), order('u1', 'o3', first + 10 * DAY_MS)]);
  const lapsed = await node.getProfile(WORKSPACE, { type: 'user_id', value: 'u1' });
  t.ok(Math.abs(lapsed.scores.churn - (1 - expectedAlive(2, 10, 110))) < 1e-12, `churn ${lapsed.scores.churn}`);
  t.ok(Math.abs(lapsed.scores.engagement - 1 / (1 + Math.exp(-(-3 + 0.5 * 3)))) < 1e-12, `engagement ${lapsed.scores.engagement}`);
  t.same(Object.keys(lapsed.segments), ['at_risk'], 'a segment reads the score');

  // A purchase today makes t_x = T, and the customer is very likely alive again.
  await node.ingest(WORKSPACE, [order('u1', 'o4', Date.now())]);
  const back = await node.getProfile(WORKSPACE, { type: 'user_id', value: 'u1' });
  t.ok(Math.abs(back.scores.churn - (1 - expectedAlive(3, 110, 110))) < 1e-12, `churn ${back.scores.churn}`);
  t.same(back.segments, {}, 'no longer at risk');

  await node.ingest(WORKSPACE, [{ type: 'page', userId: 'u2', messageId: 'p1', name: 'Home' }]);
  const browser = await node.getProfile(WORKSPACE, { type: 'user_id', value: 'u2' });
  t.same(Object.keys(browser.scores), ['engagement'], 'no churn score before the first purchase');
});

t.test('scoring - invalid models name the path and the rule', async (t) => {
  const issues = (spec: string) =>
    validateDefinitionSet([{ name: 'm.yaml', content: `apiVersion: rtcdp/v1\nkind: ScoringModel\nmetadata: { name: m }\nspec: ${spec}\n` }], { workspace: 'w', current: [], prune: false }).issues.map(
      (issue) => `${issue.path}: ${issue.rule}`,
    );

  t.same(issues('{ model: tree }'), ['documents[0].spec.model: must be one of bgnbd, logistic, got "tree"']);
  t.same(issues('{ model: bgnbd, purchases: { event: Buy, property: revenue }, parameters: { r: 1, alpha: 0, a: 1, b: 1 } }'), [
    'documents[0].spec.parameters.alpha: must be a positive number, got 0',
  ]);
  t.same(issues('{ model: logistic, features: [] }'), [
    "documents[0].spec.features: must be a list of 1 to 50 features, such as [{ expression: 'double(eventCount)', weight: 0.1 }], got a list",
  ]);
  t.match(issues("{ model: logistic, features: [{ expression: 'traits.plan == \"pro\"', weight: 1 }] }"), [/^documents\[0\]\.spec\.features\[0\]\.expression: must be a numeric expression/]);
});

t.test('scoring - the 2F1 series matches closed forms', async (t) => {
  const { hypergeometric2F1 } = await import('../../decisions/scoring/scoring-model.js');
  for (const z of [0, 0.1, 0.5, 0.9, 0.99]) {
    const log = z === 0 ? 1 : -Math.log(1 - z) / z;
    t.ok(Math.abs(hypergeometric2F1(1, 1, 2, z) - log) < 1e-12 * log, `2F1(1, 1; 2; ${z}) = -ln(1 - z) / z`);
    t.ok(Math.abs(hypergeometric2F1(2.5, 3, 3, z) - (1 - z) ** -2.5) < 1e-9 * (1 - z) ** -2.5, `2F1(a, b; b; ${z}) = (1 - z)^-a`);
    const root = Math.sqrt(z);
    const arcsin = z === 0 ? 1 : Math.asin(root) / root;
    t.ok(Math.abs(hypergeometric2F1(0.5, 0.5, 1.5, z) - arcsin) < 1e-12, `2F1(1/2, 1/2; 3/2; ${z}) = arcsin(sqrt z) / sqrt z`);
  }
  t.throws(() => hypergeometric2F1(1, 1, 2, 1), RangeError);
});
