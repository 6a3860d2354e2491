/**
 * Compare scenario: rtcdp embedded, the Redis baseline and the physical-limit references,
 * in one run and with the same load. Every rtcdp figure comes with its ratio to what teams
 * build instead and to what the layers under rtcdp allow on this machine.
 *
 * Order: grpc-js reference, NATS reference, RocksDB references (WAL fdatasync, then none),
 * Redis baseline, rtcdp. Each runs on its own; nothing else of the run is running then.
 */
import { baselineFailures, baselineRows, measureBaseline, type BaselineMeasurement, type BaselineOptions } from './baseline/baseline.js';
import { writeChart, type RunContext } from './context.js';
import { describeCorrectness, type CorrectnessResult } from './correctness.js';
import { measureReference, measureRtcdp, type IngestOptions, type LoadMeasurement, type RtcdpMeasurement } from './ingest.js';
import { measureNatsReference, measureRocksDbReference, type ReferenceMeasurement } from './references/references.js';
import { formatMs, formatRate, formatShare, machineInfo, printColumns, printTable, progress, type MachineInfo } from './report.js';
import { renderBarChart } from './svg-chart.js';

export interface CompareOptions extends BaselineOptions {
  /** rtcdp fdatasyncs its WAL before acknowledging (the node's default). */
  walSync: boolean;
  /** Also measure the core NATS reference; it needs nats-server. */
  natsReference: boolean;
}

export interface ReferenceRow {
  name: string;
  description: string;
  eventsPerSecond: number;
  /** rtcdp applied/s divided by the reference's events/s. */
  rtcdpShare: number;
}

export interface CompareResult {
  scenario: 'compare';
  passed: boolean;
  failures: string[];
  machine: MachineInfo;
  loadAverageAfter: number[];
  options: CompareOptions;
  rtcdp: RtcdpMeasurement;
  baseline: BaselineMeasurement;
  grpcReference: LoadMeasurement;
  natsReference: ReferenceMeasurement | null;
  rocksDbSync: ReferenceMeasurement;
  rocksDbNoSync: ReferenceMeasurement;
  /** rtcdp applied/s divided by the baseline's applied/s. */
  ratioToBaseline: number;
  references: ReferenceRow[];
  chart: string | null;
}

export async function runCompare(context: RunContext, options: CompareOptions): Promise<CompareResult> {
  const machine = machineInfo();
  progress(`compare: every measurement with ${options.generators} generator(s) or publisher, batches of ${options.batchSize}, ${options.inFlightBatches} in flight, ${options.durationS} s window after ${options.warmupS} s warm-up`);

  const grpcReference = await measureReference(context, options);
  progress(`grpc-js reference: ${formatRate(grpcReference.acknowledgedPerSecond)}`);
  const natsReference = options.natsReference ? await measureNatsReference(context, options) : null;
  const rocksDbSync = await measureRocksDbReference(context, options, true);
  const rocksDbNoSync = await measureRocksDbReference(context, options, false);
  const baseline = await measureBaseline(context, options);

  const ingestOptions: IngestOptions = { ...options, reference: false, cpuProfile: false };
  const { measurement: rtcdp } = await measureRtcdp(context, ingestOptions);

  const result: CompareResult = {
    scenario: 'compare',
    passed: false,
    failures: [],
    machine,
    loadAverageAfter: machineInfo().loadAverage,
    options,
    rtcdp,
    baseline,
    grpcReference,
    natsReference,
    rocksDbSync,
    rocksDbNoSync,
    ratioToBaseline: baseline.appliedPerSecond > 0 ? rtcdp.appliedPerSecond / baseline.appliedPerSecond : 0,
    references: referenceRows(rtcdp, baseline, grpcReference, natsReference, rocksDbSync, rocksDbNoSync),
    chart: null,
  };
  result.failures = compareFailures(result);
  result.passed = result.failures.length === 0;

  result.chart = await writeChart(context, 'compare.svg', compareChart(result));
  printCompare(result);
  return result;
}

function referenceRows(
  rtcdp: RtcdpMeasurement,
  baseline: BaselineMeasurement,
  grpc: LoadMeasurement,
  nats: ReferenceMeasurement | null,
  rocksDbSync: ReferenceMeasurement,
  rocksDbNoSync: ReferenceMeasurement,
): ReferenceRow[] {
  const row = (name: string, description: string, eventsPerSecond: number): ReferenceRow => ({
    name,
    description,
    eventsPerSecond,
    rtcdpShare: eventsPerSecond > 0 ? rtcdp.appliedPerSecond / eventsPerSecond : 0,
  });

  const rows = [row('grpc-js IngestStream', 'decodes each batch and responds with every event accepted', grpc.acknowledgedPerSecond)];
  if (nats !== null) rows.push(row(nats.name, nats.description, nats.eventsPerSecond));
  rows.push(row(rocksDbSync.name, rocksDbSync.description, rocksDbSync.eventsPerSecond));
  rows.push(row(rocksDbNoSync.name, rocksDbNoSync.description, rocksDbNoSync.eventsPerSecond));
  rows.push(row(`Redis baseline (appendfsync ${baseline.appendFsync})`, 'validates, then one Lua read-modify-write per event', baseline.appliedPerSecond));
  return rows;
}

