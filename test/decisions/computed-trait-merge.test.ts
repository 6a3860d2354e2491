/**
 * Merging computed trait and RFM states, as when two profiles of one person become one.
 * The randomized test splits one event list between two states, merges them, and compares
 * the result with states that applied every event and with a naive aggregate over the
 * events. Fixed cases cover ties, exact sums and the bounds of each state.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { createRandom } from '../../bench/random.js';
import { createComputedTrait, type ComputedTrait, type ComputedTraitState } from '../../decisions/computed-traits/computed-trait.js';
import {
  COMPUTED_TRAIT_KINDS,
  resolveComputedTrait,
  type ComputedTraitDefinition,
  type ComputedTraitInput,
  type ComputedTraitKind,
} from '../../decisions/computed-traits/definition.js';
import { exactSum } from '../../decisions/computed-traits/exact-sum.js';
import type { LifetimeFrequencyState } from '../../decisions/computed-traits/lifetime.js';
import { createRfmState, mergeRfm, resolveRfmDefinition, rfmSummary, updateRfm, type RfmDefinition, type RfmState } from '../../decisions/computed-traits/rfm.js';
import { readTraitValue, valueKey, type TraitScalar, type TraitValue } from '../../decisions/computed-traits/values.js';
import type { WindowState } from '../../decisions/computed-traits/window.js';
import type { CustomerEvent, JsonValue } from '../../profiles/event.js';
import { decode, encode } from '../../storage/codec.js';
import { DAY_MS, HOUR_MS, trackAt } from './events.js';

const T0 = Date.UTC(2024, 0, 1);
const ORDER = 'Order Completed';
const CASES_PER_KIND = 120;
const MAX_EVENTS_PER_CASE = 50;
const EVENTS_AFTER_MERGE = 6;
const QUERIES_PER_CASE = 8;

const NUMBERS = [0.1, 0.2, 0.3, 19.99, 5, -3.25, 1e6 + 0.01, 123456.789, -0.07, 2 ** -20, 1e15, 1e16, -1e16, 42, -0];
const SCALARS: JsonValue[] = ['a', 'b', 'c', 'd', 1, '1', true, 2.5, 0];
const INVALID: JsonValue[] = [null, '12.5', { amount: 1 }, [1], 'x'.repeat(300)];

type Random = () => number;
type State = ComputedTraitState;

/** An event that counts for the trait, with its position in event-time order. */
interface Counted {
  timeMs: number;
  rank: number;
  value: TraitScalar | undefined;
}

function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)];
}

function randomInput(random: Random, kind: ComputedTraitKind, windowed: boolean): ComputedTraitInput {
  const input: ComputedTraitInput = { name: 'trait', kind, event: ORDER };
  if (kind !== 'count' && !((kind === 'first' || kind === 'last') && random() < 0.3)) input.property = 'v';

  if (windowed) {
    input.window = random() < 0.5 ? { hours: pick(random, [1, 6, 24]) } : { days: pick(random, [1, 3, 7]) };
    if (random() < 0.4) input.maxEvents = pick(random, [1, 3, 8]);
  } else if ((kind === 'distinct_count' || kind === 'most_frequent') && random() < 0.5) {
    input.maxDistinctValues = pick(random, [1, 2, 3]);
  }
  return input;
}

/** Draws event times that mostly ascend, with late events, ties and events ahead of the latest. */
function randomTimeMs(random: Random, latestMs: number): number {
  const draw = random();
  if (draw < 0.15) return latestMs;
  if (draw < 0.4) return latestMs - Math.floor(random() * 5 * DAY_MS);
  if (draw < 0.5) return latestMs - Math.floor(random() * 4) * HOUR_MS;
  return latestMs + Math.floor(random() * 12 * HOUR_MS);
}

function randomEvent(random: Random, timeMs: number, numeric: boolean): CustomerEvent {
  const draw = random();
  let value: JsonValue | undefined;
  if (draw < 0.1) value = pick(random, INVALID);
  else if (draw < 0.9) value = numeric ? pick(random, NUMBERS) : pick(random, SCALARS);
  const name = random() < 0.8 ? ORDER : 'Product Viewed';
  return trackAt(name, timeMs, value === undefined ? {} : { v: value });
}

/** Draws events in arrival order: mostly ascending times, with late events. */
function randomEvents(random: Random, count: number, startMs: number, numeric: boolean): CustomerEvent[] {
  const events: CustomerEvent[] = [];
  let latestMs = startMs;
  for (let index = 0; index < count; index++) {
    const timeMs = randomTimeMs(random, latestMs);
    latestMs = Math.max(latestMs, timeMs);
    events.push(randomEvent(random, timeMs, numeric));
  }
  return events;
}

