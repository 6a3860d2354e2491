/**
 * Latency percentiles from an HDR histogram (hdr-histogram-js): values are recorded in
 * whole microseconds with 3 significant digits, so a percentile is within 0.1% of the
 * recorded value.
 */
import { build } from 'hdr-histogram-js';

export interface LatencySummary {
  count: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** One hour in microseconds: the largest latency recorded exactly; longer ones are clamped. */
const HIGHEST_TRACKABLE_US = 3_600_000_000;

/** Summarizes latencies given in milliseconds (or in microseconds with `unit: 'us'`). */
export function summarizeLatencies(values: ArrayLike<number>, unit: 'ms' | 'us' = 'ms'): LatencySummary {
  const histogram = build({ lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_TRACKABLE_US, numberOfSignificantValueDigits: 3 });
  const toMicroseconds = unit === 'ms' ? 1_000 : 1;

  for (let i = 0; i < values.length; i++) {
    const us = Math.round(values[i] * toMicroseconds);
    histogram.recordValue(Math.min(HIGHEST_TRACKABLE_US, Math.max(1, us)));
  }

  const ms = (us: number) => us / 1_000;
  const summary: LatencySummary = {
    count: histogram.totalCount,
    meanMs: ms(histogram.mean),
    p50Ms: ms(histogram.getValueAtPercentile(50)),
    p90Ms: ms(histogram.getValueAtPercentile(90)),
    p99Ms: ms(histogram.getValueAtPercentile(99)),
    maxMs: ms(histogram.maxValue),
  };
  histogram.destroy();
  return summary;
}
