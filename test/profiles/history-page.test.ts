import t from 'tap';
import { mergeHistoryPage, type HistoryCursors, type HistorySource } from '../../profiles/history-page.js';
import type { StoredEvent } from '../../profiles/profile-history.js';
import { encode } from '../../storage/codec.js';

/** Returns a stored event of `profileId` at `sequence`, received at `receivedMs`. */
function stored(profileId: string, sequence: number, receivedMs: number): StoredEvent {
  const event = { type: 'track', messageId: `${profileId}#${sequence}`, timestamp: '2024-01-01T00:00:00.000Z', timestampMs: 0, receivedAt: new Date(receivedMs).toISOString(), profileId };
  return { sequence, payload: encode(event) };
}

/** Returns the sources a page starts from: each history's events below its cursor, at most `limit`, newest first. */
function sourcesAt(histories: Map<string, StoredEvent[]>, cursors: HistoryCursors, limit: number): HistorySource[] {
  return [...cursors].map(([profileId, before]) => ({
    profileId,
    before,
    events: (histories.get(profileId) ?? []).filter((event) => event.sequence < before).slice(0, limit),
  }));
}

/** Pages through the histories `pageSize` at a time and returns the messageIds in order. */
function pageThrough(histories: Map<string, StoredEvent[]>, pageSize: number): string[] {
  const messageIds: string[] = [];
  let cursors: HistoryCursors = new Map([...histories.keys()].map((id) => [id, Number.POSITIVE_INFINITY]));
  for (let page = 0; cursors.size > 0 && page < 1_000; page++) {
    const result = mergeHistoryPage(sourcesAt(histories, cursors, pageSize + 1), pageSize);
    messageIds.push(...result.events.map((event) => event.messageId));
    cursors = result.next;
  }
  return messageIds;
}

t.test('history page - each history keeps its order when receive times disagree', async (t) => {
  // user:u's event 3 was received before its event 2 by the clock of another node.
  const histories = new Map([
    ['user:u', [stored('user:u', 3, 1_000), stored('user:u', 2, 5_000), stored('user:u', 1, 500)]],
    ['anon:a', [stored('anon:a', 7, 4_000), stored('anon:a', 6, 1_000)]],
  ]);
  const page = mergeHistoryPage(sourcesAt(histories, new Map([['user:u', Infinity], ['anon:a', Infinity]]), 100), 100);

  t.same(
    page.events.map((event) => event.messageId),
    ['anon:a#7', 'anon:a#6', 'user:u#3', 'user:u#2', 'user:u#1'],
    'user:u#2 waits behind user:u#3, and anon:a#6 comes first on their equal receive times',
  );
  t.same(page.events.map((event) => event.profileId), ['anon:a', 'anon:a', 'user:u', 'user:u', 'user:u'], 'each event names its history');
  t.equal(page.next.size, 0, 'nothing is left after the page');
});

t.test('history page - pages of any size list every event once', async (t) => {
  // Receive times that repeat and run against the sequences, from a fixed seed.
  let seed = 7;
  const random = () => (seed = (seed * 48_271) % 2_147_483_647) / 2_147_483_647;
  const histories = new Map<string, StoredEvent[]>();
  for (const profileId of ['user:u', 'anon:a', 'anon:b', 'anon:c']) {
    const count = 1 + Math.floor(random() * 12);
    const events = Array.from({ length: count }, (_, i) => stored(profileId, (i + 1) * 3, Math.floor(random() * 8) * 1_000));
    histories.set(profileId, events.reverse());
  }
  const whole = pageThrough(histories, 1_000);
  const total = [...histories.values()].reduce((sum, events) => sum + events.length, 0);
  t.equal(whole.length, total, 'one large page lists every event');
  t.equal(new Set(whole).size, total, 'once each');

  for (const pageSize of [1, 2, 3, 5]) {
    t.same(pageThrough(histories, pageSize), whole, `pages of ${pageSize} list the events of one large page, in its order`);
  }
});

t.test('history page - cursors of the next page', async (t) => {
  const histories = new Map([
    ['user:u', [stored('user:u', 9, 3_000), stored('user:u', 8, 2_000)]],
    ['anon:a', [stored('anon:a', 4, 1_000)]],
    ['anon:b', [stored('anon:b', 2, 500), stored('anon:b', 1, 400)]],
  ]);
  const first = mergeHistoryPage(sourcesAt(histories, new Map([['user:u', Infinity], ['anon:a', Infinity], ['anon:b', Infinity]]), 2), 1);
  t.same(Object.fromEntries(first.next), { 'user:u': 9, 'anon:a': 5, 'anon:b': 3 }, 'the last sequence listed, or one above the next event of a history the page did not reach');

  const second = mergeHistoryPage(sourcesAt(histories, new Map([['user:u', 9], ['anon:a', 5], ['anon:b', 3]]), 4), 3);
  t.same(second.events.map((event) => event.messageId), ['user:u#8', 'anon:a#4', 'anon:b#2']);
  t.same(Object.fromEntries(second.next), { 'anon:b': 2 }, 'histories with no event left are left out');
});
