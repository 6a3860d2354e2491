import t from 'tap';
import type { CustomerEvent } from '../../profiles/event.js';
import { encode } from '../../storage/codec.js';
import { applyEvent, createProfile, DEFAULT_PROFILE_LIMITS, fromSnapshot, toSnapshot, type ProfileLimits, type ProfileSnapshot, type ProfileState } from '../../profiles/profile.js';
import { hasMessageId, mergeMessageIds, rememberMessageId } from '../../profiles/message-ids.js';

const DAY_MS = 24 * 3_600_000;
const START_MS = Date.parse('2026-01-01T00:00:00.000Z');

/** Limits as a cluster node sets them: many ids, kept for a week. */
const WEEK: ProfileLimits = { ...DEFAULT_PROFILE_LIMITS, recentMessageIds: 100, messageIdRetentionMs: 7 * DAY_MS };

function apply(profile: ProfileState, messageId: string, sequence: number, receivedMs: number, limits: ProfileLimits): boolean {
  const event: CustomerEvent = {
    type: 'track',
    event: 'Viewed',
    messageId,
    userId: 'u1',
    timestamp: new Date(receivedMs).toISOString(),
    timestampMs: receivedMs,
    receivedAt: new Date(receivedMs).toISOString(),
  };
  return applyEvent(profile, { event, position: { shard: 0, sequence }, payload: encode(event) }, limits);
}

t.test('message ids - a resend within the limits is not applied', async (t) => {
  const profile = createProfile('w', 'user:u1');
  for (let i = 1; i <= 80; i++) apply(profile, `m${i}`, i, START_MS + i, WEEK);

  t.equal(apply(profile, 'm1', 81, START_MS + DAY_MS, WEEK), false, 'the oldest of 80 ids is still remembered');
  t.equal(apply(profile, 'm80', 82, START_MS + DAY_MS, WEEK), false, 'the newest id is remembered');
  t.equal(profile.eventCount, 80, 'no resend is counted');
  t.same(profile.lastApplied, { shard: 0, sequence: 82 }, 'a skipped resend still moves the log position');
});

t.test('message ids - the count limit forgets the oldest', async (t) => {
  const profile = createProfile('w', 'user:u1');
  for (let i = 1; i <= 150; i++) apply(profile, `m${i}`, i, START_MS + i, WEEK);

  t.equal(profile.recentMessageIds.length, 100);
  t.equal(profile.recentMessageIds[0], 'm51', 'the oldest kept id is the 100th newest');
  t.equal(profile.recentMessageIdsReceivedMs.length, 100, 'one receive time per id');
  t.equal(apply(profile, 'm50', 151, START_MS + 50, WEEK), true, 'a forgotten id is applied again');
  t.equal(profile.recentMessageIds[0], 'm51', 'without pushing out the id of a newer event');
  t.equal(apply(profile, 'm51', 152, START_MS + 51, WEEK), false, 'which is still not applied again');
});

t.test('message ids - a resent file counts only what was forgotten', async (t) => {
  const profile = createProfile('w', 'user:u1');
  for (let i = 1; i <= 150; i++) apply(profile, `m${i}`, i, START_MS + i, WEEK);
  for (let i = 1; i <= 150; i++) apply(profile, `m${i}`, 150 + i, START_MS + i, WEEK);

  t.equal(profile.eventCount, 200, 'the 50 oldest events count again, the 100 newest do not');
  t.same(profile.recentMessageIds, Array.from({ length: 100 }, (_, i) => `m${i + 51}`), 'the ids of the 100 newest events are kept');
});

t.test('message ids - ids are ordered by event time', async (t) => {
  const profile = createProfile('w', 'user:u1');
  const limits = { ...WEEK, recentMessageIds: 3 };
  apply(profile, 'late', 1, START_MS + 3_000, limits);
  apply(profile, 'early', 2, START_MS + 1_000, limits);
  apply(profile, 'middle', 3, START_MS + 2_000, limits);
  t.same(profile.recentMessageIds, ['early', 'middle', 'late']);

  apply(profile, 'latest', 4, START_MS + 4_000, limits);
  t.same(profile.recentMessageIds, ['middle', 'late', 'latest'], 'the id of the earliest event is dropped first');
  t.same(profile.recentMessageIdsTimestampMs, [START_MS + 2_000, START_MS + 3_000, START_MS + 4_000]);
});

