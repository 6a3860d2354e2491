/**
 * Recency, frequency and monetary value (RFM) summary of a customer's purchases, as
 * `summary_data_from_transaction_data` of the Python `lifetimes` library computes it for
 * Fader and Hardie's BG/NBD and Pareto/NBD models. Time is cut into periods of `periodDays`
 * days. With the periods that hold at least one purchase, up to the period of the
 * observation end:
 * - frequency: the number of repeat purchase periods (such periods minus one);
 * - recency: the last such period minus the first, in periods;
 * - T: the observation end's period minus the first such period, in periods;
 * - monetary_value: the mean purchase total of the repeat periods (every period but the
 *   first), or 0 when frequency is 0.
 * Purchases in periods after the observation end's period are left out, as in `lifetimes`.
 * With 1-day periods, frequency, recency and T equal those of `lifetimes` with freq 'D' and
 * freq_multiplier 1 on UTC dates, and monetary_value equals it up to floating-point rounding.
 *
 * The state keeps the total of every purchase period, sorted by period, so a late purchase
 * is added to its own period and may become the first one. Its memory grows with the number
 * of distinct purchase periods: two numbers per period, about 16 bytes.
 * NOTE: the state has no cap, because a late purchase in any earlier period must find that
 * period. A daily purchaser for 10 years with 1-day periods needs about 58 KB.
 */

import type { CustomerEvent } from '../../profiles/event.js';
import { configError, describe, expectObject, MS_PER_DAY, matchesFilter, readProperty, resolveEventFilter, type EventFilter } from './definition.js';
import { exactSum, MAX_SUMMED_MAGNITUDE } from './exact-sum.js';

/** An RFM summary as configured, before validation. */
export interface RfmInput {
  /** Counts only track events with this `event` name, such as `Order Completed`. `page`, `screen` and `type` work as in computed traits. */
  event?: string;
  page?: string;
  screen?: string;
  type?: string;
  /** Property with the purchase's monetary value, such as `revenue`. */
  property: string;
  /** Period length in days, from 1 to 366. Default 1. */
  periodDays?: number;
  /**
   * A time in ms at which a period starts. Default 0 (1970-01-01T00:00:00Z, a Thursday), so
   * 1-day periods are UTC days. The weeks of `lifetimes` with freq 'W' start on Monday, such
   * as 345,600,000 (1970-01-05).
   */
  periodOriginMs?: number;
}

/** A validated RFM summary definition, from `resolveRfmDefinition`. */
export interface RfmDefinition {
  readonly filter: EventFilter;
  readonly property: string;
  readonly periodDays: number;
  readonly periodOriginMs: number;
}

export interface RfmState {
  /** Indexes of the periods with purchases, ascending (see `periodOf`). */
  periods: number[];
  /** Sum of the purchase values of each period, parallel to `periods`, added in the order events were applied. */
  totals: number[];
}

/** Field names as in `lifetimes`. Periods are counted in whole periods. */
export interface RfmSummary {
  frequency: number;
  recency: number;
  T: number;
  monetary_value: number;
}

const RFM_KEYS = ['event', 'page', 'screen', 'type', 'property', 'periodDays', 'periodOriginMs'];
const MAX_PERIOD_DAYS = 366;

/** Validates an RFM definition. Throws ConfigError naming the path and the rule it breaks. */
export function resolveRfmDefinition(input: unknown, path = 'rfm'): RfmDefinition {
  const definition = expectObject(input, path, RFM_KEYS);
  const filter = resolveEventFilter(definition, path);

  const property = definition.property;
  if (typeof property !== 'string' || property === '') {
    throw configError(`${path}.property`, `must name the property with the purchase value, such as "revenue", got ${describe(property)}`);
  }

  const periodDays = definition.periodDays ?? 1;
  if (typeof periodDays !== 'number' || !Number.isInteger(periodDays) || periodDays < 1 || periodDays > MAX_PERIOD_DAYS) {
    throw configError(`${path}.periodDays`, `must be an integer from 1 to ${MAX_PERIOD_DAYS}, got ${describe(periodDays)}`);
  }

  const periodOriginMs = definition.periodOriginMs ?? 0;
  if (typeof periodOriginMs !== 'number' || !Number.isSafeInteger(periodOriginMs)) {
    throw configError(`${path}.periodOriginMs`, `must be an integer number of ms since the Unix epoch, got ${describe(periodOriginMs)}`);
  }

  return Object.freeze({ filter, property, periodDays, periodOriginMs });
}

