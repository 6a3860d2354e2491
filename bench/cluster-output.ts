/**
 * Output of the cluster scenario: the result table on stdout and the SVG charts (timeline,
 * latency, failover, handoff pauses) under docs/benchmarks/.
 */
import { CLUSTER_GOALS, type ClusterResult, type ShardPause } from './cluster-result.js';
import { writeChart, type RunContext } from './context.js';
import { describeCorrectness } from './correctness.js';
import { formatCount, formatMs, formatRate, printTable, type TableRow } from './report.js';
import { renderBarChart, renderLineChart, type Bar } from './svg-chart.js';

const HANDOFF_COLOR = '#4e79a7';
const REJOIN_COLOR = '#f28e2b';

export async function writeClusterCharts(context: RunContext, result: ClusterResult): Promise<string[]> {
  const charts = [
    await writeChart(context, 'cluster-timeline.svg', timelineChart(result)),
    await writeChart(context, 'cluster-latency.svg', latencyChart(result)),
    await writeChart(context, 'cluster-failover.svg', failoverChart(result)),
    await writeChart(context, 'cluster-handoff.svg', handoffChart(result)),
  ];
  return charts.filter((chart): chart is string => chart !== null);
}

function timelineChart(result: ClusterResult): string {
  const points = result.timeline;
  return renderLineChart({
    title: `Cluster of ${result.nodes.length} nodes: load, backlog and running shards over the run`,
    xLabel: 'seconds since the first load started',
    markers: result.markers.map((marker) => ({ x: marker.seconds, label: marker.label })),
    panels: [
      {
        yLabel: 'events per second',
        series: [{ name: 'acknowledged/s', color: '#f28e2b', points: points.map((point) => [point.seconds, point.acknowledgedPerSecond]) }],
      },
      {
        yLabel: 'events not yet applied',
        series: [{ name: 'not yet applied', color: '#4e79a7', points: points.map((point) => [point.seconds, point.backlogEvents]) }],
      },
      {
        yLabel: 'shards running',
        series: [{ name: `running shards (of ${result.shards})`, color: '#59a14f', points: points.map((point) => [point.seconds, point.runningShards]) }],
      },
    ],
  });
}

function latencyChart(result: ClusterResult): string {
  const { write, ackToVisible } = result.latency;
  const bar = (label: string, ms: number, color: string): Bar => ({ label, value: ms, valueLabel: formatMs(ms), color });
  return renderBarChart({
    title: `Probe write+read during the throughput window (${result.latency.cycles} cycles)`,
    yLabel: 'milliseconds',
    bars: [
      bar('write p50', write.p50Ms, HANDOFF_COLOR),
      bar('write p99', write.p99Ms, HANDOFF_COLOR),
      bar('ack to visible p50', ackToVisible.p50Ms, REJOIN_COLOR),
      bar('ack to visible p99', ackToVisible.p99Ms, REJOIN_COLOR),
    ],
  });
}

function failoverChart(result: ClusterResult): string {
  const bars: Bar[] = result.failover.shards.map((shard) => ({
    label: `s${shard.shard}`,
    value: (shard.recoveryMs ?? 0) / 1_000,
    valueLabel: shard.recoveryMs === null ? 'none' : `${(shard.recoveryMs / 1_000).toFixed(1)} s`,
    color: HANDOFF_COLOR,
  }));
  return renderBarChart({
    title: `SIGKILL of ${result.failover.victim}: time to the first write+read per shard (s = shard)`,
    yLabel: 'seconds after the kill',
    bars,
    referenceLine: { value: result.failover.goalMs / 1_000, label: `goal ${result.failover.goalMs / 1_000} s` },
    width: chartWidth(bars.length),
  });
}

function handoffChart(result: ClusterResult): string {
  const pauseBar = (shard: ShardPause, color: string): Bar => ({
    label: `s${shard.shard}`,
    value: shard.pauseMs ?? 0,
    valueLabel: shard.pauseMs === null ? 'none' : formatMs(shard.pauseMs),
    color,
  });
  const bars = [...(result.handoff?.shards ?? []).map((shard) => pauseBar(shard, HANDOFF_COLOR)), ...(result.failover.rejoin?.shards ?? []).map((shard) => pauseBar(shard, REJOIN_COLOR))];
  return renderBarChart({
    title: `Longest write+read wait per moved shard: SIGTERM of ${result.failover.victim} (blue), its rejoin (orange)`,
    yLabel: 'milliseconds',
    bars,
    referenceLine: { value: CLUSTER_GOALS.handoffPauseMs, label: `goal ${formatMs(CLUSTER_GOALS.handoffPauseMs)}` },
    width: chartWidth(bars.length),
  });
}

function chartWidth(bars: number): number {
  return Math.max(640, 120 + bars * 56);
}

