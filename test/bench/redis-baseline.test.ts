import t from 'tap';
import { randomUUID } from 'node:crypto';
import { RedisBaselineNode } from '../../bench/baseline/baseline-node.js';
import { DEFAULT_REDIS_PROFILE_OPTIONS, RedisProfileStore } from '../../bench/baseline/redis-profiles.js';
import { RedisServerProcess } from '../../bench/baseline/redis-server.js';
import { ChildProcesses } from '../../bench/processes.js';
import { silentLogger } from '../../common/logger.js';
import type { CustomerEvent, RawEvent } from '../../profiles/event.js';
import { applyEvent, createProfile, DEFAULT_PROFILE_LIMITS, type ProfileSnapshot } from '../../profiles/profile.js';
import { resolveEventLimits, validateBatch } from '../../profiles/validation.js';
import { decode, encode } from '../../storage/codec.js';

const WORKSPACE = 'default';

/** Applies events to a fresh profile with rtcdp's own applyEvent, the state the baseline must match. */
function rtcdpProfile(profileId: string, raws: RawEvent[]): ProfileSnapshot {
  const profile = createProfile(WORKSPACE, profileId);
  const validated = validateBatch(raws, resolveEventLimits(), { receivedAt: new Date(), generateMessageId: randomUUID });
  validated.forEach((result, index) => {
    if (!result.ok) throw new Error(`test event ${index} is invalid: ${result.message}`);
    applyEvent(profile, { event: result.event, position: { shard: 0, sequence: index + 1 }, payload: encode(result.event) }, DEFAULT_PROFILE_LIMITS);
  });
  return profile;
}

function at(iso: string): string {
  return new Date(iso).toISOString();
}

const EVENTS: RawEvent[] = [
  {
    type: 'identify',
    messageId: 'm-1',
    timestamp: at('2024-05-01T10:00:00Z'),
    userId: 'ada',
    anonymousId: 'anon-ada',
    traits: { email: 'ada@example.com', plan: 'free', seats: 3, tags: ['a', 'b'], address: { city: 'London' } },
    context: { traits: { plan: 'trial', locale: 'en-GB' } },
  },
  { type: 'track', messageId: 'm-2', timestamp: at('2024-05-01T11:00:00Z'), userId: 'ada', event: 'Order Completed', properties: { revenue: 0.1, quantity: 2, sku: 'x-1' } },
  { type: 'track', messageId: 'm-3', timestamp: at('2024-05-01T09:00:00Z'), userId: 'ada', event: 'Order Completed', properties: { revenue: 0.2, quantity: 1 } },
  // Older than the identify: its plan must not win, but its new trait is set.
  { type: 'identify', messageId: 'm-4', timestamp: at('2024-05-01T08:00:00Z'), userId: 'ada', traits: { plan: 'enterprise', company: 'Analytical Engines' } },
  // As old as the identify: an equal time overwrites.
  { type: 'identify', messageId: 'm-5', timestamp: at('2024-05-01T10:00:00Z'), userId: 'ada', traits: { seats: 4 } },
  { type: 'page', messageId: 'm-6', timestamp: at('2024-05-01T12:00:00Z'), userId: 'ada', name: 'Pricing', properties: { scroll: 0.75 } },
  { type: 'track', messageId: 'm-7', timestamp: at('2024-05-01T12:30:00Z'), userId: 'ada', event: 'Signed Up', context: { traits: { phone: '+44 20 7946 0000' } } },
];

