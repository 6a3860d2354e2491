/**
 * Memory scenario, in two parts on two fresh nodes.
 *
 * Heap per resident profile: a node with room for every profile stores `residentProfiles`
 * profiles of a typical shape (20 traits, 3 identifiers, 10 event names, 10 recent events).
 * Once every snapshot is persisted, it forces full GCs and divides the heapUsed growth
 * since start by the number of resident actors. The growth includes everything the node
 * keeps per profile (the actor, its state and its map entries), and anything else the node
 * retained while loading, which is why the profiles are many.
 *
 * Bounded RSS: a node with maxResidentActors stores `profiles` profiles while RSS, heap
 * and resident actors are sampled every second.
 */
import { NodeHost } from './children.js';
import { dataDir, writeChart, type RunContext } from './context.js';
import { describeCorrectness, type CorrectnessResult } from './correctness.js';
import type { NodeSample } from './node-host.js';
import { checkStoredProfiles, loadProfiles, type ProfileLoadResult } from './profile-load.js';
import { formatCount, formatMiB, formatRate, machineInfo, printTable, progress, sleep, type MachineInfo, type TableRow } from './report.js';
import { renderLineChart } from './svg-chart.js';

export interface MemoryOptions {
  residentProfiles: number;
  tracksPerProfile: number;
  profiles: number;
  storedTracksPerProfile: number;
  maxResident: number;
  walSync: boolean;
  generators: number;
  batchSize: number;
  inFlightBatches: number;
  checkSample: number;
}

export interface HeapPerProfile {
  profiles: number;
  eventsPerProfile: number;
  acceptedEvents: number;
  resident: number;
  heapUsedBefore: number;
  heapUsedAfter: number;
  /** (heapUsedAfter - heapUsedBefore) / resident, in bytes. */
  heapBytesPerProfile: number;
  /** Growth of memory outside the V8 heap (Buffers), per resident profile, in bytes. */
  externalBytesPerProfile: number;
  rssAfter: number;
  loadSeconds: number;
  correctness: CorrectnessResult;
}

export interface MemorySample {
  /** Seconds since the load started. */
  seconds: number;
  rss: number;
  heapUsed: number;
  external: number;
  resident: number;
  inFlightEvents: number;
}

export interface BoundedRss {
  profiles: number;
  eventsPerProfile: number;
  acceptedEvents: number;
  maxResidentActors: number;
  peakRss: number;
  peakHeapUsed: number;
  maxResidentSeen: number;
  finalResident: number;
  passivations: number;
  loadSeconds: number;
  acknowledgedPerSecond: number;
  samples: MemorySample[];
  correctness: CorrectnessResult;
}

export interface MemoryResult {
  scenario: 'memory';
  passed: boolean;
  failures: string[];
  machine: MachineInfo;
  loadAverageAfter: number[];
  options: MemoryOptions;
  heapPerProfile: HeapPerProfile;
  boundedRss: BoundedRss;
  chart: string | null;
}

/** Idle timeout that keeps every profile resident for the heap measurement: one hour. */
const NO_IDLE_PASSIVATION_MS = 3_600_000;

/** Maximum duration of a load, in milliseconds. */
const LOAD_TIMEOUT_MS = 30 * 60_000;

export async function runMemory(context: RunContext, options: MemoryOptions): Promise<MemoryResult> {
  const machine = machineInfo();
  const heapPerProfile = await measureHeapPerProfile(context, options);
  const boundedRss = await measureBoundedRss(context, options);

  const failures = memoryFailures(heapPerProfile, boundedRss, options);
  const result: MemoryResult = {
    scenario: 'memory',
    passed: failures.length === 0,
    failures,
    machine,
    loadAverageAfter: machineInfo().loadAverage,
    options,
    heapPerProfile,
    boundedRss,
    chart: null,
  };

  result.chart = await writeChart(context, 'memory-rss.svg', rssChart(boundedRss));
  printMemory(result);
  return result;
}

