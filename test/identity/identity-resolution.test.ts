import { join } from 'node:path';
import t from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import type { RawEvent } from '../../profiles/event.js';
import type { Identifier } from '../../profiles/identifiers.js';
import { drainBeforeRemovingTestdirs, startNode, storedActivations } from '../helpers/embedded-nodes.js';

const user = (value: string): Identifier => ({ type: 'user_id', value });
const anon = (value: string): Identifier => ({ type: 'anonymous_id', value });
const email = (value: string): Identifier => ({ type: 'email', value });

let messages = 0;
const page = (anonymousId: string, extra: RawEvent = {}): RawEvent => ({ type: 'page', name: 'Home', anonymousId, messageId: `m${++messages}`, ...extra });
const track = (userId: string, extra: RawEvent = {}): RawEvent => ({ type: 'track', event: 'Order Completed', userId, messageId: `m${++messages}`, properties: { revenue: 10 }, ...extra });
const identify = (userId: string, anonymousId: string, traits: RawEvent = {}): RawEvent => ({ type: 'identify', userId, anonymousId, traits, messageId: `m${++messages}` });

drainBeforeRemovingTestdirs(t);

t.test('identity resolution - identify merges anonymous history into the known profile', async (t) => {
  const node = await startNode(t);
  await node.ingest('w', [page('a1'), page('a1', { context: { traits: { plan: 'free' } } }), page('a1')]);
  await node.ingest('w', [track('u1'), track('u1')]);
  t.equal((await node.getProfile('w', anon('a1'))).profileId, 'anon:a1', 'before identify the anonymous visitor has a profile of its own');

  const results = await node.ingest('w', [identify('u1', 'a1', { email: 'Ana@Example.com' })]);
  t.equal(results[0].status, 'accepted');

  const profile = await node.getProfile('w', user('u1'));
  t.equal(profile.profileId, 'user:u1', 'the profile with the user id survives');
  t.equal(profile.eventCount, 6, 'three page views, two orders and the identify');
  t.equal(profile.events['page:Home']?.count, 3);
  t.equal(profile.events['Order Completed']?.count, 2);
  t.equal(profile.traits.plan, 'free', 'traits of the merged profile are kept');
  t.same(profile.merges.map((merge) => merge.profileId), ['anon:a1']);
  t.ok(profile.identifiers.some((identifier) => identifier.type === 'anonymous_id' && identifier.value === 'a1'));

  t.equal((await node.getProfile('w', anon('a1'))).profileId, 'user:u1', 'the anonymous id now finds the merged profile');
  t.equal((await node.getProfile('w', email('ana@example.com'))).profileId, 'user:u1', 'the email is normalised and linked');

  await node.ingest('w', [page('a1')]);
  t.equal((await node.getProfile('w', user('u1'))).eventCount, 7, 'a later event of the anonymous id reaches the survivor');

  const activations = await storedActivations(node, 1);
  t.match(
    activations.filter((activation) => activation.type === 'profile.merged'),
    [{ profileId: 'user:u1', name: 'anon:a1', cause: { kind: 'merge', rule: 'shared-identifier' } }],
    'profile.merged is emitted once',
  );
});

t.test('identity resolution - merges survive a restart', async (t) => {
  const dataDir = t.testdir();
  const first = await RtcdpNode.start({ dataDir });
  await first.ingest('w', [page('a1'), track('u1')]);
  await first.ingest('w', [identify('u1', 'a1')]);
  t.equal((await first.getProfile('w', user('u1'))).eventCount, 3);
  await first.drain();

  const second = await startNode(t, { dataDir });
  t.equal((await second.getProfile('w', anon('a1'))).profileId, 'user:u1');
  t.equal((await second.getProfile('w', user('u1'))).eventCount, 3);
  await second.ingest('w', [page('a1')]);
  t.equal((await second.getProfile('w', user('u1'))).eventCount, 4);
});

t.test('identity resolution - a merge forced through a crash is completed by replay', async (t) => {
  const dataDir = t.testdir();
  // Snapshots and checkpoints so rare that an abort leaves the merge only in the log.
  const rare = { checkpointIntervalMs: 3_600_000, actors: { snapshotEveryMessages: 1_000_000, snapshotIntervalMs: 3_600_000 } };
  const first = await RtcdpNode.start({ dataDir, ...rare });
  await first.ingest('w', [page('a1'), page('a1'), track('u1')]);
  await first.ingest('w', [identify('u1', 'a1')]);
  await first.abort();

  const second = await startNode(t, { dataDir });
  const profile = await second.getProfile('w', anon('a1'));
  t.equal(profile.profileId, 'user:u1');
  t.equal(profile.eventCount, 4, 'each event counted once after the replay');
});

