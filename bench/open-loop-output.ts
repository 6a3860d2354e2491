/** Output of the latency scenario: the tables on stdout and the chart of percentiles against rate. */
import { describeCorrectness } from './correctness.js';
import type { LatencyResult, StepSummary } from './open-loop.js';
import { formatCount, formatMs, formatRate, printColumns, printTable } from './report.js';
import { renderLineChart, type LineSeries } from './svg-chart.js';

const HEADER = ['rate', 'target', 'achieved', 'p50', 'p90', 'p99', 'p99.9', 'max', 'RESOURCE_EXHAUSTED', 'other errors', 'note'];

export function printLatency(result: LatencyResult): void {
  const { options } = result;
  const perRequest = options.driver === 'unary' ? 'one event per Ingest call' : `${options.batchSize} events per ${options.driver === 'batch' ? 'IngestBatch call' : 'IngestStream batch'}`;
  printTable('latency', [
    ['driver', `${options.driver}, ${perRequest}, ${options.generators} writer process(es)`],
    ['100% rate', `${formatRate(result.maxRatePerSecond)} (${result.maxRateSource === 'option' ? '--max-rate' : `closed loop, ${options.inFlightRequests} requests in flight per writer, ${options.closedLoopS} s`})`],
    ['closed loop', `${formatRate(result.closedLoop.eventsPerSecond)}, p50 ${formatMs(result.closedLoop.latency.p50Ms)}, p99 ${formatMs(result.closedLoop.latency.p99Ms)}`],
    ['steps', `${options.stepDurationS} s each, GetProfile at ${formatRate(options.queryRatePerSecond)}, Decide at ${formatRate(options.decideRatePerSecond)}`],
    ['definitions', result.definitions === null ? 'none' : `${formatCount(result.definitions.definitions)} from ${result.definitions.paths.join(', ')}`],
    ['event size', `${result.protobufBytesPerEvent} B protobuf`],
    ['writer CPU', `${result.writerCpuCores.toFixed(2)} cores`],
    ['correctness', describeCorrectness(result.correctness)],
    ['result', result.passed ? 'passed' : `FAILED: ${result.failures.join('; ')}`],
  ]);

  printColumns('write latency from the scheduled send time, per event', HEADER, result.steps.map((step) => stepRow(step.writes, `node ${step.nodeCpuCores.toFixed(2)} cores`)));
  const queries = result.steps.flatMap((step) => (step.queries === null ? [] : [stepRow(step.queries, '')]));
  if (queries.length > 0) printColumns('GetProfile latency during the writes, from the scheduled send time', HEADER, queries);
  const decisions = result.steps.flatMap((step) => (step.decisions === null ? [] : [stepRow(step.decisions, '')]));
  if (decisions.length > 0) printColumns('Decide latency during the writes, from the scheduled send time', HEADER, decisions);
}

export function stepRow(step: StepSummary, extra: string): string[] {
  const notes = [step.overloaded ? 'OVERLOADED' : '', step.behindSchedule ? `BEHIND SCHEDULE (send lag p99 ${formatMs(step.sendLagP99Ms)})` : '', step.incompleteRequests > 0 ? `${step.incompleteRequests} without a response` : '', extra];
  const { latency } = step;
  return [
    `${step.percent}%`,
    formatRate(step.targetPerSecond),
    formatRate(step.achievedPerSecond),
    formatMs(latency.p50Ms),
    formatMs(latency.p90Ms),
    formatMs(latency.p99Ms),
    formatMs(latency.p999Ms),
    formatMs(latency.maxMs),
    formatCount(step.resourceExhaustedRequests),
    formatCount(step.otherErrorRequests),
    notes.filter((note) => note !== '').join(', '),
  ];
}

const PERCENTILES: Array<{ name: string; color: string; value: (step: StepSummary) => number }> = [
  { name: 'p50', color: '#4e79a7', value: (step) => step.latency.p50Ms },
  { name: 'p90', color: '#59a14f', value: (step) => step.latency.p90Ms },
  { name: 'p99', color: '#f28e2b', value: (step) => step.latency.p99Ms },
  { name: 'p99.9', color: '#e15759', value: (step) => step.latency.p999Ms },
];

/** Builds one line per percentile, with x taken from each step by `xOf` (by default its write rate in percent). */
export function seriesOf(steps: StepSummary[], xOf: (step: StepSummary) => number = (step) => step.percent): LineSeries[] {
  return PERCENTILES.map((percentile) => ({ name: percentile.name, color: percentile.color, points: steps.map((step) => [xOf(step), percentile.value(step)] as [number, number]) }));
}

export function latencyChart(result: LatencyResult): string {
  const writes = result.steps.map((step) => step.writes);
  const queries = result.steps.flatMap((step) => (step.queries === null ? [] : [step.queries]));
  const decisions = result.steps.flatMap((step) => (step.decisions === null ? [] : [step.decisions]));
  const driver = result.options.driver === 'unary' ? 'Ingest (1 event)' : `${result.options.driver === 'batch' ? 'IngestBatch' : 'IngestStream'} (${result.options.batchSize} events)`;

  const panels = [{ yLabel: `${driver} latency, ms`, series: seriesOf(writes) }];
  if (queries.length > 0) panels.push({ yLabel: 'GetProfile latency, ms', series: seriesOf(queries) });
  if (decisions.length > 0) panels.push({ yLabel: 'Decide latency, ms', series: seriesOf(decisions) });
  return renderLineChart({
    title: `Open-loop latency, 100% = ${formatCount(result.maxRatePerSecond)} events/s, ${result.machine.cpus} cores`,
    xLabel: 'write rate, percent of the closed-loop maximum',
    panels,
  });
}
