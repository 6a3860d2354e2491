/**
 * Splitting of a request of many pairs into worker tasks: equal parts of at least
 * `pairsPerTask`, so that the last task is not a small remainder.
 */
import { MIN_PAIRS_PER_TASK } from './matching-options.js';

/**
 * Returns the pair count of each task, each from `pairsPerTask` to twice that. A request
 * smaller than `pairsPerTask` is one task.
 */
export function splitIntoTasks(pairCount: number, pairsPerTask: number): number[] {
  if (pairCount <= 0) return [];
  if (pairsPerTask < MIN_PAIRS_PER_TASK) throw new RangeError(`pairsPerTask must be at least ${MIN_PAIRS_PER_TASK}, received ${pairsPerTask}`);

  // Rounding the task count down keeps each part from pairsPerTask to twice that.
  const tasks = Math.max(1, Math.floor(pairCount / pairsPerTask));
  const base = Math.floor(pairCount / tasks);
  const remainder = pairCount - base * tasks;
  return Array.from({ length: tasks }, (_, index) => base + (index < remainder ? 1 : 0));
}