/** Returns the index of the period that contains `timeMs`. Period 0 starts at `periodOriginMs`. */
export function periodOf(definition: RfmDefinition, timeMs: number): number {
  return Math.floor((timeMs - definition.periodOriginMs) / (definition.periodDays * MS_PER_DAY));
}

export function createRfmState(): RfmState {
  return { periods: [], totals: [] };
}

/**
 * Applies one event. A matching event is a purchase in the period of its event time, in any
 * order of arrival. Its value counts when the property is a finite number of magnitude at
 * most MAX_SUMMED_MAGNITUDE, and as 0 otherwise, so the purchase still counts for frequency
 * and recency (`lifetimes` likewise skips a missing value in a period's sum). Returns whether
 * the event was a purchase. Like computed traits, it does not deduplicate events.
 */
export function updateRfm(definition: RfmDefinition, state: RfmState, event: CustomerEvent): boolean {
  if (!matchesFilter(definition.filter, event)) return false;

  const raw = readProperty(event, definition.property);
  const value = typeof raw === 'number' && Number.isFinite(raw) && Math.abs(raw) <= MAX_SUMMED_MAGNITUDE ? raw : 0;
  const period = periodOf(definition, event.timestampMs);

  const periods = state.periods;
  const index = lowerBound(periods, period);
  if (periods[index] === period) {
    state.totals[index] += value;
  } else if (index === periods.length) {
    periods.push(period);
    state.totals.push(value);
  } else {
    periods.splice(index, 0, period);
    state.totals.splice(index, 0, value);
  }
  return true;
}

/**
 * Adds the purchases of `from` to `into`, for a merge of two profiles of the same person.
 * frequency, recency and T are then exactly those of one profile with the purchases of
 * both. A period with purchases in both states gets the sum of the two totals, which can
 * differ in the last bits from adding its purchases one by one, as a different order of
 * arrival can. `from` is not changed.
 */
export function mergeRfm(into: RfmState, from: RfmState): void {
  const periods: number[] = [];
  const totals: number[] = [];
  let i = 0;
  let j = 0;
  while (i < into.periods.length || j < from.periods.length) {
    const intoPeriod = i < into.periods.length ? into.periods[i] : Number.POSITIVE_INFINITY;
    const fromPeriod = j < from.periods.length ? from.periods[j] : Number.POSITIVE_INFINITY;
    if (intoPeriod === fromPeriod) {
      periods.push(intoPeriod);
      totals.push(into.totals[i++] + from.totals[j++]);
    } else if (intoPeriod < fromPeriod) {
      periods.push(intoPeriod);
      totals.push(into.totals[i++]);
    } else {
      periods.push(fromPeriod);
      totals.push(from.totals[j++]);
    }
  }
  into.periods = periods;
  into.totals = totals;
}

/**
 * Returns the summary at observation end `nowMs`, or null when no purchase falls in or
 * before its period. monetary_value is the exact sum of the repeat periods' totals, rounded
 * once (see exact-sum.ts), divided by frequency.
 */
export function rfmSummary(definition: RfmDefinition, state: RfmState, nowMs: number): RfmSummary | null {
  if (!Number.isFinite(nowMs)) throw new RangeError(`nowMs must be a finite number of ms, received ${nowMs}`);

  const endPeriod = periodOf(definition, nowMs);
  const end = lowerBound(state.periods, endPeriod + 1);
  if (end === 0) return null;

  const firstPeriod = state.periods[0];
  const frequency = end - 1;
  return {
    frequency,
    recency: state.periods[end - 1] - firstPeriod,
    T: endPeriod - firstPeriod,
    monetary_value: frequency === 0 ? 0 : exactSum(state.totals, 1, end) / frequency,
  };
}

/** Returns the first index whose period is at least `period`. */
function lowerBound(periods: readonly number[], period: number): number {
  let low = 0;
  let high = periods.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (periods[middle] < period) low = middle + 1;
    else high = middle;
  }
  return low;
}
