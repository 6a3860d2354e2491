import t from 'tap';
import { ConfigError } from '../../common/errors.js';
import {
  DEFAULT_MAX_DISTINCT_VALUES,
  DEFAULT_MAX_EVENTS,
  matchesFilter,
  resolveComputedTrait,
  resolveComputedTraits,
} from '../../decisions/computed-traits/definition.js';
import { DEFAULT_EVENT_LIMITS } from '../../profiles/validation.js';
import { DAY_MS, eventAt, HOUR_MS } from './events.js';

function messageOf(resolve: () => unknown): string {
  try {
    resolve();
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

const ORDERS = { name: 'orders_30d', kind: 'count', event: 'Order Completed', window: { days: 30 } };

t.test('definition - resolved fields', async (t) => {
  const [orders, average] = resolveComputedTraits([
    ORDERS,
    { name: 'avg_order_value', kind: 'average', event: 'Order Completed', property: 'revenue' },
  ]);

  t.equal(orders.name, 'orders_30d');
  t.equal(orders.kind, 'count');
  t.same(orders.filter, { type: 'track', name: 'Order Completed' });
  t.equal(orders.property, undefined);
  t.equal(orders.windowMs, 30 * DAY_MS);
  t.equal(orders.maxEvents, DEFAULT_MAX_EVENTS);
  t.equal(orders.maxFutureSkewMs, DEFAULT_EVENT_LIMITS.maxFutureSkewMs);

  t.equal(average.property, 'revenue');
  t.equal(average.windowMs, undefined, 'no window means lifetime');
  t.equal(average.maxDistinctValues, DEFAULT_MAX_DISTINCT_VALUES);
});

t.test('definition - frozen result', async (t) => {
  const definitions = resolveComputedTraits([ORDERS]);
  t.ok(Object.isFrozen(definitions), 'list is frozen');
  t.ok(Object.isFrozen(definitions[0]), 'definition is frozen');
  t.ok(Object.isFrozen(definitions[0].filter), 'filter is frozen');
});

t.test('definition - windows in hours and limits', async (t) => {
  const definition = resolveComputedTrait(
    { name: 'views_6h', kind: 'distinct_count', page: 'Product', property: 'sku', window: { hours: 6 }, maxEvents: 50 },
    { maxFutureSkewMs: HOUR_MS },
  );
  t.equal(definition.windowMs, 6 * HOUR_MS);
  t.equal(definition.maxEvents, 50);
  t.equal(definition.maxFutureSkewMs, HOUR_MS);
  t.same(definition.filter, { type: 'page', name: 'Product' });

  const lifetime = resolveComputedTrait({ name: 'top_sku', kind: 'most_frequent', property: 'sku', maxDistinctValues: 20 });
  t.equal(lifetime.maxDistinctValues, 20);
  t.same(lifetime.filter, { type: undefined, name: undefined }, 'no filter matches every event');
});

t.test('definition - filters', async (t) => {
  const track = resolveComputedTrait({ name: 'a', kind: 'count', event: 'Signed Up' }).filter;
  const page = resolveComputedTrait({ name: 'a', kind: 'count', page: 'Pricing' }).filter;
  const screen = resolveComputedTrait({ name: 'a', kind: 'count', screen: 'Home' }).filter;
  const identify = resolveComputedTrait({ name: 'a', kind: 'count', type: 'identify' }).filter;

  t.ok(matchesFilter(track, eventAt('track', 'Signed Up', 0)), 'track by event name');
  t.notOk(matchesFilter(track, eventAt('track', 'Logged In', 0)), 'other track name');
  t.notOk(matchesFilter(track, eventAt('page', 'Signed Up', 0)), 'page with the track name');
  t.ok(matchesFilter(page, eventAt('page', 'Pricing', 0)), 'page by name');
  t.notOk(matchesFilter(page, eventAt('screen', 'Pricing', 0)), 'screen with the page name');
  t.notOk(matchesFilter(page, eventAt('page', undefined, 0)), 'page without a name');
  t.ok(matchesFilter(screen, eventAt('screen', 'Home', 0)), 'screen by name');
  t.ok(matchesFilter(identify, eventAt('identify', undefined, 0)), 'identify by type');
  t.notOk(matchesFilter(identify, eventAt('track', 'Signed Up', 0)), 'track for an identify filter');
});

t.test('definition - errors name the path and the rule', async (t) => {
  const cases: Array<[input: unknown, message: string]> = [
    [{}, 'computedTraits must be a list of computed traits, got an object'],
    [[ORDERS, 'x'], 'computedTraits[1] must be an object, got "x"'],
    [[{ ...ORDERS, name: '30d' }], 'computedTraits[0].name must be 1 to 64 letters, digits or underscores starting with a letter, got "30d"'],
    [[{ ...ORDERS, name: 'a'.repeat(65) }], 'computedTraits[0].name must be 1 to 64 letters'],
    [[ORDERS, { ...ORDERS, kind: 'sum', property: 'revenue' }], 'computedTraits[1].name repeats "orders_30d" of computedTraits[0]'],
    [[{ ...ORDERS, kind: undefined }], 'computedTraits[0].kind is missing. Use one of count, sum, min, max, average, first, last, distinct_count, most_frequent'],
    [[{ ...ORDERS, kind: 'median' }], 'computedTraits[0].kind must be one of count, sum'],
    [[{ ...ORDERS, colour: 'red' }], 'computedTraits[0].colour is not a setting'],
    [[{ ...ORDERS, property: 'revenue' }], 'computedTraits[0].property is not allowed for count'],
    [[{ ...ORDERS, kind: 'sum' }], 'computedTraits[0].property is missing. A sum trait aggregates the values of one property'],
    [[{ ...ORDERS, kind: 'max', property: '' }], 'computedTraits[0].property must be a non-empty string, got ""'],
    [[{ ...ORDERS, event: '' }], 'computedTraits[0].event must be a non-empty string, got ""'],
    [[{ ...ORDERS, page: 'Home' }], 'computedTraits[0].page cannot be combined with event'],
    [[{ ...ORDERS, type: 'track' }], 'computedTraits[0].type cannot be combined with event'],
    [[{ name: 'a', kind: 'count', type: 'purchase' }], 'computedTraits[0].type must be one of track, identify, page, screen, group, alias, got "purchase"'],
    [[{ ...ORDERS, window: 30 }], 'computedTraits[0].window must be an object, got 30'],
    [[{ ...ORDERS, window: {} }], 'computedTraits[0].window must set exactly one of days and hours'],
    [[{ ...ORDERS, window: { days: 1, hours: 2 } }], 'computedTraits[0].window must set exactly one of days and hours'],
    [[{ ...ORDERS, window: { weeks: 2 } }], 'computedTraits[0].window.weeks is not a setting. The settings here are days, hours'],
    [[ORDERS, { ...ORDERS, name: 'b' }, { ...ORDERS, name: 'c', window: { days: 0 } }], 'computedTraits[2].window.days must be an integer from 1 to 3650, got 0'],
    [[{ ...ORDERS, window: { days: 7.5 } }], 'computedTraits[0].window.days must be an integer from 1 to 3650, got 7.5'],
    [[{ ...ORDERS, window: { days: 3651 } }], 'computedTraits[0].window.days must be an integer from 1 to 3650, got 3651'],
    [[{ ...ORDERS, window: { hours: '6' } }], 'computedTraits[0].window.hours must be an integer from 1 to 87600, got "6"'],
    [[{ ...ORDERS, maxEvents: 0 }], 'computedTraits[0].maxEvents must be an integer from 1 to 100000, got 0'],
    [[{ ...ORDERS, window: undefined, maxEvents: 10 }], 'computedTraits[0].maxEvents applies only to a trait with a window'],
    [[{ ...ORDERS, maxDistinctValues: 10 }], 'computedTraits[0].maxDistinctValues applies only to distinct_count and most_frequent without a window'],
    [[{ name: 'a', kind: 'distinct_count', property: 'sku', maxDistinctValues: 100_001 }], 'computedTraits[0].maxDistinctValues must be an integer from 1 to 100000'],
  ];
  for (const [input, message] of cases) {
    const actual = messageOf(() => resolveComputedTraits(input));
    t.match(actual, `invalid computed trait: ${message}`, message);
  }
});

t.test('definition - maxFutureSkewMs option', async (t) => {
  t.match(messageOf(() => resolveComputedTraits([ORDERS], { maxFutureSkewMs: -1 })), 'maxFutureSkewMs must be an integer number of ms of at least 0, got -1');
  t.equal(resolveComputedTraits([ORDERS], { maxFutureSkewMs: 0 })[0].maxFutureSkewMs, 0, '0 is allowed');
});
