/**
 * Merging the states that scoring models keep, as when two profiles of one person become
 * one. BG/NBD scores of real CDNOW customers whose purchases are split between two profiles
 * must equal the scores of one profile with all their purchases.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import type { ConditionActivation } from '../../decisions/definitions/segment-condition.js';
import { SegmentConditionCompiler } from '../../decisions/definitions/segment-condition.js';
import { compileModel, createModelState, mergeModelState, scoreOf, updateModelState, type CompiledModel } from '../../decisions/scoring/compiled-model.js';
import { resolveScoringModel } from '../../decisions/scoring/scoring-model.js';
import { trackAt } from './events.js';

const DATA_FILE = new URL('../../data/cdnow/cdnow_every_50th_customer.csv', import.meta.url);
const ORDER = 'Order Completed';
/** BG/NBD parameters fitted on CDNOW with weekly periods, the same as in cdnow-scores.test.ts. */
const PARAMETERS = { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
const SCORE_TIMES_MS = [Date.UTC(1997, 5, 30, 12), Date.UTC(1998, 5, 30, 12)];
/** BG/NBD reads only the RFM state, never the profile's variables. */
const NO_VARIABLES = {} as ConditionActivation;

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
    const timeMs = Date.UTC(Number(date.slice(0, 4)), Number(date.slice(4, 6)) - 1, Number(date.slice(6, 8)), 12);
    return { customerId, timeMs, dollars: Number(dollars) };
  });
}

function compile(name: string, spec: unknown): CompiledModel {
  return compileModel(name, 1, `${name}-hash`, resolveScoringModel(spec), new SegmentConditionCompiler([]));
}

function modelStateOf(model: CompiledModel, purchases: readonly Purchase[]): unknown {
  const state = createModelState(model);
  for (const purchase of purchases) {
    updateModelState(model, state, trackAt(ORDER, purchase.timeMs, { revenue: purchase.dollars }));
    updateModelState(model, state, trackAt('Product Viewed', purchase.timeMs, { revenue: 1 }));
  }
  return state;
}

t.test('scoring merge - BG/NBD scores of CDNOW customers split in two', async (t) => {
  const purchases = { event: ORDER, property: 'revenue', periodDays: 7 };
  const models = [
    compile('alive', { model: 'bgnbd', purchases, parameters: PARAMETERS }),
    compile('next_4_weeks', { model: 'bgnbd', purchases, parameters: PARAMETERS, output: 'expected_purchases', horizonPeriods: 4 }),
  ];

  const byCustomer = new Map<string, Purchase[]>();
  for (const purchase of readPurchases()) byCustomer.set(purchase.customerId, [...(byCustomer.get(purchase.customerId) ?? []), purchase]);
  const customers = [...byCustomer.entries()].filter(([, list]) => list.length >= 3);
  t.ok(customers.length >= 10, `${customers.length} customers with at least 3 purchases`);

  for (const model of models) {
    const differences: string[] = [];
    let scored = 0;
    for (const [customerId, list] of customers) {
      const into = modelStateOf(model, list.filter((_, index) => index % 2 === 0));
      const from = modelStateOf(model, list.filter((_, index) => index % 2 === 1));
      const fromBefore = JSON.stringify(from);
      mergeModelState(model, into, from);
      if (JSON.stringify(from) !== fromBefore) differences.push(`customer ${customerId}: merge changed from`);

      const all = modelStateOf(model, list);
      for (const nowMs of SCORE_TIMES_MS) {
        const merged = scoreOf(model, into, NO_VARIABLES, nowMs);
        const expected = scoreOf(model, all, NO_VARIABLES, nowMs);
        // BG/NBD reads frequency, recency and T, which a merge keeps exact.
        if (!Object.is(merged, expected)) differences.push(`customer ${customerId} at ${new Date(nowMs).toISOString()}: ${merged}, all purchases ${expected}`);
        if (expected !== undefined) scored += 1;
      }
    }
    t.same(differences.slice(0, 5), [], `${model.name}: no differences (first 5 shown)`);
    t.ok(scored > customers.length, `${model.name}: ${scored} scores compared`);
  }
});

t.test('scoring merge - logistic models keep no state', async (t) => {
  const model = compile('engagement', { model: 'logistic', intercept: -3, features: [{ expression: 'double(eventCount)', weight: 0.5 }] });
  const into = createModelState(model);
  mergeModelState(model, into, createModelState(model));
  t.equal(into, null, 'the state stays null');
});