export function printCluster(result: ClusterResult): void {
  const { throughput, latency, probe, load } = result;
  const rows: TableRow[] = [
    ['applied (whole cluster)', `${formatRate(throughput.appliedPerSecond)}, goal ${formatRate(throughput.goalPerSecond)}: ${(throughput.appliedShareOfGoal * 100).toFixed(1)}% of it`],
    ...referenceRows(result),
    ['acknowledged', formatRate(throughput.acknowledgedPerSecond)],
    ...throughput.perGenerator.map((generator, i): TableRow => [`  generator ${i} (last sent to ${generator.address})`, formatRate(generator.acknowledgedPerSecond)]),
    ['batch latency p50 / p99', `${formatMs(throughput.batchLatency.p50Ms)} / ${formatMs(throughput.batchLatency.p99Ms)}`],
    ['window', `${throughput.windowSeconds.toFixed(1)} s (apply lag after sending ${throughput.applyLagSeconds.toFixed(2)} s)`],
    ['probe write p50 / p99', `${formatMs(latency.write.p50Ms)} / ${formatMs(latency.write.p99Ms)} (${latency.cycles} cycles)`],
    ['probe ack to visible p50 / p99', `${formatMs(latency.ackToVisible.p50Ms)} / ${formatMs(latency.ackToVisible.p99Ms)}`],
    ...failoverRows(result),
    ...handoffRows(result),
    ['probe', `${formatCount(probe.cycles)} cycles over ${probe.customers} customers every ${probe.intervalMs} ms; failed: ${describeFailures(probe.failures)}`],
    ['load, all phases', `${formatCount(load.acknowledgedEvents)} events acknowledged, ${formatCount(load.resentStoredEvents)} stored by an unacknowledged attempt, ${load.addressSwitches} node switches, ${load.overloadRetries} overload retries`],
    ['correctness', result.correctness === null ? 'not checked' : describeCorrectness(result.correctness)],
    ['probe customers', probe.mismatches.length === 0 ? 'every eventCount as acknowledged' : `FAILED: ${probe.mismatches.length} differ`],
    ['result', result.passed ? 'passed' : `FAILED: ${result.failures.join('; ')}`],
  ];
  printTable('cluster', rows);
}

function referenceRows(result: ClusterResult): TableRow[] {
  const reference = result.jetstreamReference;
  if (reference === null) return [];
  const share = reference.eventsPerSecond > 0 ? result.throughput.appliedPerSecond / reference.eventsPerSecond : 0;
  return [
    ['JetStream alone, before the nodes', `${formatRate(reference.eventsPerSecond)} acknowledged (${reference.description}); the cluster applied ${(share * 100).toFixed(1)}% of it`],
    ['  its batch latency p50 / p99', `${formatMs(reference.batchLatency.p50Ms)} / ${formatMs(reference.batchLatency.p99Ms)}`],
  ];
}

function failoverRows(result: ClusterResult): TableRow[] {
  const { failover } = result;
  const met = failover.maxRecoveryMs !== null && failover.maxRecoveryMs < failover.goalMs;
  const share = result.options.faultLoadShare;
  const load = result.faultLoadPerSecond === null ? 'as fast as acknowledged' : `at most ${formatRate(result.faultLoadPerSecond)} (${Math.round(share * 100)}% of the acknowledged rate)`;
  const rows: TableRow[] = [
    ['load during the failover and handoff', load],
    [`failover after SIGKILL of ${failover.victim}`, `max ${seconds(failover.maxRecoveryMs)}, min ${seconds(failover.minRecoveryMs)} over ${failover.shards.length} shards, goal ${seconds(failover.goalMs)}: ${goal(met)}`],
    ['  shards placed on the survivors after', `${seconds(failover.placedAfterMs)}${failover.victimWasCoordinator ? ` (${failover.victim} was the coordinator)` : ''}`],
  ];

  const rejoin = failover.rejoin;
  if (rejoin === null) rows.push([`  rejoin of ${failover.victim}`, 'skipped']);
  else {
    rows.push([`  rejoin of ${failover.victim}`, `${rejoin.shards.length} shards moved back in ${seconds(rejoin.placedAfterMs)}, max pause ${ms(rejoin.maxPauseMs)}`]);
    rows.push(['    not served, from the nodes\' logs', `max ${ms(rejoin.maxUnservedMs)}; longest wait on shards that stayed ${ms(rejoin.unmovedMaxWaitMs)}`]);
  }
  return rows;
}

function handoffRows(result: ClusterResult): TableRow[] {
  const { handoff } = result;
  if (handoff === null) return [['handoff after SIGTERM', 'skipped']];

  const met = handoff.maxPauseMs !== null && handoff.maxPauseMs < handoff.goalMs;
  return [
    [`handoff pause after SIGTERM of ${handoff.victim}`, `max ${ms(handoff.maxPauseMs)}, p50 ${ms(handoff.p50PauseMs)} over ${handoff.shards.length} shards, goal ${formatMs(handoff.goalMs)}: ${goal(met)}`],
    ['  not served, from the nodes\' logs', `max ${ms(handoff.maxUnservedMs)}, p50 ${ms(handoff.p50UnservedMs)} (old owner stops serving to new owner serving)`],
    ['  handoffMs logged by the node', handoff.shards.map((shard) => `s${shard.shard} ${ms(shard.handoffMs)}`).join(', ') || 'none'],
    ['  longest wait on shards that stayed', ms(handoff.unmovedMaxWaitMs)],
    [`  ${handoff.victim} exited after SIGTERM`, `${seconds(handoff.exitMs)}${handoff.exitedOnItsOwn ? '' : ' (SIGKILL)'}`],
  ];
}

function seconds(value: number | null): string {
  return value === null ? 'n/a' : `${(value / 1_000).toFixed(2)} s`;
}

function ms(value: number | null): string {
  return value === null ? 'n/a' : formatMs(value);
}

function goal(met: boolean): string {
  return met ? 'goal met' : 'goal NOT met';
}

function describeFailures(failures: Record<string, number>): string {
  const entries = Object.entries(failures);
  if (entries.length === 0) return 'none';
  return entries.map(([kind, count]) => `${count} ${kind}`).join(', ');
}
