/**
 * Ingest scenario: sustained IngestStream load from separate generator processes, measured
 * to applied profile state, next to a raw grpc-js server driven by the same generators.
 *
 * Window: it starts at the end of the warm-up (the mark) and ends when the node has applied
 * every acknowledged event (no event in flight, no message queued). Events applied in it
 * are those acknowledged by the end minus those already applied at the mark, which is
 * what the generators had acknowledged minus what the node had in flight.
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { applyDefinitions, type AppliedDefinitions } from './bench-definitions.js';
import { NodeHost, RawServer, GeneratorGroup } from './children.js';
import { dataDir, writeChart, type RunContext } from './context.js';
import {
  checkEventCounts,
  checkOtherProfiles,
  describeCorrectness,
  mergeAcceptedCounts,
  mergeOtherProfiles,
  sampleCustomers,
  type CorrectnessResult,
  type EventCountSource,
  type ExpectedCounts,
  type ProfileCountSource,
} from './correctness.js';
import { summarizeCpuProfile, type CpuProfile, type CpuProfileSummary } from './cpu-profile.js';
import type { GeneratorProgress, GeneratorReport } from './generator.js';
import type { NodeSample } from './node-host.js';
import { summarizeLatencies, type LatencySummary } from './latency.js';
import { BENCH_DIR } from './processes.js';
import { formatCount, formatMs, formatRate, machineInfo, printTable, progress, sleep, type MachineInfo, type TableRow } from './report.js';
import { renderBarChart, renderLineChart } from './svg-chart.js';
import { workloadConfigOf, type WorkloadChoice } from './workload-options.js';

export interface IngestOptions {
  durationS: number;
  warmupS: number;
  batchSize: number;
  inFlightBatches: number;
  customers: number;
  zipfExponent: number;
  walSync: boolean;
  generators: number;
  /** Also measure the raw grpc-js reference server. */
  reference: boolean;
  /** Record a CPU profile of the node during the window and summarize it. */
  cpuProfile: boolean;
  /** Customers whose eventCount is checked at the end. */
  checkSample: number;
  /** The node's maxInFlightEvents; undefined keeps the node's default. */
  maxInFlightEvents?: number;
  /** Actor snapshot settings of the node; undefined keeps the node's defaults. */
  snapshotEveryMessages?: number;
  snapshotIntervalMs?: number;
  /** The generators' workload; undefined is the Zipf track events. */
  workload?: WorkloadChoice;
  /** Definition files or directories applied to the node's workspace before the load; none when empty or undefined. */
  definitions?: string[];
}

/** The load options that every closed-loop ingest measurement shares: rtcdp, the Redis baseline and the grpc-js reference. */
export type LoadOptions = Pick<IngestOptions, 'durationS' | 'warmupS' | 'batchSize' | 'inFlightBatches' | 'customers' | 'zipfExponent' | 'generators' | 'checkSample'>;

export interface TimelinePoint {
  /** Seconds since the mark. */
  seconds: number;
  /** Events acknowledged since the previous point, per second. */
  acknowledgedPerSecond: number;
  /** Events the node had appended but not applied; 0 for the reference server. */
  inFlightEvents: number;
}

export interface LoadMeasurement {
  windowSeconds: number;
  /** About one point per second of the window. */
  timeline: TimelinePoint[];
  acknowledgedEvents: number;
  acknowledgedPerSecond: number;
  batchLatency: LatencySummary;
  overloadRetries: number;
  duplicateEvents: number;
  rejectedEvents: number;
  generatorCpuCores: number;
  eventSizes: { jsonBytes: number; protobufBytes: number };
}

export interface RtcdpMeasurement extends LoadMeasurement {
  appliedEvents: number;
  appliedPerSecond: number;
  /** Seconds from the end of sending to the last event applied. */
  applyLagSeconds: number;
  nodeCpuCores: number;
  /** Actor statistics of the node at the end of the window. */
  actors: NodeSample['node']['actors'];
  /** Profile snapshots persisted per event applied, over the whole run. */
  snapshotsPerEvent: number;
  /** The definitions every profile was evaluated under; null without any. */
  definitions: AppliedDefinitions | null;
  correctness: CorrectnessResult;
}

