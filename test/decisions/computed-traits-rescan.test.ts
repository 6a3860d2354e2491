/**
 * Randomized comparison of the incremental states with a naive rescan of every applied
 * event. The rescan implements the documented semantics directly: the window's events
 * among the newest `maxEvents` counted events for windowed traits, and the first
 * `maxDistinctValues` distinct values in application order for lifetime distinct kinds.
 */
import t from 'tap';
import { createRandom } from '../../bench/random.js';
import { createComputedTrait, type ComputedTrait } from '../../decisions/computed-traits/computed-trait.js';
import {
  COMPUTED_TRAIT_KINDS,
  resolveComputedTrait,
  type ComputedTraitDefinition,
  type ComputedTraitInput,
} from '../../decisions/computed-traits/definition.js';
import { readTraitValue, type TraitScalar, type TraitValue } from '../../decisions/computed-traits/values.js';
import type { CustomerEvent, JsonValue } from '../../profiles/event.js';
import { decode, encode } from '../../storage/codec.js';
import { DAY_MS, HOUR_MS, trackAt } from './events.js';

const T0 = Date.UTC(2024, 0, 1);
const ORDER = 'Order Completed';
const SEQUENCES = 1_500;
const MAX_EVENTS_PER_SEQUENCE = 60;
const QUERIES_PER_EVENT = 3;

/** Scale of the exact reference sum: every test value is an integer multiple of 2^-SUM_SCALE_BITS. */
const SUM_SCALE_BITS = 80;

const NUMBERS = [0.1, 0.2, 0.3, 19.99, 5, -3.25, 1e6 + 0.01, 123456.789, -0.07, 2 ** -20, 1e15, 42, -0];
const SCALARS: JsonValue[] = ['a', 'b', 'c', 1, '1', true, 2.5, 0, -0];
const INVALID: JsonValue[] = [null, '12.5', { amount: 1 }, [1], 'x'.repeat(300)];

interface Applied {
  timeMs: number;
  /** Position in application order. */
  index: number;
  value: TraitScalar | undefined;
}

type Random = () => number;

function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)];
}

function randomInput(random: Random): Omit<ComputedTraitInput, 'name'> {
  const kind = pick(random, COMPUTED_TRAIT_KINDS);
  const input: Omit<ComputedTraitInput, 'name'> = { kind, event: ORDER };
  if (kind !== 'count' && !((kind === 'first' || kind === 'last') && random() < 0.3)) input.property = 'v';

  if (random() < 0.75) {
    input.window = random() < 0.5 ? { hours: pick(random, [1, 6, 24]) } : { days: pick(random, [1, 3, 7]) };
    if (random() < 0.4) input.maxEvents = pick(random, [1, 3, 8]);
  } else if ((kind === 'distinct_count' || kind === 'most_frequent') && random() < 0.5) {
    input.maxDistinctValues = pick(random, [1, 2, 3]);
  }
  return input;
}

function randomPropertyValue(random: Random, numeric: boolean): JsonValue | undefined {
  const draw = random();
  if (draw < 0.1) return undefined;
  if (draw < 0.2) return pick(random, INVALID);
  return numeric ? pick(random, NUMBERS) : pick(random, SCALARS);
}

/** Draws event times that mostly ascend, with late events, ties and events ahead of the latest. */
function randomTimeMs(random: Random, latestMs: number): number {
  const draw = random();
  if (draw < 0.15) return latestMs;
  if (draw < 0.4) return latestMs - Math.floor(random() * 5 * DAY_MS);
  if (draw < 0.5) return latestMs - Math.floor(random() * 4) * HOUR_MS;
  return latestMs + Math.floor(random() * 12 * HOUR_MS);
}

/** Returns the exact sum of the values rounded to the nearest double, computed with BigInt. */
function referenceSum(values: readonly number[]): number {
  let total = 0n;
  for (const value of values) total += scaledInteger(value);
  return Number(total) / 2 ** SUM_SCALE_BITS;
}

/** Returns value * 2^SUM_SCALE_BITS as a BigInt, which must be an integer. */
function scaledInteger(value: number): bigint {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, value);
  const bits = view.getBigUint64(0);
  const biasedExponent = Number((bits >> 52n) & 0x7ffn);
  let mantissa = bits & ((1n << 52n) - 1n);
  let exponent = -1074;
  if (biasedExponent !== 0) {
    mantissa |= 1n << 52n;
    exponent = biasedExponent - 1075;
  }

  const shift = exponent + SUM_SCALE_BITS;
  let scaled: bigint;
  if (shift >= 0) scaled = mantissa << BigInt(shift);
  else {
    if (mantissa % (1n << BigInt(-shift)) !== 0n) throw new Error(`${value} is not a multiple of 2^-${SUM_SCALE_BITS}`);
    scaled = mantissa >> BigInt(-shift);
  }
  return bits >> 63n === 1n ? -scaled : scaled;
}