function isNumeric(definition: ComputedTraitDefinition): boolean {
  return ['sum', 'average', 'min', 'max'].includes(definition.kind);
}

function applyAll(trait: ComputedTrait, events: readonly CustomerEvent[], state = trait.createState()): State {
  for (const event of events) trait.update(state, event);
  return state;
}

/**
 * Sorts events by event time. The sort is stable, so on equal times the events keep the
 * order of the list: those of `into` before those of `from`, each in its arrival order.
 */
function byEventTime(events: readonly CustomerEvent[]): CustomerEvent[] {
  return [...events].sort((a, b) => a.timestampMs - b.timestampMs);
}

function countedEvents(definition: ComputedTraitDefinition, sorted: readonly CustomerEvent[]): Counted[] {
  const counted: Counted[] = [];
  sorted.forEach((event, rank) => {
    if (event.type !== 'track' || event.event !== ORDER) return;
    const value = definition.property === undefined ? undefined : readTraitValue(definition, event);
    if (definition.property === undefined || value !== undefined) counted.push({ timeMs: event.timestampMs, rank, value });
  });
  return counted;
}

/** Returns the latest event time, counted or not, or -Infinity without events. */
function latestTimeOf(events: readonly CustomerEvent[]): number {
  return events.reduce((latest, event) => Math.max(latest, event.timestampMs), Number.NEGATIVE_INFINITY);
}

/** Returns the counted events a windowed state keeps: after the horizon, then the newest `maxEvents`. */
function keptByWindow(definition: ComputedTraitDefinition, counted: readonly Counted[], latestMs: number): Counted[] {
  const horizonMs = latestMs - (definition.windowMs as number) - definition.maxFutureSkewMs;
  const recent = counted.filter((event) => event.timeMs > horizonMs);
  return recent.slice(Math.max(0, recent.length - definition.maxEvents));
}

/** Most occurrences, then the latest occurrence, then the smallest JSON text. */
function naiveMostFrequent(events: readonly Counted[]): TraitValue {
  const tallies = new Map<string, { count: number; lastMs: number }>();
  for (const event of events) {
    const key = valueKey(event.value as TraitScalar);
    const tally = tallies.get(key) ?? { count: 0, lastMs: event.timeMs };
    tally.count += 1;
    tally.lastMs = Math.max(tally.lastMs, event.timeMs);
    tallies.set(key, tally);
  }
  const ranked = [...tallies.entries()].sort(([aKey, a], [bKey, b]) => b.count - a.count || b.lastMs - a.lastMs || (aKey < bKey ? -1 : 1));
  return ranked.length === 0 ? null : (JSON.parse(ranked[0][0]) as TraitScalar);
}

/** Aggregates events sorted by event time and rank, without any bound on distinct values. */
function naiveAggregate(definition: ComputedTraitDefinition, events: readonly Counted[]): TraitValue {
  const values = events.map((event) => event.value as TraitScalar);
  const endpoint = (event: Counted | undefined): TraitValue => {
    if (event === undefined) return null;
    return definition.property === undefined ? event.timeMs : (event.value as TraitScalar);
  };
  switch (definition.kind) {
    case 'count':
      return events.length;
    case 'sum':
      return exactSum(values as number[]);
    case 'average':
      return events.length === 0 ? null : exactSum(values as number[]) / events.length;
    case 'min':
      return events.length === 0 ? null : Math.min(...(values as number[]));
    case 'max':
      return events.length === 0 ? null : Math.max(...(values as number[]));
    case 'first':
      return endpoint(events[0]);
    case 'last':
      return endpoint(events[events.length - 1]);
    case 'distinct_count': {
      const distinct = new Set(values.map(valueKey)).size;
      return definition.windowMs === undefined ? Math.min(distinct, definition.maxDistinctValues) : distinct;
    }
    case 'most_frequent':
      return naiveMostFrequent(events);
  }
}

function naiveValue(definition: ComputedTraitDefinition, counted: readonly Counted[], latestMs: number, nowMs: number): TraitValue {
  if (definition.windowMs === undefined) return naiveAggregate(definition, counted);
  const windowMs = definition.windowMs;
  const inside = keptByWindow(definition, counted, latestMs).filter((event) => event.timeMs > nowMs - windowMs && event.timeMs <= nowMs);
  return naiveAggregate(definition, inside);
}

