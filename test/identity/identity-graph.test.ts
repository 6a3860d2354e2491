import t from 'tap';
import { silentLogger } from '../../common/logger.js';
import { IdentityGraph } from '../../identity/identity-graph.js';
import { identityKeys } from '../../identity/identity-records.js';
import { resolveIdentitySettings, type IdentitySettingsInput } from '../../identity/identity-settings.js';
import type { Identifier } from '../../profiles/identifiers.js';
import type { KvStore } from '../../storage/kv-store.js';
import { MemoryKvStore } from '../../storage/memory-kv-store.js';
import { localKvStores } from '../helpers/kv-stores.js';

const user = (value: string): Identifier => ({ type: 'user_id', value });
const anon = (value: string): Identifier => ({ type: 'anonymous_id', value });
const email = (value: string): Identifier => ({ type: 'email', value });
const device = (value: string): Identifier => ({ type: 'device_id', value });

function graphOn(kv: KvStore, settings: IdentitySettingsInput = {}, now = () => 1_000): IdentityGraph {
  const resolved = resolveIdentitySettings(settings);
  return new IdentityGraph({ kv, settingsFor: () => resolved, logger: silentLogger(), now });
}

const stores = localKvStores;

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

  t.test(`identity graph on ${name} - unmerge splits an identify merge`, async (t) => {
    let clock = 1_000;
    const graph = graphOn(await open(t), {}, () => clock++);
    await graph.resolve('ws', 'm1', [anon('a1')]);
    await graph.resolve('ws', 'm2', [user('u1')]);
    await graph.resolve('ws', 'm3', [user('u1'), anon('a1')]);
    await graph.markAnnounced('ws', 'anon:a1');

    const plan = await graph.unmerge('ws', 'user:u1', 'anon:a1');
    t.match(plan.id, /^[A-Za-z0-9_-]{22}$/);
    t.equal(plan.workspace, 'ws');
    t.equal(plan.survivor, 'user:u1');
    t.equal(plan.restored, 'anon:a1');
    t.same(plan.profiles, ['anon:a1']);
    t.same(plan.restoredIdentifiers, [anon('a1')]);
    t.same(plan.survivorIdentifiers, [user('u1')]);
    t.match(plan.merge, { profileId: 'anon:a1', messageId: 'm3', from: [anon('a1')], into: [user('u1')] });
    t.ok(plan.atMs > plan.merge.atMs, 'the unmerge is stamped with the clock');

    t.equal(await graph.profileOf('ws', user('u1')), 'user:u1');
    t.equal(await graph.profileOf('ws', anon('a1')), 'anon:a1', 'the anonymous id is back on its own profile');
    t.equal(await graph.survivorOf('ws', 'anon:a1'), 'anon:a1');
    t.same(await graph.mergedInto('ws', 'user:u1'), []);
    t.same((await graph.resolve('ws', 'm4', [anon('a1')])).merges, [], 'the restored profile announces no merge');
    await t.rejects(graph.explain('ws', anon('a1'), user('u1')), { code: 'IDENTIFIER_NOT_LINKED', message: /belongs to profile anon:a1 .* user:u1: they are not linked/ });

    const survivor = await graph.profile('ws', 'user:u1');
    t.same(survivor?.identifiers, [user('u1')]);
    t.same(survivor?.merges, []);
    t.same(survivor?.separatedFrom, ['anon:a1']);
    t.match(survivor?.unmerges, [{ id: plan.id, profileId: 'anon:a1', profiles: ['anon:a1'], mergeMessageId: 'm3', atMs: plan.atMs, announced: false }]);
    const restored = await graph.profile('ws', 'anon:a1');
    t.equal(restored?.mergedInto, undefined);
    t.equal(restored?.mergeAnnounced, undefined);
    t.same(restored?.identifiers, [anon('a1')]);
    t.same(restored?.separatedFrom, ['user:u1']);
    t.equal(restored?.restoredAtMs, plan.atMs);

    const again = await graph.resolve('ws', 'm5', [user('u1'), anon('a1')]);
    t.equal(again.profileId, 'user:u1', 'the event goes to the profile of its highest-priority identifier');
    t.same(again.merges, []);
    t.match(again.quarantined, [{ identifier: anon('a1'), profileId: 'user:u1', otherProfileId: 'anon:a1', reason: 'UNMERGED', status: 'pending' }]);
    t.match(again.quarantined[0].message, /profiles user:u1 and anon:a1 were unmerged by an operator.*approving this link merges them again/);
    t.equal(await graph.profileOf('ws', anon('a1')), 'anon:a1', 'the held link merges nothing');

    const { merges } = await graph.approve('ws', again.quarantined[0].id);
    t.match(merges, [{ loser: 'anon:a1', winner: 'user:u1', cause: { rule: 'approved-link' } }]);
    t.equal(await graph.profileOf('ws', anon('a1')), 'user:u1', 'approval merges the two again');
    t.equal((await graph.profile('ws', 'user:u1'))?.separatedFrom, undefined, 'and ends the separation on the survivor');
    t.equal((await graph.profile('ws', 'anon:a1'))?.separatedFrom, undefined, 'and on the merged profile');
  });

  t.test(`identity graph on ${name} - unmerge moves identifiers linked through restored ones`, async (t) => {
    const graph = graphOn(await open(t));
    await graph.resolve('ws', 'm1', [anon('a1')]);
    await graph.resolve('ws', 'm2', [user('u1')]);
    await graph.resolve('ws', 'm3', [user('u1'), anon('a1')]);
    await graph.resolve('ws', 'm4', [email('e1@x.com'), anon('a1')]);
    await graph.resolve('ws', 'm5', [user('u1'), email('e2@x.com')]);
    await graph.resolve('ws', 'm6', [email('e1@x.com'), device('d1')]);

    const plan = await graph.unmerge('ws', 'user:u1', 'anon:a1');
    t.same(plan.restoredIdentifiers, [email('e1@x.com'), anon('a1'), device('d1')], 'e1 came with a1, and d1 with e1, listed in the order of the survivor');
    t.same(plan.survivorIdentifiers, [user('u1'), email('e2@x.com')], 'e2 came with u1');
    for (const identifier of plan.restoredIdentifiers) t.equal(await graph.profileOf('ws', identifier), 'anon:a1', `${identifier.type} ${identifier.value} moves`);
    t.equal(await graph.profileOf('ws', email('e2@x.com')), 'user:u1');
    t.equal(await graph.linkedProfileOf('ws', email('e1@x.com')), 'anon:a1', "the email's record is repointed to the restored profile");

    const explanation = await graph.explain('ws', device('d1'), anon('a1'));
    t.equal(explanation.profileId, 'anon:a1');
    t.match(explanation.steps, [
      { kind: 'linked', identifier: device('d1'), profileId: 'anon:a1', messageId: 'm6', via: email('e1@x.com') },
      { kind: 'linked', identifier: anon('a1'), profileId: 'anon:a1', messageId: 'm1' },
    ]);
  });

  t.test(`identity graph on ${name} - unmerge moves later merges through restored identifiers`, async (t) => {
    let clock = 1_000;
    const graph = graphOn(await open(t), {}, () => clock++);
    await graph.resolve('ws', 'm1', [anon('a1')]);
    await graph.resolve('ws', 'm2', [user('u1')]);
    await graph.resolve('ws', 'm3', [user('u1'), anon('a1')]);
    await graph.resolve('ws', 'm4', [anon('a2')]);
    await graph.resolve('ws', 'm5', [anon('a1'), anon('a2')]);
    await graph.resolve('ws', 'm6', [anon('a3')]);
    await graph.resolve('ws', 'm7', [user('u1'), anon('a3')]);
    for (const loser of ['anon:a1', 'anon:a2', 'anon:a3']) await graph.markAnnounced('ws', loser);

    const plan = await graph.unmerge('ws', 'user:u1', 'anon:a1');
    t.same(plan.profiles, ['anon:a1', 'anon:a2'], 'a2 joined through a1; a3 joined through u1');
    t.same(plan.restoredIdentifiers, [anon('a1'), anon('a2')]);
    t.same(plan.survivorIdentifiers, [user('u1'), anon('a3')]);

    const moved = await graph.profile('ws', 'anon:a2');
    t.match(moved?.mergedInto, { profileId: 'anon:a1', messageId: 'm5' }, 'the later merge now names the restored profile');
    t.equal(moved?.mergeAnnounced, true, 'its state moves with the restored profile, so nothing is announced again');
    t.same((await graph.profile('ws', 'anon:a1'))?.merges.map((merge) => merge.profileId), ['anon:a2']);
    t.same((await graph.profile('ws', 'user:u1'))?.merges.map((merge) => merge.profileId), ['anon:a3']);
    t.equal(await graph.profileOf('ws', anon('a2')), 'anon:a1');
    t.equal(await graph.profileOf('ws', anon('a3')), 'user:u1');
    t.same((await graph.resolve('ws', 'm8', [anon('a2')])).merges, []);
    t.match((await graph.explain('ws', anon('a2'), anon('a1'))).steps, [{ kind: 'linked', profileId: 'anon:a2' }, { kind: 'merged', profileId: 'anon:a2', intoProfileId: 'anon:a1', messageId: 'm5' }, { kind: 'linked', profileId: 'anon:a1' }]);
  });

  t.test(`identity graph on ${name} - a fuzzy match approved and then unmerged is filed again`, async (t) => {
    let clock = 1_000;
    const graph = graphOn(await open(t), {}, () => clock++);
    await graph.resolve('ws', 'm1', [anon('f1')]);
    await graph.resolve('ws', 'm2', [anon('f2')]);

    const first = await graph.suggestMatch('ws', 'anon:f1', 'anon:f2', 0.8);
    t.equal(first?.status, 'pending');
    const { merges } = await graph.approve('ws', first!.id);
    const [merge] = merges;
    const plan = await graph.unmerge('ws', merge.winner, merge.loser);
    await graph.markUnmergeAnnounced('ws', merge.winner, plan.id);

    const again = await graph.suggestMatch('ws', 'anon:f1', 'anon:f2', 0.8);
    t.equal(again?.status, 'pending', 'the pair is back for review');
    t.equal(await graph.suggestMatch('ws', 'anon:f1', 'anon:f2', 0.8), undefined, 'and filed once');
  });

  t.test(`identity graph on ${name} - unmerge rejects what it cannot undo`, async (t) => {
    let clock = 1_000;
    const graph = graphOn(await open(t), {}, () => clock++);
    await graph.resolve('ws', 'm1', [anon('c')]);
    await graph.resolve('ws', 'm2', [anon('b')]);
    await graph.resolve('ws', 'm3', [anon('a')]);
    await graph.resolve('ws', 'm4', [anon('d')]);
    await graph.resolve('ws', 'm5', [anon('b'), anon('a')]);
    await graph.resolve('ws', 'm6', [anon('c'), anon('b')]);

    await t.rejects(graph.unmerge('ws', 'anon:nobody', 'anon:a'), { code: 'PROFILE_NOT_FOUND', message: /profile anon:nobody is not in the identity graph of workspace ws/ });
    await t.rejects(graph.unmerge('ws', 'anon:c', 'anon:nobody'), { code: 'PROFILE_NOT_FOUND', message: /profile anon:nobody/ });
    await t.rejects(graph.unmerge('ws', 'anon:b', 'anon:a'), { code: 'PROFILE_NOT_SURVIVOR', message: /anon:b .* is not a survivor: it was merged into anon:c\. Unmerge anon:b from anon:c/ });
    await t.rejects(graph.unmerge('ws', 'anon:c', 'anon:a'), { code: 'NOT_MERGED', message: /anon:a .* is not merged directly into anon:c but into anon:b\. .*unmerging anon:b takes anon:a back with it/ });
    await t.rejects(graph.unmerge('ws', 'anon:c', 'anon:d'), { code: 'NOT_MERGED', message: /anon:d .* is not merged into anon:c: it is a profile of its own/ });

    await graph.resolve('ws', 'm7', [anon('c'), anon('d')]);
    await graph.unmerge('ws', 'anon:c', 'anon:d');
    await t.rejects(graph.unmerge('ws', 'anon:c', 'anon:b'), { code: 'UNMERGE_ORDER', message: /merge of anon:b into anon:c .* cannot be undone: anon:d was unmerged from anon:c after it/ });
    t.equal(await graph.survivorOf('ws', 'anon:b'), 'anon:c', 'the rejected unmerge changes nothing');
    t.equal(await graph.profileOf('ws', anon('b')), 'anon:c');
  });

  t.test(`identity graph on ${name} - unmerge rejects merges older than a restore`, async (t) => {
    let clock = 1_000;
    const graph = graphOn(await open(t), {}, () => clock++);
    await graph.resolve('ws', 'm1', [anon('c')]);
    await graph.resolve('ws', 'm2', [anon('b')]);
    await graph.resolve('ws', 'm3', [anon('a')]);
    await graph.resolve('ws', 'm4', [anon('b'), anon('a')]);
    await graph.resolve('ws', 'm5', [anon('c'), anon('b')]);

    await graph.unmerge('ws', 'anon:c', 'anon:b');
    t.equal(await graph.profileOf('ws', anon('a')), 'anon:b', 'a merged into b goes back with b');
    await t.rejects(graph.unmerge('ws', 'anon:b', 'anon:a'), { code: 'UNMERGE_ORDER', message: /anon:b was itself unmerged from the profile it had joined after it/ });
  });

  t.test(`identity graph on ${name} - unmerge repeats its plan until announced`, async (t) => {
    let clock = 1_000;
    const kv = await open(t);
    const restoredKey = identityKeys.profile('ws', 'anon:a1');
    let failRestore = false;
    // Fails the write of the restored profile once, as a crash after the survivor's write would.
    const crashing: KvStore = {
      get: (key) => kv.get(key),
      create: (key, value) => kv.create(key, value),
      put: (key, value) => kv.put(key, value),
      delete: (key, revision) => kv.delete(key, revision),
      list: (prefix) => kv.list(prefix),
      update: (key, value, revision) => {
        if (failRestore && key === restoredKey) {
          failRestore = false;
          return Promise.reject(new Error('node stopped'));
        }
        return kv.update(key, value, revision);
      },
    };
    const graph = graphOn(crashing, {}, () => clock++);
    await graph.resolve('ws', 'm1', [anon('a1')]);
    await graph.resolve('ws', 'm2', [user('u1')]);
    await graph.resolve('ws', 'm3', [user('u1'), anon('a1')]);
    await graph.markAnnounced('ws', 'anon:a1');

    failRestore = true;
    await t.rejects(graph.unmerge('ws', 'user:u1', 'anon:a1'), { code: 'IDENTITY_STORE_FAILED' });
    t.equal(await graph.survivorOf('ws', 'anon:a1'), 'user:u1', 'the restored profile is still merged after the failed write');

    const plan = await graph.unmerge('ws', 'user:u1', 'anon:a1');
    t.equal(await graph.survivorOf('ws', 'anon:a1'), 'anon:a1', 'calling again completes the unmerge');
    t.same(await graph.unmerge('ws', 'user:u1', 'anon:a1'), plan, 'and returns the same plan until it is announced');
    t.equal((await graph.profile('ws', 'user:u1'))?.unmerges?.length, 1);

    await graph.markUnmergeAnnounced('ws', 'user:u1', plan.id);
    t.match((await graph.profile('ws', 'user:u1'))?.unmerges, [{ id: plan.id, announced: true }]);
    await t.rejects(graph.unmerge('ws', 'user:u1', 'anon:a1'), { code: 'NOT_MERGED' });
  });

  t.test(`identity graph on ${name} - unmerged profiles stay apart without approval`, async (t) => {
    let clock = 1_000;
    const graph = graphOn(await open(t), {}, () => clock++);
    await graph.resolve('ws', 'm0', [user('u0')]);
    await graph.resolve('ws', 'm1', [anon('a1')]);
    await graph.resolve('ws', 'm2', [user('u1')]);
    await graph.resolve('ws', 'm3', [user('u1'), anon('a1')]);
    await graph.unmerge('ws', 'user:u1', 'anon:a1');

    const cause = { messageId: 'match-1', rule: 'fuzzy-match' as const, atMs: 5 };
    t.match(await graph.mergeConflictOf('ws', 'user:u1', 'anon:a1'), /profiles user:u1 and anon:a1 were unmerged by an operator/);
    await t.rejects(graph.mergeProfiles('ws', 'anon:a1', 'user:u1', cause), { code: 'PROFILES_SEPARATED', message: /were unmerged by an operator/ });
    t.equal(await graph.profileOf('ws', anon('a1')), 'anon:a1');

    await graph.mergeProfiles('ws', 'user:u1', 'user:u0', { ...cause, messageId: 'match-2' });
    t.equal(await graph.survivorOf('ws', 'user:u1'), 'user:u0', 'the older profile survives');
    t.same((await graph.profile('ws', 'user:u0'))?.separatedFrom, ['anon:a1'], 'the survivor takes over the separation');
    t.match(await graph.mergeConflictOf('ws', 'anon:a1', 'user:u0'), /unmerged by an operator/);
    await t.rejects(graph.mergeProfiles('ws', 'anon:a1', 'user:u0', cause), { code: 'PROFILES_SEPARATED' });

    const resolution = await graph.resolve('ws', 'm4', [user('u0'), anon('a1')]);
    t.equal(resolution.profileId, 'user:u0');
    t.match(resolution.quarantined, [{ reason: 'UNMERGED', otherProfileId: 'anon:a1' }]);
    t.equal(await graph.profileOf('ws', anon('a1')), 'anon:a1');
  });

  t.test(`identity graph on ${name} - link held after a second unmerge is pending again`, async (t) => {
    let clock = 1_000;
    const graph = graphOn(await open(t), {}, () => clock++);
    await graph.resolve('ws', 'm1', [anon('a1')]);
    await graph.resolve('ws', 'm2', [user('u1')]);
    await graph.resolve('ws', 'm3', [user('u1'), anon('a1')]);
    await graph.unmerge('ws', 'user:u1', 'anon:a1');
    const first = await graph.resolve('ws', 'm4', [user('u1'), anon('a1')]);
    await graph.approve('ws', first.quarantined[0].id);

    const second = await graph.unmerge('ws', 'user:u1', 'anon:a1');
    t.equal(second.merge.rule, 'approved-link', 'the merge undone is the approved one');
    const heldAgain = await graph.resolve('ws', 'm5', [user('u1'), anon('a1')]);
    t.equal(heldAgain.quarantined[0].id, first.quarantined[0].id, 'the same link has the same id');
    t.same((await graph.listQuarantine('ws', 'pending')).map((record) => record.messageId), ['m5'], 'it is pending again');
    await graph.approve('ws', heldAgain.quarantined[0].id);
    t.equal(await graph.profileOf('ws', anon('a1')), 'user:u1');
  });

  t.test(`identity graph on ${name} - an unmerge on another graph clears the cache within a second`, async (t) => {
    const kv = await open(t);
    let clockB = 10_000;
    const [graphA, graphB] = [graphOn(kv), graphOn(kv, {}, () => clockB)];
    await graphA.resolve('ws', 'm1', [anon('a1')]);
    await graphA.resolve('ws', 'm2', [user('u1')]);
    await graphA.resolve('ws', 'm3', [user('u1'), anon('a1')]);
    await graphA.markAnnounced('ws', 'anon:a1');
    await graphB.resolve('ws', 'm4', [anon('a1')]);
    t.equal(graphB.resolveCached('ws', [anon('a1')])?.profileId, 'user:u1', 'graph B caches the merge after reading the unmerge epoch');

    await graphA.unmerge('ws', 'user:u1', 'anon:a1');
    t.equal(graphB.resolveCached('ws', [anon('a1')])?.profileId, 'user:u1', 'within the second, the cached records still answer');
    clockB += 1_500;
    t.equal(graphB.resolveCached('ws', [anon('a1')]), undefined, 'after it, the cache answers nothing until the epoch is read');

    const relinked = await graphB.resolve('ws', 'm5', [user('u1'), anon('a1')]);
    t.match(relinked.quarantined, [{ reason: 'UNMERGED' }], 'the next resolution reads it first, so a link between the two is quarantined');
  });

  t.test(`identity graph on ${name} - stale cache finds the restored profile`, async (t) => {
    const kv = await open(t);
    const [graphA, graphB] = [graphOn(kv), graphOn(kv)];
    await graphA.resolve('ws', 'm1', [anon('a1')]);
    await graphA.resolve('ws', 'm2', [user('u1')]);
    await graphA.resolve('ws', 'm3', [user('u1'), anon('a1')]);
    await graphA.markAnnounced('ws', 'anon:a1');
    await graphA.resolve('ws', 'm4', [email('e1@x.com'), anon('a1')]);

    t.equal((await graphB.resolve('ws', 'm5', [anon('a1')])).profileId, 'user:u1');
    t.equal((await graphB.resolve('ws', 'm6', [email('e1@x.com')])).profileId, 'user:u1');
    t.equal(graphB.resolveCached('ws', [email('e1@x.com')])?.profileId, 'user:u1', 'graph B has the records cached');

    await graphA.unmerge('ws', 'user:u1', 'anon:a1');

    // resolveCached reads no store: until graph B refreshes its records, it still returns the
    // survivor, whose actor forwards the event to the restored profile.
    t.equal(graphB.resolveCached('ws', [anon('a1')])?.profileId, 'user:u1', 'resolveCached returns the survivor from stale records');
    t.equal((await graphB.resolve('ws', 'm7', [email('e1@x.com')])).profileId, 'anon:a1', 'resolve finds the survivor changed and reads the store again');
    t.equal((await graphB.resolve('ws', 'm8', [anon('a1')])).profileId, 'anon:a1');
    t.equal(await graphB.profileOf('ws', email('e1@x.com')), 'anon:a1');
    t.equal(graphB.resolveCached('ws', [anon('a1'), email('e1@x.com')])?.profileId, 'anon:a1', 'after resolve, the cache holds the new records');
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
