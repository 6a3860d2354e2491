/**
 * Rules for the property values a computed trait accepts, and the keys and ranking of
 * distinct values. The lifetime and the windowed states share them, so both give the same
 * value for the same events.
 */

import type { CustomerEvent, JsonValue } from '../../profiles/event.js';
import { NUMERIC_KINDS, readProperty, type ComputedTraitDefinition } from './definition.js';
import { MAX_SUMMED_MAGNITUDE } from './exact-sum.js';

/** A value a computed trait stores or returns. */
export type TraitScalar = string | number | boolean;

/** The value of a computed trait: null when no event in its range counted. */
export type TraitValue = TraitScalar | null;

/**
 * Maximum length of a string value, in UTF-16 code units, that first, last, distinct_count
 * and most_frequent accept. Longer strings are ignored like objects, so that a state holding many
 * values stays small. Identifiers, categories and SKUs fit. Long URLs do not.
 */
export const MAX_STRING_VALUE_LENGTH = 256;

/**
 * Returns the value of the trait's property that an event contributes, or undefined when the
 * event does not count for the trait:
 * - sum and average accept finite numbers of magnitude at most MAX_SUMMED_MAGNITUDE;
 * - min and max accept finite numbers;
 * - first, last, distinct_count and most_frequent accept strings of at most
 *   MAX_STRING_VALUE_LENGTH characters, finite numbers and booleans.
 * Null, objects, lists and numeric strings such as "12.5" never count.
 * Call it only for a definition with a property.
 */
export function readTraitValue(definition: ComputedTraitDefinition, event: CustomerEvent): TraitScalar | undefined {
  const value = readProperty(event, definition.property as string);
  if (NUMERIC_KINDS.has(definition.kind)) return acceptNumber(value, definition.kind === 'sum' || definition.kind === 'average');
  return acceptScalar(value);
}

// Numbers are returned plus 0, which turns -0 (valid JSON) into 0, so that 0 and -0 are one value.
function acceptNumber(value: JsonValue | undefined, summed: boolean): number | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value)) return undefined;
  if (summed && Math.abs(value) > MAX_SUMMED_MAGNITUDE) return undefined;
  return value + 0;
}

function acceptScalar(value: JsonValue | undefined): TraitScalar | undefined {
  if (typeof value === 'string') return value.length <= MAX_STRING_VALUE_LENGTH ? value : undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? value + 0 : undefined;
  if (typeof value === 'boolean') return value;
  return undefined;
}

/**
 * Returns the key of a distinct value: its JSON text. It keeps 1, "1" and true apart, and it
 * can never be an Object.prototype member name such as `constructor`, because JSON strings
 * keep their quotes.
 */
export function valueKey(value: TraitScalar): string {
  return JSON.stringify(value);
}

export function valueOfKey(key: string): TraitScalar {
  return JSON.parse(key) as TraitScalar;
}

/** Occurrences of one distinct value. */
export interface ValueTally {
  count: number;
  /** Latest event time among the occurrences. */
  lastMs: number;
}

/**
 * Compares two values for most_frequent: more occurrences rank higher, then the more recent
 * latest occurrence. Returns a positive number when `a` ranks higher, a negative number when
 * `b` does, and 0 on a tie. Callers break a tie with the smaller `valueKey` in UTF-16 order,
 * which makes the ranking a total order, so the result does not depend on the order events
 * arrive in.
 */
export function compareTallies(a: ValueTally, b: ValueTally): number {
  if (a.count !== b.count) return a.count - b.count;
  return a.lastMs - b.lastMs;
}