function naiveNextExpiry(definition: ComputedTraitDefinition, counted: readonly Counted[], latestMs: number, nowMs: number): number | null {
  if (definition.windowMs === undefined) return null;
  let next = Number.POSITIVE_INFINITY;
  for (const event of keptByWindow(definition, counted, latestMs)) {
    if (event.timeMs <= nowMs - definition.windowMs) continue;
    next = Math.min(next, event.timeMs > nowMs ? event.timeMs : event.timeMs + definition.windowMs);
  }
  return next === Number.POSITIVE_INFINITY ? null : next;
}

/** Draws query times from `minMs` on, including the instants events enter and leave the window. */
function queryTimes(random: Random, definition: ComputedTraitDefinition, counted: readonly Counted[], minMs: number): number[] {
  const windowMs = definition.windowMs ?? 0;
  const times = [minMs];
  for (let query = 1; query < QUERIES_PER_CASE; query++) {
    let nowMs = minMs + Math.floor(random() * (2 * DAY_MS + 2 * windowMs));
    if (counted.length > 0 && random() < 0.5) nowMs = pick(random, counted).timeMs + pick(random, [0, windowMs, windowMs - 1]);
    if (nowMs >= minMs) times.push(nowMs);
  }
  return times;
}

/** Returns whether the number of distinct values of all counted events exceeds a lifetime trait's bound. */
function exceedsDistinctBound(definition: ComputedTraitDefinition, counted: readonly Counted[]): boolean {
  if (definition.windowMs !== undefined || definition.property === undefined) return false;
  return new Set(counted.map((event) => valueKey(event.value as TraitScalar))).size > definition.maxDistinctValues;
}

/**
 * Returns whether mergeTallies promises the same state as applying the events of `into`
 * and then those of `from`: the kept values fit the bound, or `into` is full and `from` is not.
 */
function mergeIsExact(definition: ComputedTraitDefinition, into: State, from: State): boolean {
  if (definition.kind !== 'most_frequent' || definition.windowMs !== undefined) return true;
  const intoTallies = (into as LifetimeFrequencyState).tallies;
  const fromTallies = (from as LifetimeFrequencyState).tallies;
  const union = new Set([...Object.keys(intoTallies), ...Object.keys(fromTallies)]);
  const max = definition.maxDistinctValues;
  if (union.size <= max) return true;
  return Object.keys(intoTallies).length === max && Object.keys(fromTallies).length < max;
}

interface Comparison {
  label: string;
  trait: ComputedTrait;
  merged: State;
  /** State that applied the events of `into`, then those of `from`, each in arrival order. */
  sequential: State;
  /** State that applied all events sorted by event time. */
  timeOrdered: State;
  /** Whether the merge must equal `sequential`. */
  exact: boolean;
  /** Whether the order of application cannot change the value, so `timeOrdered` and the naive aggregate apply too. */
  orderFree: boolean;
  counted: readonly Counted[];
  latestMs: number;
}

/** Compares values, expiries and minQueryTimeMs, and returns a description of each difference. */
function compareStates(random: Random, comparison: Comparison): string[] {
  const { label, trait, merged, sequential, timeOrdered, exact, orderFree, counted, latestMs } = comparison;
  const definition = trait.definition;
  const differences: string[] = [];
  const minMs = trait.minQueryTimeMs(merged);
  if (minMs !== trait.minQueryTimeMs(timeOrdered)) differences.push(`${label}: minQueryTimeMs ${minMs}, all events ${trait.minQueryTimeMs(timeOrdered)}`);

  const start = Number.isFinite(minMs) ? minMs : Math.max(latestMs, T0) - 2 * DAY_MS;
  for (const nowMs of queryTimes(random, definition, counted, start)) {
    const value = trait.value(merged, nowMs);
    const expiry = trait.nextExpiryMs(merged, nowMs);
    const at = `${label} at ${nowMs}`;

    if (exact && !Object.is(value, trait.value(sequential, nowMs))) differences.push(`${at}: value ${value}, into then from ${trait.value(sequential, nowMs)}`);
    if (expiry !== trait.nextExpiryMs(sequential, nowMs)) differences.push(`${at}: nextExpiryMs ${expiry}, into then from ${trait.nextExpiryMs(sequential, nowMs)}`);
    if (orderFree && !Object.is(value, trait.value(timeOrdered, nowMs))) differences.push(`${at}: value ${value}, time order ${trait.value(timeOrdered, nowMs)}`);
    if (expiry !== trait.nextExpiryMs(timeOrdered, nowMs)) differences.push(`${at}: nextExpiryMs ${expiry}, time order ${trait.nextExpiryMs(timeOrdered, nowMs)}`);
    if (orderFree && !Object.is(value, naiveValue(definition, counted, latestMs, nowMs))) differences.push(`${at}: value ${value}, naive ${naiveValue(definition, counted, latestMs, nowMs)}`);
    if (expiry !== naiveNextExpiry(definition, counted, latestMs, nowMs)) differences.push(`${at}: nextExpiryMs ${expiry}, naive ${naiveNextExpiry(definition, counted, latestMs, nowMs)}`);
  }
  return differences;
}

