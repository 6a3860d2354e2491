/**
 * Baseline scenario: the ingest load, closed loop from the same generator processes, against
 * the Redis baseline (a stateless gRPC service in front of redis-server, see
 * redis-profiles.ts). The baseline applies each event before it acknowledges it, so applied
 * events/s equals acknowledged events/s. The window ends when the generators have stopped
 * and every batch they sent is acknowledged. The run ends with the same correctness check as
 * ingest, reading the sampled profiles' eventCount through the service's GetProfile.
 */
import type { ChildProcess } from 'node:child_process';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { ProfileServiceClient, type GetProfileResponse } from '../../proto/gen/rtcdp/v1/profile.js';
import { dataDir, type RunContext } from '../context.js';
import { describeCorrectness, type CorrectnessResult, type EventCountSource } from '../correctness.js';
import { checkCorrectness, loadMeasurement, runWindow, startGenerators, sum, warmUpAndMark, type LoadMeasurement, type LoadOptions } from '../ingest.js';
import { IpcChannel } from '../ipc.js';
import type { ChildProcesses } from '../processes.js';
import { formatCount, formatMiB, formatMs, formatRate, machineInfo, printTable, progress, type MachineInfo, type TableRow } from '../report.js';
import { RedisServerProcess, type AppendFsync } from './redis-server.js';
import type { BaselineSample, BaselineServiceConfig } from './service-host.js';

export interface BaselineOptions extends LoadOptions {
  /** appendfsync of redis-server: everysec (Redis's default) or always (fsync before replying). */
  redisFsync: AppendFsync;
  /** How long a messageId is deduplicated, in seconds. */
  dedupTtlS: number;
  /** Recent events kept per profile; 0 keeps none. */
  recentEvents: number;
}

export interface BaselineMeasurement extends LoadMeasurement {
  appendFsync: AppendFsync;
  /** Events applied in the window: the acknowledged ones, because the baseline applies before it acknowledges. */
  appliedEvents: number;
  appliedPerSecond: number;
  serviceCpuCores: number;
  redisCpuCores: number;
  /** Redis's used_memory and key count at the end. */
  redisUsedMemoryBytes: number;
  redisKeys: number;
  /** Events the service applied over the whole run, and what the generators counted as stored by first attempts. */
  serviceAppliedEvents: number;
  generatorFirstAttemptEvents: number;
  unacknowledgedBatches: number;
  correctness: CorrectnessResult;
}

export interface BaselineResult {
  scenario: 'baseline';
  passed: boolean;
  failures: string[];
  machine: MachineInfo;
  loadAverageAfter: number[];
  options: BaselineOptions;
  baseline: BaselineMeasurement;
}

/** How long the service may take to start listening, in milliseconds. */
const READY_TIMEOUT_MS = 60_000;

/** GetProfile calls in flight at once during the correctness check. */
const CHECK_CONCURRENCY = 16;

export async function runBaseline(context: RunContext, options: BaselineOptions): Promise<BaselineResult> {
  const machine = machineInfo();
  const baseline = await measureBaseline(context, options);
  const failures = baselineFailures(baseline);

  const result: BaselineResult = {
    scenario: 'baseline',
    passed: failures.length === 0,
    failures,
    machine,
    loadAverageAfter: machineInfo().loadAverage,
    options,
    baseline,
  };
  printBaseline(result);
  return result;
}

export async function measureBaseline(context: RunContext, options: BaselineOptions): Promise<BaselineMeasurement> {
  progress(`Redis baseline: ${options.generators} generator(s), batches of ${options.batchSize}, ${options.inFlightBatches} in flight each, ${formatCount(options.customers)} customers, appendfsync ${options.redisFsync}`);
  const redis = await RedisServerProcess.start(context.processes, dataDir(context, 'redis'), options.redisFsync);
  progress(`Redis baseline: redis-server (PID ${redis.pid}) on ${redis.host}:${redis.port}`);

  try {
    const service = await BaselineService.start(context.processes, { redisPort: redis.port, dedupTtlS: options.dedupTtlS, recentEvents: options.recentEvents });
    try {
      return await measureService(context, options, service, redis.appendFsync);
    } finally {
      await service.stop();
    }
  } finally {
    await redis.stop();
  }
}

async function measureService(context: RunContext, options: BaselineOptions, service: BaselineService, appendFsync: AppendFsync): Promise<BaselineMeasurement> {
  const generators = await startGenerators(context, options, service.address);
  const mark = await warmUpAndMark(generators, options, 'Redis baseline', null);
  const markSample = await service.sample();

  const timeline = await runWindow(generators, options, 'Redis baseline', null);
  const reports = await generators.stop();
  const windowSeconds = (Date.now() - mark.startedAt) / 1_000;
  const end = await service.sample();

  const load = loadMeasurement(reports, windowSeconds, timeline, options);
  const correctness = await checkCorrectness(new GrpcEventCounts(service.address), reports, options, context.seed, 'Redis baseline');

  return {
    ...load,
    appendFsync,
    appliedEvents: load.acknowledgedEvents,
    appliedPerSecond: load.acknowledgedPerSecond,
    serviceCpuCores: (end.cpuMs - markSample.cpuMs) / 1_000 / windowSeconds,
    redisCpuCores: (end.redis.cpuMs - markSample.redis.cpuMs) / 1_000 / windowSeconds,
    redisUsedMemoryBytes: end.redis.usedMemoryBytes,
    redisKeys: end.redis.keys,
    serviceAppliedEvents: end.counters.appliedEvents,
    generatorFirstAttemptEvents: sum(reports.map((report) => report.acceptedEvents - report.resentStoredEvents)),
    unacknowledgedBatches: sum(reports.map((report) => report.unacknowledgedBatches)),
    correctness,
  };
}

