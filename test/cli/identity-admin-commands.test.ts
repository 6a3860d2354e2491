/**
 * Identity resolution through the processes a user runs: `rtcdp dev --identity FILE`,
 * `rtcdp send`, `rtcdp identity quarantine list|approve|reject`, `rtcdp profile explain` and
 * `rtcdp profile unmerge`, over gRPC on loopback.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { parseMergedProfile } from '../../cli/identity-admin-commands.js';
import { runCli as rtcdp, startNodeProcess } from '../helpers/node-process.js';

const events = (...lines: object[]): string => `${lines.map((line) => JSON.stringify(line)).join('\n')}\n`;

t.test('identity commands - quarantine, approve, reject and explain', async (t) => {
  const dir = t.testdir();
  const settings = path.join(dir, 'identity.yaml');
  // Two emails per profile at most, so a third one is held.
  writeFileSync(settings, 'default:\n  identifiers:\n    email: { maxPerProfile: 2 }\n');
  const node = await startNodeProcess(path.join(dir, 'data'), ['--identity', settings]);
  t.teardown(() => node.stop());
  const server = ['--server', node.address];

  const file = path.join(dir, 'events.ndjson');
  writeFileSync(
    file,
    events(
      { type: 'page', name: 'Home', anonymousId: 'a1', messageId: 'p1', context: { traits: { email: 'ana@example.com' } } },
      { type: 'identify', userId: 'u1', anonymousId: 'a1', messageId: 'i1' },
      { type: 'identify', userId: 'u1', traits: { email: 'ana.work@example.com' }, messageId: 'i2' },
      { type: 'identify', userId: 'u1', traits: { email: 'ana.third@example.com' }, messageId: 'i3' },
      { type: 'identify', userId: 'u2', traits: { email: 'ana@example.com' }, messageId: 'i4' },
    ),
  );
  const sent = await rtcdp(['send', file, ...server]);
  t.equal(sent.code, 0, sent.stderr);

  const listed = await rtcdp(['identity', 'quarantine', 'list', ...server, '--output', 'json']);
  t.equal(listed.code, 0, listed.stderr);
  const links = JSON.parse(listed.stdout).links as Array<{ id: string; reason: string; identifier: { value: string } }>;
  t.same(links.map((link) => `${link.reason} ${link.identifier.value}`).sort(), ['MERGE_PROTECTED ana@example.com', 'PER_PROFILE_LIMIT ana.third@example.com']);

  const table = await rtcdp(['identity', 'quarantine', 'list', ...server]);
  t.match(table.stdout, /^ID\s+STATUS\s+REASON\s+IDENTIFIER\s+PROFILE\s+OTHER PROFILE\s+EVENT\s+AT\n/);
  // The email ranks above the anonymous id, so the visitor's profile is named after it and
  // keeps that id when the user id joins it.
  t.match(table.stdout, /pending\s+PER_PROFILE_LIMIT\s+email=ana\.third@example\.com\s+email:ana@example\.com\s+-\s+i3/);
  t.match(table.stdout, /pending\s+MERGE_PROTECTED\s+email=ana@example\.com\s+user:u2\s+email:ana@example\.com\s+i4/);

  const limit = links.find((link) => link.reason === 'PER_PROFILE_LIMIT')!;
  const approved = await rtcdp(['identity', 'quarantine', 'approve', limit.id, ...server]);
  t.equal(approved.code, 0, approved.stderr);
  t.equal(approved.stdout, `${limit.id} approved: email=ana.third@example.com is now linked to profile email:ana@example.com\n`);
  const found = await rtcdp(['profile', 'get', '--email', 'ana.third@example.com', ...server, '--output', 'json']);
  t.equal(JSON.parse(found.stdout).profileId, 'email:ana@example.com', 'the approved email finds the profile');

  const protectedLink = links.find((link) => link.reason === 'MERGE_PROTECTED')!;
  const rejected = await rtcdp(['identity', 'quarantine', 'reject', protectedLink.id, ...server]);
  t.equal(rejected.code, 0, rejected.stderr);
  t.match(rejected.stdout, /rejected: profiles user:u2 and email:ana@example\.com stay apart/);
  const again = await rtcdp(['identity', 'quarantine', 'reject', protectedLink.id, ...server]);
  t.equal(again.code, 1);
  t.match(again.stderr, /already rejected/);
  t.equal((await rtcdp(['identity', 'quarantine', 'list', ...server])).stdout, '(no pending quarantined links)\n');

  const explained = await rtcdp(['profile', 'explain', 'email=ana@example.com', 'user_id=u1', ...server]);
  t.equal(explained.code, 0, explained.stderr);
  t.match(explained.stdout, /^email=ana@example\.com and user_id=u1 belong to profile email:ana@example\.com:\n/);
  t.match(explained.stdout, /\n {2}1\. email=ana@example\.com linked to profile email:ana@example\.com by event p1 at \S+Z\n/);
  t.match(explained.stdout, /\n {2}2\. user_id=u1 linked to profile email:ana@example\.com by event i1 at \S+Z, together with anonymous_id=a1\n/);

  const merge = path.join(dir, 'merge.ndjson');
  writeFileSync(merge, events({ type: 'track', event: 'Signed Up', userId: 'u3', messageId: 's3' }, { type: 'alias', previousId: 'u3', userId: 'u1', messageId: 'alias-u3' }));
  t.equal((await rtcdp(['send', merge, ...server])).code, 0);
  const pendingLinks = JSON.parse((await rtcdp(['identity', 'quarantine', 'list', ...server, '--output', 'json'])).stdout).links as Array<{ id: string; otherProfileId: string }>;
  t.same(pendingLinks.map((link) => link.otherProfileId), ['user:u3'], 'aliasing one user id to another is held: user_id is merge-protected');
  t.equal((await rtcdp(['identity', 'quarantine', 'approve', pendingLinks[0].id, ...server])).code, 0);
  const merged = await rtcdp(['profile', 'explain', 'user_id=u3', 'email=ana@example.com', ...server]);
  t.match(merged.stdout, /profile user:u3 merged into email:ana@example\.com by approved link \S+ at \S+Z/);

  const unknown = await rtcdp(['profile', 'explain', 'email=nobody@example.com', 'user_id=u1', ...server]);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /email "nobody@example\.com" is not linked to any profile of workspace default/);

  const malformed = await rtcdp(['profile', 'explain', 'email', 'user_id=u1', ...server]);
  t.equal(malformed.code, 2);
  t.match(malformed.stderr, /invalid first identifier "email": expected TYPE=VALUE/);
});

/** Returns two NDJSON files' contents: a known user's events and an anonymous visitor's page views, then the login that merges the visitor into the user. */
function mergedVisitorEvents(userId: string, anonymousId: string): [string, string] {
  const before = events(
    { type: 'identify', userId, traits: { plan: 'pro' }, messageId: `${userId}-identify` },
    { type: 'track', event: 'Order Completed', userId, properties: { revenue: 10 }, messageId: `${userId}-order` },
    { type: 'page', name: 'Home', anonymousId, messageId: `${anonymousId}-page-1` },
    { type: 'page', name: 'Pricing', anonymousId, messageId: `${anonymousId}-page-2` },
  );
  const login = events({ type: 'identify', userId, anonymousId, messageId: `${userId}-login` });
  return [before, login];
}

