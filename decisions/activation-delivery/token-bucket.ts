/**
 * A token bucket that spaces one destination's requests: it refills at `ratePerSecond`
 * tokens per second up to `capacity`, and each request takes one token, waiting for it
 * when the bucket is empty.
 */

export interface Clock {
  /** Current time in ms. */
  now(): number;
  /** Resolves after `ms`, or early when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export class TokenBucket {
  readonly #ratePerMs: number;
  readonly #capacity: number;
  readonly #clock: Clock;
  #tokens: number;
  #refilledAtMs: number;

  /** Starts full. A capacity of 1, the default, allows no bursts: requests start at least 1/`ratePerSecond` s apart. */
  constructor(ratePerSecond: number, clock: Clock, capacity = 1) {
    if (!(ratePerSecond > 0)) throw new RangeError(`ratePerSecond must be greater than 0, received ${ratePerSecond}`);
    if (!(capacity >= 1)) throw new RangeError(`capacity must be at least 1, received ${capacity}`);
    this.#ratePerMs = ratePerSecond / 1_000;
    this.#capacity = capacity;
    this.#clock = clock;
    this.#tokens = capacity;
    this.#refilledAtMs = clock.now();
  }

  /**
   * Takes a token, waiting until one is available. Returns the ms it waited, or null when
   * `signal` aborted first, in which case no token was taken.
   */
  async take(signal: AbortSignal): Promise<number | null> {
    let waitedMs = 0;
    for (;;) {
      if (signal.aborted) return null;
      this.#refill();
      if (this.#tokens >= 1) {
        this.#tokens -= 1;
        return waitedMs;
      }

      const waitMs = Math.ceil((1 - this.#tokens) / this.#ratePerMs);
      await this.#clock.sleep(waitMs, signal);
      waitedMs += waitMs;
    }
  }

  #refill(): void {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.#capacity, this.#tokens + (now - this.#refilledAtMs) * this.#ratePerMs);
    this.#refilledAtMs = now;
  }
}

/** The process clock; its timers are unref'd, so a pending sleep never keeps the process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      signal.addEventListener('abort', done, { once: true });
    }),
};
