/**
 * Activation scenario: stores `profiles` profiles, restarts the node so that none is
 * resident, then calls getProfile for `queries` distinct random profiles one at a time.
 * Each call activates its profile from its RocksDB snapshot. The same profiles are then
 * queried again while resident, for comparison. Latency is timed inside the node process
 * around node.getProfile, so it includes routing, the actor's mailbox and the copy of the
 * profile, but no gRPC.
 */
import { NodeHost } from './children.js';
import { dataDir, writeChart, type RunContext } from './context.js';
import { compareCounts, describeCorrectness, type CorrectnessResult } from './correctness.js';
import { userIdOf } from './events.js';
import { summarizeLatencies, type LatencySummary } from './latency.js';
import type { TimedQueries } from './node-host.js';
import { loadProfiles } from './profile-load.js';
import { createRandom } from './random.js';
import { formatCount, formatMs, formatRate, machineInfo, printTable, progress, type MachineInfo, type TableRow } from './report.js';
import { renderBarChart } from './svg-chart.js';

export interface ActivationOptions {
  profiles: number;
  queries: number;
  tracksPerProfile: number;
  walSync: boolean;
  generators: number;
  batchSize: number;
  inFlightBatches: number;
}

export interface QueryMeasurement {
  queries: number;
  /** Actors activated during the queries: one per query from RocksDB, none when resident. */
  activations: number;
  latency: LatencySummary;
  queriesPerSecond: number;
}

export interface ActivationResult {
  scenario: 'activation';
  passed: boolean;
  failures: string[];
  machine: MachineInfo;
  loadAverageAfter: number[];
  options: ActivationOptions;
  storedEvents: number;
  loadSeconds: number;
  /** Queries before the measured ones, on other profiles, so one-time costs (JIT, partition consumers) are not measured. */
  warmupQueries: number;
  fromRocksDb: QueryMeasurement;
  resident: QueryMeasurement;
  correctness: CorrectnessResult;
  chart: string | null;
}

const LOAD_TIMEOUT_MS = 30 * 60_000;

/** Warm-up queries: 200, or a tenth of the profiles when there are fewer than 2,000. */
function warmupCount(profiles: number): number {
  return Math.min(200, Math.floor(profiles / 10));
}

export async function runActivation(context: RunContext, options: ActivationOptions): Promise<ActivationResult> {
  const machine = machineInfo();
  const directory = dataDir(context, 'activation');
  const warmup = warmupCount(options.profiles);
  const queries = Math.min(options.queries, options.profiles - warmup);
  if (queries < options.queries) progress(`activation: only ${queries} distinct profiles are left after ${warmup} warm-up queries, so ${queries} are queried`);

  const load = await storeProfiles(context, options, directory);
  const order = shuffledCustomers(options.profiles, context.seed);
  const warmupIds = order.slice(0, warmup).map(userIdOf);
  const queried = order.slice(warmup, warmup + queries);

  const node = await NodeHost.start(context.processes, { dataDir: directory, walSync: options.walSync, actors: { maxResidentActors: Math.max(100_000, options.profiles + 1_000) } });
  let cold: TimedQueries;
  let hot: TimedQueries;
  try {
    progress(`activation: ${warmup} warm-up queries, then ${formatCount(queries)} profiles activated from RocksDB, then the same profiles resident`);
    await node.timeQueries(warmupIds);
    cold = await node.timeQueries(queried.map(userIdOf));
    hot = await node.timeQueries(queried.map(userIdOf));
  } finally {
    await node.stop();
  }

  const correctness = checkQueriedCounts(load.counts, queried, cold, hot);
  const fromRocksDb = measurement(cold);
  const resident = measurement(hot);
  const failures = activationFailures(fromRocksDb, resident, correctness, queries);

  const result: ActivationResult = {
    scenario: 'activation',
    passed: failures.length === 0,
    failures,
    machine,
    loadAverageAfter: machineInfo().loadAverage,
    options,
    storedEvents: load.acceptedEvents,
    loadSeconds: load.seconds,
    warmupQueries: warmup,
    fromRocksDb,
    resident,
    correctness,
    chart: null,
  };

  result.chart = await writeChart(context, 'activation-latency.svg', activationChart(result));
  printActivation(result);
  return result;
}

