/**
 * Fuzzy matching of live profiles in an embedded node: events that describe the same
 * person under different ids merge when the matcher's probability passes the merge
 * threshold, are filed for review below it, and never merge two user ids automatically.
 * The model is the one `rtcdp identity match` estimated on the bundled Splink fake 1000 set.
 */
import t from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import { readModelFile } from '../../identity/matching/model-file.js';
import type { RawEvent } from '../../profiles/event.js';
import { drainBeforeRemovingTestdirs } from '../helpers/embedded-nodes.js';

const MODEL_FILE = new URL('../fixtures/splink-fake-1000-model.json', import.meta.url).pathname;

drainBeforeRemovingTestdirs(t);

let messages = 0;
function identify(ids: { anonymousId?: string; userId?: string }, traits: Record<string, unknown>): RawEvent {
  return { type: 'identify', ...ids, traits, messageId: `m${++messages}` };
}

t.test('online matching - merges, suggestions and merge protection', async (t) => {
  const model = await readModelFile(MODEL_FILE);
  const node = await RtcdpNode.start({
    dataDir: t.testdir(),
    // Thresholds for this model: the near-duplicate below scores 0.9999999990, the namesake
    // with another birthday and email 0.998.
    matching: { model, workers: 1, minMatchProbability: 0.99999, minReviewProbability: 0.9 },
  });
  t.teardown(() => node.drain());
  const matching = node.matching!;

  await node.ingest('w', [identify({ anonymousId: 'a1' }, { firstName: 'Robert', lastName: 'Allen', birthday: '1971-05-24', email: 'robert255@smith.net', address: { city: 'London' } })]);
  await node.ingest('w', [identify({ anonymousId: 'a2' }, { firstName: 'Robert', lastName: 'Alan', birthday: '1971-06-24', email: 'roberta25@smith.net', address: { city: 'London' } })]);
  await matching.settled();

  const merged = await node.getProfile('w', { type: 'anonymous_id', value: 'a2' });
  t.equal(merged.profileId, (await node.getProfile('w', { type: 'anonymous_id', value: 'a1' })).profileId, 'the near-duplicate merged into one profile');
  t.equal(merged.eventCount, 2);
  t.match(merged.merges, [{ rule: 'fuzzy-match' }]);

  await node.ingest('w', [identify({ anonymousId: 'a3' }, { firstName: 'Robert', lastName: 'Allen', birthday: '1980-01-02', email: 'bob@other.org' })]);
  await matching.settled();
  t.equal((await node.getProfile('w', { type: 'anonymous_id', value: 'a3' })).eventCount, 1, 'the namesake stays apart');
  const suggestions = await node.identityAdmin.listQuarantine('w', 'pending');
  t.match(suggestions, [{ reason: 'FUZZY_MATCH', message: /in the review band/ }], 'and is filed for review');
  t.ok(suggestions[0].probability! > 0.9 && suggestions[0].probability! < 0.99999, `with its probability (${suggestions[0].probability})`);

  await node.ingest('w', [identify({ userId: 'u1' }, { firstName: 'Maria', lastName: 'Lopez', birthday: '1990-02-03', email: 'maria@example.com' })]);
  await node.ingest('w', [identify({ userId: 'u2' }, { firstName: 'Maria', lastName: 'Lopez', birthday: '1990-02-03', email: 'maria.l@example.com' })]);
  await matching.settled();
  t.not((await node.getProfile('w', { type: 'user_id', value: 'u2' })).profileId, 'user:u1', 'two user ids are never merged by a match');
  t.match(await node.identityAdmin.listQuarantine('w', 'pending'), [{ reason: 'FUZZY_MATCH' }, { reason: 'FUZZY_MATCH', message: /above the merge threshold, but .*merge-protected/ }]);

  const approved = (await node.identityAdmin.listQuarantine('w', 'pending'))[0];
  await node.identityAdmin.approve('w', approved.id);
  t.equal((await node.getProfile('w', { type: 'anonymous_id', value: 'a3' })).eventCount, 3, 'an approved suggestion merges the profiles');
  t.match(matching.stats(), { merges: 1, suggestions: 2, failures: 0 });
});

t.test('online matching - other workspaces are never candidates', async (t) => {
  const node = await RtcdpNode.start({ dataDir: t.testdir(), matching: { model: await readModelFile(MODEL_FILE), workers: 1, minMatchProbability: 0.99999, minReviewProbability: 0.9 } });
  t.teardown(() => node.drain());

  const traits = { firstName: 'Robert', lastName: 'Allen', birthday: '1971-05-24', email: 'robert255@smith.net' };
  await node.ingest('one', [identify({ anonymousId: 'a1' }, traits)]);
  await node.ingest('two', [identify({ anonymousId: 'a2' }, { ...traits, email: 'roberta25@smith.net' })]);
  await node.matching!.settled();
  t.match(node.matching!.stats(), { observed: 2, scoredPairs: 0, merges: 0 });
});

t.test('online matching - the blocking index outlives a restart', async (t) => {
  const dataDir = t.testdir();
  const matching = { model: await readModelFile(MODEL_FILE), workers: 1, minMatchProbability: 0.99999, minReviewProbability: 0.9 };
  const first = await RtcdpNode.start({ dataDir, matching });
  await first.ingest('w', [identify({ anonymousId: 'r1' }, { firstName: 'Robert', lastName: 'Allen', birthday: '1971-05-24', email: 'robert255@smith.net' })]);
  await first.matching!.settled();
  await first.drain();

  const second = await RtcdpNode.start({ dataDir, matching });
  t.teardown(() => second.drain());
  await second.ingest('w', [identify({ anonymousId: 'r2' }, { firstName: 'Robert', lastName: 'Alan', birthday: '1971-06-24', email: 'roberta25@smith.net' })]);
  await second.matching!.settled();
  t.equal((await second.getProfile('w', { type: 'anonymous_id', value: 'r2' })).eventCount, 2, 'the profile indexed before the restart is a candidate');
  t.match(second.matching!.stats(), { scoredPairs: 1, merges: 1 });
});