function jsonKey(value: TraitScalar): string {
  return JSON.stringify(value);
}

/** Picks the most frequent value: most occurrences, then the latest occurrence, then the smallest JSON key. */
function referenceMostFrequent(tallies: Map<string, { count: number; lastMs: number }>): TraitValue {
  const ranked = [...tallies.entries()].sort(([aKey, a], [bKey, b]) => {
    if (a.count !== b.count) return b.count - a.count;
    if (a.lastMs !== b.lastMs) return b.lastMs - a.lastMs;
    return aKey < bKey ? -1 : 1;
  });
  return ranked.length === 0 ? null : (JSON.parse(ranked[0][0]) as TraitScalar);
}

/** Aggregates counted events, given in the order the aggregate must see them. */
function aggregate(definition: ComputedTraitDefinition, events: readonly Applied[]): TraitValue {
  const values = events.map((event) => event.value as TraitScalar);
  switch (definition.kind) {
    case 'count':
      return events.length;
    case 'sum':
      return referenceSum(values as number[]);
    case 'average':
      return events.length === 0 ? null : referenceSum(values as number[]) / events.length;
    case 'min':
      return events.length === 0 ? null : Math.min(...(values as number[]));
    case 'max':
      return events.length === 0 ? null : Math.max(...(values as number[]));
    case 'first':
    case 'last': {
      if (events.length === 0) return null;
      // First: earliest time, then applied first. Last: latest time, then applied last.
      const sorted = [...events].sort((a, b) => a.timeMs - b.timeMs || a.index - b.index);
      const chosen = definition.kind === 'first' ? sorted[0] : sorted[sorted.length - 1];
      return definition.property === undefined ? chosen.timeMs : (chosen.value as TraitScalar);
    }
    case 'distinct_count': {
      const seen = new Set<string>();
      for (const value of values) {
        const key = jsonKey(value);
        if (seen.has(key) || (definition.windowMs === undefined && seen.size >= definition.maxDistinctValues)) continue;
        seen.add(key);
      }
      return seen.size;
    }
    case 'most_frequent': {
      const tallies = new Map<string, { count: number; lastMs: number }>();
      for (const event of events) {
        const key = jsonKey(event.value as TraitScalar);
        let tally = tallies.get(key);
        if (tally === undefined) {
          if (definition.windowMs === undefined && tallies.size >= definition.maxDistinctValues) continue;
          tally = { count: 0, lastMs: event.timeMs };
          tallies.set(key, tally);
        }
        tally.count += 1;
        tally.lastMs = Math.max(tally.lastMs, event.timeMs);
      }
      return referenceMostFrequent(tallies);
    }
  }
}

/** Returns the newest `maxEvents` counted events: latest time first, then applied last. */
function newestKept(definition: ComputedTraitDefinition, counted: readonly Applied[]): Applied[] {
  const sorted = [...counted].sort((a, b) => a.timeMs - b.timeMs || a.index - b.index);
  return sorted.slice(Math.max(0, sorted.length - definition.maxEvents));
}

function referenceValue(definition: ComputedTraitDefinition, counted: readonly Applied[], nowMs: number): TraitValue {
  if (definition.windowMs === undefined) return aggregate(definition, counted);
  const windowMs = definition.windowMs;
  const inside = newestKept(definition, counted).filter((event) => event.timeMs > nowMs - windowMs && event.timeMs <= nowMs);
  return aggregate(definition, inside);
}

function referenceNextExpiry(definition: ComputedTraitDefinition, counted: readonly Applied[], nowMs: number): number | null {
  if (definition.windowMs === undefined) return null;
  let next = Number.POSITIVE_INFINITY;
  for (const event of newestKept(definition, counted)) {
    if (event.timeMs <= nowMs - definition.windowMs) continue;
    // An event after nowMs enters at its time, and one inside leaves windowMs after it.
    next = Math.min(next, event.timeMs > nowMs ? event.timeMs : event.timeMs + definition.windowMs);
  }
  return next === Number.POSITIVE_INFINITY ? null : next;
}