t.test('identity resolution - chains of merges replayed after a crash count every event once', async (t) => {
  const dataDir = t.testdir();
  const rare = { checkpointIntervalMs: 3_600_000, actors: { snapshotEveryMessages: 1_000_000, snapshotIntervalMs: 3_600_000 } };
  const first = await RtcdpNode.start({ dataDir, ...rare });
  const groups = Array.from({ length: 20 }, (_, g) => g);
  // Per group: b joins a through a shared email, then a joins the user on identify.
  const events = groups.flatMap((g): RawEvent[] => [
    page(`ca-${g}`),
    page(`cb-${g}`),
    page(`ca-${g}`, { context: { traits: { email: `c${g}@example.com` } } }),
    page(`cb-${g}`, { context: { traits: { email: `c${g}@example.com` } } }),
    track(`CU-${g}`),
    identify(`CU-${g}`, `ca-${g}`),
    page(`cb-${g}`),
    track(`CU-${g}`),
  ]);
  await first.ingest('w', events);
  // Every merge completes, so the tombstones are persisted (they persist at once to send
  // their state) while the checkpoints stay at 0: the restart replays every record again.
  for (const g of groups) t.equal((await first.getProfile('w', anon(`cb-${g}`))).eventCount, 8);
  await first.abort();

  const second = await startNode(t, { dataDir });
  for (const g of groups) {
    const profile = await second.getProfile('w', anon(`cb-${g}`));
    t.equal(profile.profileId, `user:CU-${g}`);
    t.equal(profile.eventCount, 8, `group ${g}: every event once`);
  }
  const merged = (await second.activations.list('w', { afterSequence: 0, limit: 1_000 })).activations.filter((activation) => activation.type === 'profile.merged');
  t.equal(new Set(merged.map((activation) => activation.id)).size, merged.length, 'no profile.merged activation is repeated');
});

t.test('identity resolution - two user ids sharing an email stay apart, and the link can be approved', async (t) => {
  const node = await startNode(t);
  await node.ingest('w', [track('u1', { context: { traits: { email: 'shared@example.com' } } })]);
  await node.ingest('w', [track('u2'), track('u2', { context: { traits: { email: 'shared@example.com' } } })]);

  t.equal((await node.getProfile('w', user('u2'))).eventCount, 2, 'the event went to the profile of its user id');
  t.equal((await node.getProfile('w', user('u1'))).eventCount, 1);

  const pending = await node.identityAdmin.listQuarantine('w', 'pending');
  t.match(pending, [{ reason: 'MERGE_PROTECTED', identifier: email('shared@example.com'), profileId: 'user:u2', otherProfileId: 'user:u1' }]);

  await node.identityAdmin.approve('w', pending[0].id);
  const merged = await node.getProfile('w', user('u2'));
  t.equal(merged.profileId, 'user:u1', 'the older profile survives the approved merge');
  t.equal(merged.eventCount, 3);
  await t.rejects(node.identityAdmin.reject('w', pending[0].id), { code: 'QUARANTINE_DECIDED' });
});

t.test('identity resolution - explain lists the events between two identifiers', async (t) => {
  const node = await startNode(t);
  await node.ingest('w', [page('a1', { context: { traits: { email: 'ana@example.com' } } })]);
  await node.ingest('w', [track('u1')]);
  const [{ messageId }] = await node.ingest('w', [identify('u1', 'a1')]);

  const explanation = await node.identityAdmin.explain('w', { type: 'email', value: ' ANA@example.com ' }, user('u1'));
  t.equal(explanation.profileId, 'user:u1');
  t.match(explanation.steps, [
    // The email ranks above the anonymous id, so it names the visitor's profile.
    { kind: 'linked', identifier: email('ana@example.com'), profileId: 'email:ana@example.com' },
    { kind: 'merged', profileId: 'email:ana@example.com', intoProfileId: 'user:u1', messageId, from: [anon('a1')], into: [user('u1')] },
    { kind: 'linked', identifier: user('u1'), profileId: 'user:u1' },
  ]);
});