/** Sends each file's events with `rtcdp send`, one file after the other. */
async function sendAll(t: Test, dir: string, server: string[], contents: string[]): Promise<void> {
  for (const [index, content] of contents.entries()) {
    const file = path.join(dir, `events-${index}.ndjson`);
    writeFileSync(file, content);
    const sent = await rtcdp(['send', file, ...server]);
    t.equal(sent.code, 0, sent.stderr);
  }
}

/** Returns `profile get --output json`, which leaves out empty lists such as `merges`. */
async function profileJson(server: string[], ...identifier: string[]): Promise<{ profileId: string; eventCount: number; merges?: Array<{ profileId: string }> }> {
  const result = await rtcdp(['profile', 'get', ...identifier, ...server, '--output', 'json']);
  return JSON.parse(result.stdout);
}

t.test('identity commands - unmerge splits a merged visitor off again', async (t) => {
  const dir = t.testdir();
  const node = await startNodeProcess(path.join(dir, 'data'));
  t.teardown(() => node.stop());
  const server = ['--server', node.address];

  await sendAll(t, dir, server, mergedVisitorEvents('u1', 'a1'));
  const merged = await profileJson(server, '--user-id', 'u1');
  t.equal(merged.eventCount, 5, 'the merged profile holds both sides');
  t.same((merged.merges ?? []).map((merge) => merge.profileId), ['anon:a1'], 'profile get lists the merged profile');

  const history = await rtcdp(['profile', 'events', '--user-id', 'u1', ...server]);
  t.equal(history.code, 0, history.stderr);
  t.match(history.stdout, /^TIME\s+TYPE\s+NAME\s+MESSAGE ID\s+PROFILE\s+PROPERTIES\n/, 'profile events has a PROFILE column');
  t.match(history.stdout, /\sa1-page-2\s+anon:a1\s/, 'and lists the visitor\'s page views under its profile');
  t.match(history.stdout, /\su1-login\s+user:u1\s/, 'beside the user\'s own events');

  const unmerged = await rtcdp(['profile', 'unmerge', 'user_id=u1', 'anonymous_id=a1', ...server]);
  t.equal(unmerged.code, 0, 'unmerge exits 0', { stderr: unmerged.stderr, nodeLog: node.stderr() });
  const unmergeId = /^split profile anon:a1 off user:u1 \(unmerge (\S+)\)\n/.exec(unmerged.stdout)?.[1];
  t.ok(unmergeId, 'the first line names both profiles and the unmerge id', { stdout: unmerged.stdout });
  // The login carried the user id, which outranks the anonymous id, so it stays with the user.
  t.match(unmerged.stdout, /\nuser:u1 \(survivor\):\n {2}identifiers +user_id=u1\n {2}events +3\n {2}segments +\(none\)\n/);
  t.match(unmerged.stdout, /\nanon:a1 \(restored\):\n {2}identifiers +anonymous_id=a1\n {2}events +2\n {2}segments +\(none\)\n/);

  const survivor = await profileJson(server, '--user-id', 'u1');
  t.equal(survivor.eventCount, 3, 'the user keeps its identify, order and login');
  t.same(survivor.merges ?? [], [], 'the merge is gone from the survivor');
  const restored = await profileJson(server, '--anonymous-id', 'a1');
  t.equal(restored.profileId, 'anon:a1');
  t.equal(restored.eventCount, 2, 'the visitor gets its page views back');
  const survivorHistory = await rtcdp(['profile', 'events', '--user-id', 'u1', ...server]);
  t.notMatch(survivorHistory.stdout, /anon:a1/, 'the survivor\'s events no longer list the visitor\'s history');

  const activations = await rtcdp(['activations', 'list', ...server]);
  t.match(activations.stdout, new RegExp(`profile\\.unmerged +anon:a1 +0 +user:u1 +unmerge \\(${unmergeId}\\)\n`));
  t.match(activations.stdout, new RegExp(`profile\\.unmerged +user:u1 +0 +anon:a1 +unmerge \\(${unmergeId}\\)\n`));

  await sendAll(t, dir, server, [events({ type: 'identify', userId: 'u1', anonymousId: 'a1', messageId: 'u1-login-again' })]);
  const quarantined = JSON.parse((await rtcdp(['identity', 'quarantine', 'list', ...server, '--output', 'json'])).stdout).links as Array<{ reason: string; profileId: string; otherProfileId: string }>;
  t.same(quarantined.map((link) => [link.reason, ...[link.profileId, link.otherProfileId].sort()]), [['UNMERGED', 'anon:a1', 'user:u1']], 'a new link between the two is held');

  const again = await rtcdp(['profile', 'unmerge', 'user_id=u1', 'anonymous_id=a1', ...server]);
  t.equal(again.code, 1, 'a profile that is no longer merged cannot be unmerged');
  t.match(again.stderr, /anonymous_id "a1" did not come into profile user:u1 through a merge/);
});

