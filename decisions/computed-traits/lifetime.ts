/**
 * Computed traits over a profile's lifetime: every matching event the profile has applied,
 * whatever its event time, including events dated after the query time. Each state is O(1)
 * except for distinct_count and most_frequent, which keep one entry per distinct value.
 */

import type { CustomerEvent } from '../../profiles/event.js';
import type { ComputedTrait } from './computed-trait.js';
import { matchesFilter, type ComputedTraitDefinition } from './definition.js';
import { addToPartials, roundPartials } from './exact-sum.js';
import { compareTallies, readTraitValue, valueKey, valueOfKey, type TraitScalar, type TraitValue, type ValueTally } from './values.js';

export interface LifetimeCountState {
  count: number;
}

/** State of sum and average. */
export interface LifetimeSumState {
  count: number;
  /** The exact sum as non-overlapping doubles (see exact-sum.ts), usually 1 or 2 of them. */
  partials: number[];
}

/** State of min and max. */
export interface LifetimeExtremeState {
  value: number | null;
}

/** State of first and last. */
export interface LifetimeEndpointState {
  /** Event time of the first or last counted event, or null before one. */
  timeMs: number | null;
  /** Its property value. Null when the definition has no property, because the value is then `timeMs`. */
  value: TraitScalar | null;
}

export interface LifetimeDistinctState {
  size: number;
  /** One key per distinct value (see `valueKey`). */
  seen: Record<string, 1>;
}

export interface LifetimeFrequencyState {
  size: number;
  tallies: Record<string, ValueTally>;
  /** Key of the value that ranks highest, or null before the first value. */
  best: string | null;
}

export type LifetimeState =
  | LifetimeCountState
  | LifetimeSumState
  | LifetimeExtremeState
  | LifetimeEndpointState
  | LifetimeDistinctState
  | LifetimeFrequencyState;

/**
 * Creates the aggregator of a definition without a window. On equal event times, first keeps
 * the event applied first and last takes the event applied last. distinct_count and
 * most_frequent keep at most `maxDistinctValues` values: once that many are kept, events with
 * a further value do not count, and values already kept go on counting. Merging is exact for
 * every kind but most_frequent, which can differ once the two states together exceed
 * `maxDistinctValues` values (see mergeTallies).
 */
export function createLifetimeTrait(definition: ComputedTraitDefinition): ComputedTrait<LifetimeState> {
  if (definition.windowMs !== undefined) throw new RangeError(`computed trait ${definition.name} has a window; use createWindowTrait`);
  return new LifetimeTrait(definition);
}

class LifetimeTrait implements ComputedTrait<LifetimeState> {
  constructor(readonly definition: ComputedTraitDefinition) {}

  createState(): LifetimeState {
    switch (this.definition.kind) {
      case 'count':
        return { count: 0 };
      case 'sum':
      case 'average':
        return { count: 0, partials: [] };
      case 'min':
      case 'max':
        return { value: null };
      case 'first':
      case 'last':
        return { timeMs: null, value: null };
      case 'distinct_count':
        return { size: 0, seen: Object.create(null) };
      case 'most_frequent':
        return { size: 0, tallies: Object.create(null), best: null };
    }
  }

  update(state: LifetimeState, event: CustomerEvent): boolean {
    const definition = this.definition;
    if (!matchesFilter(definition.filter, event)) return false;

    let value: TraitScalar | undefined;
    if (definition.property !== undefined) {
      value = readTraitValue(definition, event);
      if (value === undefined) return false;
    }

    const timeMs = event.timestampMs;
    switch (definition.kind) {
      case 'count':
        (state as LifetimeCountState).count += 1;
        return true;
      case 'sum':
      case 'average':
        return addToSum(state as LifetimeSumState, value as number);
      case 'min':
      case 'max':
        return updateExtreme(state as LifetimeExtremeState, value as number, definition.kind === 'max');
      case 'first':
        return updateFirst(state as LifetimeEndpointState, timeMs, value);
      case 'last':
        return updateLast(state as LifetimeEndpointState, timeMs, value);
      case 'distinct_count':
        return addDistinct(state as LifetimeDistinctState, value as TraitScalar, definition.maxDistinctValues);
      case 'most_frequent':
        return addOccurrence(state as LifetimeFrequencyState, value as TraitScalar, timeMs, definition.maxDistinctValues);
    }
  }

