/**
 * Records what stops a process's JavaScript thread: garbage collection pauses (from
 * perf_hooks 'gc' entries) and event-loop delay (monitorEventLoopDelay). A benchmark
 * process takes a report per step, and the harness lines slow calls up with the pauses of
 * the processes involved, which share one clock: epoch milliseconds from
 * performance.timeOrigin.
 */
import { PerformanceObserver, constants, monitorEventLoopDelay, type IntervalHistogram, type PerformanceEntry } from 'node:perf_hooks';

export type GcKind = 'scavenge' | 'mark-compact' | 'incremental marking' | 'weak callbacks' | 'other';

export interface Pause {
  startEpochMs: number;
  durationMs: number;
  kind: GcKind;
}

export interface GcTotals {
  count: number;
  totalMs: number;
  maxMs: number;
}

export interface PauseReport {
  /** Every GC pause since the last report. */
  gc: GcTotals;
  byKind: Partial<Record<GcKind, GcTotals>>;
  /** How late a 1 ms timer ran, p99 and maximum, in milliseconds. */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** The pauses of at least MIN_LISTED_PAUSE_MS, at most MAX_LISTED_PAUSES of them, oldest first. */
  pauses: Pause[];
}

/** Shorter pauses are counted but not listed, which keeps the reports small. */
const MIN_LISTED_PAUSE_MS = 0.5;
const MAX_LISTED_PAUSES = 10_000;

const KINDS = new Map<number, GcKind>([
  [constants.NODE_PERFORMANCE_GC_MINOR, 'scavenge'],
  [constants.NODE_PERFORMANCE_GC_MAJOR, 'mark-compact'],
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL, 'incremental marking'],
  [constants.NODE_PERFORMANCE_GC_WEAKCB, 'weak callbacks'],
]);

export class PauseMonitor {
  readonly #observer: PerformanceObserver;
  readonly #loopDelay: IntervalHistogram;
  #pauses: Pause[] = [];
  #gc: GcTotals = emptyTotals();
  #byKind: Partial<Record<GcKind, GcTotals>> = {};

  constructor() {
    this.#observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) this.#record(entry);
    });
    this.#observer.observe({ entryTypes: ['gc'] });
    this.#loopDelay = monitorEventLoopDelay({ resolution: 1 });
    this.#loopDelay.enable();
  }

  /** Returns what was recorded since the last call (or the start), and starts recording anew. */
  take(): PauseReport {
    const report: PauseReport = {
      gc: this.#gc,
      byKind: this.#byKind,
      loopDelayP99Ms: this.#loopDelay.count === 0 ? 0 : this.#loopDelay.percentile(99) / 1e6,
      loopDelayMaxMs: this.#loopDelay.count === 0 ? 0 : this.#loopDelay.max / 1e6,
      pauses: this.#pauses,
    };

    this.#pauses = [];
    this.#gc = emptyTotals();
    this.#byKind = {};
    this.#loopDelay.reset();
    return report;
  }

  stop(): void {
    this.#observer.disconnect();
    this.#loopDelay.disable();
  }

  #record(entry: PerformanceEntry): void {
    const detail = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail;
    const kind = KINDS.get(detail?.kind ?? -1) ?? 'other';
    add(this.#gc, entry.duration);
    add((this.#byKind[kind] ??= emptyTotals()), entry.duration);

    if (entry.duration >= MIN_LISTED_PAUSE_MS && this.#pauses.length < MAX_LISTED_PAUSES) {
      this.#pauses.push({ startEpochMs: performance.timeOrigin + entry.startTime, durationMs: entry.duration, kind });
    }
  }
}

function emptyTotals(): GcTotals {
  return { count: 0, totalMs: 0, maxMs: 0 };
}

function add(totals: GcTotals, durationMs: number): void {
  totals.count++;
  totals.totalMs += durationMs;
  totals.maxMs = Math.max(totals.maxMs, durationMs);
}

/** A call that took longer than the goal: its due time (epoch ms) and its latency. */
export interface SlowCall {
  dueEpochMs: number;
  latencyMs: number;
}

export interface SlowCallAttribution {
  slowCalls: number;
  /**
   * Slow calls explained by the GC pauses of the first process alone, of the second alone,
   * only by those of both together, or by neither.
   */
  explainedByFirst: number;
  explainedBySecond: number;
  explainedByBoth: number;
  unexplained: number;
}

/**
 * Sorts slow calls by the GC pauses that explain them. The pauses of a process explain a
 * call when they overlap it and last, together, at least as long as the call exceeded
 * `goalMs`. A whole pause counts, not only its overlap, because the calls that arrive during
 * a pause also wait for those queued before them.
 */
export function attributeSlowCalls(calls: readonly SlowCall[], first: readonly Pause[], second: readonly Pause[], goalMs: number): SlowCallAttribution {
  const result: SlowCallAttribution = { slowCalls: calls.length, explainedByFirst: 0, explainedBySecond: 0, explainedByBoth: 0, unexplained: 0 };
  for (const call of calls) {
    const excessMs = call.latencyMs - goalMs;
    const inFirst = overlappingPausesMs(call, first);
    const inSecond = overlappingPausesMs(call, second);

    if (inFirst >= excessMs) result.explainedByFirst++;
    else if (inSecond >= excessMs) result.explainedBySecond++;
    else if (inFirst + inSecond >= excessMs) result.explainedByBoth++;
    else result.unexplained++;
  }
  return result;
}

/** Returns the total duration of the pauses that overlap the call, in milliseconds. */
function overlappingPausesMs(call: SlowCall, pauses: readonly Pause[]): number {
  const end = call.dueEpochMs + call.latencyMs;
  let total = 0;
  for (const pause of pauses) {
    if (pause.startEpochMs < end && pause.startEpochMs + pause.durationMs > call.dueEpochMs) total += pause.durationMs;
  }
  return total;
}
