/**
 * ListProfileEvents of a profile that absorbed others, over gRPC on an embedded node: the
 * events each merged profile applied before its merge join the survivor's own, interleaved
 * by receive time, and paging stays exact while events and merges keep arriving.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { status } from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import type { RawEvent } from '../../profiles/event.js';
import { errorCodeOf, expectServiceError, ingestBatch, listProfileEvents, startTestNode, type TestNode } from '../helpers/grpc-node.js';

/** The workspace of gRPC calls without a write key to a node in dev mode. */
const WORKSPACE = 'default';

const page = (anonymousId: string, messageId: string): RawEvent => ({ type: 'page', name: 'Home', anonymousId, messageId });
const track = (userId: string, messageId: string): RawEvent => ({ type: 'track', event: 'Order Completed', userId, messageId });
const identify = (userId: string, anonymousId: string, messageId: string): RawEvent => ({ type: 'identify', userId, anonymousId, messageId });
const user = (value: string) => ({ type: 'user_id', value });

/** Ingests one batch and waits a few ms, so the next batch gets a later receive time (one per batch, in ms). */
async function send(t: Test, node: TestNode, events: RawEvent[]): Promise<void> {
  const response = await ingestBatch(node, events);
  t.equal(response.accepted, events.length, `batch ${events.map((event) => event.messageId).join(', ')} is accepted`);
  await sleep(3);
}

interface Listing {
  messageIds: string[];
  profileIds: string[];
  pageSizes: number[];
}

/**
 * Reads every page of the profile that `identifier` finds, starting at `token`, and runs
 * `betweenPages` after each page that has a next one.
 */
async function readPages(t: Test, node: TestNode, identifier: { type: string; value: string }, pageSize: number, token = '', betweenPages?: (pageIndex: number) => Promise<void>): Promise<Listing> {
  const listing: Listing = { messageIds: [], profileIds: [], pageSizes: [] };

  // Bounded so that a token that never ends fails the test instead of hanging it.
  for (let pageIndex = 0; pageIndex < 200; pageIndex++) {
    const response = await listProfileEvents(node, identifier, pageSize, token);
    listing.messageIds.push(...response.events.map((event) => event.messageId));
    listing.profileIds.push(...response.profileIds);
    listing.pageSizes.push(response.events.length);
    token = response.nextPageToken;
    if (token === '') return listing;
    await betweenPages?.(pageIndex);
  }
  t.fail('paging did not end after 200 pages');
  return listing;
}

