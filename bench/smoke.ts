/**
 * Smoke scenarios for CI. `runSmoke` runs the single-node scenarios, the Redis baseline, two
 * short latency runs and a short decide run at tiny sizes. `runClusterSmoke` runs
 * the cluster scenario on its own, because it takes about as long as the others together.
 * Both check that each scenario runs and that its correctness check passes, and assert
 * nothing about speed.
 */
import path from 'node:path';
import { runActivation, type ActivationResult } from './activation.js';
import { runBaseline, type BaselineResult } from './baseline/baseline.js';
import { BENCH_DEFINITIONS_DIR } from './bench-definitions.js';
import type { ClusterResult } from './cluster-result.js';
import { runCluster } from './cluster.js';
import type { RunContext } from './context.js';
import { runDecide, type DecideResult } from './decide.js';
import { runIngest, type IngestResult } from './ingest.js';
import { runMemory, type MemoryResult } from './memory.js';
import { runLatency, type LatencyOptions, type LatencyResult } from './open-loop.js';
import { BENCH_DIR } from './processes.js';
import { SESSION_DEFAULTS } from './workload-options.js';
import { machineInfo, progress, type MachineInfo } from './report.js';

export interface SmokeResult {
  scenario: 'smoke';
  passed: boolean;
  failures: string[];
  machine: MachineInfo;
  ingest: IngestResult;
  memory: MemoryResult;
  activation: ActivationResult;
  baseline: BaselineResult;
  /**
   * The latency scenario with the unary driver, the sessions workload, the bench definitions
   * and Decide calls, then with the stream driver replaying the Online Retail sample.
   */
  latency: LatencyResult[];
  decide: DecideResult;
}

const COMMON = { walSync: true, generators: 1, inFlightBatches: 4 };

export async function runSmoke(context: RunContext): Promise<SmokeResult> {
  const machine = machineInfo();

  progress('smoke: ingest');
  const ingest = await runIngest(context, {
    ...COMMON,
    durationS: 2,
    warmupS: 0.5,
    batchSize: 100,
    customers: 1_000,
    zipfExponent: 0.99,
    reference: true,
    cpuProfile: false,
    checkSample: 50,
  });

  progress('smoke: memory');
  const memory = await runMemory(context, {
    ...COMMON,
    residentProfiles: 1_000,
    tracksPerProfile: 10,
    profiles: 3_000,
    storedTracksPerProfile: 0,
    maxResident: 500,
    batchSize: 200,
    checkSample: 50,
  });

  progress('smoke: activation');
  const activation = await runActivation(context, { ...COMMON, profiles: 1_000, queries: 300, tracksPerProfile: 2, batchSize: 200 });

  // It needs redis-server. Without it the smoke run fails, and the error explains how to install it.
  progress('smoke: baseline');
  const baseline = await runBaseline(context, {
    generators: 1,
    inFlightBatches: 4,
    durationS: 1,
    warmupS: 0.5,
    batchSize: 100,
    customers: 1_000,
    zipfExponent: 0.99,
    checkSample: 50,
    redisFsync: 'everysec',
    dedupTtlS: 3_600,
    recentEvents: 10,
  });

  progress('smoke: latency');
  const latency = [
    await runLatency(context, {
      ...LATENCY_SMOKE,
      driver: 'unary',
      workload: { kind: 'sessions', ...SESSION_DEFAULTS, propertyBytes: [0, 1_000] },
      definitions: [BENCH_DEFINITIONS_DIR],
      decideRatePerSecond: 20,
    }),
    await runLatency(context, { ...LATENCY_SMOKE, driver: 'stream', workload: { kind: 'replay', file: path.join(BENCH_DIR, '..', 'data', 'online-retail-2010-12.csv') } }),
  ];

  progress('smoke: decide');
  const decide = await runDecide(context, {
    decideRates: [50],
    writeRatesPercent: [25],
    decideRatePerSecond: 50,
    definitions: [BENCH_DEFINITIONS_DIR],
    driver: 'batch',
    batchSize: 50,
    stepDurationS: 1,
    closedLoopS: 1,
    inFlightRequests: 8,
    generators: 1,
    customers: 1_000,
    zipfExponent: 0.99,
    checkSample: 50,
    walSync: true,
    maxOutstandingRequests: 10_000,
    maxSendLagMs: 20,
    reference: true,
    warmupS: 0.5,
  });

  const failures = [ingest, memory, activation, baseline, ...latency, decide].flatMap((result) => result.failures.map((failure) => `${result.scenario}: ${failure}`));
  return { scenario: 'smoke', passed: failures.length === 0, failures, machine, ingest, memory, activation, baseline, latency, decide };
}

/** Two steps of 1 s after a 1 s closed loop, at tiny sizes. */
const LATENCY_SMOKE: Omit<LatencyOptions, 'driver' | 'workload'> = {
  walSync: true,
  batchSize: 50,
  ratesPercent: [20, 50],
  stepDurationS: 1,
  closedLoopS: 1,
  inFlightRequests: 8,
  generators: 1,
  queryRatePerSecond: 50,
  decideRatePerSecond: 0,
  definitions: [],
  customers: 1_000,
  zipfExponent: 0.99,
  checkSample: 50,
  maxOutstandingRequests: 10_000,
  maxSendLagMs: 20,
};

/**
 * Runs the cluster scenario at tiny sizes for CI. Its node timings are short enough that a
 * killed node's shards move within a few seconds: a 3 s lease and a 2 s member timeout
 * instead of the node's 5 s and 4 s. It took 45 to 62 s on a 2-core machine while other
 * tests ran.
 */
export function runClusterSmoke(context: RunContext): Promise<ClusterResult> {
  return runCluster(context, {
    durationS: 2,
    warmupS: 0.5,
    batchSize: 100,
    inFlightBatches: 4,
    customers: 1_000,
    zipfExponent: 0.99,
    generatorsPerNode: 1,
    shards: 16,
    probeIntervalMs: 50,
    faultLoadS: 1,
    faultLoadShare: 0.5,
    faultTimeoutS: 60,
    checkSample: 50,
    jetstreamReference: true,
    leaseTtlMs: 3_000,
    leaseRenewIntervalMs: 500,
    heartbeatIntervalMs: 300,
    memberTimeoutMs: 2_000,
    rebalanceStableForMs: 500,
    checkpointIntervalMs: 200,
  });
}
