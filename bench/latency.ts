/**
 * Latency percentiles from an HDR histogram (hdr-histogram-js): values are recorded in
 * whole microseconds with 3 significant digits, so a percentile is within 0.1% of the
 * recorded value.
 */
import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64, type Histogram } from 'hdr-histogram-js';

export interface LatencySummary {
  count: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

/** One hour in microseconds: the largest latency recorded exactly; longer ones are clamped. */
const HIGHEST_TRACKABLE_US = 3_600_000_000;

/** Creates an empty histogram of microseconds, with the bounds every histogram of the harness shares so they can be merged. */
export function createLatencyHistogram(): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_TRACKABLE_US, numberOfSignificantValueDigits: 3 });
}

/** Records a latency given in milliseconds `count` times, clamped to [1 µs, 1 h]. */
export function recordMs(histogram: Histogram, ms: number, count = 1): void {
  const us = Math.min(HIGHEST_TRACKABLE_US, Math.max(1, Math.round(ms * 1_000)));
  histogram.recordValueWithCount(us, count);
}

/** Summarizes latencies given in milliseconds (or in microseconds with `unit: 'us'`). */
export function summarizeLatencies(values: ArrayLike<number>, unit: 'ms' | 'us' = 'ms'): LatencySummary {
  const histogram = createLatencyHistogram();
  const toMs = unit === 'ms' ? 1 : 1 / 1_000;
  for (let i = 0; i < values.length; i++) recordMs(histogram, values[i] * toMs);

  const summary = summarizeHistogram(histogram);
  histogram.destroy();
  return summary;
}

export function summarizeHistogram(histogram: Histogram): LatencySummary {
  const ms = (us: number) => us / 1_000;
  return {
    count: histogram.totalCount,
    meanMs: histogram.totalCount === 0 ? 0 : ms(histogram.mean),
    p50Ms: ms(histogram.getValueAtPercentile(50)),
    p90Ms: ms(histogram.getValueAtPercentile(90)),
    p99Ms: ms(histogram.getValueAtPercentile(99)),
    p999Ms: ms(histogram.getValueAtPercentile(99.9)),
    maxMs: ms(histogram.maxValue),
  };
}

/** Encodes a histogram for the IPC channel, in the compressed base64 form of HdrHistogram's log format. */
export function encodeHistogram(histogram: Histogram): string {
  return encodeIntoCompressedBase64(histogram);
}

/** Adds up histograms encoded by `encodeHistogram` (in other processes) and summarizes them. */
export function summarizeEncoded(encoded: string[]): LatencySummary {
  const total = createLatencyHistogram();
  for (const text of encoded) {
    const histogram = decodeFromCompressedBase64(text);
    total.add(histogram);
    histogram.destroy();
  }

  const summary = summarizeHistogram(total);
  total.destroy();
  return summary;
}
