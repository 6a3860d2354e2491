import t from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import type { RawEvent } from '../../profiles/event.js';
import type { Identifier } from '../../profiles/identifiers.js';
import { drainBeforeRemovingTestdirs, startNode, storedActivations } from '../helpers/embedded-nodes.js';

const user = (value: string): Identifier => ({ type: 'user_id', value });
const anon = (value: string): Identifier => ({ type: 'anonymous_id', value });

let messages = 0;
const page = (anonymousId: string, extra: RawEvent = {}): RawEvent => ({ type: 'page', name: 'Home', anonymousId, messageId: `m${++messages}`, ...extra });
const track = (userId: string, extra: RawEvent = {}): RawEvent => ({ type: 'track', event: 'Order Completed', userId, messageId: `m${++messages}`, properties: { revenue: 10 }, ...extra });
const identify = (userId: string, anonymousId: string, traits: RawEvent = {}): RawEvent => ({ type: 'identify', userId, anonymousId, traits, messageId: `m${++messages}` });

const DEFINITIONS = `
apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: page_views }
spec: { kind: count, type: page }
---
apiVersion: rtcdp/v1
kind: Segment
metadata: { name: browser }
spec: { condition: 'computed.page_views >= 3' }
`;

drainBeforeRemovingTestdirs(t);

/** Anonymous browsing, orders of a known user, the identify that merges them, and one more event of each side. */
async function mergedVisitor(node: RtcdpNode, anonymousId: string, userId: string): Promise<void> {
  await node.ingest('w', [page(anonymousId, { context: { traits: { plan: 'free' } } }), page(anonymousId), page(anonymousId)]);
  await node.ingest('w', [track(userId), track(userId)]);
  await node.ingest('w', [identify(userId, anonymousId)]);
  await node.ingest('w', [page(anonymousId), track(userId)]);
}

t.test('profile unmerge - both profiles get their own events back, and later events follow the split', async (t) => {
  const node = await startNode(t);
  const outcome = await new DefinitionRegistry(node.definitionStore).apply('w', [{ name: 'definitions.yaml', content: DEFINITIONS }]);
  t.same(outcome.issues, []);
  await mergedVisitor(node, 'a1', 'u1');

  const merged = await node.getProfile('w', user('u1'));
  t.equal(merged.eventCount, 8, 'four page views, three orders and the identify');
  t.ok(merged.segments.browser, 'the merged profile is in the segment through the page views');

  const result = await node.identityAdmin.unmerge('w', user('u1'), 'anon:a1');
  t.equal(result.plan.survivor, 'user:u1');
  t.equal(result.plan.restored, 'anon:a1');
  t.same(result.plan.restoredIdentifiers, [anon('a1')]);

  const survivor = await node.getProfile('w', user('u1'));
  t.equal(survivor.eventCount, 4, 'the orders and the identify, which carried the higher-priority user id');
  t.equal(survivor.events['page:Home'], undefined, 'no page view stays with the user');
  t.equal(survivor.traits.plan, undefined, 'the anonymous profile takes its trait back');
  t.same(survivor.merges, [], 'the merge is gone from the survivor');
  t.same(survivor.segments, {}, 'the user leaves the segment the page views put it in');
  t.same(survivor.computedValues, { page_views: 0 });

  t.notOk(
    survivor.identifiers.some((identifier) => identifier.type === 'anonymous_id'),
    'the survivor no longer lists the anonymous id, although the identify carried it',
  );

  const restored = await node.getProfile('w', anon('a1'));
  t.equal(restored.profileId, 'anon:a1');
  t.equal(restored.mergedInto, undefined);
  t.equal(restored.eventCount, 4, 'three page views before the merge and one after');
  t.equal(restored.traits.plan, 'free');
  t.ok(restored.segments.browser, 'the anonymous profile is in the segment on its own');

  const activations = await storedActivations(node, 6);
  const described = (profileId: string) => activations.filter((activation) => activation.profileId === profileId && activation.cause.kind === 'merge').map((activation) => `${activation.type} ${activation.name}`);
  t.same(described('user:u1'), ['profile.merged anon:a1', 'segment.entered browser', 'segment.exited browser', 'profile.unmerged anon:a1']);
  t.same(described('anon:a1'), ['profile.unmerged user:u1'], 'the anonymous profile was in the segment before the merge, so it does not enter again');

  await node.ingest('w', [page('a1'), track('u1')]);
  t.equal((await node.getProfile('w', anon('a1'))).eventCount, 5, 'a later anonymous event reaches the restored profile');
  t.equal((await node.getProfile('w', user('u1'))).eventCount, 5);
});

