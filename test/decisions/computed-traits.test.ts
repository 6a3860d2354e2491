import t from 'tap';
import { createComputedTrait, type ComputedTrait } from '../../decisions/computed-traits/computed-trait.js';
import { resolveComputedTrait, type ComputedTraitInput } from '../../decisions/computed-traits/definition.js';
import { exactSum } from '../../decisions/computed-traits/exact-sum.js';
import type { WindowState } from '../../decisions/computed-traits/window.js';
import type { CustomerEvent, JsonObject } from '../../profiles/event.js';
import { decode, encode } from '../../storage/codec.js';
import { DAY_MS, eventAt, HOUR_MS, trackAt } from './events.js';

const T0 = Date.UTC(2024, 0, 1);
const ORDER = 'Order Completed';

function traitOf(input: Omit<ComputedTraitInput, 'name'>, maxFutureSkewMs = DAY_MS): ComputedTrait {
  return createComputedTrait(resolveComputedTrait({ name: 'trait', ...input }, { maxFutureSkewMs }));
}

/** Applies events in the order given and returns the state. */
function stateAfter(trait: ComputedTrait, events: CustomerEvent[]): ReturnType<ComputedTrait['createState']> {
  const state = trait.createState();
  for (const event of events) trait.update(state, event);
  return state;
}

function order(dayOffset: number, properties?: JsonObject): CustomerEvent {
  return trackAt(ORDER, T0 + dayOffset * DAY_MS, properties);
}

t.test('exact sum - rounds once', async (t) => {
  const tenths = Array.from({ length: 10 }, () => 0.1);
  t.equal(exactSum(tenths), 1, 'ten times 0.1 is 1');
  t.equal(exactSum([1e100, 1, -1e100]), 1, 'cancellation keeps the small term');
  t.equal(exactSum([1e-16, 1, 1e16]), 10000000000000002, 'half-even correction across partials');
  t.equal(1e-16 + 1 + 1e16, 1e16, 'where plain addition rounds down');
  t.equal(exactSum([0.1, 0.2, 0.3]), exactSum([0.3, 0.2, 0.1]), 'order does not matter');
  t.equal(exactSum([]), 0, 'empty sum');
  t.ok(Object.is(exactSum([-0]), 0), 'negative zero reads as 0');
  t.equal(exactSum([1, 2, 3, 4], 1, 3), 5, 'range');
});

t.test('lifetime count - filter and time independence', async (t) => {
  const trait = traitOf({ kind: 'count', event: ORDER });
  const state = trait.createState();

  t.ok(trait.update(state, order(0)), 'order counts');
  t.notOk(trait.update(state, trackAt('Product Viewed', T0)), 'other track event');
  t.notOk(trait.update(state, eventAt('page', ORDER, T0)), 'page with the same name');
  t.ok(trait.update(state, order(400)), 'later order');
  t.ok(trait.update(state, order(-400)), 'late order');

  t.equal(trait.value(state, T0), 3);
  t.equal(trait.value(state, T0 + 10_000 * DAY_MS), 3, 'lifetime value ignores nowMs');
  t.equal(trait.nextExpiryMs(state, T0), null, 'never expires');
});

t.test('lifetime sum and average - exact and ignoring non-numbers', async (t) => {
  const events = [
    ...Array.from({ length: 10 }, (_, day) => order(day, { revenue: 0.1 })),
    order(11, { revenue: '12.5' }),
    order(12, { revenue: null }),
    order(13, { revenue: { amount: 3 } }),
    order(14),
    order(15, { revenue: 1e301 }),
  ];
  const sum = traitOf({ kind: 'sum', event: ORDER, property: 'revenue' });
  const average = traitOf({ kind: 'average', event: ORDER, property: 'revenue' });

  t.equal(sum.value(stateAfter(sum, events), T0), 1, 'exact sum of ten 0.1');
  t.equal(average.value(stateAfter(average, events), T0), 0.1, 'average over the 10 numeric values');
  t.equal(sum.value(sum.createState(), T0), 0, 'empty sum');
  t.equal(average.value(average.createState(), T0), null, 'empty average');
  t.notOk(sum.update(sum.createState(), order(0, { revenue: 'x' })), 'update reports an ignored value');
});

