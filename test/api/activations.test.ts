/**
 * ActivationService over gRPC on loopback: paging, type filters, workspaces kept apart,
 * a subscription that follows new activations and ends when the server stops, and bad
 * requests rejected with INVALID_ARGUMENT naming the field, and subscriptions past the log
 * with OUT_OF_RANGE.
 */
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { callUnary, createActivationClient } from '../../cli/client.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import type { Activation } from '../../proto/gen/rtcdp/v1/activations.js';
import { getProfile, ingestBatch, startTestNode, type TestNode } from '../helpers/grpc-node.js';

const SEGMENT = `apiVersion: rtcdp/v1
kind: Segment
metadata: { name: pro }
spec: { condition: 'has(traits.plan) && traits.plan == "pro"' }
`;

function bearer(key: string): Metadata {
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${key}`);
  return metadata;
}

async function setUp(t: Test): Promise<TestNode> {
  const node = await startTestNode(t, { writeKeys: new Map([['key-other-0001', 'other']]), actors: { snapshotIntervalMs: 20 } });
  for (const workspace of ['default', 'other']) {
    await new DefinitionRegistry(node.rtcdp.node.definitionStore).apply(workspace, [{ name: 'segments.yaml', content: SEGMENT }]);
  }
  return node;
}

/** Lists activations as "PROFILE TYPE", sorted by profile and in log order within one profile. */
function byProfile(activations: Activation[]): string[] {
  return activations
    .map((activation, index) => ({ activation, index }))
    .sort((a, b) => a.activation.profileId.localeCompare(b.activation.profileId) || a.index - b.index)
    .map(({ activation }) => `${activation.profileId} ${activation.type}`);
}

const identify = (userId: string, messageId: string, plan: string) => ({ type: 'identify', userId, messageId, traits: { plan } });

/** Reads pages until `count` activations are visible or 10 s pass. */
async function listUntil(node: TestNode, count: number, request = {}, metadata = new Metadata()) {
  const client = createActivationClient(node.rtcdp.address);
  try {
    for (let attempt = 0; ; attempt++) {
      const response = await callUnary(client.listActivations.bind(client), { afterSequence: 0, limit: 0, types: [], ...request }, metadata);
      if (response.activations.length >= count || attempt >= 200) return response;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    client.close();
  }
}

t.test('activations - pages, filters and workspaces', async (t) => {
  const node = await setUp(t);
  await ingestBatch(node, [identify('u1', 'a', 'pro'), identify('u2', 'b', 'pro')]);
  await ingestBatch(node, [identify('u1', 'c', 'free')]);
  await ingestBatch(node, [identify('u9', 'd', 'pro')], bearer('key-other-0001'));
  await getProfile(node, 'user_id', 'u1');

  // The log is in the order snapshots were stored: one profile's activations keep their
  // order, but two profiles' may interleave either way.
  const all = await listUntil(node, 3);
  t.same(
    all.activations.map((activation) => activation.sequence),
    [1, 2, 3],
  );
  t.same(byProfile(all.activations), ['user:u1 segment.entered', 'user:u1 segment.exited', 'user:u2 segment.entered']);
  t.equal(all.nextAfterSequence, 3);

  const page = await listUntil(node, 1, { afterSequence: 1, limit: 1 });
  t.same(
    page.activations.map((activation) => activation.sequence),
    [2],
  );
  t.equal(page.nextAfterSequence, 2, 'a full page continues after its last activation');
  t.equal(page.latestSequence, 3, 'a page names the newest sequence, also beyond itself');

  const exits = await listUntil(node, 1, { types: ['segment.exited'] });
  t.same(byProfile(exits.activations), ['user:u1 segment.exited']);
  t.equal(exits.nextAfterSequence, 3, 'a filtered page continues after what it skipped');

  const other = await listUntil(node, 1, {}, bearer('key-other-0001'));
  t.same(
    other.activations.map((activation) => [activation.sequence, activation.profileId]),
    [[1, 'user:u9']],
    'each workspace has its own log',
  );
});

t.test('activations - a subscription streams stored and new activations, and ends when the server stops', async (t) => {
  const node = await setUp(t);
  await ingestBatch(node, [identify('u1', 'a', 'pro')]);
  await listUntil(node, 1);

  const client = createActivationClient(node.rtcdp.address);
  t.teardown(() => client.close());
  const call = client.subscribeActivations({ afterSequence: 0, types: [] }, new Metadata());
  const received: Activation[] = [];
  const ended = new Promise<ServiceError | null>((resolve) => {
    call.on('data', (activation: Activation) => received.push(activation));
    call.on('error', resolve);
    call.on('end', () => resolve(null));
  });

  await ingestBatch(node, [identify('u2', 'b', 'pro')]);
  await ingestBatch(node, [identify('u1', 'c', 'free')]);
  for (let attempt = 0; attempt < 200 && received.length < 3; attempt++) await new Promise((resolve) => setTimeout(resolve, 50));
  t.same(
    received.map((activation) => activation.sequence),
    [1, 2, 3],
  );
  t.same(byProfile(received), ['user:u1 segment.entered', 'user:u1 segment.exited', 'user:u2 segment.entered']);

  await node.rtcdp.server.stop({ graceMs: 5_000 });
  t.equal(await ended, null, 'the stream ends with OK when the server stops');
});

t.test('activations - bad requests name the field and the rule', async (t) => {
  const node = await setUp(t);
  const client = createActivationClient(node.rtcdp.address);
  t.teardown(() => client.close());
  const list = (request: object) => callUnary(client.listActivations.bind(client), { afterSequence: 0, limit: 0, types: [], ...request }, new Metadata());

  await t.rejects(list({ limit: 1_001 }), { code: status.INVALID_ARGUMENT, details: 'limit must be at most 1000, received 1001' });
  await t.rejects(list({ types: ['segment.entered', 'joined'] }), {
    code: status.INVALID_ARGUMENT,
    details: 'types[1] must be one of segment.entered, segment.exited, decision.made, journey.entered, journey.action, journey.exited, journey.completed, profile.merged, profile.unmerged, received "joined"',
  });
  await t.rejects(callUnary(client.listActivations.bind(client), { afterSequence: 0, limit: 0, types: [] }, bearer('unknown-key-0001')), { code: status.UNAUTHENTICATED });
});

/** Opens a subscription and returns the status it ends with, or a timeout message when it stays open for `waitMs`. */
function subscriptionStatus(node: TestNode, request: object, metadata = new Metadata(), waitMs = 5_000): Promise<ServiceError | string> {
  const client = createActivationClient(node.rtcdp.address);
  const call = client.subscribeActivations({ afterSequence: 0, types: [], ...request }, metadata);
  return new Promise<ServiceError | string>((resolve) => {
    const timer = setTimeout(() => resolve(`the subscription was still open after ${waitMs} ms`), waitMs);
    call.on('data', () => undefined);
    call.on('error', (error: ServiceError) => {
      clearTimeout(timer);
      resolve(error);
    });
    call.on('end', () => {
      clearTimeout(timer);
      resolve('the subscription ended with OK');
    });
  }).finally(() => {
    call.cancel();
    client.close();
  });
}

t.test('activations - a rejected subscription ends with its error', async (t) => {
  const node = await setUp(t);

  t.match(await subscriptionStatus(node, { types: ['joined'] }), {
    code: status.INVALID_ARGUMENT,
    details: /^types\[0\] must be one of segment\.entered, .*received "joined"$/,
  });
  t.match(await subscriptionStatus(node, {}, bearer('unknown-key-0001')), { code: status.UNAUTHENTICATED });
});

t.test('activations - a subscription past the log is out of range', async (t) => {
  const node = await setUp(t);
  await ingestBatch(node, [identify('u1', 'a', 'pro'), identify('u2', 'b', 'pro')]);
  const latest = (await listUntil(node, 2)).latestSequence;
  const client = createActivationClient(node.rtcdp.address);
  t.teardown(() => client.close());
  const list = (afterSequence: number) => callUnary(client.listActivations.bind(client), { afterSequence, limit: 0, types: [] }, new Metadata());

  const atEnd = await list(latest);
  t.same(atEnd.activations, [], 'a cursor at the newest activation lists nothing');
  t.equal(atEnd.nextAfterSequence, latest, 'and keeps its place');

  const pastEnd = await list(Number.MAX_SAFE_INTEGER);
  t.same(pastEnd.activations, [], 'ListActivations past the newest lists nothing');
  t.equal(pastEnd.latestSequence, latest, 'and returns the newest sequence, which clients read this way');

  t.match(
    await subscriptionStatus(node, { afterSequence: latest + 1 }),
    {
      code: status.OUT_OF_RANGE,
      details: `after_sequence ${latest + 1} is past the newest activation sequence of workspace "default", ${latest}, so it was not read from this log; pass a sequence the log returned, latest_sequence of ListActivations for only new activations, or 0 for all that are kept`,
    },
    'SubscribeActivations rejects a cursor one past the newest',
  );
  t.match(await subscriptionStatus(node, { afterSequence: latest }, new Metadata(), 500), /still open/, 'a subscription from the newest activation waits for more');
});
