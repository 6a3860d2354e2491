/**
 * Real purchases (the CDNOW sample in data/cdnow) through an embedded node whose clock is
 * set to the end of the data. For every customer, BG/NBD P(alive) and expected purchases,
 * a 90-day lapsed segment and a VIP rule with a cap are checked against values computed
 * here from the file with a plain group-by.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import type { RawEvent } from '../../profiles/event.js';

const DATA_FILE = new URL('../../data/cdnow/cdnow_every_50th_customer.csv', import.meta.url);
const DAY_MS = 86_400_000;
const WEEK_MS = 7 * DAY_MS;
/** Noon of the last day of the data set: the node's clock, so scores are as of the data's end. */
const NOW_MS = Date.UTC(1998, 5, 30, 12);
/** The published BG/NBD fit on CDNOW, weekly periods. */
const PARAMETERS = { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
const WORKSPACE = 'cdnow';

const DEFINITIONS = `
apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: spend }
spec: { kind: sum, event: Order Completed, property: revenue }
---
apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: orders_90d }
spec: { kind: count, event: Order Completed, window: { days: 90 } }
---
apiVersion: rtcdp/v1
kind: ScoringModel
metadata: { name: alive }
spec:
  model: bgnbd
  purchases: { event: Order Completed, property: revenue, periodDays: 7 }
  parameters: { r: ${PARAMETERS.r}, alpha: ${PARAMETERS.alpha}, a: ${PARAMETERS.a}, b: ${PARAMETERS.b} }
---
apiVersion: rtcdp/v1
kind: ScoringModel
metadata: { name: next_4_weeks }
spec:
  model: bgnbd
  purchases: { event: Order Completed, property: revenue, periodDays: 7 }
  parameters: { r: ${PARAMETERS.r}, alpha: ${PARAMETERS.alpha}, a: ${PARAMETERS.a}, b: ${PARAMETERS.b} }
  output: expected_purchases
  horizonPeriods: 4
---
apiVersion: rtcdp/v1
kind: Segment
metadata: { name: lapsed_90d }
spec: { condition: computed.orders_90d == 0 }
---
apiVersion: rtcdp/v1
kind: DecisionRule
metadata: { name: vip }
spec:
  action: vip_offer
  eligibility: computed.spend > 500.0
  caps: [{ max: 1, window: { days: 30 } }]
`;

interface Purchase {
  customerId: string;
  timeMs: number;
  dollars: number;
}

function readPurchases(): Purchase[] {
  const lines = readFileSync(DATA_FILE, 'utf8').trim().split(/\r?\n/).slice(1);
  return lines.map((line) => {
    const [customerId, date, , dollars] = line.split(',');
    // Noon UTC, so that every purchase is well inside its day.
    return { customerId, timeMs: Date.UTC(Number(date.slice(0, 4)), Number(date.slice(4, 6)) - 1, Number(date.slice(6, 8)), 12), dollars: Number(dollars) };
  });
}

/** P(alive) of BG/NBD from frequency, recency and age in weeks, written out here. */
function probabilityAlive(x: number, tx: number, T: number): number {
  if (x === 0) return 1;
  const { r, alpha, a, b } = PARAMETERS;
  return 1 / (1 + (a / (b + x - 1)) * ((alpha + T) / (alpha + tx)) ** (r + x));
}

/** Expected purchases in the next t weeks (Fader, Hardie and Lee 2005, equation 10), with 2F1 summed here. */
function expectedPurchases(x: number, tx: number, T: number, t: number): number {
  const { r, alpha, a, b } = PARAMETERS;
  const z = t / (alpha + T + t);
  let term = 1;
  let hypergeometric = 1;
  for (let n = 0; n < 1_000_000 && Math.abs(term) > 1e-17 * Math.abs(hypergeometric); n++) {
    term = (term * (r + x + n) * (b + x + n) * z) / ((a + b + x - 1 + n) * (n + 1));
    hypergeometric += term;
  }
  const numerator = ((a + b + x - 1) / (a - 1)) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hypergeometric);
  const denominator = x > 0 ? 1 + (a / (b + x - 1)) * ((alpha + T) / (alpha + tx)) ** (r + x) : 1;
  return numerator / denominator;
}

