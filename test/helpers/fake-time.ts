/**
 * Simulated time for cluster tests. One FakeTime is the shared timeline, and each simulated
 * node gets its own FakeClock on it, with its own origin so that no code can compare two
 * nodes' clocks by mistake. A paused clock fires no timers, like a stalled or crashed process,
 * and fires the overdue ones on the next advance after resume().
 */
import type { Clock, TimerHandle } from '../../cluster/clock.js';

interface PendingTimer {
  atMs: number;
  order: number;
  clock: FakeClock;
  callback: () => void;
}

/** Lets every pending promise callback run. The fakes resolve through promises only, never through I/O. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

export class FakeTime {
  #nowMs = 0;
  #order = 0;
  #timers: PendingTimer[] = [];

  get nowMs(): number {
    return this.#nowMs;
  }

  /** Creates a clock whose nowMs() is this timeline's time plus `originMs`. */
  clock(originMs = 0): FakeClock {
    return new FakeClock(this, originMs);
  }

  /** Moves time forward by `ms`, firing due timers in time order and settling promises after each. */
  async advance(ms: number): Promise<void> {
    const targetMs = this.#nowMs + ms;
    await settle();

    for (let timer = this.#nextDue(targetMs); timer !== undefined; timer = this.#nextDue(targetMs)) {
      this.#timers.splice(this.#timers.indexOf(timer), 1);
      this.#nowMs = Math.max(this.#nowMs, timer.atMs);
      timer.callback();
      await settle();
    }
    this.#nowMs = targetMs;
  }

  /**
   * Advances in steps of `stepMs` until `condition` holds, and returns the time that took.
   * Throws when it still does not hold after `limitMs`.
   */
  async advanceUntil(condition: () => boolean, limitMs: number, stepMs = 100): Promise<number> {
    const startMs = this.#nowMs;
    while (!condition()) {
      if (this.#nowMs - startMs >= limitMs) throw new Error(`condition still false after ${limitMs} ms of simulated time`);
      await this.advance(stepMs);
    }
    return this.#nowMs - startMs;
  }

  /** Number of timers not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  schedule(clock: FakeClock, delayMs: number, callback: () => void): TimerHandle {
    const timer: PendingTimer = { atMs: this.#nowMs + delayMs, order: this.#order++, clock, callback };
    this.#timers.push(timer);
    return {
      cancel: () => {
        const index = this.#timers.indexOf(timer);
        if (index >= 0) this.#timers.splice(index, 1);
      },
    };
  }

  #nextDue(targetMs: number): PendingTimer | undefined {
    let next: PendingTimer | undefined;
    for (const timer of this.#timers) {
      if (timer.clock.paused || timer.atMs > targetMs) continue;
      if (next === undefined || timer.atMs < next.atMs || (timer.atMs === next.atMs && timer.order < next.order)) next = timer;
    }
    return next;
  }
}

export class FakeClock implements Clock {
  paused = false;

  constructor(
    private readonly time: FakeTime,
    private readonly originMs: number,
  ) {}

  nowMs(): number {
    return this.time.nowMs + this.originMs;
  }

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    return this.time.schedule(this, delayMs, callback);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }
}