t.test('profile unmerge - events sent with the linking event go back to their side', async (t) => {
  const node = await startNode(t);
  // One batch: the restored side's later page view reaches the survivor before the absorb does.
  await node.ingest('w', [track('u6'), page('a6'), identify('u6', 'a6'), page('a6', { name: 'Later' }), track('u6')]);
  t.equal((await node.getProfile('w', user('u6'))).eventCount, 5);

  await node.identityAdmin.unmerge('w', user('u6'), 'anon:a6');
  const survivor = await node.getProfile('w', user('u6'));
  const restored = await node.getProfile('w', anon('a6'));
  t.equal(survivor.eventCount, 3, 'the two orders and the identify');
  t.equal(survivor.events['page:Later'], undefined);
  t.equal(restored.eventCount, 2, 'both page views');
  t.equal(restored.events['page:Later']?.count, 1);
});

t.test('profile unmerge - a resent linking event changes nothing', async (t) => {
  const node = await startNode(t);
  const sent = [page('a9'), track('u9'), identify('u9', 'a9')];
  await node.ingest('w', sent);
  await node.identityAdmin.unmerge('w', user('u9'), anon('a9'));

  const results = await node.ingest('w', sent);
  t.same(
    results.map((result) => result.status),
    ['duplicate', 'duplicate', 'duplicate'],
    'every resent event is a duplicate',
  );
  t.same(await node.identityAdmin.listQuarantine('w', 'pending'), [], 'the resent identify asks for no link between the two');
  t.equal((await node.getProfile('w', anon('a9'))).profileId, 'anon:a9', 'the profiles stay apart');
  t.equal((await node.getProfile('w', user('u9'))).eventCount, 2, 'the user keeps the order and the identify, once each');
});

t.test('profile unmerge - an event linking the two again is quarantined, and approving it merges them', async (t) => {
  const node = await startNode(t);
  await mergedVisitor(node, 'a2', 'u2');
  await node.identityAdmin.unmerge('w', user('u2'), anon('a2'));

  const [result] = await node.ingest('w', [identify('u2', 'a2')]);
  t.equal(result.status, 'accepted');
  t.equal((await node.getProfile('w', user('u2'))).eventCount, 5, 'the event goes to the profile of its higher-priority identifier');
  t.equal((await node.getProfile('w', anon('a2'))).profileId, 'anon:a2', 'the profiles stay apart');

  const [held] = await node.identityAdmin.listQuarantine('w', 'pending');
  t.match(held, { reason: 'UNMERGED', profileId: 'user:u2', otherProfileId: 'anon:a2' });
  await node.identityAdmin.approve('w', held.id);
  const remerged = await node.getProfile('w', anon('a2'));
  t.equal(remerged.profileId, 'user:u2');
  t.equal(remerged.eventCount, 9, 'every event of both once');

  // A second round: the same link is held again, and approving it again merges them again.
  await node.identityAdmin.unmerge('w', user('u2'), 'anon:a2');
  await node.ingest('w', [identify('u2', 'a2')]);
  const [again] = await node.identityAdmin.listQuarantine('w', 'pending');
  t.equal(again?.id, held.id, 'the link is filed again under its id');
  await node.identityAdmin.approve('w', again.id);
  const second = await node.getProfile('w', anon('a2'));
  t.equal(second.profileId, 'user:u2');
  t.equal(second.eventCount, 10, 'every event of both once after the second approval');
});

t.test('profile unmerge - a crash after the unmerge replays it to the same states', async (t) => {
  const dataDir = t.testdir();
  const rare = { checkpointIntervalMs: 3_600_000, actors: { snapshotEveryMessages: 1_000_000, snapshotIntervalMs: 3_600_000 } };
  const first = await RtcdpNode.start({ dataDir, ...rare });
  await mergedVisitor(first, 'a3', 'u3');
  await first.identityAdmin.unmerge('w', user('u3'), 'anon:a3');
  await first.abort();

  const second = await startNode(t, { dataDir });
  const survivor = await second.getProfile('w', user('u3'));
  const restored = await second.getProfile('w', anon('a3'));
  t.equal(survivor.eventCount, 4);
  t.equal(restored.profileId, 'anon:a3');
  t.equal(restored.eventCount, 4);
  const unmerged = (await second.activations.list('w', { afterSequence: 0, limit: 100 })).activations.filter((activation) => activation.type === 'profile.unmerged');
  t.equal(unmerged.length, 2, 'one profile.unmerged per profile, not repeated by the replay');
});

t.test('profile unmerge - clear errors for profiles that cannot be split', async (t) => {
  const node = await startNode(t);
  await mergedVisitor(node, 'a4', 'u4');
  await node.ingest('w', [track('u5')]);

  await t.rejects(node.identityAdmin.unmerge('w', user('nobody'), 'anon:a4'), { code: 'PROFILE_NOT_FOUND' });
  await t.rejects(node.identityAdmin.unmerge('w', user('u5'), 'anon:a4'), { code: 'NOT_MERGED' });
  await t.rejects(node.identityAdmin.unmerge('w', user('u4'), user('u4')), { code: 'NOT_MERGED' });
  t.equal((await node.getProfile('w', anon('a4'))).profileId, 'user:u4', 'a refused unmerge changes nothing');
  t.equal((await node.getProfile('w', user('u4'))).eventCount, 8);
});