/** Draws query times from minQueryTimeMs on, including window edges of the counted events. */
function queryTimes(random: Random, trait: ComputedTrait, state: ReturnType<ComputedTrait['createState']>, counted: readonly Applied[], latestMs: number): number[] {
  const minMs = Math.max(trait.minQueryTimeMs(state), latestMs - 2 * DAY_MS);
  const windowMs = trait.definition.windowMs ?? 0;
  const times: number[] = [];
  for (let query = 0; query < QUERIES_PER_EVENT; query++) {
    let nowMs = minMs + Math.floor(random() * (2 * DAY_MS + 2 * windowMs));
    if (counted.length > 0 && random() < 0.5) {
      // Exact edges: the instant an event enters, leaves, or the ms before it leaves.
      const event = pick(random, counted);
      nowMs = event.timeMs + pick(random, [0, windowMs, windowMs - 1]);
    }
    if (nowMs >= minMs) times.push(nowMs);
  }
  return times;
}

t.test('incremental values equal a naive rescan', async (t) => {
  let checks = 0;
  let nonEmpty = 0;
  let dropped = 0;
  const failures: string[] = [];

  for (let seed = 1; seed <= SEQUENCES; seed++) {
    const random = createRandom(seed);
    const input = randomInput(random);
    const maxFutureSkewMs = pick(random, [0, HOUR_MS, DAY_MS]);
    const definition = resolveComputedTrait({ name: 'trait', ...input }, { maxFutureSkewMs });
    const trait = createComputedTrait(definition);
    const numeric = definition.kind === 'sum' || definition.kind === 'average' || definition.kind === 'min' || definition.kind === 'max';

    let state = trait.createState();
    const counted: Applied[] = [];
    let latestMs = T0;
    const eventCount = Math.floor(random() * MAX_EVENTS_PER_SEQUENCE);

    for (let index = 0; index < eventCount && failures.length === 0; index++) {
      const timeMs = randomTimeMs(random, latestMs);
      latestMs = Math.max(latestMs, timeMs);
      const value = randomPropertyValue(random, numeric);
      const name = random() < 0.85 ? ORDER : 'Product Viewed';
      const event: CustomerEvent = trackAt(name, timeMs, value === undefined ? {} : { v: value });

      const keptByState = trait.update(state, event);
      if (name === ORDER) {
        const contributed = definition.property === undefined ? undefined : readTraitValue(definition, event);
        if (definition.property === undefined || contributed !== undefined) {
          counted.push({ timeMs, index, value: contributed });
          if (!keptByState) dropped += 1;
        }
      }
      if (random() < 0.1) state = decode(encode(state));

      for (const nowMs of queryTimes(random, trait, state, counted, latestMs)) {
        const label = `seed ${seed} ${JSON.stringify(input)} skew ${maxFutureSkewMs} after ${index + 1} events at nowMs ${nowMs}`;
        const actual = trait.value(state, nowMs);
        const expected = referenceValue(definition, counted, nowMs);
        if (!Object.is(actual, expected)) failures.push(`${label}: value ${actual}, rescan ${expected}`);
        if (expected !== null && expected !== 0) nonEmpty += 1;
        const actualNext = trait.nextExpiryMs(state, nowMs);
        const expectedNext = referenceNextExpiry(definition, counted, nowMs);
        if (actualNext !== expectedNext) failures.push(`${label}: nextExpiryMs ${actualNext}, rescan ${expectedNext}`);
        checks += 2;
      }
    }
  }

  t.same(failures.slice(0, 5), [], 'no differences (first 5 shown)');
  t.ok(checks > 20_000, `compared ${checks} values and expiries`);
  t.ok(nonEmpty > checks / 8, `${nonEmpty} values were neither empty nor 0`);
  t.ok(dropped > 100, `${dropped} counted events were not kept on arrival: too old, or beyond maxEvents or maxDistinctValues`);
});

t.test('property test reference sums exactly', async (t) => {
  t.equal(referenceSum([0.1, 0.2]), 0.30000000000000004, 'one rounding of 0.1 + 0.2 as doubles');
  t.equal(referenceSum(Array.from({ length: 10 }, () => 0.1)), 1, 'ten times 0.1 is 1');
  t.equal(referenceSum([1e15, 0.1, -1e15]), 0.1, 'exact cancellation');
  t.throws(() => scaledInteger(2 ** -90), 'rejects values below the scale');
});
