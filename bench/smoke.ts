/**
 * Smoke scenario for CI: every scenario at tiny sizes, in well under a minute on an idle
 * 2-core machine. It checks that each scenario runs and that its correctness check passes,
 * and it asserts nothing about speed.
 */
import { runActivation, type ActivationResult } from './activation.js';
import type { RunContext } from './context.js';
import { runIngest, type IngestResult } from './ingest.js';
import { runMemory, type MemoryResult } from './memory.js';
import { machineInfo, progress, type MachineInfo } from './report.js';

export interface SmokeResult {
  scenario: 'smoke';
  passed: boolean;
  failures: string[];
  machine: MachineInfo;
  ingest: IngestResult;
  memory: MemoryResult;
  activation: ActivationResult;
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

  const failures = [ingest, memory, activation].flatMap((result) => result.failures.map((failure) => `${result.scenario}: ${failure}`));
  return { scenario: 'smoke', passed: failures.length === 0, failures, machine, ingest, memory, activation };
}
