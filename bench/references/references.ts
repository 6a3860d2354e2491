/**
 * The harness side of the physical-limit references: core NATS publish to subscribe, and
 * RocksDB batched writes with and without the WAL fdatasync. Each runs in child processes
 * with the ingest load's events, batch size and window, and reports events per second.
 * The grpc-js reference is measured by ingest.ts with the load generators.
 */
import type { ChildProcess } from 'node:child_process';
import { dataDir, type RunContext } from '../context.js';
import { IpcChannel } from '../ipc.js';
import { summarizeLatencies, type LatencySummary } from '../latency.js';
import { NatsServerProcess } from '../nats-server.js';
import type { ChildProcesses } from '../processes.js';
import { formatRate, progress } from '../report.js';
import type { PublisherReport, PublisherRun, SubscriberConfig } from './nats-reference.js';
import type { RocksDbReport, RocksDbRun } from './rocksdb-reference.js';

export interface ReferenceLoadOptions {
  durationS: number;
  warmupS: number;
  batchSize: number;
  inFlightBatches: number;
  customers: number;
  zipfExponent: number;
}

export interface ReferenceMeasurement {
  name: string;
  /** Work per event, for the result table. */
  description: string;
  eventsPerSecond: number;
  windowEvents: number;
  windowSeconds: number;
  /** Per batch: publish to acknowledgement (NATS) or one write (RocksDB). */
  batchLatency: LatencySummary;
  /** CPU of the reference's own processes over the whole run (warm-up included), in cores. */
  cpuCores: number;
}

/** How long a reference child may take to start, in milliseconds. */
const READY_TIMEOUT_MS = 60_000;

export async function measureNatsReference(context: RunContext, options: ReferenceLoadOptions): Promise<ReferenceMeasurement> {
  const nats = await NatsServerProcess.start(context.processes, dataDir(context, 'nats-reference'));
  progress(`NATS reference: nats-server (PID ${nats.pid}) on ${nats.url}`);
  const children: ChildProcess[] = [];

  try {
    const subscriberConfig: SubscriberConfig = { url: nats.url, batchSize: options.batchSize };
    const subscriber = await startChild(context.processes, children, 'references/nats-reference.ts', ['subscriber', JSON.stringify(subscriberConfig)], 'NATS subscriber');
    const publisher = await startChild(context.processes, children, 'references/nats-reference.ts', ['publisher'], 'NATS publisher');

    progress(`NATS reference: publishing for ${options.warmupS} s warm-up and ${options.durationS} s window`);
    const run: PublisherRun = { ...options, url: nats.url, seed: context.seed };
    const report = await publisher.request<PublisherReport>('run', run, timeoutMs(options));
    const subscriberStats = await subscriber.request<{ received: number; cpuMs: number }>('stats');
    if (subscriberStats.received < report.sentEvents) {
      progress(`NATS reference: the subscriber received ${subscriberStats.received} of ${report.sentEvents} published events`);
    }

    const measurement: ReferenceMeasurement = {
      name: 'NATS core publish to subscribe',
      description: `one ${report.messageBytes} B message per event, no persistence, to a subscriber in another process`,
      eventsPerSecond: rate(report.windowEvents, report.windowSeconds),
      windowEvents: report.windowEvents,
      windowSeconds: report.windowSeconds,
      batchLatency: summarizeLatencies(report.batchLatenciesMs),
      cpuCores: (report.cpuMs + subscriberStats.cpuMs) / 1_000 / (options.warmupS + report.windowSeconds),
    };
    progress(`NATS reference: ${formatRate(measurement.eventsPerSecond)}`);
    return measurement;
  } finally {
    await Promise.all(children.map((child) => context.processes.stop(child)));
    await nats.stop();
  }
}

export async function measureRocksDbReference(context: RunContext, options: ReferenceLoadOptions, walSync: boolean): Promise<ReferenceMeasurement> {
  const children: ChildProcess[] = [];
  const label = walSync ? 'RocksDB reference (WAL fdatasync)' : 'RocksDB reference (no fdatasync)';

  try {
    const writer = await startChild(context.processes, children, 'references/rocksdb-reference.ts', [], label);
    progress(`${label}: writing for ${options.warmupS} s warm-up and ${options.durationS} s window`);
    const run: RocksDbRun = {
      ...options,
      seed: context.seed,
      walSync,
      dataDir: dataDir(context, walSync ? 'rocksdb-reference-sync' : 'rocksdb-reference-nosync'),
    };
    const report = await writer.request<RocksDbReport>('run', run, timeoutMs(options));

    const measurement: ReferenceMeasurement = {
      name: walSync ? 'RocksDB batched writes, WAL fdatasync' : 'RocksDB batched writes, no fdatasync',
      description: `event log puts (record, dedup key, heads), ${options.batchSize} events per write, one write at a time`,
      eventsPerSecond: rate(report.windowEvents, report.windowSeconds),
      windowEvents: report.windowEvents,
      windowSeconds: report.windowSeconds,
      batchLatency: summarizeLatencies(report.writeLatenciesMs),
      cpuCores: report.cpuMs / 1_000 / (options.warmupS + report.windowSeconds),
    };
    progress(`${label}: ${formatRate(measurement.eventsPerSecond)}`);
    return measurement;
  } finally {
    await Promise.all(children.map((child) => context.processes.stop(child)));
  }
}

/** Forks a reference script, records it in `children` for the caller to stop, and waits for 'ready'. */
async function startChild(processes: ChildProcesses, children: ChildProcess[], script: string, args: string[], name: string): Promise<IpcChannel> {
  const child = processes.fork(script, { args });
  children.push(child);
  const channel = new IpcChannel(child, name);
  await channel.waitForEvent('ready', READY_TIMEOUT_MS);
  return channel;
}

/** Returns the run's own length plus a minute for start-up and the final acknowledgements. */
function timeoutMs(options: ReferenceLoadOptions): number {
  return (options.warmupS + options.durationS) * 1_000 + 60_000;
}

function rate(events: number, seconds: number): number {
  return seconds > 0 ? events / seconds : 0;
}
