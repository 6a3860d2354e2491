/**
 * Figures of the cluster scenario, computed from the probe's write+read cycles. They are
 * the latencies in a time window, the time until a customer was writable and readable
 * again after a node was killed, and the maximum wait for a successful write+read while
 * shards moved, and from the nodes' shard move records, how long a moved shard was not
 * served. Pure functions of what the run recorded, so tests need no cluster.
 */
import type { ShardMoveRecord } from './cluster-node-host.js';
import type { ProbeCycle } from './cluster-probe.js';
import { summarizeLatencies, type LatencySummary } from './latency.js';

export interface CycleLatencies {
  /** Successful cycles that started in the window. */
  cycles: number;
  /** From sending the event to its acknowledgement. */
  write: LatencySummary;
  /** From the acknowledgement to the end of the GetProfile call that showed the event. */
  ackToVisible: LatencySummary;
}

export interface LongestWait {
  /** Maximum time from the start of a cycle to the end of the first successful cycle that started at or after it. */
  waitMs: number;
  /** Start of the cycle that waited longest, in epoch ms. */
  startMs: number;
  /** False when no successful cycle followed, so waitMs only runs to the last recorded cycle. */
  recovered: boolean;
}

/** Returns the cycles of customer `customer`, in start order. */
export function cyclesOf(cycles: ProbeCycle[], customer: number): ProbeCycle[] {
  return cycles.filter((cycle) => cycle.customer === customer).sort((a, b) => a.startMs - b.startMs);
}

/** Summarizes the latencies of the successful cycles that started in [fromMs, toMs). */
export function cycleLatencies(cycles: ProbeCycle[], fromMs: number, toMs: number): CycleLatencies {
  const write: number[] = [];
  const ackToVisible: number[] = [];

  for (const cycle of cycles) {
    if (cycle.outcome !== 'ok' || cycle.ackMs === null || cycle.startMs < fromMs || cycle.startMs >= toMs) continue;
    write.push(cycle.ackMs - cycle.startMs);
    ackToVisible.push(cycle.endMs - cycle.ackMs);
  }

  return { cycles: write.length, write: summarizeLatencies(write), ackToVisible: summarizeLatencies(ackToVisible) };
}

/**
 * Returns the time from `sinceMs` to the end of the first successful cycle that started at
 * or after it, or null when there is none. `cycles` are one customer's.
 */
export function recoveryTime(cycles: ProbeCycle[], sinceMs: number): number | null {
  let firstEnd: number | null = null;
  for (const cycle of cycles) {
    if (cycle.outcome === 'ok' && cycle.startMs >= sinceMs && (firstEnd === null || cycle.endMs < firstEnd)) firstEnd = cycle.endMs;
  }
  return firstEnd === null ? null : firstEnd - sinceMs;
}

/**
 * Returns the maximum time that a write+read started in [fromMs, toMs) waited until one
 * succeeded, retrying at the probe interval. `cycles` are one customer's, in start order.
 * With no pause it is about one cycle's duration. Returns null when no cycle started in
 * the window.
 */
export function longestWait(cycles: ProbeCycle[], fromMs: number, toMs: number): LongestWait | null {
  let longest: LongestWait | null = null;
  let nextSuccessEnd: number | null = null;
  const lastEnd = cycles.reduce((latest, cycle) => Math.max(latest, cycle.endMs), Number.NEGATIVE_INFINITY);

  // Walking backwards, nextSuccessEnd is the end of the first successful cycle at or after i.
  for (let i = cycles.length - 1; i >= 0; i--) {
    const cycle = cycles[i];
    if (cycle.outcome === 'ok') nextSuccessEnd = cycle.endMs;
    if (cycle.startMs < fromMs || cycle.startMs >= toMs) continue;

    const recovered = nextSuccessEnd !== null;
    const waitMs = (nextSuccessEnd ?? lastEnd) - cycle.startMs;
    if (longest === null || waitMs > longest.waitMs) longest = { waitMs, startMs: cycle.startMs, recovered };
  }

  return longest;
}

/**
 * Returns the time from when node `from` stopped serving `shard` (its "handed the shard
 * off" record in [fromMs, toMs), less the pauseMs it logged) until node `to` logged "took
 * over the shard", or null when either record is missing. The takeover may be logged
 * before the handoff record, which follows the release, but not before serving stopped.
 */
export function unservedTime(moves: ShardMoveRecord[], shard: number, from: string, to: string | null, fromMs: number, toMs: number): number | null {
  const handoff = moves.find((move) => move.shard === shard && move.nodeId === from && move.message === 'handed the shard off' && move.timeMs >= fromMs && move.timeMs < toMs);
  if (handoff?.pauseMs == null) return null;

  const stoppedServingAt = handoff.timeMs - handoff.pauseMs;
  const takeover = moves.find((move) => move.shard === shard && move.nodeId === to && move.message === 'took over the shard' && move.timeMs >= stoppedServingAt);
  return takeover === undefined ? null : takeover.timeMs - stoppedServingAt;
}

/** Returns the nearest-rank percentile of a few values, such as one pause per moved shard, or NaN for none. */
export function percentile(values: number[], percent: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((percent / 100) * sorted.length));
  return sorted[rank - 1];
}