export async function measureHeapPerProfile(context: RunContext, options: MemoryOptions): Promise<HeapPerProfile> {
  progress(`memory: heap per resident profile, ${formatCount(options.residentProfiles)} profiles`);
  const node = await NodeHost.start(
    context.processes,
    {
      dataDir: dataDir(context, 'memory-resident'),
      walSync: options.walSync,
      actors: { maxResidentActors: options.residentProfiles + 1_000, idleTimeoutMs: NO_IDLE_PASSIVATION_MS },
    },
    { exposeGc: true },
  );

  try {
    const before = await node.collectGarbage();
    const load = await loadProfiles(context, node, { ...loadOptions(options), profiles: options.residentProfiles, tracksPerProfile: options.tracksPerProfile });

    await node.waitSettled(LOAD_TIMEOUT_MS, true);
    const after = await node.collectGarbage();
    const resident = after.node.actors.resident;
    const correctness = await checkStoredProfiles(node, load, options.checkSample, context.seed);

    return {
      profiles: options.residentProfiles,
      eventsPerProfile: 1 + options.tracksPerProfile,
      acceptedEvents: load.acceptedEvents,
      resident,
      heapUsedBefore: before.memory.heapUsed,
      heapUsedAfter: after.memory.heapUsed,
      heapBytesPerProfile: (after.memory.heapUsed - before.memory.heapUsed) / resident,
      externalBytesPerProfile: (after.memory.external - before.memory.external) / resident,
      rssAfter: after.memory.rss,
      loadSeconds: load.seconds,
      correctness,
    };
  } finally {
    await node.stop();
  }
}

export async function measureBoundedRss(context: RunContext, options: MemoryOptions): Promise<BoundedRss> {
  progress(`memory: bounded RSS, ${formatCount(options.profiles)} profiles with maxResidentActors ${formatCount(options.maxResident)}`);
  const node = await NodeHost.start(context.processes, {
    dataDir: dataDir(context, 'memory-bounded'),
    walSync: options.walSync,
    actors: { maxResidentActors: options.maxResident },
  });

  try {
    const startedAt = Date.now();
    const samples: MemorySample[] = [];
    const record = async () => {
      samples.push(toMemorySample(await node.sample(), startedAt));
    };

    const load = await loadProfiles(context, node, {
      ...loadOptions(options),
      profiles: options.profiles,
      tracksPerProfile: options.storedTracksPerProfile,
      onTick: record,
    });
    await settleWhileSampling(node, record);

    const last = await node.sample();
    const correctness = await checkStoredProfiles(node, load, options.checkSample, context.seed);
    return boundedRssResult(options, load, samples, last, correctness);
  } finally {
    await node.stop();
  }
}

function loadOptions(options: MemoryOptions) {
  return { generators: options.generators, batchSize: options.batchSize, inFlightBatches: options.inFlightBatches, timeoutMs: LOAD_TIMEOUT_MS };
}

/** Samples every second until the node has applied and persisted everything, then for 3 s more. */
async function settleWhileSampling(node: NodeHost, record: () => Promise<void>): Promise<void> {
  const settled = node.waitSettled(LOAD_TIMEOUT_MS, true);
  let done = false;
  void settled.then(
    () => (done = true),
    () => (done = true),
  );

  while (!done) {
    await sleep(1_000);
    await record();
  }
  await settled;

  for (let i = 0; i < 3; i++) {
    await sleep(1_000);
    await record();
  }
}

function toMemorySample(sample: NodeSample, startedAt: number): MemorySample {
  return {
    seconds: (sample.timeMs - startedAt) / 1_000,
    rss: sample.memory.rss,
    heapUsed: sample.memory.heapUsed,
    external: sample.memory.external,
    resident: sample.node.actors.resident,
    inFlightEvents: sample.node.inFlightEvents,
  };
}

