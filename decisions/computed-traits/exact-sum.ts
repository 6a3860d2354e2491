/**
 * Exact floating-point summation: Shewchuk's algorithm ("Adaptive Precision Floating-Point
 * Arithmetic and Fast Robust Geometric Predicates", 1997) as CPython's `math.fsum`
 * (Modules/mathmodule.c) implements it, including its final correction for half-even
 * rounding. A sum is kept as a list of non-overlapping doubles, the partials, whose
 * mathematical sum equals the exact sum of every value added. Rounding happens once, when
 * the sum is read, so the result is the exact sum rounded to the nearest double, whatever
 * the order of the values. That makes an incremental sum equal to a rescan of the same
 * values in any order.
 *
 * The partials stay exact while every partial sum is finite, which the callers ensure by
 * accepting only values of magnitude at most MAX_SUMMED_MAGNITUDE. There are at most about 40
 * partials (the double exponent range divided by the 53-bit mantissa) and usually 1 or 2.
 */

/**
 * Maximum magnitude of a value that sum and average accept. Up to 1e8 such values can be
 * added before the exact sum could leave the double range (about 1.8e308).
 */
export const MAX_SUMMED_MAGNITUDE = 1e300;

/** Adds `value` to `partials` in place, keeping their sum exact. */
export function addToPartials(partials: number[], value: number): void {
  partials.length = addToExpansion(partials, partials.length, value);
}

/** Returns the exact sum of the partials rounded to the nearest double, ties to even. */
export function roundPartials(partials: readonly number[]): number {
  return roundExpansion(partials, partials.length);
}

/** Returns the exact sum of `values[start]` to `values[end - 1]`, rounded once. */
export function exactSum(values: readonly number[], start = 0, end = values.length): number {
  const partials: number[] = [];
  let count = 0;
  for (let index = start; index < end; index++) count = addToExpansion(partials, count, values[index]);
  return roundExpansion(partials, count);
}

/**
 * Adds `value` to the first `count` partials and returns their new count. Entries past the
 * count are left in place, so a hot loop never shrinks and regrows the array.
 */
function addToExpansion(partials: number[], count: number, value: number): number {
  let x = value;
  let newCount = 0;
  for (let index = 0; index < count; index++) {
    let y = partials[index];
    if (Math.abs(x) < Math.abs(y)) {
      const larger = y;
      y = x;
      x = larger;
    }
    const hi = x + y;
    const lo = y - (hi - x);
    if (lo !== 0) partials[newCount++] = lo;
    x = hi;
  }
  if (x !== 0) partials[newCount++] = x;
  return newCount;
}

function roundExpansion(partials: readonly number[], count: number): number {
  let n = count;
  if (n === 0) return 0;

  // Add from the largest partial down until a step is inexact.
  let hi = partials[--n];
  let lo = 0;
  while (n > 0) {
    const x = hi;
    const y = partials[--n];
    hi = x + y;
    lo = y - (hi - x);
    if (lo !== 0) break;
  }

  // `hi` may be a tie rounded to even although the partials below `lo` push the exact sum
  // past the halfway point. Then the next double away from zero is the correct result.
  if (n > 0 && ((lo < 0 && partials[n - 1] < 0) || (lo > 0 && partials[n - 1] > 0))) {
    const y = lo * 2;
    const x = hi + y;
    if (y === x - hi) hi = x;
  }
  // Adding 0 turns a negative zero into 0, so an empty and a cancelled sum read the same.
  return hi + 0;
}