export interface IngestResult {
  scenario: 'ingest';
  passed: boolean;
  failures: string[];
  machine: MachineInfo;
  loadAverageAfter: number[];
  options: IngestOptions;
  rtcdp: RtcdpMeasurement;
  reference: LoadMeasurement | null;
  /** rtcdp applied/s divided by the reference's acknowledged/s. */
  ratioToReference: number | null;
  cpuProfile: { file: string; summary: CpuProfileSummary } | null;
  chart: string | null;
  timelineChart: string | null;
}

export const INGEST_GOAL_PER_SECOND = 100_000;

export async function runIngest(context: RunContext, options: IngestOptions): Promise<IngestResult> {
  const machine = machineInfo();
  progress(`ingest: ${options.generators} generator(s), batches of ${options.batchSize}, ${options.inFlightBatches} in flight each, ${formatCount(options.customers)} customers, WAL sync ${options.walSync ? 'on' : 'off'}`);

  const reference = options.reference ? await measureReference(context, options) : null;
  const { measurement: rtcdp, cpuProfile } = await measureRtcdp(context, options);
  const ratioToReference = reference === null ? null : rtcdp.appliedPerSecond / reference.acknowledgedPerSecond;

  const failures = ingestFailures(rtcdp, reference, options.workload?.kind !== 'replay');
  const result: IngestResult = {
    scenario: 'ingest',
    passed: failures.length === 0,
    failures,
    machine,
    loadAverageAfter: machineInfo().loadAverage,
    options,
    rtcdp,
    reference,
    ratioToReference,
    cpuProfile,
    chart: null,
    timelineChart: null,
  };

  result.chart = await writeChart(context, 'ingest.svg', ingestChart(result));
  result.timelineChart = await writeChart(context, 'ingest-timeline.svg', timelineChart(result));
  printIngest(result);
  return result;
}

export async function measureReference(context: RunContext, options: LoadOptions & Pick<IngestOptions, 'workload'>): Promise<LoadMeasurement> {
  const server = await RawServer.start(context.processes);
  try {
    const generators = await startGenerators(context, options, server.address);
    const { startedAt } = await warmUpAndMark(generators, options, 'grpc-js reference', null);
    const timeline = await runWindow(generators, options, 'grpc-js reference', null);

    const reports = await generators.stop();
    const windowSeconds = (Date.now() - startedAt) / 1_000;
    return loadMeasurement(reports, windowSeconds, timeline, options);
  } finally {
    await server.stop();
  }
}

export async function measureRtcdp(context: RunContext, options: IngestOptions): Promise<{ measurement: RtcdpMeasurement; cpuProfile: IngestResult['cpuProfile'] }> {
  const actors = { snapshotEveryMessages: options.snapshotEveryMessages, snapshotIntervalMs: options.snapshotIntervalMs };
  const node = await NodeHost.start(context.processes, {
    dataDir: dataDir(context, 'ingest'),
    walSync: options.walSync,
    maxInFlightEvents: options.maxInFlightEvents,
    actors,
  });

  try {
    const definitions = await applyDefinitions(node, options.definitions ?? []);
    const generators = await startGenerators(context, options, node.address);
    const mark = await warmUpAndMark(generators, options, 'rtcdp', node);
    if (options.cpuProfile) await node.startProfiler();

    const timeline = await runWindow(generators, options, 'rtcdp', node);
    const reports = await generators.stop();
    const sendingEndedAt = Date.now();

    progress('rtcdp: waiting for the node to apply every acknowledged event');
    const settledAtMs = await node.waitSettled(300_000);
    const end = await node.sample();
    const cpuProfile = options.cpuProfile ? await saveCpuProfile(context, node) : null;

    const windowSeconds = (settledAtMs - mark.startedAt) / 1_000;
    const appliedEvents = sum(reports.map((report) => report.acceptedEvents)) - mark.appliedBefore;
    const correctness = await checkCorrectness(node, reports, options, context.seed);

    const measurement: RtcdpMeasurement = {
      ...loadMeasurement(reports, (sendingEndedAt - mark.startedAt) / 1_000, timeline, options),
      appliedEvents,
      appliedPerSecond: appliedEvents / windowSeconds,
      applyLagSeconds: (settledAtMs - sendingEndedAt) / 1_000,
      nodeCpuCores: (end.cpuMs - mark.nodeCpuMs) / 1_000 / windowSeconds,
      actors: end.node.actors,
      snapshotsPerEvent: end.node.actors.persistedSnapshots / sum(reports.map((report) => report.acceptedEvents)),
      definitions,
      correctness,
    };
    measurement.windowSeconds = windowSeconds;
    return { measurement, cpuProfile };
  } finally {
    await node.stop();
  }
}