export function baselineFailures(baseline: BaselineMeasurement): string[] {
  const failures: string[] = [];
  if (!baseline.correctness.passed) failures.push(`correctness check ${describeCorrectness(baseline.correctness)}`);
  if (!(baseline.appliedPerSecond > 0)) failures.push('the Redis baseline applied no events in the window');
  if (baseline.rejectedEvents > 0) failures.push(`the Redis baseline rejected ${baseline.rejectedEvents} generated events, which are all valid`);
  // Every event the service applied came back to a generator as ACCEPTED, unless its batch was never acknowledged.
  if (baseline.unacknowledgedBatches === 0 && baseline.serviceAppliedEvents !== baseline.generatorFirstAttemptEvents) {
    failures.push(`the Redis baseline applied ${baseline.serviceAppliedEvents} events but the generators were acknowledged ${baseline.generatorFirstAttemptEvents} as accepted`);
  }
  return failures;
}

/** Table rows of a baseline measurement; `compare` prints them too. */
export function baselineRows(baseline: BaselineMeasurement): TableRow[] {
  return [
    ['Redis baseline applied (= acknowledged)', formatRate(baseline.appliedPerSecond)],
    ['Redis baseline batch latency p50 / p99', `${formatMs(baseline.batchLatency.p50Ms)} / ${formatMs(baseline.batchLatency.p99Ms)}`],
    ['Redis baseline window', `${baseline.windowSeconds.toFixed(1)} s`],
    ['Redis baseline duplicates / rejected', `${formatCount(baseline.duplicateEvents)} / ${formatCount(baseline.rejectedEvents)}`],
    ['Redis appendfsync', baseline.appendFsync],
    ['baseline service CPU', `${baseline.serviceCpuCores.toFixed(2)} cores`],
    ['redis-server CPU', `${baseline.redisCpuCores.toFixed(2)} cores`],
    ['Redis used_memory / keys at the end', `${formatMiB(baseline.redisUsedMemoryBytes)} / ${formatCount(baseline.redisKeys)}`],
    ['generator CPU', `${baseline.generatorCpuCores.toFixed(2)} cores`],
    ['Redis baseline correctness', describeCorrectness(baseline.correctness)],
  ];
}

function printBaseline(result: BaselineResult): void {
  const rows = baselineRows(result.baseline);
  rows.push(['event size', `${result.baseline.eventSizes.protobufBytes} B protobuf, ${result.baseline.eventSizes.jsonBytes} B JSON`]);
  rows.push(['result', result.passed ? 'passed' : `FAILED: ${result.failures.join('; ')}`]);
  printTable('baseline', rows);
}

/** The baseline service process (service-host.ts). */
class BaselineService {
  readonly address: string;
  readonly #processes: ChildProcesses;
  readonly #child: ChildProcess;
  readonly #channel: IpcChannel;

  private constructor(processes: ChildProcesses, child: ChildProcess, channel: IpcChannel, address: string) {
    this.#processes = processes;
    this.#child = child;
    this.#channel = channel;
    this.address = address;
  }

  static async start(processes: ChildProcesses, config: BaselineServiceConfig): Promise<BaselineService> {
    const child = processes.fork('baseline/service-host.ts', { args: [JSON.stringify(config)] });
    const channel = new IpcChannel(child, 'Redis baseline service');

    try {
      const ready = await channel.waitForEvent<{ address: string }>('ready', READY_TIMEOUT_MS);
      return new BaselineService(processes, child, channel, ready.address);
    } catch (error) {
      await processes.stop(child);
      throw error;
    }
  }

  sample(): Promise<BaselineSample> {
    return this.#channel.request('stats');
  }

  stop(): Promise<void> {
    return this.#processes.stop(this.#child);
  }
}

/** Reads eventCounts with the gRPC GetProfile of a server, by user_id; NOT_FOUND counts as no profile. */
class GrpcEventCounts implements EventCountSource {
  readonly #address: string;

  constructor(address: string) {
    this.#address = address;
  }

  async eventCounts(userIds: string[]): Promise<Int32Array> {
    const client = new ProfileServiceClient(this.#address, credentials.createInsecure());
    const counts = new Int32Array(userIds.length);

    try {
      for (let start = 0; start < userIds.length; start += CHECK_CONCURRENCY) {
        const chunk = userIds.slice(start, start + CHECK_CONCURRENCY);
        const found = await Promise.all(chunk.map((userId) => eventCountOf(client, userId)));
        counts.set(found, start);
      }
      return counts;
    } finally {
      client.close();
    }
  }
}

function eventCountOf(client: ProfileServiceClient, userId: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + 30_000);
    client.getProfile({ identifier: { type: 'user_id', value: userId } }, new Metadata(), { deadline }, (error: ServiceError | null, response: GetProfileResponse) => {
      if (error === null) resolve(response.profile?.eventCount ?? 0);
      else if (error.code === status.NOT_FOUND) resolve(-1);
      else reject(new Error(`GetProfile for user_id "${userId}" failed: ${status[error.code] ?? error.code}: ${error.details}`));
    });
  });
}