/** Checks what mergeTallies keeps when it is not exact: `into`'s values, counts within the true ones. */
function checkBoundedTallies(label: string, definition: ComputedTraitDefinition, intoBefore: LifetimeFrequencyState, merged: LifetimeFrequencyState, counted: readonly Counted[]): string[] {
  const differences: string[] = [];
  if (merged.size > definition.maxDistinctValues) differences.push(`${label}: ${merged.size} values kept, bound ${definition.maxDistinctValues}`);
  for (const key of Object.keys(intoBefore.tallies)) {
    if (merged.tallies[key] === undefined) differences.push(`${label}: value ${key} of into was dropped`);
  }
  for (const [key, tally] of Object.entries(merged.tallies)) {
    const occurrences = counted.filter((event) => valueKey(event.value as TraitScalar) === key);
    if (tally.count > occurrences.length) differences.push(`${label}: ${key} counted ${tally.count} times, occurs ${occurrences.length} times`);
    if (tally.count < (intoBefore.tallies[key]?.count ?? 0)) differences.push(`${label}: ${key} counted fewer times than in into`);
  }
  return differences;
}

t.test('merge - random splits equal one state with all events', async (t) => {
  const failures: string[] = [];
  const stats = { cases: 0, bothNonEmpty: 0, bounded: 0, inexact: 0 };

  for (const kind of COMPUTED_TRAIT_KINDS) {
    for (const windowed of [false, true]) {
      for (let seed = 1; seed <= CASES_PER_KIND; seed++) {
        const random = createRandom(seed * 1000 + COMPUTED_TRAIT_KINDS.indexOf(kind) * 2 + Number(windowed));
        const input = randomInput(random, kind, windowed);
        const maxFutureSkewMs = pick(random, [0, HOUR_MS, DAY_MS]);
        const definition = resolveComputedTrait(input, { maxFutureSkewMs });
        const trait = createComputedTrait(definition);
        const numeric = isNumeric(definition);
        const label = `${kind} seed ${seed} ${JSON.stringify(input)} skew ${maxFutureSkewMs}`;

        // Split one history between two profiles. Each applies its share in arrival order.
        const events = randomEvents(random, Math.floor(random() * MAX_EVENTS_PER_CASE), T0, numeric);
        const shareOfInto = pick(random, [0, 0.1, 0.5, 0.5, 0.5, 0.9, 1]);
        const intoEvents = events.filter(() => random() < shareOfInto);
        const fromEvents = events.filter((event) => !intoEvents.includes(event));

        let into = applyAll(trait, intoEvents);
        let from = applyAll(trait, fromEvents);
        // The other profile's state usually arrives from a snapshot.
        if (random() < 0.5) from = decode(encode(from));
        if (random() < 0.2) into = decode(encode(into));
        const intoBefore = structuredClone(into);
        const fromBefore = encode(from);
        const exact = mergeIsExact(definition, into, from);

        trait.merge(into, from);
        if (!encode(from).equals(fromBefore)) failures.push(`${label}: merge changed from`);

        const sequential = applyAll(trait, fromEvents, applyAll(trait, intoEvents));
        const allByTime = byEventTime([...intoEvents, ...fromEvents]);
        const timeOrdered = applyAll(trait, allByTime);
        const counted = countedEvents(definition, allByTime);
        const latestMs = latestTimeOf(events);
        const bounded = exceedsDistinctBound(definition, counted);
        const orderFree = !bounded || definition.kind === 'distinct_count';
        const comparison = { label, trait, merged: into, sequential, timeOrdered, exact, orderFree, counted, latestMs };
        failures.push(...compareStates(random, comparison));
        if (!exact) failures.push(...checkBoundedTallies(label, definition, intoBefore as LifetimeFrequencyState, into as LifetimeFrequencyState, counted));

        // Later events must find the merged state as they would find the others.
        const later = randomEvents(random, EVENTS_AFTER_MERGE, Math.max(latestMs, T0), numeric);
        for (const state of [into, sequential, timeOrdered]) applyAll(trait, later, state);
        if (!encode(from).equals(fromBefore)) failures.push(`${label}: an update of the merged state changed from`);
        const allLater = byEventTime([...intoEvents, ...fromEvents, ...later]);
        const laterLatestMs = Math.max(latestMs, latestTimeOf(later));
        const laterCounted = countedEvents(definition, allLater);
        const laterOrderFree = !exceedsDistinctBound(definition, laterCounted) || definition.kind === 'distinct_count';
        const laterComparison = { ...comparison, label: `${label} after ${EVENTS_AFTER_MERGE} more events`, orderFree: laterOrderFree, counted: laterCounted, latestMs: laterLatestMs };
        if (exact) failures.push(...compareStates(random, laterComparison));

        stats.cases += 1;
        if (intoEvents.length > 0 && fromEvents.length > 0) stats.bothNonEmpty += 1;
        if (bounded) stats.bounded += 1;
        if (!exact) stats.inexact += 1;
      }
    }
  }

  t.same(failures.slice(0, 5), [], 'no differences (first 5 shown)');
  t.equal(stats.cases, COMPUTED_TRAIT_KINDS.length * 2 * CASES_PER_KIND, 'every case ran');
  t.ok(stats.bothNonEmpty > stats.cases / 2, `${stats.bothNonEmpty} cases split events between both profiles`);
  t.ok(stats.bounded > 20, `${stats.bounded} cases exceeded maxDistinctValues`);
  t.ok(stats.inexact > 5, `${stats.inexact} most_frequent cases were checked against the bound rules only`);
});