export function startGenerators(context: RunContext, options: LoadOptions & Pick<IngestOptions, 'workload'>, address: string): Promise<GeneratorGroup> {
  return GeneratorGroup.start(context.processes, {
    addresses: [address],
    count: options.generators,
    batchSize: options.batchSize,
    inFlightBatches: options.inFlightBatches,
    // A bound in case the harness never sends 'stop'; the harness stops them at the end of the window.
    maxSendMs: (options.warmupS + options.durationS) * 1_000 + 60_000,
    workloadOf: (index) => workloadConfigOf(options.workload, options, index, options.generators),
    seed: context.seed,
  });
}

interface Mark {
  startedAt: number;
  /** Events the node had applied at the mark. */
  appliedBefore: number;
  nodeCpuMs: number;
}

export async function warmUpAndMark(generators: GeneratorGroup, options: LoadOptions, name: string, node: NodeHost | null): Promise<Mark> {
  progress(`${name}: warming up for ${options.warmupS} s`);
  await sleep(options.warmupS * 1_000);

  const startedAt = Date.now();
  const [marks, sample] = await Promise.all([generators.mark(), node?.sample()]);
  const acknowledged = sum(marks.map((mark) => mark.acceptedEvents));
  const inFlight = sample?.node.inFlightEvents ?? 0;
  return { startedAt, appliedBefore: acknowledged - inFlight, nodeCpuMs: sample?.cpuMs ?? 0 };
}

/** Lets the generators send for the window's duration, recording and printing progress every second. */
export async function runWindow(generators: GeneratorGroup, options: LoadOptions, name: string, node: NodeHost | null): Promise<TimelinePoint[]> {
  const startedAt = Date.now();
  const endAt = startedAt + options.durationS * 1_000;
  const timeline: TimelinePoint[] = [];
  let previous = { seconds: 0, acknowledged: 0 };

  while (Date.now() < endAt) {
    await sleep(Math.min(1_000, endAt - Date.now()));
    const [states, sample] = await Promise.all([generators.progress(), node?.sample()]);
    const seconds = (Date.now() - startedAt) / 1_000;
    const acknowledged = sum(states.map((state) => state.windowAcceptedEvents));
    const inFlightEvents = sample?.node.inFlightEvents ?? 0;

    // A last step much shorter than a second would give a noisy rate, so it gets no point of its own.
    if (seconds - previous.seconds >= 0.5) {
      timeline.push({ seconds, acknowledgedPerSecond: (acknowledged - previous.acknowledged) / (seconds - previous.seconds), inFlightEvents });
      previous = { seconds, acknowledged };
    }
    progress(describeProgress(name, states, seconds, options.durationS, sample?.node.inFlightEvents));
  }

  return timeline;
}

function describeProgress(name: string, states: GeneratorProgress[], elapsedS: number, durationS: number, inFlight: number | undefined): string {
  const acknowledged = sum(states.map((state) => state.windowAcceptedEvents));
  const retries = sum(states.map((state) => state.overloadRetries));
  const node = inFlight === undefined ? '' : `, ${formatCount(inFlight)} in flight`;
  return `${name}: ${elapsedS.toFixed(0)}/${durationS} s, ${formatCount(acknowledged)} acknowledged (${formatRate(acknowledged / elapsedS)})${node}, ${retries} overload retries`;
}

export function loadMeasurement(reports: GeneratorReport[], windowSeconds: number, timeline: TimelinePoint[], options: LoadOptions): LoadMeasurement {
  const acknowledgedEvents = sum(reports.map((report) => report.windowAcceptedEvents));
  const latencies = concatenate(reports.map((report) => report.batchLatenciesMs));
  const totalCpuMs = sum(reports.map((report) => report.cpuMs));
  const totalSeconds = options.warmupS + windowSeconds;

  return {
    windowSeconds,
    timeline,
    acknowledgedEvents,
    acknowledgedPerSecond: acknowledgedEvents / windowSeconds,
    batchLatency: summarizeLatencies(latencies),
    overloadRetries: sum(reports.map((report) => report.overloadRetries)),
    duplicateEvents: sum(reports.map((report) => report.duplicateEvents)),
    rejectedEvents: sum(reports.map((report) => report.rejectedEvents)),
    generatorCpuCores: totalCpuMs / 1_000 / totalSeconds,
    eventSizes: reports[0]?.eventSizes ?? { jsonBytes: 0, protobufBytes: 0 },
  };
}