t.test('identity commands - unmerge by profile id with JSON output', async (t) => {
  const dir = t.testdir();
  const node = await startNodeProcess(path.join(dir, 'data'));
  t.teardown(() => node.stop());
  const server = ['--server', node.address];

  await sendAll(t, dir, server, mergedVisitorEvents('u2', 'a2'));
  const result = await rtcdp(['profile', 'unmerge', 'user_id=u2', 'anon:a2', ...server, '--output', 'json']);
  t.equal(result.code, 0, 'unmerge exits 0', { stderr: result.stderr, nodeLog: node.stderr() });
  if (result.code !== 0) return;

  const response = JSON.parse(result.stdout);
  t.match(response.unmergeId, /^[\w-]{22}$/);
  t.equal(response.survivorProfileId, 'user:u2');
  t.equal(response.restoredProfileId, 'anon:a2');
  t.same(response.profiles, ['anon:a2']);
  t.same(response.restoredIdentifiers, [{ type: 'anonymous_id', value: 'a2' }]);
  t.same(response.survivorIdentifiers, [{ type: 'user_id', value: 'u2' }]);
  t.equal(response.survivor.profileId, 'user:u2');
  t.equal(response.survivor.eventCount, 3);
  t.equal(response.restored.profileId, 'anon:a2');
  t.equal(response.restored.eventCount, 2);

  t.equal((await profileJson(server, '--user-id', 'u2')).eventCount, 3, 'profile get agrees for the survivor');
  t.equal((await profileJson(server, '--anonymous-id', 'a2')).eventCount, 2, 'profile get agrees for the restored profile');
});

