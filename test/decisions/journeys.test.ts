/**
 * Journeys in the profile actors of an embedded node on real RocksDB: entry by event and by
 * segment, waits that durable timers end, branches, actions, exits and completion, and a
 * wait that survives a restart. The node's clock is moved forward instead of waiting.
 */
import t from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import { validateDefinitionSet } from '../../decisions/definitions/validate.js';
import type { StoredActivation } from '../../profiles/activation-log.js';
import type { RawEvent } from '../../profiles/event.js';

const WORKSPACE = 'w';
const HOUR_MS = 3_600_000;

const DEFINITIONS = `
apiVersion: rtcdp/v1
kind: Journey
metadata: { name: cart_recovery }
spec:
  entry: { event: Cart Abandoned, condition: 'context.value > 20.0' }
  exitWhen: '"Order Completed" in events'
  steps:
    - { name: pause, wait: { hours: 1 } }
    - name: check
      branch:
        - { when: 'has(traits.phone)', goto: sms }
        - { goto: email }
    - { name: email, action: send_cart_email, channel: email }
    - { name: stop, branch: [{ goto: end }] }
    - { name: sms, action: send_cart_sms, channel: sms }
---
apiVersion: rtcdp/v1
kind: Segment
metadata: { name: loyal }
spec: { condition: 'eventCount >= 3' }
---
apiVersion: rtcdp/v1
kind: Journey
metadata: { name: welcome_loyal }
spec:
  entry: { segment: loyal }
  steps:
    - { name: thanks, action: send_thanks, channel: email }
`;

/** Returns a clock that the test moves forward. */
function movableClock() {
  let offsetMs = 0;
  return { now: () => Date.now() + offsetMs, advance: (ms: number) => (offsetMs += ms) };
}

async function start(dataDir: string, clock: { now: () => number }): Promise<RtcdpNode> {
  return RtcdpNode.start({ dataDir, now: clock.now, evaluationTimerIntervalMs: 20, actors: { snapshotIntervalMs: 20 } });
}