function traitOf(input: Omit<ComputedTraitInput, 'name'>, maxFutureSkewMs = DAY_MS): ComputedTrait {
  return createComputedTrait(resolveComputedTrait({ name: 'trait', ...input }, { maxFutureSkewMs }));
}

function order(timeMs: number, value?: JsonValue): CustomerEvent {
  return trackAt(ORDER, timeMs, value === undefined ? {} : { v: value });
}

function mergedValue(trait: ComputedTrait, intoEvents: CustomerEvent[], fromEvents: CustomerEvent[], nowMs: number): TraitValue {
  const into = applyAll(trait, intoEvents);
  trait.merge(into, applyAll(trait, fromEvents));
  return trait.value(into, nowMs);
}

t.test('merge - first and last on equal event times', async (t) => {
  for (const window of [undefined, { days: 1 }]) {
    const first = traitOf({ kind: 'first', event: ORDER, property: 'v', window });
    const last = traitOf({ kind: 'last', event: ORDER, property: 'v', window });
    const into = [order(T0, 'into')];
    const from = [order(T0, 'from')];
    const name = window === undefined ? 'lifetime' : 'window';
    t.equal(mergedValue(first, into, from, T0), 'into', `${name} first keeps the value of into`);
    t.equal(mergedValue(last, into, from, T0), 'from', `${name} last takes the value of from`);
    t.equal(mergedValue(first, [order(T0 + 1, 'into')], from, T0 + 1), 'from', `${name} first takes an earlier event of from`);
    t.equal(mergedValue(last, into, [order(T0 - 1, 'from')], T0), 'into', `${name} last keeps a later event of into`);
  }
});

t.test('merge - sums stay exact', async (t) => {
  const sum = traitOf({ kind: 'sum', event: ORDER, property: 'v' });
  const into = [order(T0, 1e16), order(T0, 1)];
  const from = [order(T0, -1e16), order(T0, 1)];
  t.equal(mergedValue(sum, into, from, T0), 2, 'exact sum of 1e16 + 1 - 1e16 + 1');
  t.equal(mergedValue(sum, [order(T0, 0.1)], [order(T0, 0.2)], T0), 0.30000000000000004, '0.1 + 0.2 rounded once');

  const average = traitOf({ kind: 'average', event: ORDER, property: 'v' });
  t.equal(mergedValue(average, into, from, T0), 0.5, 'average of the same four values');
  t.equal(mergedValue(average, [], [], T0), null, 'average of two empty states');

  const windowed = traitOf({ kind: 'sum', event: ORDER, property: 'v', window: { days: 1 } });
  t.equal(mergedValue(windowed, into, from, T0), 2, 'windowed sum of the same values');
});

