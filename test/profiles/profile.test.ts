import t from 'tap';
import type { CustomerEvent } from '../../profiles/event.js';
import { identifiersOf, profileIdOf } from '../../profiles/identifiers.js';
import { decode, encode } from '../../storage/codec.js';
import { applyEvent, createProfile, DEFAULT_PROFILE_LIMITS, eventName, fromSnapshot, toSnapshot, type ProfileState } from '../../profiles/profile.js';

let nextSequence = 1;

function event(fields: Partial<CustomerEvent>): CustomerEvent {
  const timestamp = fields.timestamp ?? '2024-01-01T00:00:00.000Z';
  return {
    type: 'track',
    event: 'Viewed',
    messageId: `m${nextSequence}`,
    receivedAt: timestamp,
    userId: 'u1',
    ...fields,
    timestamp,
    timestampMs: Date.parse(timestamp),
  };
}

function apply(profile: ProfileState, fields: Partial<CustomerEvent>, sequence = nextSequence++): boolean {
  const applied = event(fields);
  return applyEvent(profile, { event: applied, position: { shard: 0, sequence }, payload: encode(applied) }, DEFAULT_PROFILE_LIMITS);
}

t.test('profile - counts events and sums numeric properties', async (t) => {
  const profile = createProfile('w', 'user:u1');
  apply(profile, { event: 'Bought', properties: { price: 2.5, quantity: 2, sku: 'a' } });
  apply(profile, { event: 'Bought', properties: { price: 1.5 } });
  apply(profile, { type: 'page', event: undefined, name: 'Home' });

  t.equal(profile.eventCount, 3);
  t.equal(profile.events.Bought.count, 2);
  t.same({ ...profile.events.Bought.sums }, { price: 4, quantity: 2 });
  t.equal(profile.events['page:Home'].count, 1);
});

t.test('profile - traits are last writer wins by event time', async (t) => {
  const profile = createProfile('w', 'user:u1');
  apply(profile, { type: 'identify', event: undefined, timestamp: '2024-03-01T00:00:00.000Z', traits: { plan: 'pro', city: 'Oslo' } });
  apply(profile, { type: 'identify', event: undefined, timestamp: '2024-02-01T00:00:00.000Z', traits: { plan: 'free', name: 'Ann' } });

  t.equal(profile.traits.plan, 'pro', 'an older event does not overwrite a newer value');
  t.equal(profile.traits.name, 'Ann', 'an older event still sets a trait nobody set');
  t.equal(profile.traits.city, 'Oslo');
});

t.test('profile - context traits apply from any event', async (t) => {
  const profile = createProfile('w', 'user:u1');
  apply(profile, { context: { traits: { email: 'ann@example.com' } } });

  t.equal(profile.traits.email, 'ann@example.com');
});

t.test('profile - track traits field does not set traits', async (t) => {
  const profile = createProfile('w', 'user:u1');
  apply(profile, { traits: { plan: 'pro' } });

  t.equal(profile.traits.plan, undefined);
});

t.test('profile - replayed positions are skipped', async (t) => {
  const profile = createProfile('w', 'user:u1');
  t.equal(apply(profile, { event: 'A' }, 10), true);
  t.equal(apply(profile, { event: 'A', messageId: 'other' }, 10), false, 'the same position again');
  t.equal(apply(profile, { event: 'A', messageId: 'older' }, 9), false, 'an earlier position');
  t.equal(profile.eventCount, 1);
});

t.test('profile - recent messageId is applied once', async (t) => {
  const profile = createProfile('w', 'user:u1');
  apply(profile, { messageId: 'same' }, 100);
  t.equal(apply(profile, { messageId: 'same' }, 101), false);
  t.equal(profile.eventCount, 1);
  t.equal(profile.lastApplied.sequence, 101, 'the position still advances');
});

t.test('profile - first and last seen follow event time', async (t) => {
  const profile = createProfile('w', 'user:u1');
  apply(profile, { timestamp: '2024-05-01T00:00:00.000Z' });
  apply(profile, { timestamp: '2024-04-01T00:00:00.000Z' });

  t.equal(new Date(profile.firstSeenMs).toISOString(), '2024-04-01T00:00:00.000Z');
  t.equal(new Date(profile.lastSeenMs).toISOString(), '2024-05-01T00:00:00.000Z');
});

t.test('profile - keeps the last events newest first', async (t) => {
  const profile = createProfile('w', 'user:u1');
  for (let i = 0; i < 15; i++) apply(profile, { event: `E${i}` });

  t.equal(profile.recent.length, DEFAULT_PROFILE_LIMITS.recentEvents);
  t.equal(decode<CustomerEvent>(profile.recent[0]).event, 'E14');
});

t.test('profile - event names past the limit count as other', async (t) => {
  const profile = createProfile('w', 'user:u1');
  const limits = { ...DEFAULT_PROFILE_LIMITS, eventNames: 2 };
  for (const name of ['A', 'B', 'C', 'D']) {
    applyEvent(profile, { event: event({ event: name }), position: { shard: 0, sequence: nextSequence++ }, payload: Buffer.from('') }, limits);
  }

  t.same(Object.keys(profile.events).sort(), ['(other)', 'A', 'B']);
  t.equal(profile.events['(other)'].count, 2);
});

t.test('profile - records new identifiers once', async (t) => {
  const profile = createProfile('w', 'user:u1');
  apply(profile, { anonymousId: 'a1', context: { traits: { email: 'e@x.io' }, device: { id: 'd1' }, externalIds: [{ type: 'crm', id: '7' }] } });
  apply(profile, { anonymousId: 'a1' });

  t.same(profile.identifiers, [
    { type: 'user_id', value: 'u1' },
    { type: 'anonymous_id', value: 'a1' },
    { type: 'email', value: 'e@x.io' },
    { type: 'device_id', value: 'd1' },
    { type: 'external:crm', value: '7' },
  ]);
});

t.test('profile - snapshot round trip drops unpersisted work', async (t) => {
  const profile = createProfile('w', 'user:u1');
  apply(profile, {});
  const restored = fromSnapshot(toSnapshot(profile));

  t.same(restored.unpersisted, []);
  t.same(restored.outbox, []);
  t.equal(restored.eventCount, 1);
  t.throws(() => fromSnapshot({ ...toSnapshot(profile), version: 99 }), RangeError);
});

t.test('identifiers - profile id prefers userId', async (t) => {
  t.equal(profileIdOf({ userId: '1', anonymousId: 'a' }), 'user:1');
  t.equal(profileIdOf({ anonymousId: 'a' }), 'anon:a');
  t.equal(eventName(event({ type: 'identify', event: undefined })), 'identify');
  t.same(identifiersOf(event({ userId: undefined, anonymousId: 'a' })), [{ type: 'anonymous_id', value: 'a' }]);
});
