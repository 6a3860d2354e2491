/** Binary search over arrays of numbers sorted in ascending order. */

/**
 * Returns the first index from `start` on whose value is greater than `value`: where `value`
 * goes to come after every equal value, so equal values keep their arrival order.
 */
export function upperBound(sorted: readonly number[], value: number, start = 0): number {
  let low = start;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle] <= value) low = middle + 1;
    else high = middle;
  }
  return low;
}