t.test('cdnow - scores, a lapsed segment and a capped VIP rule for every customer', async (t) => {
  const purchases = readPurchases();
  const node = await RtcdpNode.start({ dataDir: t.testdir(), now: () => NOW_MS, actors: { snapshotIntervalMs: 50 } });
  t.teardown(() => node.drain());
  const outcome = await new DefinitionRegistry(node.definitionStore).apply(WORKSPACE, [{ name: 'cdnow.yaml', content: DEFINITIONS }]);
  t.same(outcome.issues, []);

  const events: RawEvent[] = purchases.map((purchase, i) => ({
    type: 'track',
    event: 'Order Completed',
    userId: purchase.customerId,
    messageId: `cdnow-${i}`,
    timestamp: new Date(purchase.timeMs).toISOString(),
    properties: { revenue: purchase.dollars },
  }));
  for (let i = 0; i < events.length; i += 500) await node.ingest(WORKSPACE, events.slice(i, i + 500));

  // The group-by: weeks since the epoch (which start on Thursdays, as the model's periods do).
  const byCustomer = new Map<string, Purchase[]>();
  for (const purchase of purchases) byCustomer.set(purchase.customerId, [...(byCustomer.get(purchase.customerId) ?? []), purchase]);
  const endWeek = Math.floor(NOW_MS / WEEK_MS);

  let mismatches = 0;
  let lapsed = 0;
  for (const [customerId, own] of byCustomer) {
    const weeks = [...new Set(own.map((purchase) => Math.floor(purchase.timeMs / WEEK_MS)))].sort((a, b) => a - b);
    const [x, tx, T] = [weeks.length - 1, weeks[weeks.length - 1] - weeks[0], endWeek - weeks[0]];
    const expectedAlive = probabilityAlive(x, tx, T);
    const expectedNext = expectedPurchases(x, tx, T, 4);
    const expectedLapsed = own.every((purchase) => purchase.timeMs <= NOW_MS - 90 * DAY_MS);
    const expectedSpend = own.reduce((sum, purchase) => sum + purchase.dollars, 0);

    const profile = await node.getProfile(WORKSPACE, { type: 'user_id', value: customerId });
    const alive = profile.scores.alive;
    const spend = profile.computedValues.spend as number;
    const next = profile.scores.next_4_weeks;
    if (Math.abs(alive - expectedAlive) > 1e-9 || Math.abs(next - expectedNext) > 1e-9 * Math.max(1, expectedNext) || 'lapsed_90d' in profile.segments !== expectedLapsed || Math.abs(spend - expectedSpend) > 1e-6) {
      mismatches += 1;
      if (mismatches <= 5) t.fail(`customer ${customerId}: alive ${alive} vs ${expectedAlive}, next 4 weeks ${next} vs ${expectedNext}, lapsed ${'lapsed_90d' in profile.segments} vs ${expectedLapsed}, spend ${spend} vs ${expectedSpend}`);
    }
    if (expectedLapsed) lapsed += 1;
  }
  t.equal(mismatches, 0, `every one of ${byCustomer.size} customers matches the group-by`);
  t.ok(lapsed > 0 && lapsed < byCustomer.size, `the lapsed segment holds some customers (${lapsed}), not all`);

  const vips = [...byCustomer].filter(([, own]) => own.reduce((sum, purchase) => sum + purchase.dollars, 0) > 500).map(([customerId]) => customerId);
  t.ok(vips.length > 0, `some customers spent over 500 (${vips.length})`);
  for (const customerId of vips.slice(0, 5)) {
    const first = await node.decide(WORKSPACE, { type: 'user_id', value: customerId }, { channel: '', context: {} });
    const second = await node.decide(WORKSPACE, { type: 'user_id', value: customerId }, { channel: '', context: {} });
    t.same([first.chosen?.action, second.candidates[0].outcome], ['vip_offer', 'capped'], `customer ${customerId} gets the VIP offer once`);
  }
});
