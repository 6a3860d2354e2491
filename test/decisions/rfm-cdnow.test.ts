/**
 * RFM summaries of real CDNOW purchases (data/cdnow/README.md): the incremental state,
 * fed one purchase at a time, against a plain group-by over the file, for every customer.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { createRandom } from '../../bench/random.js';
import { createRfmState, resolveRfmDefinition, rfmSummary, updateRfm, type RfmDefinition, type RfmState, type RfmSummary } from '../../decisions/computed-traits/rfm.js';
import type { CustomerEvent } from '../../profiles/event.js';
import { DAY_MS, trackAt } from './events.js';

const DATA_FILE = new URL('../../data/cdnow/cdnow_every_50th_customer.csv', import.meta.url);
/** Last day of the data set, and the observation end of the main comparison. */
const OBSERVATION_END_MS = Date.UTC(1998, 5, 30);
const ORDER = 'Order Completed';

interface Purchase {
  customerId: string;
  timeMs: number;
  dollars: number;
}

function readPurchases(): Purchase[] {
  const lines = readFileSync(DATA_FILE, 'utf8').trim().split(/\r?\n/);
  if (lines[0] !== 'customer_id,date,number_of_cds,dollar_value') throw new Error(`unexpected header in ${DATA_FILE.pathname}: ${lines[0]}`);

  return lines.slice(1).map((line) => {
    const [customerId, date, , dollars] = line.split(',');
    const timeMs = Date.UTC(Number(date.slice(0, 4)), Number(date.slice(4, 6)) - 1, Number(date.slice(6, 8)));
    return { customerId, timeMs, dollars: Number(dollars) };
  });
}

/** Computes the summaries with a group-by over all purchases, as `lifetimes` does with pandas. */
function groupBySummaries(purchases: readonly Purchase[], periodDays: number, endMs: number): Map<string, RfmSummary> {
  const periodMs = periodDays * DAY_MS;
  const endPeriod = Math.floor(endMs / periodMs);

  const totalsByCustomer = new Map<string, Map<number, number>>();
  for (const purchase of purchases) {
    const period = Math.floor(purchase.timeMs / periodMs);
    if (period > endPeriod) continue;
    let totals = totalsByCustomer.get(purchase.customerId);
    if (totals === undefined) {
      totals = new Map();
      totalsByCustomer.set(purchase.customerId, totals);
    }
    totals.set(period, (totals.get(period) ?? 0) + purchase.dollars);
  }

  const summaries = new Map<string, RfmSummary>();
  for (const [customerId, totals] of totalsByCustomer) {
    const periods = [...totals.keys()].sort((a, b) => a - b);
    const first = periods[0];
    const repeatTotals = periods.slice(1).map((period) => totals.get(period) as number);
    const repeatSum = repeatTotals.reduce((sum, total) => sum + total, 0);
    summaries.set(customerId, {
      frequency: periods.length - 1,
      recency: periods[periods.length - 1] - first,
      T: endPeriod - first,
      monetary_value: repeatTotals.length === 0 ? 0 : repeatSum / repeatTotals.length,
    });
  }
  return summaries;
}

function purchaseEvent(purchase: Purchase): CustomerEvent {
  const event = trackAt(ORDER, purchase.timeMs, { revenue: purchase.dollars });
  event.userId = purchase.customerId;
  return event;
}

/** Feeds the purchases one event at a time into one state per customer. */
function incrementalStates(definition: RfmDefinition, purchases: readonly Purchase[]): Map<string, RfmState> {
  const states = new Map<string, RfmState>();
  for (const purchase of purchases) {
    let state = states.get(purchase.customerId);
    if (state === undefined) {
      state = createRfmState();
      states.set(purchase.customerId, state);
    }
    updateRfm(definition, state, purchaseEvent(purchase));
    // A page view of the same customer is not a purchase.
    updateRfm(definition, state, trackAt('Product Viewed', purchase.timeMs, { revenue: 1 }));
  }
  return states;
}