t.test('message ids - ids older than the retention are forgotten', async (t) => {
  const profile = createProfile('w', 'user:u1');
  apply(profile, 'old-1', 1, START_MS, WEEK);
  apply(profile, 'old-2', 2, START_MS + DAY_MS, WEEK);
  apply(profile, 'new', 3, START_MS + 7 * DAY_MS + 1, WEEK);

  t.same(profile.recentMessageIds, ['old-2', 'new'], 'an id received more than 7 days before the newest is dropped');
  t.equal(apply(profile, 'old-1', 4, START_MS + 7 * DAY_MS + 2, WEEK), true, 'and applied when it arrives again');
});

t.test('message ids - no retention keeps the newest whatever their age', async (t) => {
  const profile = createProfile('w', 'user:u1');
  apply(profile, 'ancient', 1, START_MS - 365 * DAY_MS, DEFAULT_PROFILE_LIMITS);
  apply(profile, 'today', 2, START_MS, DEFAULT_PROFILE_LIMITS);

  t.same(profile.recentMessageIds, ['ancient', 'today']);
  t.equal(apply(profile, 'ancient', 3, START_MS + 1, DEFAULT_PROFILE_LIMITS), false);
});

t.test('message ids - the lookup set follows additions and removals', async (t) => {
  const fields = { recentMessageIds: [] as string[], recentMessageIdsTimestampMs: [] as number[], recentMessageIdsReceivedMs: [] as number[] };
  const limits = { ...WEEK, recentMessageIds: 40 };
  const entry = (i: number) => ({ id: `m${i}`, timestampMs: START_MS + i, receivedMs: START_MS + i });
  for (let i = 0; i < 40; i++) rememberMessageId(fields, entry(i), limits);
  t.ok(hasMessageId(fields, 'm0'), 'found through the set built on the first lookup of a long list');

  rememberMessageId(fields, entry(40), limits);
  t.notOk(hasMessageId(fields, 'm0'), 'an id dropped by the count limit leaves the set');
  t.ok(hasMessageId(fields, 'm40'), 'an id added after the set was built is in it');
  t.notOk(hasMessageId(fields, 'never-seen'));
});

t.test('message ids - a merge keeps both lists by receive time', async (t) => {
  const into = { recentMessageIds: ['a1', 'shared', 'a2'], recentMessageIdsTimestampMs: [10, 20, 40], recentMessageIdsReceivedMs: [10, 20, 40] };
  const from = { recentMessageIds: ['b1', 'shared', 'b2'], recentMessageIdsTimestampMs: [5, 20, 50], recentMessageIdsReceivedMs: [5, 30, 50] };
  mergeMessageIds(into, from, { ...WEEK, recentMessageIds: 4 });

  t.same(into.recentMessageIds, ['a1', 'shared', 'a2', 'b2'], 'the 4 with the latest event times, oldest first');
  t.same(into.recentMessageIdsTimestampMs, [10, 20, 40, 50]);
  t.same(into.recentMessageIdsReceivedMs, [10, 30, 40, 50], 'an id in both lists takes its later receive time');
});

t.test('message ids - a version 7 snapshot keeps its ids', async (t) => {
  const profile = createProfile('w', 'user:u1');
  for (let i = 1; i <= 3; i++) apply(profile, `m${i}`, i, START_MS + i * 1_000, WEEK);
  const { recentMessageIdsReceivedMs: _received, recentMessageIdsTimestampMs: _timestamps, ...older } = toSnapshot(profile);
  const loaded = fromSnapshot({ ...older, version: 7 } as ProfileSnapshot);

  t.same(loaded.recentMessageIds, ['m1', 'm2', 'm3']);
  t.same(loaded.recentMessageIdsReceivedMs, [START_MS + 3_000, START_MS + 3_000, START_MS + 3_000], 'each id takes the latest receive time of the stored events');
  t.same(loaded.recentMessageIdsTimestampMs, [START_MS + 1_000, START_MS + 1_000, START_MS + 1_000], "and the profile's first event time");
  t.equal(apply(loaded, 'm1', 4, START_MS + 4_000, WEEK), false, 'an id of the older snapshot is still not applied again');
});
