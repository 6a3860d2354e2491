/**
 * Computed traits over a sliding event-time window. The value at `nowMs` covers the counted
 * events with `nowMs - windowMs < timestampMs <= nowMs`: an event enters the window at its
 * own time and leaves it `windowMs` later.
 *
 * Why the state keeps events, not per-bucket partial aggregates: a bucket that straddles
 * the window's lower edge contains events on both sides of it, so bucketed counts are exact
 * only at bucket boundaries. The state therefore keeps the time (and value) of each counted
 * event, sorted by event time, and computes the value from those inside the window. A late
 * event is inserted at its place, and an event leaves the value as soon as the query time
 * passes its exit, with no update needed.
 *
 * Memory stays bounded in two ways:
 * - Each update drops the events with `timestampMs <= latestMs - windowMs - maxFutureSkewMs`,
 *   where `latestMs` is the latest event time that update has seen. Such events are outside
 *   the window for every query time from `latestMs - maxFutureSkewMs` on, and value() rejects
 *   earlier query times. A late event that old is dropped on arrival for the same reason.
 * - At most `maxEvents` events are kept: the newest by event time, and on equal times the
 *   ones applied last. The value then covers the window's events among those newest
 *   `maxEvents`. It equals the plain window aggregate whenever at most `maxEvents` counted
 *   events lie within `windowMs + maxFutureSkewMs` before `latestMs`.
 */

import type { CustomerEvent } from '../../profiles/event.js';
import type { ComputedTrait } from './computed-trait.js';
import { matchesFilter, type ComputedTraitDefinition } from './definition.js';
import { exactSum } from './exact-sum.js';
import { compareTallies, readTraitValue, valueKey, type TraitScalar, type TraitValue, type ValueTally } from './values.js';
import { upperBound } from '../../common/sorted.js';

export interface WindowState {
  /** Latest event time passed to update, counted or not, or null before the first event. */
  latestMs: number | null;
  /** Event times of the kept events, ascending. Equal times are in the order they were applied. */
  times: number[];
  /** Property values of the kept events, parallel to `times`. Absent when the definition has no property. */
  values?: TraitScalar[];
}

/**
 * Creates the aggregator of a definition with a window. On equal event times in the window,
 * first returns the event applied first and last the event applied last.
 */
export function createWindowTrait(definition: ComputedTraitDefinition): ComputedTrait<WindowState> {
  if (definition.windowMs === undefined) throw new RangeError(`computed trait ${definition.name} has no window; use createLifetimeTrait`);
  return new WindowTrait(definition, definition.windowMs);
}

class WindowTrait implements ComputedTrait<WindowState> {
  constructor(
    readonly definition: ComputedTraitDefinition,
    private readonly windowMs: number,
  ) {}

  createState(): WindowState {
    if (this.definition.property === undefined) return { latestMs: null, times: [] };
    return { latestMs: null, times: [], values: [] };
  }

  /**
   * Applies one event. Pass every event the profile applies, also those the filter rejects,
   * because each event time moves `latestMs` and lets the state drop events that can no
   * longer be inside the window. Returns whether the event counted and is kept.
   */
  update(state: WindowState, event: CustomerEvent): boolean {
    const timeMs = event.timestampMs;
    if (state.latestMs === null || timeMs > state.latestMs) state.latestMs = timeMs;

    let insertedAt = -1;
    if (matchesFilter(this.definition.filter, event)) {
      if (this.definition.property === undefined) {
        insertedAt = insertEvent(state, timeMs, undefined);
      } else {
        const value = readTraitValue(this.definition, event);
        if (value !== undefined) insertedAt = insertEvent(state, timeMs, value);
      }
    }

    const dropped = this.dropUnreachable(state);
    return insertedAt >= dropped;
  }

  /**
   * Merges two states exactly. The kept events of both are merged by event time, with those
   * of `into` first on equal times, as if `from` applied its events after `into`. Then the
   * bounds of update apply to the union: `latestMs` becomes the later of the two, events at
   * or before the new horizon are dropped, and the newest `maxEvents` remain. An event that
   * either state dropped is older than the horizon or below `maxEvents` newer events, so
   * the merged state would drop it too.
   */
  merge(into: WindowState, from: WindowState): void {
    if (from.latestMs === null) return;
    if (into.latestMs === null || from.latestMs > into.latestMs) into.latestMs = from.latestMs;

    const merged = mergeByTime(into, from);
    into.times = merged.times;
    if (into.values !== undefined) into.values = merged.values;
    this.dropUnreachable(into);
  }

  /**
   * Returns the value over the kept events inside the window at `nowMs`. Throws RangeError
   * when `nowMs` is before `minQueryTimeMs(state)`, because events the value needs may have
   * been dropped.
   */
  value(state: WindowState, nowMs: number): TraitValue {
    this.checkQueryTime(state, nowMs);
    const times = state.times;
    const start = upperBound(times, nowMs - this.windowMs, 0);
    const end = upperBound(times, nowMs, start);

    switch (this.definition.kind) {
      case 'count':
        return end - start;
      case 'sum':
        return exactSum(state.values as number[], start, end);
      case 'average':
        return end === start ? null : exactSum(state.values as number[], start, end) / (end - start);
      case 'min':
        return extreme(state.values as number[], start, end, false);
      case 'max':
        return extreme(state.values as number[], start, end, true);
      case 'first':
        if (end === start) return null;
        return state.values === undefined ? times[start] : state.values[start];
      case 'last':
        if (end === start) return null;
        return state.values === undefined ? times[end - 1] : state.values[end - 1];
      case 'distinct_count':
        return countDistinct(state.values as TraitScalar[], start, end);
      case 'most_frequent':
        return mostFrequent(state.values as TraitScalar[], times, start, end);
    }
  }