t.test('lifetime min and max - late events', async (t) => {
  const events = [order(5, { total: 20 }), order(6, { total: -3.5 }), order(1, { total: 99 }), order(2, { total: 'high' })];
  const min = traitOf({ kind: 'min', event: ORDER, property: 'total' });
  const max = traitOf({ kind: 'max', event: ORDER, property: 'total' });

  t.equal(min.value(stateAfter(min, events), T0), -3.5);
  t.equal(max.value(stateAfter(max, events), T0), 99, 'late event is the max');
  t.equal(max.value(max.createState(), T0), null, 'no values');
});

t.test('lifetime first and last - late events and ties', async (t) => {
  const events = [
    order(5, { sku: 'b' }),
    order(9, { sku: 'c' }),
    order(1, { sku: 'late' }),
    order(1, { sku: 'late tie' }),
    order(9, { sku: 'last tie' }),
    order(3, { sku: ['not', 'a', 'scalar'] }),
  ];
  const first = traitOf({ kind: 'first', event: ORDER, property: 'sku' });
  const last = traitOf({ kind: 'last', event: ORDER, property: 'sku' });
  const firstTime = traitOf({ kind: 'first', event: ORDER });
  const lastTime = traitOf({ kind: 'last', event: ORDER });

  t.equal(first.value(stateAfter(first, events), T0), 'late', 'late event becomes first; on a tie the one applied first wins');
  t.equal(last.value(stateAfter(last, events), T0), 'last tie', 'on a tie the one applied last wins');
  t.equal(firstTime.value(stateAfter(firstTime, events), T0), T0 + DAY_MS, 'without property: time of the first event');
  t.equal(lastTime.value(stateAfter(lastTime, events), T0), T0 + 9 * DAY_MS, 'without property: time of the last event');
  t.equal(first.value(first.createState(), T0), null, 'no events');
});

t.test('lifetime distinct_count - value types and limit', async (t) => {
  const values = [1, '1', true, 'a', 'a', 1, 'b'.repeat(257), 'c'];
  const events = values.map((value, index) => order(index, { v: value }));

  const distinct = traitOf({ kind: 'distinct_count', event: ORDER, property: 'v' });
  t.equal(distinct.value(stateAfter(distinct, events), T0), 5, '1, "1", true, "a", "c"; the 257-character string is ignored');

  const limited = traitOf({ kind: 'distinct_count', event: ORDER, property: 'v', maxDistinctValues: 2 });
  const state = limited.createState();
  const counted = events.map((event) => limited.update(state, event));
  t.equal(limited.value(state, T0), 2, 'stops at maxDistinctValues');
  t.same(counted, [true, true, false, false, false, true, false, false], 'values beyond the limit do not count, kept ones do');
});

t.test('lifetime most_frequent - ranking and limit', async (t) => {
  const trait = traitOf({ kind: 'most_frequent', event: ORDER, property: 'category' });

  const byCount = [order(0, { category: 'jazz' }), order(1, { category: 'rock' }), order(2, { category: 'rock' })];
  t.equal(trait.value(stateAfter(trait, byCount), T0), 'rock', 'most occurrences');

  const byRecency = [order(5, { category: 'jazz' }), order(1, { category: 'rock' }), order(2, { category: 'rock' }), order(6, { category: 'jazz' })];
  t.equal(trait.value(stateAfter(trait, byRecency), T0), 'jazz', 'tie broken by the latest occurrence');

  const byKey = [order(1, { category: 'rock' }), order(1, { category: 'jazz' })];
  t.equal(trait.value(stateAfter(trait, byKey), T0), 'jazz', 'then by the smaller key');

  const late = [order(5, { category: 'rock' }), order(4, { category: 'jazz' }), order(6, { category: 'jazz' }), order(1, { category: 'rock' })];
  t.equal(trait.value(stateAfter(trait, late), T0), 'jazz', 'a late event moves lastMs only forward');

  const numbers = [order(1, { category: 7 }), order(2, { category: 7 }), order(3, { category: '7' })];
  t.equal(trait.value(stateAfter(trait, numbers), T0), 7, 'returns the value with its type');

  const limited = traitOf({ kind: 'most_frequent', event: ORDER, property: 'category', maxDistinctValues: 1 });
  const overflow = [order(1, { category: 'jazz' }), order(2, { category: 'rock' }), order(3, { category: 'rock' })];
  t.equal(limited.value(stateAfter(limited, overflow), T0), 'jazz', 'values beyond maxDistinctValues do not count');
  t.equal(trait.value(trait.createState(), T0), null, 'no events');
});