function compareFailures(result: CompareResult): string[] {
  const failures: string[] = [];
  if (!result.rtcdp.correctness.passed) failures.push(`rtcdp correctness check ${describeCorrectness(result.rtcdp.correctness)}`);
  if (!(result.rtcdp.appliedPerSecond > 0)) failures.push('rtcdp applied no events in the window');
  if (result.rtcdp.rejectedEvents > 0) failures.push(`rtcdp rejected ${result.rtcdp.rejectedEvents} generated events, which are all valid`);
  failures.push(...baselineFailures(result.baseline).map((failure) => `baseline: ${failure}`));
  for (const reference of result.references) {
    if (!(reference.eventsPerSecond > 0)) failures.push(`${reference.name} measured no events`);
  }
  return failures;
}

function compareChart(result: CompareResult): string {
  const bars = [
    { label: 'rtcdp applied', value: result.rtcdp.appliedPerSecond, color: '#f28e2b' },
    { label: 'Redis baseline', value: result.baseline.appliedPerSecond, color: '#e15759' },
    { label: 'grpc-js', value: result.grpcReference.acknowledgedPerSecond, color: '#59a14f' },
  ];
  if (result.natsReference !== null) bars.push({ label: 'NATS core', value: result.natsReference.eventsPerSecond, color: '#76b7b2' });
  bars.push({ label: 'RocksDB fdatasync', value: result.rocksDbSync.eventsPerSecond, color: '#4e79a7' });
  bars.push({ label: 'RocksDB no sync', value: result.rocksDbNoSync.eventsPerSecond, color: '#9c755f' });

  return renderBarChart({
    title: `rtcdp, the Redis baseline and references, events per second, ${result.machine.cpus} cores`,
    yLabel: 'events per second',
    bars,
    width: 800,
  });
}

function printCompare(result: CompareResult): void {
  const { rtcdp, baseline } = result;
  const rtcdpDurability = result.options.walSync ? 'WAL fdatasync before acknowledging' : 'WAL write(2) before acknowledging, no fdatasync';
  const baselineDurability = baseline.appendFsync === 'always' ? 'AOF fsync before replying' : 'AOF write(2) before replying, fsync about once a second';

  printColumns(
    'compare: rtcdp and the Redis baseline',
    ['measure', 'rtcdp', 'Redis baseline', 'rtcdp / baseline'],
    [
      ['applied events/s', formatRate(rtcdp.appliedPerSecond), formatRate(baseline.appliedPerSecond), formatShare(rtcdp.appliedPerSecond, baseline.appliedPerSecond)],
      ['acknowledged events/s', formatRate(rtcdp.acknowledgedPerSecond), formatRate(baseline.acknowledgedPerSecond), formatShare(rtcdp.acknowledgedPerSecond, baseline.acknowledgedPerSecond)],
      ['batch latency p50', formatMs(rtcdp.batchLatency.p50Ms), formatMs(baseline.batchLatency.p50Ms), formatShare(rtcdp.batchLatency.p50Ms, baseline.batchLatency.p50Ms)],
      ['batch latency p99', formatMs(rtcdp.batchLatency.p99Ms), formatMs(baseline.batchLatency.p99Ms), formatShare(rtcdp.batchLatency.p99Ms, baseline.batchLatency.p99Ms)],
      ['server CPU, cores', rtcdp.nodeCpuCores.toFixed(2), `${(baseline.serviceCpuCores + baseline.redisCpuCores).toFixed(2)} (service ${baseline.serviceCpuCores.toFixed(2)}, redis ${baseline.redisCpuCores.toFixed(2)})`, ''],
      ['durability', rtcdpDurability, baselineDurability, ''],
      ['correctness', summarizeCorrectness(rtcdp.correctness), summarizeCorrectness(baseline.correctness), ''],
    ],
  );

  printColumns(
    'compare: references (rtcdp applied events/s as a share of each)',
    ['reference', 'events/s', 'rtcdp / reference', 'per event'],
    result.references.map((reference) => [reference.name, formatRate(reference.eventsPerSecond), formatShare(reference.rtcdpShare, 1), reference.description]),
  );

  printTable('compare: details', [
    ...baselineRows(baseline),
    ['grpc-js reference batch latency p50 / p99', `${formatMs(result.grpcReference.batchLatency.p50Ms)} / ${formatMs(result.grpcReference.batchLatency.p99Ms)}`],
    ...referenceLatencyRows(result),
    ['event size', `${rtcdp.eventSizes.protobufBytes} B protobuf, ${rtcdp.eventSizes.jsonBytes} B JSON`],
    ['result', result.passed ? 'passed' : `FAILED: ${result.failures.join('; ')}`],
  ]);
}

function summarizeCorrectness(correctness: CorrectnessResult): string {
  if (correctness.passed) return `passed (${correctness.sampledCustomers} customers)`;
  return `FAILED (${correctness.mismatches.length} of ${correctness.sampledCustomers} differ)`;
}

function referenceLatencyRows(result: CompareResult): Array<[string, string]> {
  const references = [result.natsReference, result.rocksDbSync, result.rocksDbNoSync].filter((reference): reference is ReferenceMeasurement => reference !== null);
  return references.map((reference) => [
    `${reference.name}: batch p50 / p99, CPU`,
    `${formatMs(reference.batchLatency.p50Ms)} / ${formatMs(reference.batchLatency.p99Ms)}, ${reference.cpuCores.toFixed(2)} cores`,
  ]);
}