/**
 * Checks a sample of the numbered customers and, when the workload sent to other profiles
 * (anonymous or replayed ones), a sample of those, which needs a node that reads profiles
 * by anonymousId.
 */
export async function checkCorrectness(
  node: EventCountSource & Partial<ProfileCountSource>,
  reports: Array<ExpectedCounts & Pick<GeneratorReport, 'fatalError'>>,
  options: Pick<LoadOptions, 'customers' | 'checkSample'>,
  seed: number,
  name = 'rtcdp',
): Promise<CorrectnessResult> {
  for (const report of reports) {
    if (report.fatalError !== null) progress(`load generator failed: ${report.fatalError}`);
  }

  // A replay workload has no numbered customers, only profiles named by the file.
  const numbered = reports.some((report) => report.acceptedPerCustomer.length > 0);
  let correctness: CorrectnessResult = { passed: false, sampledCustomers: 0, sampledEvents: 0, mismatches: [] };
  if (numbered) {
    const counts = mergeAcceptedCounts(reports, options.customers);
    correctness = await checkEventCounts(node, counts, sampleCustomers(counts, options.checkSample, seed));
  }

  const others = mergeOtherProfiles(reports);
  if (others.size > 0) {
    if (node.eventCountsOf === undefined) throw new Error(`${name} cannot read profiles by anonymousId, so the workload's anonymous or replayed profiles cannot be checked`);
    correctness.otherProfiles = await checkOtherProfiles(node as ProfileCountSource, others, options.checkSample, seed);
    correctness.passed = (correctness.passed || !numbered) && correctness.otherProfiles.passed;
  }

  progress(`${name} correctness check ${describeCorrectness(correctness)}`);
  return correctness;
}

