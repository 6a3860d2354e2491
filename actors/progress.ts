interface ProgressWaiter {
  isDone(): boolean;
  resolve(done: boolean): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Promises that resolve once a condition on the system holds, re-checked by `check()`
 * after every step that could make it hold (a run-loop turn, a settled persist, a load).
 * flush and drain wait on these instead of polling.
 */
export class ProgressWaiters {
  #waiters: ProgressWaiter[] = [];

  /**
   * Resolves true once `isDone` holds, or false when `timeoutMs` passes first. The timeout's
   * timer keeps the process alive, so a wait that nothing else would end still ends.
   */
  waitUntil(isDone: () => boolean, timeoutMs?: number): Promise<boolean> {
    if (isDone()) {
      return Promise.resolve(true);
    }

    return new Promise<boolean>((resolve, reject) => {
      const waiter: ProgressWaiter = { isDone, resolve, reject, timer: undefined };

      if (timeoutMs !== undefined) {
        waiter.timer = setTimeout(() => {
          this.#waiters = this.#waiters.filter((other) => other !== waiter);
          resolve(false);
        }, timeoutMs);
      }

      this.#waiters.push(waiter);
    });
  }

  /** Resolves every waiter whose condition now holds. */
  check(): void {
    if (this.#waiters.length === 0) {
      return;
    }

    const pending: ProgressWaiter[] = [];
    for (const waiter of this.#waiters) {
      if (waiter.isDone()) {
        clearTimeout(waiter.timer);
        waiter.resolve(true);
      } else {
        pending.push(waiter);
      }
    }
    this.#waiters = pending;
  }

  rejectAll(error: Error): void {
    const waiters = this.#waiters;
    this.#waiters = [];

    for (const waiter of waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
  }
}