/** Returns a copy of the purchases in a seeded random order, so most customers get late events. */
function shuffled(purchases: readonly Purchase[], seed: number): Purchase[] {
  const random = createRandom(seed);
  const copy = [...purchases];
  for (let index = copy.length - 1; index > 0; index--) {
    const other = Math.floor(random() * (index + 1));
    [copy[index], copy[other]] = [copy[other], copy[index]];
  }
  return copy;
}

const purchases = readPurchases();

t.test('cdnow - data file', async (t) => {
  t.equal(purchases.length, 1352, 'purchase rows');
  t.equal(new Set(purchases.map((purchase) => purchase.customerId)).size, 471, 'customers');
  t.ok(purchases.every((purchase) => Number.isFinite(purchase.dollars) && Number.isFinite(purchase.timeMs)), 'every row parses');
});

t.test('cdnow - summaries worked out by hand', async (t) => {
  const definition = resolveRfmDefinition({ event: ORDER, property: 'revenue' });
  const states = incrementalStates(definition, purchases);
  const summaryOf = (customerId: string) => rfmSummary(definition, states.get(customerId) as RfmState, OBSERVATION_END_MS);

  // 00050 bought once, on 1997-01-01, which is 545 days before 1998-06-30.
  t.same(summaryOf('00050'), { frequency: 0, recency: 0, T: 545, monetary_value: 0 }, 'customer 00050');
  // 00100 bought on 1997-01-01, 1997-12-11 (day 344) and 1998-04-20 (day 474) for 13.77, 12.49 and 28.98.
  const customer100 = summaryOf('00100');
  t.equal(customer100?.frequency, 2, 'customer 00100 frequency');
  t.equal(customer100?.recency, 474, 'customer 00100 recency');
  t.equal(customer100?.T, 545, 'customer 00100 T');
  t.ok(Math.abs((customer100?.monetary_value ?? 0) - 20.735) < 1e-12, 'customer 00100 monetary_value is (12.49 + 28.98) / 2');
  // 00200 bought on 1997-01-01 for 39.93 and on 1997-01-22 for 44.36.
  t.same(summaryOf('00200'), { frequency: 1, recency: 21, T: 545, monetary_value: 44.36 }, 'customer 00200');
});

for (const periodDays of [1, 7]) {
  for (const order of ['file order', 'shuffled'] as const) {
    t.test(`cdnow - every customer, ${periodDays}-day periods, ${order}`, async (t) => {
      const definition = resolveRfmDefinition({ event: ORDER, property: 'revenue', periodDays });
      const fed = order === 'file order' ? purchases : shuffled(purchases, periodDays);
      const states = incrementalStates(definition, fed);

      for (const endMs of [OBSERVATION_END_MS, Date.UTC(1997, 8, 30), Date.UTC(1997, 0, 15)]) {
        const expectedByCustomer = groupBySummaries(purchases, periodDays, endMs);
        const mismatches: string[] = [];
        for (const [customerId, state] of states) {
          const actual = rfmSummary(definition, state, endMs);
          const expected = expectedByCustomer.get(customerId) ?? null;
          if (!summariesMatch(actual, expected)) mismatches.push(`${customerId}: ${JSON.stringify(actual)}, group-by ${JSON.stringify(expected)}`);
        }

        const endDate = new Date(endMs).toISOString().slice(0, 10);
        t.same(mismatches.slice(0, 5), [], `end ${endDate}: no mismatches (first 5 shown)`);
        t.ok(expectedByCustomer.size > 0, `end ${endDate}: ${expectedByCustomer.size} customers have purchases up to the end`);
        t.equal(states.size, 471, `end ${endDate}: every customer checked`);
      }
    });
  }
}

/**
 * Compares two summaries. The counts must be equal. monetary_value may differ in the last
 * bits, because the group-by adds the totals in file order and the state rounds the exact sum.
 */
function summariesMatch(actual: RfmSummary | null, expected: RfmSummary | null): boolean {
  if (actual === null || expected === null) return actual === expected;
  if (actual.frequency !== expected.frequency || actual.recency !== expected.recency || actual.T !== expected.T) return false;
  return Math.abs(actual.monetary_value - expected.monetary_value) <= 1e-9 * Math.max(1, Math.abs(expected.monetary_value));
}