t.test('identity resolution - invalid identifiers: rejected by default, or kept unlinked', async (t) => {
  const dir = t.testdir();
  const strict = await startNode(t, { dataDir: join(dir, 'strict') });
  const [rejected, accepted] = await strict.ingest('w', [track('u1', { context: { traits: { email: 'not-an-email' } } }), track('u1')]);
  t.match(rejected, { status: 'rejected', code: 'INVALID_EMAIL', field: 'context.traits.email' });
  t.equal(accepted.status, 'accepted', 'the rest of the batch is applied');
  t.equal((await strict.getProfile('w', user('u1'))).eventCount, 1);

  const lenient = await startNode(t, { dataDir: join(dir, 'lenient'), identity: { invalidIdentifiers: 'keep-unlinked' } });
  const [kept] = await lenient.ingest('w', [track('u1', { context: { traits: { email: 'not-an-email' } } })]);
  t.equal(kept.status, 'accepted');
  await t.rejects(lenient.getProfile('w', { type: 'email', value: 'not-an-email' }), { code: 'PROFILE_NOT_FOUND' });
});

t.test('identity resolution - alias links the previous id to the new user id', async (t) => {
  const node = await startNode(t);
  await node.ingest('w', [page('visitor-9'), page('visitor-9')]);
  await node.ingest('w', [track('u9')]);
  await node.ingest('w', [{ type: 'alias', previousId: 'visitor-9', userId: 'u9', messageId: 'alias-1' }]);

  const profile = await node.getProfile('w', anon('visitor-9'));
  t.equal(profile.profileId, 'user:u9');
  t.equal(profile.eventCount, 4);

  await node.ingest('w', [{ type: 'alias', previousId: 'visitor-10', userId: 'u9', messageId: 'alias-3' }]);
  const aliased = await node.getProfile('w', anon('visitor-10'));
  t.equal(aliased.profileId, 'user:u9', 'a previousId no event carried before is linked too');
  t.ok(
    aliased.identifiers.some((identifier) => identifier.type === 'anonymous_id' && identifier.value === 'visitor-10'),
    'and the profile lists it',
  );

  const [blocked] = await node.ingest('w', [{ type: 'alias', previousId: 'null', userId: 'u9', messageId: 'alias-2' }]);
  t.match(blocked, { status: 'rejected', code: 'BLOCKED_IDENTIFIER', field: 'previousId' }, 'a blocked previousId is rejected, not dropped');
  t.equal((await node.getProfile('w', user('u9'))).eventCount, 5, 'and the profile is unchanged');
});

t.test('identity resolution - concurrent batches that link the same visitor converge', async (t) => {
  const node = await startNode(t);
  const visitors = Array.from({ length: 20 }, (_, i) => `v${i}`);
  // Every visitor shares the device, so all of them are one person.
  const batches = visitors.map((visitor) => [page(visitor, { context: { device: { id: 'device-1' } } })]);
  await Promise.all(batches.map((batch) => node.ingest('w', batch)));

  const profiles = new Set<string>();
  for (const visitor of visitors) profiles.add((await node.getProfile('w', anon(visitor))).profileId);
  t.equal(profiles.size, 1, 'every visitor reaches one profile');
  t.equal((await node.getProfile('w', { type: 'device_id', value: 'device-1' })).eventCount, 20, 'holding all their events');
});

t.test('identity resolution - computed traits and segments count both profiles after a merge', async (t) => {
  const node = await startNode(t);
  const definitions = `
apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: page_views }
spec: { kind: count, type: page }
---
apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: revenue_30d }
spec: { kind: sum, event: Order Completed, property: revenue, window: { days: 30 } }
---
apiVersion: rtcdp/v1
kind: Segment
metadata: { name: engaged_buyer }
spec: { condition: 'computed.page_views >= 3 && computed.revenue_30d >= 20' }
`;
  const outcome = await new DefinitionRegistry(node.definitionStore).apply('w', [{ name: 'definitions.yaml', content: definitions }]);
  t.same(outcome.issues, []);

  await node.ingest('w', [page('a7'), page('a7'), page('a7')]);
  await node.ingest('w', [track('u7'), track('u7')]);
  t.same((await node.getProfile('w', user('u7'))).segments, {}, 'neither profile alone is in the segment');

  await node.ingest('w', [identify('u7', 'a7')]);
  const profile = await node.getProfile('w', user('u7'));
  t.same(profile.computedValues, { page_views: 3, revenue_30d: 20 });
  t.ok(profile.segments.engaged_buyer, 'the merged profile enters the segment');

  const activations = await storedActivations(node, 3);
  t.match(
    activations.filter((activation) => activation.profileId === 'user:u7').map((activation) => `${activation.type} ${activation.name} ${activation.cause.kind}`),
    ['profile.merged anon:a7 merge', 'segment.entered engaged_buyer merge'],
  );
});