t.test('merge - windows keep the newest maxEvents of both', async (t) => {
  const count = traitOf({ kind: 'count', event: ORDER, window: { days: 30 }, maxEvents: 3 });
  const into = applyAll(count, [1, 5, 9].map((day) => order(T0 + day * DAY_MS)));
  const from = applyAll(count, [2, 6, 10].map((day) => order(T0 + day * DAY_MS)));
  count.merge(into, from);
  t.same((into as WindowState).times, [6, 9, 10].map((day) => T0 + day * DAY_MS), 'keeps days 6, 9 and 10');
  t.equal(count.value(into, T0 + 10 * DAY_MS), 3, 'counts the kept events');
  t.same((from as WindowState).times, [2, 6, 10].map((day) => T0 + day * DAY_MS), 'from keeps its own events');

  // On equal times the events of from rank as applied later, so they are the newest.
  const last = traitOf({ kind: 'last', event: ORDER, property: 'v', window: { days: 30 }, maxEvents: 2 });
  const tied = applyAll(last, [order(T0, 'a'), order(T0, 'b')]);
  last.merge(tied, applyAll(last, [order(T0, 'c')]));
  t.same((tied as WindowState).values, ['b', 'c'], 'on a tie at the bound, from\'s event is kept and into\'s oldest one dropped');
});

t.test('merge - window horizon of the later profile', async (t) => {
  const sum = traitOf({ kind: 'sum', event: ORDER, property: 'v', window: { days: 1 } }, HOUR_MS);
  const into = applyAll(sum, [order(T0, 5), order(T0 + HOUR_MS, 7)]);
  // from has seen an event 10 days later, which moves the horizon past every event of into.
  const from = applyAll(sum, [trackAt('Product Viewed', T0 + 10 * DAY_MS), order(T0 + 9 * DAY_MS + 12 * HOUR_MS, 3)]);
  sum.merge(into, from);
  t.equal(sum.minQueryTimeMs(into), T0 + 10 * DAY_MS - HOUR_MS, 'minQueryTimeMs follows the latest event of from');
  t.same((into as WindowState).times, [T0 + 9 * DAY_MS + 12 * HOUR_MS], 'events at or before the horizon are dropped');
  t.equal(sum.value(into, T0 + 10 * DAY_MS), 3, 'value at the latest event time');
  t.equal(sum.nextExpiryMs(into, T0 + 10 * DAY_MS), T0 + 10 * DAY_MS + 12 * HOUR_MS, 'the kept event leaves one day after its time');

  const empty = sum.createState();
  sum.merge(empty, from);
  t.equal(sum.value(empty, T0 + 10 * DAY_MS), 3, 'an empty into takes the events of from');
  sum.update(empty, order(T0 + 10 * DAY_MS, 1));
  t.equal(sum.value(from, T0 + 10 * DAY_MS), 3, 'an update after the merge leaves from as it was');
});

t.test('merge - distinct_count at maxDistinctValues', async (t) => {
  const distinct = traitOf({ kind: 'distinct_count', event: ORDER, property: 'v', maxDistinctValues: 3 });
  t.equal(mergedValue(distinct, [order(T0, 'a'), order(T0, 'b')], [order(T0, 'b'), order(T0, 'c')], T0), 3, 'union of a, b and c');

  const into = applyAll(distinct, [order(T0, 'x'), order(T0, 'y')]);
  const from = applyAll(distinct, [order(T0, 'c'), order(T0, 'b'), order(T0, 'a')]);
  distinct.merge(into, from);
  t.equal(distinct.value(into, T0), 3, 'the value is capped at maxDistinctValues');
  t.same(Object.keys((into as { seen: object }).seen).sort(), ['"a"', '"x"', '"y"'], 'adds the values of from with the smallest keys');
  distinct.update(into, order(T0, 'z'));
  t.equal(distinct.value(into, T0), 3, 'a further value does not count');
});

