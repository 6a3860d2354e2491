/**
 * Entry point of the Piscina worker threads of matching-pool.ts. Piscina calls the default
 * export with each task and sends back its return value.
 */
import { runCompareTask, runPrepareTask, type CompareResult, type MatchingTask, type PrepareResult } from './worker-tasks.js';

export default function runMatchingTask(task: MatchingTask): PrepareResult | CompareResult {
  return task.kind === 'prepare' ? runPrepareTask(task) : runCompareTask(task);
}
