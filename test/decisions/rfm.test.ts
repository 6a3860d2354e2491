import t from 'tap';
import { ConfigError } from '../../common/errors.js';
import { createRfmState, periodOf, resolveRfmDefinition, rfmSummary, updateRfm, type RfmDefinition, type RfmState } from '../../decisions/computed-traits/rfm.js';
import type { JsonObject } from '../../profiles/event.js';
import { decode, encode } from '../../storage/codec.js';
import { DAY_MS, HOUR_MS, trackAt } from './events.js';

const T0 = Date.UTC(2024, 0, 1);
const ORDER = 'Order Completed';
const DAILY = resolveRfmDefinition({ event: ORDER, property: 'revenue' });

function purchase(definition: RfmDefinition, state: RfmState, dayOffset: number, revenue?: JsonObject[string]): boolean {
  const properties: JsonObject = revenue === undefined ? {} : { revenue };
  return updateRfm(definition, state, trackAt(ORDER, T0 + dayOffset * DAY_MS, properties));
}

t.test('rfm - definitions of lifetimes', async (t) => {
  const state = createRfmState();
  purchase(DAILY, state, 0, 10);
  purchase(DAILY, state, 0.5, 5);
  purchase(DAILY, state, 3, 20);
  purchase(DAILY, state, 3.2, 2);
  purchase(DAILY, state, 10, 40);
  t.notOk(updateRfm(DAILY, state, trackAt('Product Viewed', T0, { revenue: 1000 })), 'other events are not purchases');

  t.same(rfmSummary(DAILY, state, T0 + 30 * DAY_MS), {
    frequency: 2,
    recency: 10,
    T: 30,
    monetary_value: 31,
  }, 'repeat periods 3 and 10 with totals 22 and 40; the first period is left out');
});

t.test('rfm - one purchase period', async (t) => {
  const state = createRfmState();
  purchase(DAILY, state, 2, 10);
  purchase(DAILY, state, 2.9, 12);

  t.same(rfmSummary(DAILY, state, T0 + 2 * DAY_MS), { frequency: 0, recency: 0, T: 0, monetary_value: 0 }, 'end in the same period');
  t.same(rfmSummary(DAILY, state, T0 + 9 * DAY_MS), { frequency: 0, recency: 0, T: 7, monetary_value: 0 });
  t.equal(rfmSummary(DAILY, state, T0 + DAY_MS), null, 'no purchase up to the end');
  t.equal(rfmSummary(DAILY, createRfmState(), T0), null, 'no purchase at all');
});

t.test('rfm - late purchase becomes the first period', async (t) => {
  const inOrder = createRfmState();
  const late = createRfmState();
  const purchases: Array<[day: number, revenue: number]> = [
    [1, 7],
    [4, 10],
    [6, 30],
    [9, 3],
  ];
  for (const [day, revenue] of purchases) purchase(DAILY, inOrder, day, revenue);
  for (const [day, revenue] of [purchases[2], purchases[1], purchases[3], purchases[0]]) purchase(DAILY, late, day, revenue);

  const end = T0 + 12 * DAY_MS;
  t.same(rfmSummary(DAILY, late, end), rfmSummary(DAILY, inOrder, end), 'same summary in any order');
  t.same(rfmSummary(DAILY, late, end), { frequency: 3, recency: 8, T: 11, monetary_value: 43 / 3 });
});

t.test('rfm - observation end leaves out later periods', async (t) => {
  const state = createRfmState();
  purchase(DAILY, state, 0, 10);
  purchase(DAILY, state, 5, 20);
  purchase(DAILY, state, 8, 60);

  t.same(rfmSummary(DAILY, state, T0 + 5 * DAY_MS + 23 * HOUR_MS), { frequency: 1, recency: 5, T: 5, monetary_value: 20 }, 'end inside period 5');
  t.same(rfmSummary(DAILY, state, T0 + 8 * DAY_MS), { frequency: 2, recency: 8, T: 8, monetary_value: 40 });
});

t.test('rfm - purchases without a numeric value count as 0', async (t) => {
  const state = createRfmState();
  purchase(DAILY, state, 0, 10);
  t.ok(purchase(DAILY, state, 1), 'missing value is still a purchase');
  purchase(DAILY, state, 2, 'twelve');
  purchase(DAILY, state, 3, 9);

  t.same(rfmSummary(DAILY, state, T0 + 3 * DAY_MS), { frequency: 3, recency: 3, T: 3, monetary_value: 3 });
});

t.test('rfm - weekly periods from a Monday origin', async (t) => {
  const mondayOrigin = Date.UTC(1970, 0, 5);
  const weekly = resolveRfmDefinition({ event: ORDER, property: 'revenue', periodDays: 7, periodOriginMs: mondayOrigin });
  const monday = Date.UTC(2024, 0, 1);

  t.equal(periodOf(weekly, monday) - periodOf(weekly, monday - 1), 1, 'a period starts on Monday 00:00 UTC');
  t.equal(periodOf(weekly, monday + 6 * DAY_MS + 23 * HOUR_MS), periodOf(weekly, monday), 'Sunday is in the same week');

  const state = createRfmState();
  updateRfm(weekly, state, trackAt(ORDER, monday, { revenue: 10 }));
  updateRfm(weekly, state, trackAt(ORDER, monday + 6 * DAY_MS, { revenue: 5 }));
  updateRfm(weekly, state, trackAt(ORDER, monday + 8 * DAY_MS, { revenue: 4 }));
  updateRfm(weekly, state, trackAt(ORDER, monday + 13 * DAY_MS, { revenue: 6 }));
  t.same(rfmSummary(weekly, state, monday + 30 * DAY_MS), { frequency: 1, recency: 1, T: 4, monetary_value: 10 });
});

t.test('rfm - state survives a msgpack round trip', async (t) => {
  const state = createRfmState();
  purchase(DAILY, state, 0, 10.5);
  purchase(DAILY, state, 3, 2.25);
  const stored = decode<RfmState>(encode(state));
  purchase(DAILY, stored, 1, 4);
  purchase(DAILY, state, 1, 4);
  t.same(rfmSummary(DAILY, stored, T0 + 5 * DAY_MS), rfmSummary(DAILY, state, T0 + 5 * DAY_MS));
});

t.test('rfm - definition errors', async (t) => {
  const cases: Array<[input: unknown, message: string]> = [
    [{ event: ORDER }, 'rfm.property must name the property with the purchase value, such as "revenue", got undefined'],
    [{ event: ORDER, property: 'revenue', periodDays: 0 }, 'rfm.periodDays must be an integer from 1 to 366, got 0'],
    [{ event: ORDER, property: 'revenue', periodOriginMs: 1.5 }, 'rfm.periodOriginMs must be an integer number of ms since the Unix epoch, got 1.5'],
    [{ event: ORDER, page: 'Checkout', property: 'revenue' }, 'rfm.page cannot be combined with event'],
    [{ event: ORDER, property: 'revenue', window: { days: 7 } }, 'rfm.window is not a setting'],
  ];
  for (const [input, message] of cases) {
    const error = t.throws(() => resolveRfmDefinition(input), ConfigError, `${message}: ConfigError`);
    t.match((error as Error | undefined)?.message, `invalid computed trait: ${message}`, message);
  }
});