t.test('window count - sliding out at the boundary', async (t) => {
  const trait = traitOf({ kind: 'count', event: ORDER, window: { days: 7 } });
  const state = stateAfter(trait, [order(0), order(2), order(2), order(5)]);
  const now = T0 + 5 * DAY_MS;

  t.equal(trait.value(state, now), 4, 'all inside');
  t.equal(trait.value(state, T0 + 7 * DAY_MS - 1), 4, '1 ms before the first event leaves');
  t.equal(trait.value(state, T0 + 7 * DAY_MS), 3, 'the first event leaves exactly 7 days after it');
  t.equal(trait.value(state, T0 + 9 * DAY_MS), 1, 'both events of day 2 left');
  t.equal(trait.value(state, T0 + 12 * DAY_MS), 0, 'all left');

  t.equal(trait.nextExpiryMs(state, now), T0 + 7 * DAY_MS, 'next expiry: first event leaves');
  t.equal(trait.nextExpiryMs(state, T0 + 7 * DAY_MS), T0 + 9 * DAY_MS, 'the two day-2 events leave together');
  t.equal(trait.nextExpiryMs(state, T0 + 9 * DAY_MS), T0 + 12 * DAY_MS);
  t.equal(trait.nextExpiryMs(state, T0 + 12 * DAY_MS), null, 'nothing left to expire');
});

t.test('window count - late events', async (t) => {
  const trait = traitOf({ kind: 'count', event: ORDER, window: { days: 7 } }, 0);
  const state = trait.createState();

  t.ok(trait.update(state, order(10)));
  t.ok(trait.update(state, order(4)), 'late event inside the window and its horizon is kept');
  t.equal(trait.value(state, T0 + 10 * DAY_MS), 2, 'late event counts');
  t.equal(trait.nextExpiryMs(state, T0 + 10 * DAY_MS), T0 + 11 * DAY_MS, 'late event leaves first');
  t.notOk(trait.update(state, order(3)), 'event 7 days before the latest is dropped on arrival');
  t.equal(trait.value(state, T0 + 10 * DAY_MS), 2);
  t.same((state as WindowState).times, [T0 + 4 * DAY_MS, T0 + 10 * DAY_MS], 'state keeps only reachable events');
});

t.test('window - future events enter at their time', async (t) => {
  const trait = traitOf({ kind: 'sum', event: ORDER, property: 'revenue', window: { hours: 24 } });
  const future = T0 + 5 * HOUR_MS;
  const state = stateAfter(trait, [trackAt(ORDER, T0, { revenue: 10 }), trackAt(ORDER, future, { revenue: 5 })]);

  t.equal(trait.value(state, T0 + HOUR_MS), 10, 'future event not yet inside');
  t.equal(trait.nextExpiryMs(state, T0 + HOUR_MS), future, 'next change: the future event enters');
  t.equal(trait.value(state, future), 15, 'inside at its own time');
  t.equal(trait.nextExpiryMs(state, future), T0 + 24 * HOUR_MS, 'then the first event leaves');
});

