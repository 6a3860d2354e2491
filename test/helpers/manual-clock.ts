/**
 * A Clock for tests that moves only when the test advances it. Timers run in order of
 * their due time (then of creation), and pending promises settle after each one.
 */
import type { Clock, TimerHandle } from '../../cluster/clock.js';

interface ManualTimer {
  dueMs: number;
  order: number;
  callback: () => void;
}

/** Lets every queued promise reaction and the I/O already completed run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class ManualClock implements Clock {
  #nowMs: number;
  #created = 0;
  readonly #timers = new Set<ManualTimer>();

  constructor(startMs = 0) {
    this.#nowMs = startMs;
  }

  nowMs(): number {
    return this.#nowMs;
  }

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    const timer = { dueMs: this.#nowMs + Math.max(0, delayMs), order: this.#created++, callback };
    this.#timers.add(timer);
    return { cancel: () => this.#timers.delete(timer) };
  }

  /** Timers that have not run or been cancelled. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, running each timer that falls due on the way at its due time. */
  async advance(ms: number): Promise<void> {
    const targetMs = this.#nowMs + ms;
    await settle();
    for (let timer = this.#nextDue(targetMs); timer !== undefined; timer = this.#nextDue(targetMs)) {
      this.#timers.delete(timer);
      this.#nowMs = Math.max(this.#nowMs, timer.dueMs);
      timer.callback();
      await settle();
    }
    this.#nowMs = targetMs;
  }

  /** Moves time forward without running timers, as a stalled process finds it when it resumes. */
  jump(ms: number): void {
    this.#nowMs += ms;
  }

  #nextDue(limitMs: number): ManualTimer | undefined {
    let next: ManualTimer | undefined;
    for (const timer of this.#timers) {
      if (timer.dueMs > limitMs) continue;
      if (next === undefined || timer.dueMs < next.dueMs || (timer.dueMs === next.dueMs && timer.order < next.order)) next = timer;
    }
    return next;
  }
}