async function saveCpuProfile(context: RunContext, node: NodeHost): Promise<IngestResult['cpuProfile']> {
  const file = path.join(context.resultsDir, `ingest-node-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
  await mkdir(context.resultsDir, { recursive: true });
  await node.stopProfiler(file);
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  progress(`wrote CPU profile of the node to ${file}`);
  return { file, summary: summarizeCpuProfile(profile, path.resolve(BENCH_DIR, '..')) };
}

/** With `generated`, every event is valid, so a rejected one is a failure; a replayed file may hold invalid events. */
function ingestFailures(rtcdp: RtcdpMeasurement, reference: LoadMeasurement | null, generated: boolean): string[] {
  const failures: string[] = [];
  if (!rtcdp.correctness.passed) failures.push(`correctness check ${describeCorrectness(rtcdp.correctness)}`);
  if (!(rtcdp.appliedPerSecond > 0)) failures.push('rtcdp applied no events in the window');
  if (generated && rtcdp.rejectedEvents > 0) failures.push(`rtcdp rejected ${rtcdp.rejectedEvents} generated events, which are all valid`);
  if (reference !== null && !(reference.acknowledgedPerSecond > 0)) failures.push('the grpc-js reference acknowledged no events');
  return failures;
}

function ingestChart(result: IngestResult): string {
  const bars = [
    { label: 'rtcdp applied', value: result.rtcdp.appliedPerSecond },
    { label: 'rtcdp acknowledged', value: result.rtcdp.acknowledgedPerSecond },
  ];
  if (result.reference !== null) bars.push({ label: 'grpc-js reference', value: result.reference.acknowledgedPerSecond });

  return renderBarChart({
    title: `Ingest over gRPC stream, ${result.machine.cpus} cores (${result.options.walSync ? 'WAL sync on' : 'WAL sync off'})`,
    yLabel: 'events per second',
    bars,
    referenceLine: { value: INGEST_GOAL_PER_SECOND, label: 'goal 100k/s' },
  });
}

function timelineChart(result: IngestResult): string {
  return renderLineChart({
    title: 'rtcdp acknowledged events per second during the window',
    xLabel: 'seconds since the end of the warm-up',
    panels: [
      {
        yLabel: 'events per second',
        series: [{ name: 'acknowledged/s', color: '#f28e2b', points: result.rtcdp.timeline.map((point) => [point.seconds, point.acknowledgedPerSecond]) }],
      },
      {
        yLabel: 'events in flight',
        series: [{ name: 'appended, not yet applied', color: '#4e79a7', points: result.rtcdp.timeline.map((point) => [point.seconds, point.inFlightEvents]) }],
      },
    ],
  });
}

function printIngest(result: IngestResult): void {
  const { rtcdp, reference } = result;
  const rows: TableRow[] = [
    ['rtcdp applied', formatRate(rtcdp.appliedPerSecond)],
    ['definitions', rtcdp.definitions === null ? 'none' : `${formatCount(rtcdp.definitions.definitions)} from ${rtcdp.definitions.paths.join(', ')}`],
    ['rtcdp acknowledged', formatRate(rtcdp.acknowledgedPerSecond)],
    ['rtcdp batch latency p50 / p99', `${formatMs(rtcdp.batchLatency.p50Ms)} / ${formatMs(rtcdp.batchLatency.p99Ms)}`],
    ['rtcdp window', `${rtcdp.windowSeconds.toFixed(1)} s (apply lag after sending ${rtcdp.applyLagSeconds.toFixed(2)} s)`],
    ['rtcdp overload retries', formatCount(rtcdp.overloadRetries)],
    ['rtcdp duplicates / rejected', `${formatCount(rtcdp.duplicateEvents)} / ${formatCount(rtcdp.rejectedEvents)}`],
    ['node CPU', `${rtcdp.nodeCpuCores.toFixed(2)} cores`],
    ['profiles resident at the end', `${formatCount(rtcdp.actors.resident)} (${formatCount(rtcdp.actors.activations)} activations)`],
    ['snapshots persisted per event', rtcdp.snapshotsPerEvent.toFixed(2)],
    ['generator CPU', `${rtcdp.generatorCpuCores.toFixed(2)} cores`],
  ];

  if (reference !== null) {
    rows.push(['grpc-js reference acknowledged', formatRate(reference.acknowledgedPerSecond)]);
    rows.push(['grpc-js reference batch latency p50 / p99', `${formatMs(reference.batchLatency.p50Ms)} / ${formatMs(reference.batchLatency.p99Ms)}`]);
    rows.push(['rtcdp / reference', `${((result.ratioToReference ?? 0) * 100).toFixed(1)}%`]);
  }

  rows.push(['event size', `${rtcdp.eventSizes.protobufBytes} B protobuf, ${rtcdp.eventSizes.jsonBytes} B JSON`]);
  rows.push(['correctness', describeCorrectness(rtcdp.correctness)]);
  rows.push(['result', result.passed ? 'passed' : `FAILED: ${result.failures.join('; ')}`]);
  printTable('ingest', rows);

  if (result.cpuProfile !== null) printCpuProfile(result.cpuProfile.summary);
}

function printCpuProfile(summary: CpuProfileSummary): void {
  const busyShare = summary.totalMs === 0 ? 0 : (100 * (summary.totalMs - summary.idleMs)) / summary.totalMs;
  const format = (entry: { name: string; selfMs: number; percentOfBusy: number }): TableRow => [entry.name, `${entry.selfMs.toFixed(0)} ms (${entry.percentOfBusy.toFixed(1)}%)`];

  printTable(`node main thread: ${(summary.totalMs / 1_000).toFixed(1)} s profiled, ${busyShare.toFixed(0)}% busy; self time by module`, summary.topModules.map(format));
  printTable('node main thread: top functions by self time', summary.topFunctions.map(format));
  printTable('node main thread: self time by the two nearest rtcdp functions on the stack', summary.topProjectCallers.map(format));
}

export function sum(values: number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

function concatenate(arrays: Float64Array[]): Float64Array {
  const result = new Float64Array(sum(arrays.map((array) => array.length)));
  let offset = 0;
  for (const array of arrays) {
    result.set(array, offset);
    offset += array.length;
  }
  return result;
}
