/**
 * Stores a fixed set of profiles through the gRPC API. The generators split customers
 * [0, profiles) between them. Each customer gets one identify event (20 traits, with
 * user_id, anonymous_id and email identifiers) and `tracksPerProfile` track events.
 */
import { GeneratorGroup, splitRange, type NodeHost } from './children.js';
import type { RunContext } from './context.js';
import { checkEventCounts, describeCorrectness, mergeAcceptedCounts, sampleCustomers, type CorrectnessResult } from './correctness.js';
import type { GeneratorReport } from './generator.js';
import { formatCount, formatRate, progress, sleep } from './report.js';

export interface ProfileLoadOptions {
  profiles: number;
  tracksPerProfile: number;
  generators: number;
  batchSize: number;
  inFlightBatches: number;
  /** Maximum duration of the whole load, in milliseconds. */
  timeoutMs: number;
  /** Called about once a second while the load runs. */
  onTick?: () => Promise<void>;
}

export interface ProfileLoadResult {
  reports: GeneratorReport[];
  acceptedEvents: number;
  seconds: number;
  /** Accepted events per customer, over customers [0, profiles). */
  counts: Int32Array;
}

export async function loadProfiles(context: RunContext, node: NodeHost, options: ProfileLoadOptions): Promise<ProfileLoadResult> {
  const events = options.profiles * (1 + options.tracksPerProfile);
  progress(`storing ${formatCount(options.profiles)} profiles: ${formatCount(events)} events from ${options.generators} generator(s)`);

  const startedAt = Date.now();
  const generators = await GeneratorGroup.start(context.processes, {
    addresses: [node.address],
    count: options.generators,
    batchSize: options.batchSize,
    inFlightBatches: options.inFlightBatches,
    maxSendMs: options.timeoutMs,
    workloadOf: (index) => ({ kind: 'profiles', ...splitRange(options.profiles, options.generators, index), tracksPerProfile: options.tracksPerProfile }),
    seed: context.seed,
  });

  let reports: GeneratorReport[];
  try {
    await waitWithProgress(generators, events, startedAt, options);
  } finally {
    reports = await generators.stop();
  }

  const seconds = (Date.now() - startedAt) / 1_000;
  const acceptedEvents = reports.reduce((total, report) => total + report.acceptedEvents, 0);
  for (const report of reports) {
    if (report.fatalError !== null) throw new Error(`load generator failed: ${report.fatalError}`);
  }

  progress(`stored ${formatCount(acceptedEvents)} events in ${seconds.toFixed(1)} s (${formatRate(acceptedEvents / seconds)} acknowledged)`);
  return { reports, acceptedEvents, seconds, counts: mergeAcceptedCounts(reports, options.profiles) };
}

/** Waits until every generator reports 'finished', printing progress and calling onTick about once a second. */
async function waitWithProgress(generators: GeneratorGroup, events: number, startedAt: number, options: ProfileLoadOptions): Promise<void> {
  let finished = false;
  let failure: unknown = null;
  void generators.waitFinished(options.timeoutMs).then(
    () => (finished = true),
    (error) => (failure = error),
  );

  while (!finished && failure === null) {
    await sleep(1_000);
    const states = await generators.progress();
    const acknowledged = states.reduce((total, state) => total + state.acceptedEvents, 0);
    const seconds = (Date.now() - startedAt) / 1_000;
    progress(`  ${formatCount(acknowledged)} of ${formatCount(events)} events acknowledged (${formatRate(acknowledged / seconds)}), ${states.reduce((t, s) => t + s.overloadRetries, 0)} overload retries`);
    await options.onTick?.();
  }

  if (failure !== null) throw failure;
}

/** Checks that sampled profiles have exactly the events the generators got accepted. */
export async function checkStoredProfiles(node: NodeHost, load: ProfileLoadResult, sampleSize: number, seed: number): Promise<CorrectnessResult> {
  const sample = sampleCustomers(load.counts, sampleSize, seed);
  const result = await checkEventCounts(node, load.counts, sample);
  progress(`correctness check ${describeCorrectness(result)}`);
  return result;
}
