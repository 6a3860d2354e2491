/** First delay before retrying a failed load, persist or dead-letter write. */
export const RETRY_INITIAL_DELAY_MS = 100;

/** Upper bound of the retry delay, so a recovered store is noticed within seconds. */
export const RETRY_MAX_DELAY_MS = 5_000;

/** Returns the delay after `previousMs` (0 for the first retry): 100 ms doubling up to 5 s. */
export function nextRetryDelay(previousMs: number): number {
  if (previousMs <= 0) {
    return RETRY_INITIAL_DELAY_MS;
  }
  return Math.min(previousMs * 2, RETRY_MAX_DELAY_MS);
}