t.test('window - query time before the exact range', async (t) => {
  const trait = traitOf({ kind: 'count', event: ORDER, window: { days: 7 } }, HOUR_MS);
  const state = stateAfter(trait, [order(10)]);

  t.equal(trait.minQueryTimeMs(state), T0 + 10 * DAY_MS - HOUR_MS);
  t.equal(trait.value(state, T0 + 10 * DAY_MS - HOUR_MS), 0, 'the earliest allowed time works');
  t.throws(() => trait.value(state, T0 + 10 * DAY_MS - HOUR_MS - 1), RangeError, 'earlier query time is rejected');
  t.throws(() => trait.nextExpiryMs(state, T0), RangeError, 'nextExpiryMs rejects it too');
  t.throws(() => trait.value(state, Number.NaN), RangeError, 'NaN is rejected');
  t.equal(trait.minQueryTimeMs(trait.createState()), Number.NEGATIVE_INFINITY, 'empty state accepts any time');
});

t.test('window - other events drop expired ones', async (t) => {
  const trait = traitOf({ kind: 'count', event: ORDER, window: { days: 1 } }, 0);
  const state = stateAfter(trait, [order(0), order(0.5)]);
  t.equal((state as WindowState).times.length, 2);

  t.notOk(trait.update(state, trackAt('Product Viewed', T0 + 30 * DAY_MS)), 'other event does not count');
  t.equal((state as WindowState).times.length, 0, 'but it moves latestMs and drops the expired orders');
  t.equal((state as WindowState).latestMs, T0 + 30 * DAY_MS);
});

t.test('window min and max - expiry', async (t) => {
  const events = [order(0, { total: 50 }), order(1, { total: 10 }), order(2, { total: 30 }), order(2, { total: 'n/a' })];
  const max = traitOf({ kind: 'max', event: ORDER, property: 'total', window: { days: 2 } });
  const min = traitOf({ kind: 'min', event: ORDER, property: 'total', window: { days: 2 } });
  const maxState = stateAfter(max, events);
  const minState = stateAfter(min, events);

  t.equal(max.value(maxState, T0 + DAY_MS), 50);
  t.equal(max.value(maxState, T0 + 2 * DAY_MS), 30, 'the max left; 10 and 30 remain');
  t.equal(min.value(minState, T0 + 2 * DAY_MS), 10);
  t.equal(min.value(minState, T0 + 3 * DAY_MS), 30, 'the min left');
  t.equal(max.value(maxState, T0 + 4 * DAY_MS), null, 'empty window');
});

t.test('window first and last - ties and expiry', async (t) => {
  const events = [order(1, { sku: 'a' }), order(1, { sku: 'b' }), order(3, { sku: 'c' }), order(3, { sku: 'd' }), order(2, { sku: 'late' })];
  const first = traitOf({ kind: 'first', event: ORDER, property: 'sku', window: { days: 3 } });
  const last = traitOf({ kind: 'last', event: ORDER, property: 'sku', window: { days: 3 } });
  const lastTime = traitOf({ kind: 'last', event: ORDER, window: { days: 3 } });
  const firstState = stateAfter(first, events);
  const lastState = stateAfter(last, events);

  t.equal(first.value(firstState, T0 + 3 * DAY_MS), 'a', 'equal times: applied first');
  t.equal(first.value(firstState, T0 + 4 * DAY_MS), 'late', 'after day 1 left, the late event is first');
  t.equal(last.value(lastState, T0 + 3 * DAY_MS), 'd', 'equal times: applied last');
  t.equal(last.value(lastState, T0 + 2 * DAY_MS), 'late', 'before day 3 entered');
  t.equal(lastTime.value(stateAfter(lastTime, events), T0 + 3 * DAY_MS), T0 + 3 * DAY_MS, 'without property: event time');
  t.equal(first.value(firstState, T0 + 6 * DAY_MS), null, 'all left');
});

