/** Resolves after the event loop has run its pending I/O callbacks and timers, so a long loop on the main thread can let them in. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Items that a loop on the main thread handles between two yields to the event loop. At
 * about 1 µs per item that is a few milliseconds, and less once the loop's code is optimised.
 */
export const ITEMS_PER_YIELD = 2_048;
