import t, { type Test } from 'tap';
import { silentLogger } from '../../common/logger.js';
import { IdentityGraph } from '../../identity/identity-graph.js';
import { resolveIdentitySettings, type IdentitySettingsInput } from '../../identity/identity-settings.js';
import type { Identifier } from '../../profiles/identifiers.js';
import type { KvStore } from '../../storage/kv-store.js';
import { MemoryKvStore } from '../../storage/memory-kv-store.js';
import { RocksDbKvStore } from '../../storage/rocksdb-kv-store.js';
import { Store } from '../../storage/store.js';

const user = (value: string): Identifier => ({ type: 'user_id', value });
const anon = (value: string): Identifier => ({ type: 'anonymous_id', value });
const email = (value: string): Identifier => ({ type: 'email', value });

function graphOn(kv: KvStore, settings: IdentitySettingsInput = {}, now = () => 1_000): IdentityGraph {
  const resolved = resolveIdentitySettings(settings);
  return new IdentityGraph({ kv, settingsFor: () => resolved, logger: silentLogger(), now });
}

const stores: Array<[string, (t: Test) => Promise<KvStore>]> = [
  ['memory', async () => new MemoryKvStore()],
  [
    'rocksdb',
    async (t) => {
      const store = await Store.open({ path: t.testdir() });
      t.teardown(() => store.close());
      return RocksDbKvStore.open(store, 'identity');
    },
  ],
];