async function journeyActivations(node: RtcdpNode, count: number): Promise<string[]> {
  let list: StoredActivation[] = [];
  for (let attempt = 0; attempt < 300; attempt++) {
    list = (await node.activations.list(WORKSPACE, { limit: 1_000 })).activations.filter((activation) => activation.type.startsWith('journey.'));
    if (list.length >= count) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return list.map((activation) => [activation.type, activation.profileId, activation.name, activation.step ?? '', activation.action ?? ''].join(' ').trim());
}

const abandon = (userId: string, messageId: string, value: number): RawEvent => ({ type: 'track', event: 'Cart Abandoned', userId, messageId, properties: { value } });

t.test('journeys - wait, branch, act and complete; exit on purchase', async (t) => {
  const clock = movableClock();
  const node = await start(t.testdir(), clock);
  t.teardown(() => node.drain());
  await new DefinitionRegistry(node.definitionStore).apply(WORKSPACE, [{ name: 'journeys.yaml', content: DEFINITIONS }]);

  await node.ingest(WORKSPACE, [
    abandon('u1', 'a1', 50),
    abandon('u2', 'a2', 5),
    { type: 'identify', userId: 'u3', messageId: 'i3', traits: { phone: '+14155550100' } },
    abandon('u3', 'a3', 80),
    abandon('u4', 'a4', 40),
  ]);
  await node.ingest(WORKSPACE, [{ type: 'track', event: 'Order Completed', userId: 'u4', messageId: 'o4' }]);
  // Every profile must have applied its events before the clock moves, or its wait would start later.
  for (const userId of ['u2', 'u3', 'u4']) await node.getProfile(WORKSPACE, { type: 'user_id', value: userId });
  const waiting = await node.getProfile(WORKSPACE, { type: 'user_id', value: 'u1' });
  t.equal(waiting.journeys.cart_recovery.step, 'pause', 'u1 waits');
  t.ok(waiting.nextEvaluationMs > clock.now(), 'the wait set the durable timer');

  clock.advance(HOUR_MS + 1_000);
  const listed = await journeyActivations(node, 8);
  t.same(listed.sort(), [
    'journey.action user:u1 cart_recovery email send_cart_email',
    'journey.action user:u3 cart_recovery sms send_cart_sms',
    'journey.completed user:u1 cart_recovery',
    'journey.completed user:u3 cart_recovery',
    'journey.entered user:u1 cart_recovery',
    'journey.entered user:u3 cart_recovery',
    'journey.entered user:u4 cart_recovery',
    'journey.exited user:u4 cart_recovery',
  ]);

  // Without reentry, a second abandoned cart does not start the journey again.
  await node.ingest(WORKSPACE, [abandon('u1', 'a1-again', 99)]);
  const done = await node.getProfile(WORKSPACE, { type: 'user_id', value: 'u1' });
  t.same(done.journeys, {});
  t.ok(done.finishedJourneys.cart_recovery > 0);
});

t.test('journeys - entering a segment starts a journey', async (t) => {
  const node = await start(t.testdir(), movableClock());
  t.teardown(() => node.drain());
  await new DefinitionRegistry(node.definitionStore).apply(WORKSPACE, [{ name: 'journeys.yaml', content: DEFINITIONS }]);
  await node.ingest(
    WORKSPACE,
    ['v1', 'v2', 'v3', 'v4'].map((messageId) => ({ type: 'track', event: 'Viewed', userId: 'u5', messageId })),
  );
  t.same(await journeyActivations(node, 3), [
    'journey.entered user:u5 welcome_loyal',
    'journey.action user:u5 welcome_loyal thanks send_thanks',
    'journey.completed user:u5 welcome_loyal',
  ]);
});

t.test('journeys - a wait survives a restart', async (t) => {
  const dataDir = t.testdir();
  const clock = movableClock();
  const first = await start(dataDir, clock);
  await new DefinitionRegistry(first.definitionStore).apply(WORKSPACE, [{ name: 'journeys.yaml', content: DEFINITIONS }]);
  await first.ingest(WORKSPACE, [abandon('u6', 'a6', 30)]);
  await first.getProfile(WORKSPACE, { type: 'user_id', value: 'u6' });
  await first.drain();

  clock.advance(2 * HOUR_MS);
  const second = await start(dataDir, clock);
  t.teardown(() => second.drain());
  t.same(await journeyActivations(second, 3), [
    'journey.entered user:u6 cart_recovery',
    'journey.action user:u6 cart_recovery email send_cart_email',
    'journey.completed user:u6 cart_recovery',
  ]);
});

t.test('journeys - invalid journeys name the path and the rule', async (t) => {
  const issues = (spec: string) =>
    validateDefinitionSet([{ name: 'j.yaml', content: `apiVersion: rtcdp/v1\nkind: Journey\nmetadata: { name: j }\nspec: ${spec}\n` }], { workspace: 'w', current: [], prune: false }).issues.map(
      (issue) => `${issue.path}: ${issue.rule}`,
    );

  t.same(issues('{ steps: [{ name: a, action: x }] }'), [
    'documents[0].spec.entry: is missing. Give an event, such as { event: Cart Abandoned }, or a segment, such as { segment: at_risk }',
  ]);
  t.same(issues('{ entry: { event: E }, steps: [{ name: a, branch: [{ goto: nowhere }] }] }'), ['documents[0].spec.steps[0].branch[0].goto: names no step of the journey. Use a step name or "end"']);
  t.same(issues('{ entry: { event: E }, steps: [{ name: a, wait: { hours: 1 }, action: x }] }'), ['documents[0].spec.steps[0]: must have exactly one of wait, waitFor, branch and action']);
  t.same(issues('{ entry: { event: E }, steps: [{ name: a, action: x }, { name: a, action: y }] }'), ['documents[0].spec.steps[1].name: repeats step "a" of spec.steps[0]']);
  t.same(issues('{ entry: { segment: s, event: E }, steps: [{ name: a, action: x }] }'), ['documents[0].spec.entry.event: cannot be combined with segment. An entry is an event or a segment']);
  t.same(issues('{ entry: { segment: nowhere }, steps: [{ name: a, action: x }] }'), [
    'documents[0].spec.entry.segment: names segment "nowhere", which the workspace will not have after this apply. The workspace has no segments after this apply',
  ]);
  t.match(issues("{ entry: { event: E }, exitWhen: 'eventCount', steps: [{ name: a, action: x }] }"), [/^documents\[0\]\.spec\.exitWhen: must be a boolean expression/]);
});

const WAIT_FOR = `
apiVersion: rtcdp/v1
kind: Journey
metadata: { name: trial_followup }
spec:
  entry: { event: Trial Started }
  steps:
    - { name: await_purchase, waitFor: { event: Order Completed, timeout: { days: 3 }, onTimeout: nudge } }
    - { name: thank, action: send_thanks, channel: email }
    - { name: finish, branch: [{ goto: end }] }
    - { name: nudge, action: send_nudge, channel: sms }
---
apiVersion: rtcdp/v1
kind: ContactPolicy
metadata: { name: consent }
spec: { consentTrait: consent }
`;

t.test('journeys - waitFor takes a later event or times out; consent withholds actions', async (t) => {
  const clock = movableClock();
  const node = await start(t.testdir(), clock);
  t.teardown(() => node.drain());
  await new DefinitionRegistry(node.definitionStore).apply(WORKSPACE, [{ name: 'journeys.yaml', content: WAIT_FOR }]);

  const trial = (userId: string): RawEvent => ({ type: 'track', event: 'Trial Started', userId, messageId: `trial-${userId}` });
  await node.ingest(WORKSPACE, [
    trial('u7'),
    trial('u8'),
    { type: 'identify', userId: 'u9', messageId: 'i9', traits: { consent: { sms: false, email: true } } },
    trial('u9'),
  ]);
  await node.ingest(WORKSPACE, [{ type: 'track', event: 'Order Completed', userId: 'u7', messageId: 'o7' }]);
  t.same(
    (await journeyActivations(node, 5)).sort(),
    ['journey.action user:u7 trial_followup thank send_thanks', 'journey.completed user:u7 trial_followup', 'journey.entered user:u7 trial_followup', 'journey.entered user:u8 trial_followup', 'journey.entered user:u9 trial_followup'],
    'the purchase ends the wait of u7 only',
  );

  clock.advance(3 * 24 * HOUR_MS + 1_000);
  const listed = await journeyActivations(node, 8);
  t.same(
    listed.filter((line) => !line.includes('user:u7')).sort(),
    [
      'journey.action user:u8 trial_followup nudge send_nudge',
      'journey.completed user:u8 trial_followup',
      'journey.completed user:u9 trial_followup',
      'journey.entered user:u8 trial_followup',
      'journey.entered user:u9 trial_followup',
    ],
    'the timeout nudges u8; u9 forbids sms, so its nudge leaves no activation',
  );
  t.equal(node.evaluator.stats().withheldForConsent, 1);
});

t.test('journeys - a loop without a wait makes the profile leave', async (t) => {
  const node = await start(t.testdir(), movableClock());
  t.teardown(() => node.drain());
  const loop = `apiVersion: rtcdp/v1
kind: Journey
metadata: { name: loop }
spec:
  entry: { event: Ping }
  steps:
    - { name: a, branch: [{ goto: b }] }
    - { name: b, action: ping_back }
    - { name: c, branch: [{ goto: a }] }
`;
  await new DefinitionRegistry(node.definitionStore).apply(WORKSPACE, [{ name: 'loop.yaml', content: loop }]);
  await node.ingest(WORKSPACE, [{ type: 'track', event: 'Ping', userId: 'p1', messageId: 'ping-1' }]);
  t.same(await journeyActivations(node, 3), ['journey.entered user:p1 loop', 'journey.action user:p1 loop b ping_back', 'journey.exited user:p1 loop'], 'one action, then the profile leaves');
  t.ok(node.evaluator.stats().evaluationErrors >= 1, 'the loop is reported');
});