function boundedRssResult(options: MemoryOptions, load: ProfileLoadResult, samples: MemorySample[], last: NodeSample, correctness: CorrectnessResult): BoundedRss {
  const all = [...samples, toMemorySample(last, 0)];
  return {
    profiles: options.profiles,
    eventsPerProfile: 1 + options.storedTracksPerProfile,
    acceptedEvents: load.acceptedEvents,
    maxResidentActors: options.maxResident,
    peakRss: Math.max(...all.map((sample) => sample.rss)),
    peakHeapUsed: Math.max(...all.map((sample) => sample.heapUsed)),
    maxResidentSeen: Math.max(...all.map((sample) => sample.resident)),
    finalResident: last.node.actors.resident,
    passivations: last.node.actors.passivations,
    loadSeconds: load.seconds,
    acknowledgedPerSecond: load.acceptedEvents / load.seconds,
    samples,
    correctness,
  };
}

function memoryFailures(heap: HeapPerProfile, bounded: BoundedRss, options: MemoryOptions): string[] {
  const failures: string[] = [];
  if (!heap.correctness.passed) failures.push(`heap-per-profile correctness check ${describeCorrectness(heap.correctness)}`);
  if (!bounded.correctness.passed) failures.push(`bounded-RSS correctness check ${describeCorrectness(bounded.correctness)}`);
  if (heap.resident < options.residentProfiles) failures.push(`only ${heap.resident} of ${options.residentProfiles} profiles were resident when the heap was measured`);
  if (!(heap.heapBytesPerProfile > 0)) failures.push(`heap per profile is not positive: ${heap.heapBytesPerProfile} bytes`);
  for (const part of [heap, bounded]) {
    const expected = part.profiles * part.eventsPerProfile;
    if (part.acceptedEvents !== expected) failures.push(`${formatCount(part.acceptedEvents)} of ${formatCount(expected)} events were accepted`);
  }
  return failures;
}

function rssChart(bounded: BoundedRss) {
  const mib = (bytes: number) => bytes / 2 ** 20;
  return renderLineChart({
    title: `Storing ${formatCount(bounded.profiles)} profiles with maxResidentActors ${formatCount(bounded.maxResidentActors)}`,
    xLabel: 'seconds since the load started',
    panels: [
      {
        yLabel: 'MiB',
        series: [
          { name: 'RSS', color: '#4e79a7', points: bounded.samples.map((s) => [s.seconds, mib(s.rss)]) },
          { name: 'heap used', color: '#f28e2b', points: bounded.samples.map((s) => [s.seconds, mib(s.heapUsed)]) },
        ],
      },
      {
        yLabel: 'resident actors',
        series: [{ name: 'resident actors', color: '#59a14f', points: bounded.samples.map((s) => [s.seconds, s.resident]) }],
      },
    ],
  });
}

function printMemory(result: MemoryResult): void {
  const { heapPerProfile: heap, boundedRss: bounded } = result;
  const rows: TableRow[] = [
    ['heap per resident profile', `${formatCount(heap.heapBytesPerProfile)} B (${formatCount(heap.resident)} resident, ${heap.eventsPerProfile} events each)`],
    ['off-heap (external) per profile', `${formatCount(heap.externalBytesPerProfile)} B`],
    ['RSS with all resident', formatMiB(heap.rssAfter)],
    ['bounded: profiles stored', `${formatCount(bounded.profiles)} (${bounded.eventsPerProfile} events each) in ${bounded.loadSeconds.toFixed(0)} s, ${formatRate(bounded.acknowledgedPerSecond)}`],
    ['bounded: maxResidentActors', formatCount(bounded.maxResidentActors)],
    ['bounded: peak RSS', formatMiB(bounded.peakRss)],
    ['bounded: peak heap used', formatMiB(bounded.peakHeapUsed)],
    ['bounded: max resident seen', formatCount(bounded.maxResidentSeen)],
    ['bounded: passivations', formatCount(bounded.passivations)],
    ['correctness', `${describeCorrectness(heap.correctness)}; ${describeCorrectness(bounded.correctness)}`],
    ['result', result.passed ? 'passed' : `FAILED: ${result.failures.join('; ')}`],
  ];
  printTable('memory', rows);
}