for (const [name, open] of stores) {
  t.test(`identity graph on ${name} - an event with new identifiers starts a profile named after the first`, async (t) => {
    const graph = graphOn(await open(t));
    const resolution = await graph.resolve('ws', 'm1', [user('u1'), email('a@x.com')]);

    t.equal(resolution.profileId, 'user:u1');
    t.same(resolution.merges, []);
    t.equal(await graph.profileOf('ws', email('a@x.com')), 'user:u1');
    t.equal(await graph.profileOf('other', email('a@x.com')), undefined, 'workspaces are separate');
    t.equal((await graph.resolve('ws', 'm2', [email('a@x.com')])).profileId, 'user:u1', 'a later event with only the email finds the profile');
  });

  t.test(`identity graph on ${name} - identify merges the anonymous profile into the known one`, async (t) => {
    let clock = 1_000;
    const graph = graphOn(await open(t), {}, () => clock);
    t.equal((await graph.resolve('ws', 'm1', [anon('a1')])).profileId, 'anon:a1');
    clock += 1;
    t.equal((await graph.resolve('ws', 'm2', [user('u1')])).profileId, 'user:u1');

    const resolution = await graph.resolve('ws', 'm3', [user('u1'), anon('a1')]);
    t.equal(resolution.profileId, 'user:u1', 'the profile with a user_id survives although the anonymous one is older');
    t.match(resolution.merges, [{ workspace: 'ws', loser: 'anon:a1', winner: 'user:u1', cause: { messageId: 'm3', rule: 'shared-identifier' } }]);
    t.equal(await graph.profileOf('ws', anon('a1')), 'user:u1');
    t.equal(await graph.survivorOf('ws', 'anon:a1'), 'user:u1');

    const survivor = await graph.profile('ws', 'user:u1');
    t.same(survivor?.identifiers, [user('u1'), anon('a1')]);
    t.match(survivor?.merges, [{ profileId: 'anon:a1', messageId: 'm3', from: [anon('a1')], into: [user('u1')] }]);
  });

  t.test(`identity graph on ${name} - a known id joins the anonymous profile that has no other`, async (t) => {
    const graph = graphOn(await open(t));
    await graph.resolve('ws', 'm1', [anon('a1')]);
    const resolution = await graph.resolve('ws', 'm2', [user('u1'), anon('a1')]);
    t.equal(resolution.profileId, 'anon:a1', 'no profile has the user id yet, so nothing merges');
    t.same(resolution.merges, []);
    t.equal(await graph.profileOf('ws', user('u1')), 'anon:a1');
  });

  t.test(`identity graph on ${name} - between equals the older profile survives`, async (t) => {
    let clock = 1_000;
    const graph = graphOn(await open(t), {}, () => clock);
    await graph.resolve('ws', 'm1', [anon('b')]);
    clock += 1;
    await graph.resolve('ws', 'm2', [anon('a')]);
    const resolution = await graph.resolve('ws', 'm3', [email('e@x.com'), anon('a'), anon('b')]);
    t.equal(resolution.profileId, 'anon:b');
    t.same(resolution.merges.map((merge) => merge.loser), ['anon:a']);
  });

  t.test(`identity graph on ${name} - an unannounced merge is announced again until marked`, async (t) => {
    const graph = graphOn(await open(t));
    await graph.resolve('ws', 'm1', [anon('a1')]);
    await graph.resolve('ws', 'm2', [user('u1')]);
    await graph.resolve('ws', 'm2', [user('u1'), anon('a1')]);

    const again = await graph.resolve('ws', 'm3', [anon('a1')]);
    t.equal(again.profileId, 'user:u1');
    t.same(again.merges.map((merge) => merge.loser), ['anon:a1'], 'the merge is announced while its command may be missing from the log');
    t.same(Object.keys(again.merges[0].cause).sort(), ['atMs', 'messageId', 'rule'], 'its cause names no profile, so it cannot overwrite the merged one');

    await graph.markAnnounced('ws', 'anon:a1');
    t.same((await graph.resolve('ws', 'm4', [anon('a1')])).merges, [], 'after markAnnounced it is not');
  });

  t.test(`identity graph on ${name} - two user ids never merge: the link is quarantined`, async (t) => {
    const graph = graphOn(await open(t));
    await graph.resolve('ws', 'm1', [user('u1'), email('shared@x.com')]);
    await graph.resolve('ws', 'm2', [user('u2')]);

    const resolution = await graph.resolve('ws', 'm3', [user('u2'), email('shared@x.com')]);
    t.equal(resolution.profileId, 'user:u2', 'the event goes to the profile of its highest-priority identifier');
    t.same(resolution.merges, []);
    t.match(resolution.quarantined, [{ identifier: email('shared@x.com'), profileId: 'user:u2', otherProfileId: 'user:u1', reason: 'MERGE_PROTECTED', status: 'pending' }]);
    t.match(resolution.quarantined[0].message, /different user_id values \("u2" and "u1"\).*merge-protected/);
    t.equal(await graph.profileOf('ws', email('shared@x.com')), 'user:u1', 'the email stays with its profile');

    const listed = await graph.listQuarantine('ws', 'pending');
    t.same(listed.map((record) => record.id), [resolution.quarantined[0].id]);

    await graph.resolve('ws', 'm3', [user('u2'), email('shared@x.com')]);
    await graph.resolve('ws', 'm4', [user('u2'), email('shared@x.com')]);
    t.equal((await graph.listQuarantine('ws')).length, 1, 'a retry, or another event with the same link, files no second record');
    await graph.reject('ws', resolution.quarantined[0].id);
    await graph.resolve('ws', 'm5', [user('u2'), email('shared@x.com')]);
    t.same((await graph.listQuarantine('ws')).map((record) => record.status), ['rejected'], 'a rejected link stays rejected for later events');
  });

  t.test(`identity graph on ${name} - approving a quarantined link merges the profiles`, async (t) => {
    let clock = 1_000;
    const graph = graphOn(await open(t), {}, () => clock);
    await graph.resolve('ws', 'm1', [user('u1'), email('shared@x.com')]);
    clock += 1;
    const { quarantined } = await graph.resolve('ws', 'm2', [user('u2'), email('shared@x.com')]);

    const { record, merges } = await graph.approve('ws', quarantined[0].id);
    t.equal(record.status, 'approved');
    t.match(merges, [{ loser: 'user:u2', winner: 'user:u1', cause: { rule: 'approved-link', messageId: quarantined[0].id } }]);
    t.equal(await graph.profileOf('ws', user('u2')), 'user:u1');
    await t.rejects(graph.approve('ws', quarantined[0].id), { code: 'QUARANTINE_DECIDED' });
    await t.rejects(graph.reject('ws', 'no-such-id'), { code: 'QUARANTINE_NOT_FOUND', message: /rtcdp identity quarantine list/ });
  });

  t.test(`identity graph on ${name} - rejecting a quarantined link keeps the profiles apart`, async (t) => {
    const graph = graphOn(await open(t));
    await graph.resolve('ws', 'm1', [user('u1'), email('shared@x.com')]);
    const { quarantined } = await graph.resolve('ws', 'm2', [user('u2'), email('shared@x.com')]);

    t.equal((await graph.reject('ws', quarantined[0].id)).status, 'rejected');
    t.equal(await graph.profileOf('ws', user('u2')), 'user:u2');
    t.same(await graph.listQuarantine('ws', 'pending'), []);
    t.equal((await graph.listQuarantine('ws', 'rejected')).length, 1);
  });

  t.test(`identity graph on ${name} - an identifier over the per-profile limit is quarantined`, async (t) => {
    const graph = graphOn(await open(t), { identifiers: { email: { maxPerProfile: 2 } } });
    await graph.resolve('ws', 'm1', [user('u1'), email('1@x.com'), email('2@x.com')]);

    const resolution = await graph.resolve('ws', 'm2', [user('u1'), email('3@x.com')]);
    t.equal(resolution.profileId, 'user:u1', 'the event is still applied to the profile');
    t.match(resolution.quarantined, [{ identifier: email('3@x.com'), profileId: 'user:u1', reason: 'PER_PROFILE_LIMIT' }]);
    t.match(resolution.quarantined[0].message, /already has 2 email values, the maxPerProfile limit/);
    t.equal(await graph.profileOf('ws', email('3@x.com')), undefined, 'the email is not linked');

    await graph.approve('ws', resolution.quarantined[0].id);
    t.equal(await graph.profileOf('ws', email('3@x.com')), 'user:u1', 'approval links it over the limit');
  });

  t.test(`identity graph on ${name} - a merge over a limit is quarantined`, async (t) => {
    const graph = graphOn(await open(t), { identifiers: { email: { maxPerProfile: 2 } } });
    await graph.resolve('ws', 'm1', [anon('a'), email('1@x.com'), email('2@x.com')]);
    await graph.resolve('ws', 'm2', [anon('b'), email('3@x.com')]);

    const resolution = await graph.resolve('ws', 'm3', [email('1@x.com'), email('3@x.com')]);
    t.same(resolution.merges, []);
    t.match(resolution.quarantined, [{ reason: 'PER_PROFILE_LIMIT', otherProfileId: 'anon:b' }]);
    t.match(resolution.quarantined[0].message, /would hold 3 email values, over the limit of 2/);
  });

  t.test(`identity graph on ${name} - explain gives the path of events between two identifiers`, async (t) => {
    const graph = graphOn(await open(t));
    await graph.resolve('ws', 'm1', [anon('a1'), email('a@x.com')]);
    await graph.resolve('ws', 'm2', [user('u1')]);
    await graph.resolve('ws', 'm3', [user('u1'), anon('a1')]);

    const explanation = await graph.explain('ws', email('a@x.com'), user('u1'));
    t.equal(explanation.profileId, 'user:u1');
    t.match(explanation.steps, [
      { kind: 'linked', identifier: email('a@x.com'), profileId: 'anon:a1', messageId: 'm1' },
      { kind: 'merged', profileId: 'anon:a1', intoProfileId: 'user:u1', messageId: 'm3', from: [anon('a1')], into: [user('u1')] },
      { kind: 'linked', identifier: user('u1'), profileId: 'user:u1', messageId: 'm2' },
    ]);

    await graph.resolve('ws', 'm4', [user('u2')]);
    await t.rejects(graph.explain('ws', user('u1'), user('u2')), { code: 'IDENTIFIER_NOT_LINKED', message: /belongs to profile user:u1 .* user:u2: they are not linked/ });
    await t.rejects(graph.explain('ws', user('u1'), user('nobody')), { code: 'IDENTIFIER_NOT_LINKED', message: /user_id "nobody" is not linked to any profile of workspace ws: no event carried it, or its link is in the quarantine/ });
  });

  t.test(`identity graph on ${name} - mergeProfiles joins two profiles outside an event`, async (t) => {
    let clock = 1_000;
    const graph = graphOn(await open(t), {}, () => clock++);
    await graph.resolve('ws', 'm1', [user('u1')]);
    await graph.resolve('ws', 'm2', [user('u2')]);

    const merges = await graph.mergeProfiles('ws', 'user:u2', 'user:u1', { messageId: 'match-1', rule: 'fuzzy-match', atMs: 5 });
    t.match(merges, [{ loser: 'user:u2', winner: 'user:u1', cause: { rule: 'fuzzy-match', messageId: 'match-1' } }], 'settings are not checked: the caller decided');
    t.equal(await graph.profileOf('ws', user('u2')), 'user:u1');
    await graph.markAnnounced('ws', 'user:u2');
    t.same(await graph.mergeProfiles('ws', 'user:u2', 'user:u1', { messageId: 'match-2', rule: 'fuzzy-match', atMs: 6 }), [], 'merging one profile with itself does nothing');
    await t.rejects(graph.mergeProfiles('ws', 'user:u1', 'user:nobody', { messageId: 'match-3', rule: 'fuzzy-match', atMs: 7 }), { code: 'IDENTIFIER_NOT_LINKED' });
  });

  t.test(`identity graph on ${name} - chains of merges lead to one survivor`, async (t) => {
    let clock = 1_000;
    const graph = graphOn(await open(t), {}, () => clock++);
    await graph.resolve('ws', 'm1', [anon('a')]);
    await graph.resolve('ws', 'm2', [anon('b')]);
    await graph.resolve('ws', 'm3', [anon('c')]);
    await graph.resolve('ws', 'm4', [anon('b'), anon('c')]);
    await graph.resolve('ws', 'm5', [anon('a'), anon('b')]);

    for (const id of ['a', 'b', 'c']) t.equal(await graph.profileOf('ws', anon(id)), 'anon:a', `anon ${id} reaches the oldest profile`);
    t.equal(await graph.survivorOf('ws', 'anon:c'), 'anon:a');
  });
}