t.test('window distinct_count and most_frequent', async (t) => {
  const events = [
    order(0, { sku: 'a' }),
    order(0, { sku: 'a' }),
    order(1, { sku: 'b' }),
    order(2, { sku: 'b' }),
    order(2, { sku: 'c' }),
    order(2, { sku: 1 }),
  ];
  const distinct = traitOf({ kind: 'distinct_count', event: ORDER, property: 'sku', window: { days: 3 } });
  const frequent = traitOf({ kind: 'most_frequent', event: ORDER, property: 'sku', window: { days: 3 } });
  const distinctState = stateAfter(distinct, events);
  const frequentState = stateAfter(frequent, events);

  t.equal(distinct.value(distinctState, T0 + 2 * DAY_MS), 4, 'a, b, c, 1');
  t.equal(distinct.value(distinctState, T0 + 3 * DAY_MS), 3, 'a left');
  t.equal(frequent.value(frequentState, T0 + 2 * DAY_MS), 'b', 'a and b tie at 2; b occurred later');
  t.equal(frequent.value(frequentState, T0 + DAY_MS), 'a', 'before b was seen twice');
  t.equal(frequent.value(frequentState, T0 + 4 * DAY_MS), 'b', 'b, c and 1 tie with equal times: smallest JSON key, "b"');
});

t.test('window - maxEvents keeps the newest events', async (t) => {
  const trait = traitOf({ kind: 'sum', event: ORDER, property: 'revenue', window: { days: 30 }, maxEvents: 3 });
  const state = trait.createState();
  const counted = [5, 1, 3, 4, 2].map((day) => trait.update(state, order(day, { revenue: day })));

  t.same(counted, [true, true, true, true, false], 'the oldest is dropped first, a late event older than all kept is not kept');
  t.same((state as WindowState).times, [3, 4, 5].map((day) => T0 + day * DAY_MS));
  t.equal(trait.value(state, T0 + 10 * DAY_MS), 12, 'sum of the 3 newest');
});

t.test('filters and property sources', async (t) => {
  const pages = traitOf({ kind: 'count', page: 'Pricing', window: { days: 1 } });
  const pageState = stateAfter(pages, [eventAt('page', 'Pricing', T0), eventAt('page', 'Home', T0), eventAt('screen', 'Pricing', T0)]);
  t.equal(pages.value(pageState, T0), 1, 'page name filter');

  const plan = traitOf({ kind: 'last', type: 'identify', property: 'plan' });
  const identify = eventAt('identify', undefined, T0, { traits: { plan: 'pro' } });
  const track = trackAt('Upgraded', T0 + 1, { plan: 'team' });
  t.equal(plan.value(stateAfter(plan, [identify, track]), T0), 'pro', 'identify reads traits; track is filtered out');

  const any = traitOf({ kind: 'count' });
  t.equal(any.value(stateAfter(any, [identify, track, eventAt('alias', undefined, T0)]), T0), 3, 'no filter counts every event');

  const proto = traitOf({ kind: 'first', event: ORDER, property: 'constructor' });
  t.equal(proto.value(stateAfter(proto, [order(0, {})]), T0), null, 'inherited members are not properties');
});

t.test('states survive a msgpack round trip', async (t) => {
  const inputs: Array<Omit<ComputedTraitInput, 'name'>> = [];
  for (const window of [undefined, { days: 3 }]) {
    inputs.push({ kind: 'count', event: ORDER, window });
    for (const kind of ['sum', 'min', 'max', 'average', 'first', 'last', 'distinct_count', 'most_frequent'] as const) {
      inputs.push({ kind, event: ORDER, property: 'v', window });
    }
  }
  const values = [3, 1.5, 3, -2, 7, 3, 0.1];
  const now = T0 + 6 * DAY_MS;

  for (const input of inputs) {
    const label = `${input.kind} ${input.window === undefined ? 'lifetime' : 'window'}`;
    const trait = traitOf(input);
    const direct = trait.createState();
    let stored = trait.createState();
    for (const [day, value] of values.entries()) {
      const event = order(day, { v: value });
      trait.update(direct, event);
      trait.update(stored, event);
      stored = decode(encode(stored));
    }
    t.same(trait.value(stored, now), trait.value(direct, now), `${label} value`);
    t.same(trait.nextExpiryMs(stored, now), trait.nextExpiryMs(direct, now), `${label} next expiry`);
    t.same(JSON.parse(JSON.stringify(stored)), JSON.parse(JSON.stringify(direct)), `${label} state`);
  }
});