t.test('merge - most_frequent at maxDistinctValues', async (t) => {
  const frequent = traitOf({ kind: 'most_frequent', event: ORDER, property: 'v', maxDistinctValues: 3 });
  const tallies = (state: State) => (state as LifetimeFrequencyState).tallies;

  // into is full and from is not: exact, because a single profile would ignore d as well.
  const fullInto = applyAll(frequent, [order(T0, 'a'), order(T0, 'b'), order(T0, 'c')]);
  frequent.merge(fullInto, applyAll(frequent, [order(T0 + 1, 'b'), order(T0 + 2, 'd'), order(T0 + 3, 'd')]));
  t.same(Object.keys(tallies(fullInto)).sort(), ['"a"', '"b"', '"c"'], 'full into: d is not added');
  t.same(tallies(fullInto)['"b"'], { count: 2, lastMs: T0 + 1 }, 'full into: b counts the occurrences of both');
  t.equal(frequent.value(fullInto, T0), 'b', 'full into: b occurs most');

  // Neither is full but together they have four values: from's highest-ranked value is added.
  const partial = applyAll(frequent, [order(T0, 'a'), order(T0, 'e')]);
  frequent.merge(partial, applyAll(frequent, [order(T0, 'b'), order(T0, 'c'), order(T0 + 1, 'c')]));
  t.same(Object.keys(tallies(partial)).sort(), ['"a"', '"c"', '"e"'], 'neither full: adds c, which ranks above b in from');
  t.equal(frequent.value(partial, T0), 'c', 'neither full: c occurs most');

  // from is full: it never counted a, so a keeps only its count in into.
  const intoWithA = applyAll(frequent, [order(T0, 'a')]);
  const fullFrom = applyAll(frequent, [order(T0, 'b'), order(T0, 'c'), order(T0, 'd'), order(T0, 'a'), order(T0, 'a')]);
  frequent.merge(intoWithA, fullFrom);
  t.same(tallies(intoWithA)['"a"'], { count: 1, lastMs: T0 }, 'full from: a counts only its occurrence in into');
  t.same(Object.keys(tallies(intoWithA)).sort(), ['"a"', '"b"', '"c"'], 'full from: on equal ranks, the smaller keys b and c are added');
});

t.test('merge - from is not changed', async (t) => {
  for (const kind of COMPUTED_TRAIT_KINDS) {
    for (const window of [undefined, { days: 7 }]) {
      const input: Omit<ComputedTraitInput, 'name'> = { kind, event: ORDER, window };
      if (kind !== 'count') input.property = 'v';
      const trait = traitOf(input);
      const numeric = ['sum', 'average', 'min', 'max'].includes(kind);
      const value = (day: number) => (numeric ? day * 1.5 : `v${day % 4}`);

      const into = applyAll(trait, [1, 3, 5].map((day) => order(T0 + day * DAY_MS, value(day))));
      const from = applyAll(trait, [2, 3, 4, 6].map((day) => order(T0 + day * DAY_MS, value(day))));
      const copy = structuredClone(from);
      trait.merge(into, from);
      applyAll(trait, [order(T0 + 6 * DAY_MS, value(6)), order(T0 + 7 * DAY_MS, value(7))], into);
      t.same(from, copy, `${kind} ${window === undefined ? 'lifetime' : 'window'}: from equals its copy after the merge and later updates`);
    }
  }
});

const CDNOW_FILE = new URL('../../data/cdnow/cdnow_every_50th_customer.csv', import.meta.url);
const CDNOW_ENDS_MS = [Date.UTC(1997, 2, 31), Date.UTC(1997, 8, 30), Date.UTC(1998, 5, 30)];

interface Purchase {
  customerId: string;
  timeMs: number;
  dollars: number;
}

function readPurchases(): Purchase[] {
  const lines = readFileSync(CDNOW_FILE, 'utf8').trim().split(/\r?\n/).slice(1);
  return lines.map((line) => {
    const [customerId, date, , dollars] = line.split(',');
    const timeMs = Date.UTC(Number(date.slice(0, 4)), Number(date.slice(4, 6)) - 1, Number(date.slice(6, 8)));
    return { customerId, timeMs, dollars: Number(dollars) };
  });
}

function rfmStateOf(definition: RfmDefinition, purchases: readonly Purchase[]): RfmState {
  const state = createRfmState();
  for (const purchase of purchases) updateRfm(definition, state, trackAt(ORDER, purchase.timeMs, { revenue: purchase.dollars }));
  return state;
}