t.test('identity graph - concurrent resolutions that link the same identifiers converge on one profile', async (t) => {
  const kv = new MemoryKvStore();
  // Two graphs on one store, as two nodes share one KV bucket.
  const graphs = [graphOn(kv), graphOn(kv)];

  const events = Array.from({ length: 60 }, (_, i) => {
    const identifiers = [anon(`a${i}`)];
    if (i % 3 === 0) identifiers.unshift(email('shared@x.com'));
    if (i % 3 === 1) identifiers.push(anon(`a${(i + 7) % 60}`));
    if (i % 3 === 2) identifiers.unshift({ type: 'device_id', value: 'phone-1' }, email('shared@x.com'));
    return identifiers;
  });
  await Promise.all(events.map((identifiers, i) => graphs[i % 2].resolve('ws', `m${i}`, identifiers)));

  const profiles = new Set<string | undefined>();
  for (let i = 0; i < 60; i++) profiles.add(await graphs[0].profileOf('ws', anon(`a${i}`)));
  t.equal(profiles.size, 1, `every anonymous id reaches one profile (${[...profiles].join(', ')})`);
});

t.test('identity graph - concurrent events with two user ids and one email: one link wins, the other is quarantined', async (t) => {
  const kv = new MemoryKvStore();
  const graphs = [graphOn(kv), graphOn(kv)];

  const [first, second] = await Promise.all([graphs[0].resolve('ws', 'm1', [user('u1'), email('e@x.com')]), graphs[1].resolve('ws', 'm2', [user('u2'), email('e@x.com')])]);

  const owner = await graphs[0].profileOf('ws', email('e@x.com'));
  t.ok(owner === 'user:u1' || owner === 'user:u2', 'the email belongs to one of them');
  t.equal(first.quarantined.length + second.quarantined.length, 1, 'the other link is quarantined');
  t.not(await graphs[0].profileOf('ws', user('u1')), await graphs[0].profileOf('ws', user('u2')), 'the two users stay apart');
});