t.test('Redis baseline', async (t) => {
  const processes = new ChildProcesses();
  t.teardown(() => processes.stopAll(5_000));

  const redis = await RedisServerProcess.start(processes, t.testdir(), 'everysec');
  const store = await RedisProfileStore.connect(redis.port, DEFAULT_REDIS_PROFILE_OPTIONS, silentLogger());
  t.teardown(() => store.close());
  const node = new RedisBaselineNode(store, silentLogger());

  t.test('profile equals rtcdp applyEvent', async (t) => {
    const results = await node.ingest(WORKSPACE, EVENTS);
    t.same(
      results.map((result) => result.status),
      EVENTS.map(() => 'accepted'),
    );

    const actual = await node.getProfile(WORKSPACE, { type: 'user_id', value: 'ada' });
    const expected = rtcdpProfile('user:ada', EVENTS);

    t.equal(actual.profileId, 'user:ada');
    t.equal(actual.eventCount, expected.eventCount, 'eventCount');
    t.equal(actual.firstSeenMs, expected.firstSeenMs, 'firstSeenMs');
    t.equal(actual.lastSeenMs, expected.lastSeenMs, 'lastSeenMs');
    t.same(actual.events, expected.events, 'per event name count, sums, first and last seen');
    t.same(actual.traits, expected.traits, 'traits, last writer wins by event time');
    t.same(actual.traitTimesMs, expected.traitTimesMs, 'trait times');
    t.same(actual.identifiers, expected.identifiers, 'identifiers in first-seen order');
    t.same(
      actual.recent.map((payload) => decode<CustomerEvent>(payload).messageId),
      expected.recent.map((payload) => decode<CustomerEvent>(payload).messageId),
      'recent events, newest first',
    );
    t.equal(actual.traits.plan, 'free', 'an older identify does not overwrite a trait, and event traits win over context traits of the same event');
    t.equal(actual.traits.company, 'Analytical Engines', 'an older identify sets a trait that is unset');
    t.equal(actual.traits.seats, 4, 'an identify at the same time overwrites a trait');
    t.equal(actual.events['Order Completed'].sums.revenue, 0.1 + 0.2, 'sums add as doubles');
  });

  t.test('duplicate messageIds change nothing', async (t) => {
    const before = await node.getProfile(WORKSPACE, { type: 'user_id', value: 'ada' });
    const results = await node.ingest(WORKSPACE, EVENTS.slice(0, 3));
    t.same(
      results.map((result) => result.status),
      ['duplicate', 'duplicate', 'duplicate'],
    );

    const after = await node.getProfile(WORKSPACE, { type: 'user_id', value: 'ada' });
    t.equal(after.eventCount, before.eventCount);
    t.same(after.events, before.events);
  });

  t.test('duplicate within one batch', async (t) => {
    const event = { type: 'track', messageId: 'same-id', timestamp: at('2024-05-02T00:00:00Z'), userId: 'grace', event: 'Viewed' };
    const results = await node.ingest(WORKSPACE, [event, event]);
    t.same(
      results.map((result) => result.status),
      ['accepted', 'duplicate'],
    );
    t.equal((await node.getProfile(WORKSPACE, { type: 'user_id', value: 'grace' })).eventCount, 1);
  });

  t.test('invalid event is rejected', async (t) => {
    const results = await node.ingest(WORKSPACE, [{ type: 'track', messageId: 'bad-1', timestamp: 'yesterday', userId: 'ada', event: 'Viewed' }]);
    t.equal(results[0].status, 'rejected');
    t.equal(results[0].code, 'INVALID_TIMESTAMP');
  });

  t.test('excess event names count as (other)', async (t) => {
    const names = DEFAULT_PROFILE_LIMITS.eventNames + 5;
    const raws: RawEvent[] = Array.from({ length: names }, (_, i) => ({
      type: 'track',
      messageId: `names-${i}`,
      timestamp: at('2024-05-03T00:00:00Z'),
      userId: 'alan',
      event: `Event ${i}`,
      properties: { value: i },
    }));
    await node.ingest(WORKSPACE, raws);

    const actual = await node.getProfile(WORKSPACE, { type: 'user_id', value: 'alan' });
    const expected = rtcdpProfile('user:alan', raws);
    t.equal(Object.keys(actual.events).length, Object.keys(expected.events).length);
    t.same(actual.events['(other)'], expected.events['(other)']);
    t.equal(actual.events['(other)'].count, 5);
  });

  t.test('anonymous profile by anonymous_id', async (t) => {
    await node.ingest(WORKSPACE, [{ type: 'page', messageId: 'anon-1', timestamp: at('2024-05-04T00:00:00Z'), anonymousId: 'visitor-9', name: 'Home' }]);
    const profile = await node.getProfile(WORKSPACE, { type: 'anonymous_id', value: 'visitor-9' });
    t.equal(profile.profileId, 'anon:visitor-9');
    t.equal(profile.events['page:Home'].count, 1);
  });

  t.test('getProfile errors', async (t) => {
    await t.rejects(node.getProfile(WORKSPACE, { type: 'user_id', value: 'nobody' }), { code: 'PROFILE_NOT_FOUND' });
    await t.rejects(node.getProfile(WORKSPACE, { type: 'email', value: 'ada@example.com' }), { code: 'INVALID_ARGUMENT', message: /user_id or anonymous_id only/ });
  });
});