/** Returns a description of each difference between the merged summary and that of all purchases. */
function compareRfm(label: string, definition: RfmDefinition, merged: RfmState, all: RfmState, sharesPeriod: boolean): string[] {
  const differences: string[] = [];
  for (const endMs of CDNOW_ENDS_MS) {
    const actual = rfmSummary(definition, merged, endMs);
    const expected = rfmSummary(definition, all, endMs);
    const at = `${label}, end ${new Date(endMs).toISOString().slice(0, 10)}`;
    if (actual === null || expected === null) {
      if (actual !== expected) differences.push(`${at}: ${JSON.stringify(actual)}, all purchases ${JSON.stringify(expected)}`);
      continue;
    }
    if (actual.frequency !== expected.frequency || actual.recency !== expected.recency || actual.T !== expected.T) {
      differences.push(`${at}: ${JSON.stringify(actual)}, all purchases ${JSON.stringify(expected)}`);
    }
    // Only a period with purchases on both sides adds two rounded totals.
    const tolerance = sharesPeriod ? 1e-12 * expected.monetary_value : 0;
    if (Math.abs(actual.monetary_value - expected.monetary_value) > tolerance) {
      differences.push(`${at}: monetary_value ${actual.monetary_value}, all purchases ${expected.monetary_value}`);
    }
  }
  return differences;
}

t.test('merge - RFM of CDNOW customers split in two', async (t) => {
  const byCustomer = new Map<string, Purchase[]>();
  for (const purchase of readPurchases()) byCustomer.set(purchase.customerId, [...(byCustomer.get(purchase.customerId) ?? []), purchase]);
  const customers = [...byCustomer.entries()].filter(([, purchases]) => purchases.length >= 4);
  t.ok(customers.length >= 10, `${customers.length} customers with at least 4 purchases`);

  for (const periodDays of [1, 7]) {
    const definition = resolveRfmDefinition({ event: ORDER, property: 'revenue', periodDays });
    const differences: string[] = [];
    let splits = 0;
    let sharedPeriods = 0;

    for (const [customerId, purchases] of customers) {
      const halves = {
        'first and second half': [purchases.slice(0, purchases.length >> 1), purchases.slice(purchases.length >> 1)],
        'odd and even rows': [purchases.filter((_, index) => index % 2 === 1), purchases.filter((_, index) => index % 2 === 0)],
      };
      for (const [split, [intoPurchases, fromPurchases]] of Object.entries(halves)) {
        const label = `customer ${customerId}, ${split}`;
        const into = rfmStateOf(definition, intoPurchases);
        const from = rfmStateOf(definition, fromPurchases);
        const fromCopy = structuredClone(from);
        const intoPeriods = new Set(into.periods);
        const sharesPeriod = from.periods.some((period) => intoPeriods.has(period));

        mergeRfm(into, from);
        if (JSON.stringify(from) !== JSON.stringify(fromCopy)) differences.push(`${label}: merge changed from`);
        const all = rfmStateOf(definition, purchases);
        if (JSON.stringify(into.periods) !== JSON.stringify(all.periods)) differences.push(`${label}: periods ${into.periods}, all purchases ${all.periods}`);
        differences.push(...compareRfm(label, definition, into, all, sharesPeriod));

        splits += 1;
        if (sharesPeriod) sharedPeriods += 1;
      }
    }

    t.same(differences.slice(0, 5), [], `${periodDays}-day periods: no differences (first 5 shown)`);
    t.equal(splits, customers.length * 2, `${periodDays}-day periods: two splits per customer`);
    t.ok(sharedPeriods > 0, `${periodDays}-day periods: ${sharedPeriods} splits have a period with purchases on both sides`);
  }
});

t.test('merge - RFM periods on both sides', async (t) => {
  const definition = resolveRfmDefinition({ event: ORDER, property: 'revenue' });
  const into = rfmStateOf(definition, [{ customerId: 'c', timeMs: T0 + DAY_MS, dollars: 10 }, { customerId: 'c', timeMs: T0 + 3 * DAY_MS, dollars: 5 }]);
  const from = rfmStateOf(definition, [{ customerId: 'c', timeMs: T0, dollars: 1 }, { customerId: 'c', timeMs: T0 + 3 * DAY_MS, dollars: 2.5 }]);
  mergeRfm(into, from);
  const firstPeriod = Math.floor(T0 / DAY_MS);
  t.same(into.periods, [firstPeriod, firstPeriod + 1, firstPeriod + 3], 'periods of both, sorted');
  t.same(into.totals, [1, 10, 7.5], 'totals, added where a period is on both sides');
  t.same(rfmSummary(definition, into, T0 + 4 * DAY_MS), { frequency: 2, recency: 3, T: 4, monetary_value: 8.75 }, 'summary');

  const empty = createRfmState();
  mergeRfm(empty, from);
  t.same(empty, from, 'an empty into takes the periods of from');
  t.not(empty.periods, from.periods, 'and does not share its lists');
});