  /**
   * Returns the earliest time after `nowMs` at which a kept event enters or leaves the window,
   * or null when none will. The value stays the same until then. It may also stay the same
   * at that time, for example when an event smaller than the max leaves a max window, so a
   * timer that fires then should read the value again and schedule the next expiry.
   */
  nextExpiryMs(state: WindowState, nowMs: number): number | null {
    this.checkQueryTime(state, nowMs);
    const times = state.times;
    const firstInside = upperBound(times, nowMs - this.windowMs, 0);
    const firstAhead = upperBound(times, nowMs, firstInside);

    let next = Number.POSITIVE_INFINITY;
    // The oldest event in the window leaves first. Events after nowMs enter at their time.
    if (firstInside < firstAhead) next = times[firstInside] + this.windowMs;
    if (firstAhead < times.length) next = Math.min(next, times[firstAhead]);
    return next === Number.POSITIVE_INFINITY ? null : next;
  }

  /** Returns the earliest query time for which value and nextExpiryMs are exact. */
  minQueryTimeMs(state: WindowState): number {
    if (state.latestMs === null) return Number.NEGATIVE_INFINITY;
    return state.latestMs - this.definition.maxFutureSkewMs;
  }

  /** Drops events older than the horizon and those beyond `maxEvents`. Returns how many it dropped. */
  private dropUnreachable(state: WindowState): number {
    const times = state.times;
    const horizonMs = (state.latestMs as number) - this.windowMs - this.definition.maxFutureSkewMs;

    let dropped = 0;
    while (dropped < times.length && times[dropped] <= horizonMs) dropped++;
    dropped = Math.max(dropped, times.length - this.definition.maxEvents);

    if (dropped > 0) {
      times.splice(0, dropped);
      state.values?.splice(0, dropped);
    }
    return dropped;
  }

  private checkQueryTime(state: WindowState, nowMs: number): void {
    if (!Number.isFinite(nowMs)) throw new RangeError(`nowMs must be a finite number of ms, received ${nowMs}`);
    const minMs = this.minQueryTimeMs(state);
    if (nowMs < minMs) {
      throw new RangeError(
        `computed trait ${this.definition.name}: nowMs ${nowMs} is before ${minMs}, the latest event time minus maxFutureSkewMs. ` +
          'The state may have dropped events that the window at nowMs contains. Query at minQueryTimeMs(state) or later',
      );
    }
  }
}

/** Inserts an event after those with an equal or earlier time, and returns its index. */
function insertEvent(state: WindowState, timeMs: number, value: TraitScalar | undefined): number {
  const times = state.times;
  const index = upperBound(times, timeMs, 0);
  if (index === times.length) {
    times.push(timeMs);
    if (value !== undefined) state.values?.push(value);
  } else {
    times.splice(index, 0, timeMs);
    if (value !== undefined) state.values?.splice(index, 0, value);
  }
  return index;
}

/** Returns the events of both states in one list sorted by time, with those of `into` first on equal times. */
function mergeByTime(into: WindowState, from: WindowState): { times: number[]; values: TraitScalar[] } {
  const times: number[] = [];
  const values: TraitScalar[] = [];
  let i = 0;
  let j = 0;
  while (i < into.times.length || j < from.times.length) {
    const takeInto = j === from.times.length || (i < into.times.length && into.times[i] <= from.times[j]);
    const source = takeInto ? into : from;
    const index = takeInto ? i++ : j++;
    times.push(source.times[index]);
    if (source.values !== undefined) values.push(source.values[index]);
  }
  return { times, values };
}

function extreme(values: readonly number[], start: number, end: number, isMax: boolean): number | null {
  if (end === start) return null;
  let result = values[start];
  for (let index = start + 1; index < end; index++) {
    const value = values[index];
    if (isMax ? value > result : value < result) result = value;
  }
  return result;
}

/** Counts distinct values. A Set keeps 1, "1" and true apart, as `valueKey` does. */
function countDistinct(values: readonly TraitScalar[], start: number, end: number): number {
  const distinct = new Set<TraitScalar>();
  for (let index = start; index < end; index++) distinct.add(values[index]);
  return distinct.size;
}

function mostFrequent(values: readonly TraitScalar[], times: readonly number[], start: number, end: number): TraitValue {
  const tallies = new Map<TraitScalar, ValueTally>();
  for (let index = start; index < end; index++) {
    const value = values[index];
    const tally = tallies.get(value);
    // Times ascend, so the last occurrence seen is the latest.
    if (tally === undefined) {
      tallies.set(value, { count: 1, lastMs: times[index] });
    } else {
      tally.count += 1;
      tally.lastMs = times[index];
    }
  }

  let best: TraitScalar | null = null;
  let bestTally: ValueTally = { count: 0, lastMs: 0 };
  for (const [value, tally] of tallies) {
    const order = best === null ? 1 : compareTallies(tally, bestTally);
    if (order > 0 || (order === 0 && valueKey(value) < valueKey(best as TraitScalar))) {
      best = value;
      bestTally = tally;
    }
  }
  return best;
}
