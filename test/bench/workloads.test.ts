import t from 'tap';
import { BatchEncoder } from '../../bench/events.js';
import { createRandom } from '../../bench/random.js';
import { ReplayWorkload } from '../../bench/replay-workload.js';
import { SessionWorkload, type SessionWorkloadConfig } from '../../bench/session-workload.js';
import { parseEventMix, resolveWorkload } from '../../bench/workload-options.js';
import type { Workload } from '../../bench/workloads.js';
import { IngestBatchRequest } from '../../proto/gen/rtcdp/v1/ingest.js';

const SESSIONS: SessionWorkloadConfig = {
  kind: 'sessions',
  customers: 50,
  exponent: 0.99,
  sessionEvents: 4,
  eventWeights: { track: 50, page: 30, screen: 10, identify: 5, alias: 5 },
  knownPercent: 30,
  conversionPercent: 50,
  propertyBytes: [0, 9_000],
};

/** Builds one batch of `size` events and decodes it, with the slot the workload gave each event. */
function buildBatch(workload: Workload, size: number) {
  const encoder = new BatchEncoder('test', createRandom(7));
  const slots = new Int32Array(size);
  encoder.begin();
  const count = workload.fill(encoder, slots, size);
  const events = IngestBatchRequest.decode(encoder.finish('b')).events;
  return { count, slots, events };
}

t.test('sessions workload - each slot is the anonymous id every event of it carries', async (t) => {
  const { count, slots, events } = buildBatch(new SessionWorkload(SESSIONS, 1), 2_000);
  const workload = new SessionWorkload(SESSIONS, 1);
  t.equal(count, 2_000);
  t.equal(events.length, 2_000);

  const types = new Set<string>();
  let mismatches = 0;
  events.forEach((event, i) => {
    types.add(event.type);
    // Identity resolution links the userId to the anonymousId that every such event carries
    // (alias as previousId), so the anonymous id finds the customer's one profile.
    const profile = workload.profileOf(slots[i]);
    const anonymousId = event.type === 'alias' ? event.previousId : event.anonymousId;
    if (profile.type !== 'anonymous_id' || profile.value !== anonymousId) mismatches++;
  });
  t.equal(mismatches, 0, 'every event carries the anonymous id of its slot');
  t.same([...types].sort(), ['alias', 'identify', 'page', 'screen', 'track']);
  t.ok(events.some((event) => event.userId === ''), 'some events are anonymous');
  t.ok(
    events.some((event) => JSON.stringify(event.properties ?? {}).length > 9_000),
    'some events carry the large extra property',
  );
});

t.test('sessions workload - an anonymous customer converts with identify', async (t) => {
  const { events } = buildBatch(new SessionWorkload({ ...SESSIONS, knownPercent: 0, conversionPercent: 100 }, 3), 500);
  const firstKnown = new Map<string, number>();
  const lastAnonymous = new Map<string, number>();
  events.forEach((event, i) => {
    // An alias names the customer's anonymousId as its previousId.
    const anonymousId = event.anonymousId !== '' ? event.anonymousId : event.previousId;
    if (event.userId === '') lastAnonymous.set(anonymousId, i);
    else if (!firstKnown.has(anonymousId)) firstKnown.set(anonymousId, i);
  });

  t.ok(firstKnown.size > 0, 'some customers became known');
  for (const [anonymousId, index] of firstKnown) {
    t.equal(events[index].type, 'identify', `${anonymousId}: the first event with a userId is an identify`);
    t.equal(events[index].userId, anonymousId.replace('anon-', 'user-'));
    t.ok((lastAnonymous.get(anonymousId) ?? -1) < index, `${anonymousId}: no anonymous event after the conversion`);
  }
});

t.test('sessions workload - same seed sends the same events', async (t) => {
  const first = buildBatch(new SessionWorkload(SESSIONS, 11), 300);
  const second = buildBatch(new SessionWorkload(SESSIONS, 11), 300);
  t.same(Array.from(second.slots), Array.from(first.slots));
  t.same(
    second.events.map((event) => [event.type, event.userId, event.anonymousId]),
    first.events.map((event) => [event.type, event.userId, event.anonymousId]),
  );
});

t.test('replay workload - splits the file between generators', async (t) => {
  const parts = await Promise.all([0, 1].map((part) => ReplayWorkload.load({ kind: 'replay', file: 'data/segment-sample.ndjson', part, parts: 2 })));
  const whole = await ReplayWorkload.load({ kind: 'replay', file: 'data/segment-sample.ndjson', part: 0, parts: 1 });
  t.equal(parts[0].summary.events + parts[1].summary.events + parts[0].summary.withoutIdentity + parts[1].summary.withoutIdentity, whole.summary.events + whole.summary.withoutIdentity);

  const { events, slots } = buildBatch(whole, whole.summary.events + 1);
  t.equal(events[whole.summary.events].messageId === events[0].messageId, false, 'an event sent again gets a new messageId');
  t.equal(events[whole.summary.events].timestamp, events[0].timestamp, 'the file\'s timestamp is kept');
  events.forEach((event, i) => {
    const profile = whole.profileOf(slots[i]);
    t.equal(event.userId !== '' ? event.userId : event.anonymousId, profile.value, `event ${i} belongs to the profile of its slot`);
  });
});

t.test('workload options - parse and resolve', async (t) => {
  t.same(parseEventMix('track=1,page=2'), { track: 1, page: 2, screen: 0, identify: 0, alias: 0 });
  t.throws(() => parseEventMix('click=1'), /--event-mix must list TYPE=WEIGHT pairs/);
  t.throws(() => parseEventMix('alias=1'), /needs a positive weight for track, page or screen/);
  t.same(resolveWorkload({}), { kind: 'zipf' });
  t.equal(resolveWorkload({ knownPercent: 10 }), '--known-percent apply only with --workload sessions');
  t.equal(resolveWorkload({ replay: 'f.csv', workload: 'zipf' }), "--replay sends the file's events, so it cannot be combined with --workload zipf");
  t.match(resolveWorkload({ workload: 'sessions', knownPercent: 10 }), { kind: 'sessions', knownPercent: 10, sessionEvents: 5 });
});
