/**
 * The time source of the cluster code. Lease and membership deadlines use a monotonic clock,
 * because a wall clock can jump; tests swap in a fake clock that they advance by hand.
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic clock with an arbitrary origin. */
  nowMs(): number;
  /** Calls `callback` once after `delayMs`, unless cancelled first. Never keeps the process alive. */
  setTimer(delayMs: number, callback: () => void): TimerHandle;
}

export const systemClock: Clock = {
  nowMs: () => performance.now(),
  setTimer(delayMs, callback) {
    const timer = setTimeout(callback, delayMs);
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};