/** Stores the profiles on a first node and drains it, so every snapshot is in RocksDB and nothing is resident afterwards. */
async function storeProfiles(context: RunContext, options: ActivationOptions, directory: string) {
  const node = await NodeHost.start(context.processes, { dataDir: directory, walSync: options.walSync });
  try {
    const load = await loadProfiles(context, node, {
      profiles: options.profiles,
      tracksPerProfile: options.tracksPerProfile,
      generators: options.generators,
      batchSize: options.batchSize,
      inFlightBatches: options.inFlightBatches,
      timeoutMs: LOAD_TIMEOUT_MS,
    });
    await node.waitSettled(LOAD_TIMEOUT_MS, true);
    return load;
  } finally {
    progress('activation: draining the first node; the second one starts with no profile resident');
    await node.stop();
  }
}

/** Customers [0, profiles) in a seeded random order (Fisher-Yates). */
function shuffledCustomers(profiles: number, seed: number): number[] {
  const random = createRandom(seed ^ 0xac71);
  const order = Array.from({ length: profiles }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

function checkQueriedCounts(counts: Int32Array, queried: number[], cold: TimedQueries, hot: TimedQueries): CorrectnessResult {
  const coldCheck = compareCounts(counts, queried, cold.eventCounts);
  const hotCheck = compareCounts(counts, queried, hot.eventCounts);
  const result = {
    passed: coldCheck.passed && hotCheck.passed,
    sampledCustomers: coldCheck.sampledCustomers,
    sampledEvents: coldCheck.sampledEvents,
    mismatches: [...coldCheck.mismatches, ...hotCheck.mismatches],
  };
  progress(`activation correctness check ${describeCorrectness(result)}`);
  return result;
}

function measurement(timed: TimedQueries): QueryMeasurement {
  const totalMs = timed.latenciesUs.reduce((total, us) => total + us, 0) / 1_000;
  return {
    queries: timed.latenciesUs.length,
    activations: timed.activations,
    latency: summarizeLatencies(timed.latenciesUs, 'us'),
    queriesPerSecond: totalMs === 0 ? 0 : timed.latenciesUs.length / (totalMs / 1_000),
  };
}

function activationFailures(cold: QueryMeasurement, hot: QueryMeasurement, correctness: CorrectnessResult, queries: number): string[] {
  const failures: string[] = [];
  if (!correctness.passed) failures.push(`correctness check ${describeCorrectness(correctness)}`);
  if (cold.activations !== queries) failures.push(`expected ${queries} activations from RocksDB, counted ${cold.activations}`);
  if (hot.activations !== 0) failures.push(`expected no activations for resident profiles, counted ${hot.activations}`);
  return failures;
}

function activationChart(result: ActivationResult): string {
  const cold = result.fromRocksDb.latency;
  const hot = result.resident.latency;
  const bar = (label: string, ms: number, color: string) => ({ label, value: ms, valueLabel: formatMs(ms), color });

  return renderBarChart({
    title: `getProfile latency, ${formatCount(result.fromRocksDb.queries)} profiles of ${formatCount(result.options.profiles)}`,
    yLabel: 'milliseconds',
    width: 760,
    bars: [
      bar('RocksDB p50', cold.p50Ms, '#4e79a7'),
      bar('RocksDB p90', cold.p90Ms, '#4e79a7'),
      bar('RocksDB p99', cold.p99Ms, '#4e79a7'),
      bar('resident p50', hot.p50Ms, '#59a14f'),
      bar('resident p90', hot.p90Ms, '#59a14f'),
      bar('resident p99', hot.p99Ms, '#59a14f'),
    ],
  });
}

function printActivation(result: ActivationResult): void {
  const row = (name: string, m: QueryMeasurement): TableRow => [
    name,
    `p50 ${formatMs(m.latency.p50Ms)}, p90 ${formatMs(m.latency.p90Ms)}, p99 ${formatMs(m.latency.p99Ms)}, max ${formatMs(m.latency.maxMs)} (${formatCount(m.queries)} queries, ${formatRate(m.queriesPerSecond)} one at a time)`,
  ];

  printTable('activation', [
    ['profiles stored', `${formatCount(result.options.profiles)} (${formatCount(result.storedEvents)} events in ${result.loadSeconds.toFixed(0)} s)`],
    row('from RocksDB', result.fromRocksDb),
    row('resident', result.resident),
    ['activations', `${formatCount(result.fromRocksDb.activations)} from RocksDB, ${result.resident.activations} while resident`],
    ['correctness', describeCorrectness(result.correctness)],
    ['result', result.passed ? 'passed' : `FAILED: ${result.failures.join('; ')}`],
  ]);
}