function encodeToken(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

t.test('merged history - anonymous browsing joins the user timeline', async (t) => {
  const node = await startTestNode(t);
  await send(t, node, [page('a1', 'p1')]);
  await send(t, node, [track('u1', 't1')]);
  await send(t, node, [page('a1', 'p2')]);
  // One batch, one receive time: the lower profile id, anon:a1, comes first.
  await send(t, node, [track('u1', 't2'), page('a1', 'p3')]);
  await send(t, node, [identify('u1', 'a1', 'i1')]);
  await send(t, node, [page('a1', 'p4')]);

  const expected = {
    messageIds: ['p4', 'i1', 'p3', 't2', 'p2', 't1', 'p1'],
    profileIds: ['user:u1', 'user:u1', 'anon:a1', 'user:u1', 'anon:a1', 'user:u1', 'anon:a1'],
  };
  const byUser = await readPages(t, node, user('u1'), 100);
  t.same(byUser.messageIds, expected.messageIds, 'both profiles\' events, newest receive time first');
  t.same(byUser.profileIds, expected.profileIds, 'each event names the profile whose history contains it');
  t.same(byUser.pageSizes, [7], 'one page holds them all');

  const byAnonymousId = await readPages(t, node, { type: 'anonymous_id', value: 'a1' }, 100);
  t.same(byAnonymousId.messageIds, expected.messageIds, 'the anonymous id finds the same timeline');

  const whole = await listProfileEvents(node, user('u1'), 100, '');
  t.same(
    whole.events.map((event) => event.anonymousId),
    ['a1', 'a1', 'a1', '', 'a1', '', 'a1'],
    'events keep their fields',
  );
});

t.test('merged history - pages of 1 and 2 list every event once while events arrive', async (t) => {
  // A snapshot every 3 messages leaves part of each history in the actor and part in the store.
  const node = await startTestNode(t, { actors: { snapshotEveryMessages: 3 } });
  for (let i = 0; i < 5; i++) {
    await send(t, node, [page('a2', `p${i}`)]);
    await send(t, node, [track('u2', `t${i}`), page('a2', `q${i}`)]);
  }
  await send(t, node, [page('late', 'late-1'), page('late', 'late-2')]);
  await send(t, node, [identify('u2', 'a2', 'i1')]);
  await send(t, node, [track('u2', 't-after')]);

  let arrived = 0;
  for (const pageSize of [1, 2]) {
    const whole = await readPages(t, node, user('u2'), 1_000);
    t.equal(whole.messageIds.length, 17 + arrived, `page size ${pageSize}: the whole history before paging`);

    const paged = await readPages(t, node, user('u2'), pageSize, '', async (pageIndex) => {
      // New events of both identifiers, and on the second gap a merge of another visitor.
      await send(t, node, [track('u2', `new-${pageSize}-${pageIndex}`), page('a2', `newp-${pageSize}-${pageIndex}`)]);
      arrived += 2;
      if (pageSize === 1 && pageIndex === 1) {
        await send(t, node, [identify('u2', 'late', 'i-late')]);
        arrived += 3;
      }
    });
    t.same(paged.messageIds, whole.messageIds, `page size ${pageSize}: every event once, in the order of one large page`);
    t.same(paged.profileIds, whole.profileIds, `page size ${pageSize}: with the same profile ids`);
    t.ok(
      paged.pageSizes.slice(0, -1).every((size) => size === pageSize),
      `page size ${pageSize}: every page but the last is full`,
    );
  }

  const after = await readPages(t, node, user('u2'), 1_000);
  t.equal(after.messageIds.length, 17 + arrived, 'a new listing has the events that arrived while paging');
  t.equal(new Set(after.messageIds).size, after.messageIds.length, 'each of them once');
  t.same(
    after.messageIds.filter((id) => id.startsWith('late-')).sort(),
    ['late-1', 'late-2'],
    'and the events of the visitor merged while paging',
  );
  t.same(
    [...new Set(after.profileIds)].sort(),
    ['anon:a2', 'anon:late', 'user:u2'],
    'from the user and both visitors',
  );
});

t.test('merged history - a profile merged two levels deep', async (t) => {
  const node = await startTestNode(t);
  await send(t, node, [page('ca', 'b1')]);
  await send(t, node, [page('cb', 'b2')]);
  await send(t, node, [{ ...page('ca', 'b3'), context: { traits: { email: 'deep@example.com' } } }]);
  // The shared email merges one visitor into the other.
  await send(t, node, [{ ...page('cb', 'b4'), context: { traits: { email: 'deep@example.com' } } }]);
  await send(t, node, [track('deep', 'b5')]);
  await send(t, node, [identify('deep', 'ca', 'b6')]);
  await send(t, node, [page('cb', 'b7')]);

  const profile = await node.rtcdp.node.getProfile(WORKSPACE, user('deep'));
  const nested = profile.merges.find((merge) => merge.via !== undefined);
  const direct = profile.merges.find((merge) => merge.via === undefined);
  t.ok(nested, 'one visitor reached the user through the other');
  t.equal(nested?.via, direct?.profileId, 'through the visitor merged into the user directly');

  const listing = await readPages(t, node, user('deep'), 2);
  t.same(listing.messageIds, ['b7', 'b6', 'b5', 'b4', 'b3', 'b2', 'b1'], 'the events of all three profiles, newest first');
  t.same(
    listing.profileIds,
    ['user:deep', 'user:deep', 'user:deep', direct?.profileId, 'anon:ca', 'anon:cb', 'anon:ca'],
    'each from the history of the profile that applied it before its merge',
  );
});

t.test('merged history - an unmerged profile leaves the listing', async (t) => {
  const node = await startTestNode(t);
  await send(t, node, [page('a5', 'p1')]);
  await send(t, node, [track('u5', 't1')]);
  await send(t, node, [page('a5', 'p2')]);
  await send(t, node, [identify('u5', 'a5', 'i1')]);
  await send(t, node, [page('a5', 'p3')]);

  const merged = await readPages(t, node, user('u5'), 100);
  t.same(merged.messageIds, ['p3', 'i1', 'p2', 't1', 'p1'], 'while merged, the visitor\'s events are listed');
  const firstPage = await listProfileEvents(node, user('u5'), 2, '');
  t.not(firstPage.nextPageToken, '', 'a listing started while merged has a next page');

  await node.rtcdp.node.identityAdmin.unmerge(WORKSPACE, user('u5'), 'anon:a5');

  const survivor = await readPages(t, node, user('u5'), 100);
  t.same(survivor.messageIds, ['p3', 'i1', 't1'], 'the survivor keeps its own history, with the page view it applied while merged');
  t.same(survivor.profileIds, ['user:u5', 'user:u5', 'user:u5'], 'and lists no event of the restored profile');

  const continued = await readPages(t, node, user('u5'), 2, firstPage.nextPageToken);
  t.same(continued.messageIds, ['t1'], 'a token from before the unmerge skips the restored profile');

  const restored = await readPages(t, node, { type: 'anonymous_id', value: 'a5' }, 100);
  t.same(restored.messageIds, ['p2', 'p1'], 'the restored profile lists the events it applied before the merge');
  t.same(restored.profileIds, ['anon:a5', 'anon:a5']);
});

t.test('merged history - a sequence token reads only the own history', async (t) => {
  const node = await startTestNode(t);
  await send(t, node, [track('u6', 't1')]);
  await send(t, node, [page('a6', 'p1')]);
  await send(t, node, [track('u6', 't2')]);
  await send(t, node, [track('u6', 't3')]);

  const unmerged = await listProfileEvents(node, user('u6'), 1, '');
  t.same(unmerged.events.map((event) => event.messageId), ['t3']);
  const cursors = JSON.parse(Buffer.from(unmerged.nextPageToken, 'base64url').toString('utf8')) as { before: Record<string, number> };
  t.same(Object.keys(cursors.before), ['user:u6'], 'a profile without merges gets a token that names it');

  await send(t, node, [identify('u6', 'a6', 'i1')]);
  const merged = await readPages(t, node, user('u6'), 100);
  t.same(merged.messageIds, ['i1', 't3', 't2', 'p1', 't1'], 'a first page lists both profiles');

  const continued = await readPages(t, node, user('u6'), 1, String(cursors.before['user:u6']));
  t.same(continued.messageIds, ['t2', 't1'], 'the sequence token continues the own history alone, as it did before the merge');
  t.same(continued.profileIds, ['user:u6', 'user:u6']);

  const largest = await readPages(t, node, user('u6'), 100, String(Number.MAX_SAFE_INTEGER));
  t.same(largest.messageIds, ['i1', 't3', 't2', 't1'], 'the largest sequence lists the whole own history');
});

t.test('merged history - token of a profile merged before the next page', async (t) => {
  const node = await startTestNode(t);
  await send(t, node, [track('u8', 't1')]);
  await send(t, node, [track('u8', 't2')]);
  for (let i = 1; i <= 4; i++) await send(t, node, [page('a8', `p${i}`)]);

  const first = await listProfileEvents(node, { type: 'anonymous_id', value: 'a8' }, 2, '');
  t.same(first.events.map((event) => event.messageId), ['p4', 'p3']);

  await send(t, node, [identify('u8', 'a8', 'i1')]);
  const rest = await readPages(t, node, { type: 'anonymous_id', value: 'a8' }, 2, first.nextPageToken);
  t.same(rest.messageIds, ['p2', 'p1'], 'the next pages continue the visitor\'s history, now under the survivor');
  t.same(rest.profileIds, ['anon:a8', 'anon:a8']);
});

t.test('merged history - invalid page tokens', async (t) => {
  const node = await startTestNode(t);
  await send(t, node, [page('a7', 'p1')]);
  await send(t, node, [identify('u7', 'a7', 'i1')]);

  const cases: Array<[string, string]> = [
    ['abc', 'it is neither a sequence from 1 to 2^53 - 1 nor the base64url JSON of a next_page_token'],
    ['-1', 'it is neither a sequence from 1 to 2^53 - 1 nor the base64url JSON of a next_page_token'],
    ['1.5', 'it is neither a sequence nor base64url'],
    ['0', 'a sequence must be an integer from 1 to 2^53 - 1'],
    ['9007199254740993', 'a sequence must be an integer from 1 to 2^53 - 1'],
    [encodeToken({ v: 2, before: { 'user:u7': 5 } }), 'it is not a version 1 token'],
    [encodeToken([1]), 'it is not a version 1 token'],
    [encodeToken({ v: 1, before: {} }), 'it names no profile'],
    [encodeToken({ v: 1, before: { 'user:u7': 0 } }), 'the sequence of "user:u7" must be an integer from 1 to 2^53 - 1'],
    [encodeToken({ v: 1, before: { 'user:u7': '5' } }), 'the sequence of "user:u7" must be an integer from 1 to 2^53 - 1'],
    [encodeToken({ v: 1, before: { 'user:u7': 1.5 } }), 'the sequence of "user:u7" must be an integer from 1 to 2^53 - 1'],
  ];
  for (const [token, reason] of cases) {
    const error = await expectServiceError(listProfileEvents(node, user('u7'), 10, token));
    t.equal(error.code, status.INVALID_ARGUMENT, `${reason}: status is INVALID_ARGUMENT`);
    t.equal(errorCodeOf(error), 'INVALID_ARGUMENT', `${reason}: trailer code`);
    t.match(error.details, `page_token is invalid: ${JSON.stringify(token)} (${reason}); pass next_page_token from the previous page unchanged`, `${reason}: message names the field, the value and the rule`);
  }

  const long = encodeToken({ v: 1, before: { [`user:${'x'.repeat(200)}`]: 0 } });
  const longError = await expectServiceError(listProfileEvents(node, user('u7'), 10, long));
  t.match(longError.details, `page_token is invalid: "${long.slice(0, 120)}..."`, 'a long token is cut in the message');

  const stranger = await listProfileEvents(node, user('u7'), 10, encodeToken({ v: 1, before: { 'anon:stranger': 5 } }));
  t.same(stranger.events, [], 'a token that names no history of the profile lists nothing');
  t.equal(stranger.nextPageToken, '', 'and ends the listing');
});