t.test('identity commands - unmerge reads <merged> as identifier or profile id', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['anonymous_id=a1', { type: 'anonymous_id', value: 'a1' }],
    ['email=ana=work@example.com', { type: 'email', value: 'ana=work@example.com' }],
    ['external:crm_id=42', { type: 'external:crm_id', value: '42' }],
    ['anon:a1', 'anon:a1'],
    ['anon:abc==', 'anon:abc=='],
    ['email:ana=work@example.com', 'email:ana=work@example.com'],
    ['external:crm_id:4=2', 'external:crm_id:4=2'],
  ];
  for (const [text, expected] of cases) t.same(parseMergedProfile(text), expected, text);

  t.throws(() => parseMergedProfile('a1'), /invalid merged profile "a1"/);
  t.throws(() => parseMergedProfile('anonymous_id='), /invalid merged identifier "anonymous_id=": expected TYPE=VALUE/);
});

t.test('identity commands - unmerge errors name the profile at fault', async (t) => {
  const dir = t.testdir();
  const node = await startNodeProcess(path.join(dir, 'data'));
  t.teardown(() => node.stop());
  const server = ['--server', node.address];
  await sendAll(t, dir, server, [mergedVisitorEvents('u3', 'a3')[0]]);

  const unknown = await rtcdp(['profile', 'unmerge', 'user_id=nobody', 'anonymous_id=a3', ...server]);
  t.equal(unknown.code, 1, 'unknown survivor exits 1');
  t.match(unknown.stderr, /no profile of workspace default has user_id "nobody"/);

  const notMerged = await rtcdp(['profile', 'unmerge', 'user_id=u3', 'anon:a3', ...server]);
  t.equal(notMerged.code, 1, 'a profile of its own exits 1');
  t.match(notMerged.stderr, /profile anon:a3 of workspace default is not merged into user:u3: it is a profile of its own/);

  const unknownMerged = await rtcdp(['profile', 'unmerge', 'user_id=u3', 'anon:nobody', ...server]);
  t.equal(unknownMerged.code, 1, 'unknown merged profile exits 1');
  t.match(unknownMerged.stderr, /anon:nobody/);

  const neither = await rtcdp(['profile', 'unmerge', 'user_id=u3', 'a3', ...server]);
  t.equal(neither.code, 2, 'an argument that is neither form is a usage error');
  t.match(neither.stderr, /invalid merged profile "a3": expected an identifier as TYPE=VALUE \(anonymous_id=a1\) or a profile id as PREFIX:VALUE \(anon:a1\)/);

  const badSurvivor = await rtcdp(['profile', 'unmerge', 'user:u3', 'anon:a3', ...server]);
  t.equal(badSurvivor.code, 2, 'the survivor must be an identifier');
  t.match(badSurvivor.stderr, /invalid profile identifier "user:u3": expected TYPE=VALUE/);
});