  /**
   * Merges two states. Order-free kinds (count, sum, average, min, max) and first and last
   * are exact: sums add the partials of `from`, so they stay exact sums. On equal event
   * times the events of `from` count as applied after those of `into`, so first keeps the
   * value of `into` and last takes that of `from`. For the bounded kinds see mergeDistinct
   * and mergeTallies.
   */
  merge(into: LifetimeState, from: LifetimeState): void {
    const definition = this.definition;
    switch (definition.kind) {
      case 'count':
        (into as LifetimeCountState).count += (from as LifetimeCountState).count;
        return;
      case 'sum':
      case 'average':
        mergeSums(into as LifetimeSumState, from as LifetimeSumState);
        return;
      case 'min':
      case 'max': {
        const value = (from as LifetimeExtremeState).value;
        if (value !== null) updateExtreme(into as LifetimeExtremeState, value, definition.kind === 'max');
        return;
      }
      case 'first':
      case 'last': {
        const { timeMs, value } = from as LifetimeEndpointState;
        if (timeMs === null) return;
        if (definition.kind === 'first') updateFirst(into as LifetimeEndpointState, timeMs, value ?? undefined);
        else updateLast(into as LifetimeEndpointState, timeMs, value ?? undefined);
        return;
      }
      case 'distinct_count':
        mergeDistinct(into as LifetimeDistinctState, from as LifetimeDistinctState, definition.maxDistinctValues);
        return;
      case 'most_frequent':
        mergeTallies(into as LifetimeFrequencyState, from as LifetimeFrequencyState, definition.maxDistinctValues);
        return;
    }
  }

  /** Returns the value over every counted event. `nowMs` does not change it. */
  value(state: LifetimeState, _nowMs: number): TraitValue {
    switch (this.definition.kind) {
      case 'count':
        return (state as LifetimeCountState).count;
      case 'sum':
        return roundPartials((state as LifetimeSumState).partials);
      case 'average': {
        const sum = state as LifetimeSumState;
        return sum.count === 0 ? null : roundPartials(sum.partials) / sum.count;
      }
      case 'min':
      case 'max':
        return (state as LifetimeExtremeState).value;
      case 'first':
      case 'last': {
        const endpoint = state as LifetimeEndpointState;
        return this.definition.property === undefined ? endpoint.timeMs : endpoint.value;
      }
      case 'distinct_count':
        return (state as LifetimeDistinctState).size;
      case 'most_frequent': {
        const best = (state as LifetimeFrequencyState).best;
        return best === null ? null : valueOfKey(best);
      }
    }
  }

  /** Returns null: a lifetime value never changes by time alone. */
  nextExpiryMs(_state: LifetimeState, _nowMs: number): number | null {
    return null;
  }

  minQueryTimeMs(_state: LifetimeState): number {
    return Number.NEGATIVE_INFINITY;
  }
}

function addToSum(state: LifetimeSumState, value: number): boolean {
  state.count += 1;
  addToPartials(state.partials, value);
  return true;
}

function updateExtreme(state: LifetimeExtremeState, value: number, isMax: boolean): boolean {
  if (state.value === null || (isMax ? value > state.value : value < state.value)) state.value = value;
  return true;
}

function updateFirst(state: LifetimeEndpointState, timeMs: number, value: TraitScalar | undefined): boolean {
  if (state.timeMs !== null && timeMs >= state.timeMs) return true;
  state.timeMs = timeMs;
  state.value = value ?? null;
  return true;
}

function updateLast(state: LifetimeEndpointState, timeMs: number, value: TraitScalar | undefined): boolean {
  if (state.timeMs !== null && timeMs < state.timeMs) return true;
  state.timeMs = timeMs;
  state.value = value ?? null;
  return true;
}

function addDistinct(state: LifetimeDistinctState, value: TraitScalar, maxDistinctValues: number): boolean {
  const key = valueKey(value);
  if (state.seen[key] !== undefined) return true;
  if (state.size >= maxDistinctValues) return false;
  state.seen[key] = 1;
  state.size += 1;
  return true;
}

