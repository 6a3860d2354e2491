/**
 * Computed traits kept current per profile as each event is applied, without rescanning the
 * profile's history. A trait is a stateless aggregator built once per definition. Each
 * profile keeps one state per trait: a plain object of numbers, strings, booleans, lists and
 * records, so a profile snapshot can store it with msgpack as it is.
 *
 * Memory per profile and trait, with `n` the counted events a windowed state keeps (at most
 * `maxEvents`, default 1,000) and `d` the distinct values (at most `maxDistinctValues`):
 * - lifetime count, sum, average, min, max, first, last: O(1), a few numbers;
 * - lifetime distinct_count and most_frequent: O(d), one record entry per distinct value;
 * - windowed kinds: O(n), one event time per event, plus one value when the kind has a property.
 * decisions/computed-traits/README.md gives the byte sizes.
 *
 * `update` does not deduplicate: call it once per applied event, after the profile's own
 * duplicate checks, in log order, so a replay from a snapshot rebuilds the same state.
 */

import type { CustomerEvent } from '../../profiles/event.js';
import type { ComputedTraitDefinition } from './definition.js';
import { createLifetimeTrait, type LifetimeState } from './lifetime.js';
import type { TraitValue } from './values.js';
import { createWindowTrait, type WindowState } from './window.js';

export type ComputedTraitState = LifetimeState | WindowState;

/** The aggregator of one computed trait. Pass it only states that its own `createState` made. */
export interface ComputedTrait<State = ComputedTraitState> {
  readonly definition: ComputedTraitDefinition;

  /** Returns the state of a profile that has applied no event. */
  createState(): State;

  /** Applies one event to the state. Returns whether the event counted for the trait. */
  update(state: State, event: CustomerEvent): boolean;

  /**
   * Adds the events of `from` to `into`, for a merge of two profiles of the same person.
   * Afterwards value, nextExpiryMs and minQueryTimeMs of `into` equal those of one state
   * that applied the events of `into` and then those of `from`. Only a lifetime
   * most_frequent trait can differ, when its two states together keep more than
   * `maxDistinctValues` values (see mergeTallies in lifetime.ts). An event that both states
   * applied counts twice. `from` is not changed, and `into` shares no object with it afterwards.
   */
  merge(into: State, from: State): void;

  /** Returns the trait's value at query time `nowMs` (ms since the Unix epoch). */
  value(state: State, nowMs: number): TraitValue;

  /**
   * Returns the earliest time after `nowMs` at which the value can change without another
   * event, or null when it cannot, so a durable timer can fire then.
   */
  nextExpiryMs(state: State, nowMs: number): number | null;

  /** Returns the earliest `nowMs` that value and nextExpiryMs accept for this state. */
  minQueryTimeMs(state: State): number;
}

/** Creates the aggregator of a validated definition. */
export function createComputedTrait(definition: ComputedTraitDefinition): ComputedTrait {
  if (definition.windowMs === undefined) return createLifetimeTrait(definition) as ComputedTrait;
  return createWindowTrait(definition) as ComputedTrait;
}