t.test('identity commands - an invalid settings file stops dev before it starts', async (t) => {
  const dir = t.testdir();
  const settings = path.join(dir, 'identity.yaml');
  writeFileSync(settings, 'default:\n  identifiers:\n    email: { maxPerProfile: 0 }\n');

  const result = await rtcdp(['dev', '--data', path.join(dir, 'data'), '--port', '0', '--identity', settings]);
  t.equal(result.code, 2);
  t.match(result.stderr, /--identity .*identity\.yaml: .*identifiers\.email\.maxPerProfile/);

  writeFileSync(settings, 'default:\n  priority: [user_id, emial, phone, device_id, anonymous_id]\nworkspaces:\n  shop:\n    defaultRegion: UK\n    invalidIdentifiers: drop\n');
  const several = await rtcdp(['dev', '--data', path.join(dir, 'data'), '--port', '0', '--identity', settings]);
  t.equal(several.code, 2);
  t.match(several.stderr, 'default: invalid identity settings: priority[1] is "emial", which is not a configured identifier type. Add it to identifiers or remove it from priority. Did you mean "email"?', 'names the default settings and suggests the type');
  t.match(several.stderr, 'workspaces.shop: invalid identity settings: 2 problems:\n  defaultRegion is "UK"', 'and lists every problem of the workspace in the same run');
  t.match(several.stderr, '\n  invalidIdentifiers must be "reject" or "keep-unlinked", got "drop"');

  writeFileSync(settings, 'defaults: {}\n');
  const misspelt = await rtcdp(['dev', '--data', path.join(dir, 'data'), '--port', '0', '--identity', settings]);
  t.equal(misspelt.code, 2);
  t.match(misspelt.stderr, /defaults is not a known field; expected default or workspaces/);
});

t.test('identity commands - dev with --matching-model merges near-duplicates', async (t) => {
  const dir = t.testdir();
  const model = new URL('../fixtures/splink-fake-1000-model.json', import.meta.url).pathname;
  const node = await startNodeProcess(path.join(dir, 'data'), ['--matching-model', model, '--matching-workers', '1', '--match-threshold', '0.99999', '--review-threshold', '0.9']);
  t.teardown(() => node.stop());
  const server = ['--server', node.address];

  const file = path.join(dir, 'people.ndjson');
  writeFileSync(
    file,
    events(
      { type: 'identify', anonymousId: 'p1', messageId: 'p1', traits: { firstName: 'Robert', lastName: 'Allen', birthday: '1971-05-24', email: 'robert255@smith.net' } },
      { type: 'identify', anonymousId: 'p2', messageId: 'p2', traits: { firstName: 'Robert', lastName: 'Alan', birthday: '1971-06-24', email: 'roberta25@smith.net' } },
    ),
  );
  t.equal((await rtcdp(['send', file, ...server])).code, 0);

  // Matching runs after the events are acknowledged, so the merge shows up shortly after.
  let merged = false;
  for (let attempt = 0; attempt < 50 && !merged; attempt++) {
    const profile = JSON.parse((await rtcdp(['profile', 'get', '--anonymous-id', 'p2', ...server, '--output', 'json'])).stdout);
    merged = profile.eventCount === 2;
    if (!merged) await new Promise((resolve) => setTimeout(resolve, 200));
  }
  t.ok(merged, 'the two profiles became one');
  const explained = await rtcdp(['profile', 'explain', 'anonymous_id=p1', 'anonymous_id=p2', ...server]);
  t.match(explained.stdout, /merged into .* by event fuzzy-match:/);
});

t.test('identity commands - matching options are checked before dev starts', async (t) => {
  const dir = t.testdir();
  const cases: Array<[string[], RegExp]> = [
    [['--matching-workers', '2'], /--matching-workers needs --matching-model: without a model, online matching is off/],
    [['--matching-model', path.join(dir, 'missing.json')], /--matching-model .*missing\.json cannot be read: no such file or directory/],
    [['--matching-model', path.join(dir, 'missing.json'), '--match-threshold', '2'], /invalid --match-threshold "2": expected a number greater than 0 and less than 1/],
    [['--matching-model', path.join(dir, 'missing.json'), '--match-threshold', '0.6', '--review-threshold', '0.8'], /--review-threshold must be at most --match-threshold/],
  ];
  for (const [args, message] of cases) {
    const result = await rtcdp(['dev', '--data', path.join(dir, 'data'), '--port', '0', ...args]);
    t.equal(result.code, 2, `${args.join(' ')} exits 2`);
    t.match(result.stderr, message);
  }
});