function addOccurrence(state: LifetimeFrequencyState, value: TraitScalar, timeMs: number, maxDistinctValues: number): boolean {
  const key = valueKey(value);
  let tally = state.tallies[key];
  if (tally === undefined) {
    if (state.size >= maxDistinctValues) return false;
    tally = { count: 0, lastMs: timeMs };
    state.tallies[key] = tally;
    state.size += 1;
  }
  tally.count += 1;
  if (timeMs > tally.lastMs) tally.lastMs = timeMs;

  // Only this value's tally grew, so it is the only one that can overtake the best value.
  const best = state.best;
  if (best === null || best === key) {
    state.best = key;
    return true;
  }
  const order = compareTallies(tally, state.tallies[best]);
  if (order > 0 || (order === 0 && key < best)) state.best = key;
  return true;
}

function mergeSums(into: LifetimeSumState, from: LifetimeSumState): void {
  into.count += from.count;
  // The partials of `from` add up exactly to its sum, so adding each one keeps `into` exact.
  for (const partial of from.partials) addToPartials(into.partials, partial);
}

/**
 * Adds the values of `from` that `into` lacks, while fewer than `maxDistinctValues` are kept.
 * The size, which is the value, is always exact: the number of distinct values of both
 * profiles' events, capped at `maxDistinctValues`. When the union exceeds the cap, a single
 * profile would keep the values that `from` applied first, which its state does not record,
 * so the merge keeps those with the smallest keys. Either way the state is then full, and
 * its value stays at the cap whatever events follow.
 */
function mergeDistinct(into: LifetimeDistinctState, from: LifetimeDistinctState, maxDistinctValues: number): void {
  const added = Object.keys(from.seen).filter((key) => into.seen[key] === undefined);
  const room = maxDistinctValues - into.size;
  if (added.length > room) added.sort();

  for (const key of added.slice(0, Math.max(0, room))) {
    into.seen[key] = 1;
    into.size += 1;
  }
}

/**
 * Adds the tallies of `from` to `into` and ranks the values again. The result is exact when
 * the values that both states keep number at most `maxDistinctValues`, or when `into` is
 * full and `from` is not: a single profile then keeps the same values with the same counts.
 * When the values of both exceed the cap:
 * - if `into` is not full, a single profile would add the values of `from` in the order
 *   `from` first applied them, which its state does not record. The merge adds those that
 *   rank highest in `from` instead, so the best value of `from` is kept;
 * - if `from` is full, it never counted the values it did not keep. A value that `into`
 *   keeps and `from` does not keeps only its count and latest time in `into`.
 */
function mergeTallies(into: LifetimeFrequencyState, from: LifetimeFrequencyState, maxDistinctValues: number): void {
  const added: string[] = [];
  for (const key of Object.keys(from.tallies)) {
    const fromTally = from.tallies[key];
    const intoTally = into.tallies[key];
    if (intoTally === undefined) {
      added.push(key);
      continue;
    }
    intoTally.count += fromTally.count;
    if (fromTally.lastMs > intoTally.lastMs) intoTally.lastMs = fromTally.lastMs;
  }

  const room = maxDistinctValues - into.size;
  if (added.length > room) added.sort((a, b) => compareRanks(from.tallies, b, a));
  for (const key of added.slice(0, Math.max(0, room))) {
    const { count, lastMs } = from.tallies[key];
    into.tallies[key] = { count, lastMs };
    into.size += 1;
  }

  into.best = bestKey(into.tallies);
}

/** Returns the key of the value that ranks highest, or null when there is none. */
function bestKey(tallies: Record<string, ValueTally>): string | null {
  let best: string | null = null;
  for (const key of Object.keys(tallies)) {
    if (best === null || compareRanks(tallies, key, best) > 0) best = key;
  }
  return best;
}

/** Compares two values as compareTallies does, with the smaller key ranking higher on a tie. */
function compareRanks(tallies: Record<string, ValueTally>, a: string, b: string): number {
  const order = compareTallies(tallies[a], tallies[b]);
  if (order !== 0) return order;
  if (a === b) return 0;
  return a < b ? 1 : -1;
}
