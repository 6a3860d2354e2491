/**
 * The harness side of the physical-limit references: core NATS publish to subscribe,
 * JetStream publish with acknowledgement, and RocksDB batched writes with and without the
 * WAL fdatasync. Each runs in child processes with the ingest load's events, batch size and
 * window, and reports events per second. The grpc-js reference is measured by ingest.ts
 * with the load generators.
 */
import type { ChildProcess } from 'node:child_process';
import { jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
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

/** The stream of the JetStream reference, with the event stream's duplicate window (2 minutes). */
const JETSTREAM_STREAM = 'RTCDP_BENCH_JETSTREAM';
const JETSTREAM_SUBJECT_PREFIX = 'rtcdp.bench.jetstream';
const DUPLICATE_WINDOW_NANOS = 120_000_000_000;

/**
 * Measures JetStream alone: `publishers` processes publish the load's events to one stream
 * on a new nats-server, one message per event with a message id, over `shards` subjects,
 * each keeping at most `inFlightBatches` batches unacknowledged. Events/s is their sum.
 */
export async function measureJetStreamReference(context: RunContext, options: ReferenceLoadOptions, settings: { publishers: number; shards: number; replicas: number }): Promise<ReferenceMeasurement> {
  const nats = await NatsServerProcess.start(context.processes, dataDir(context, 'jetstream-reference'));
  progress(`JetStream reference: nats-server (PID ${nats.pid}) on ${nats.url}`);
  const children: ChildProcess[] = [];

  try {
    await createReferenceStream(nats.url, settings.replicas);
    const publishers = await Promise.all(
      Array.from({ length: settings.publishers }, (_, i) => startChild(context.processes, children, 'references/nats-reference.ts', ['jetstream-publisher'], `JetStream publisher ${i + 1}`)),
    );

    progress(`JetStream reference: ${settings.publishers} publisher(s) for ${options.warmupS} s warm-up and ${options.durationS} s window`);
    const reports = await Promise.all(
      publishers.map((publisher, i) => {
        const run: PublisherRun = {
          ...options,
          url: nats.url,
          seed: context.seed + i,
          jetstream: { subjectPrefix: JETSTREAM_SUBJECT_PREFIX, shards: settings.shards, messageIdPrefix: `p${i}` },
        };
        return publisher.request<PublisherReport>('run', run, timeoutMs(options));
      }),
    );

    const windowEvents = reports.reduce((sum, report) => sum + report.windowEvents, 0);
    const windowSeconds = Math.max(...reports.map((report) => report.windowSeconds));
    const measurement: ReferenceMeasurement = {
      name: 'JetStream publish with acknowledgement',
      description:
        `one ${reports[0].messageBytes} B message per event with a message id, file storage, ${settings.replicas} replica(s), ` +
        `${settings.shards} subjects, ${settings.publishers} publisher process(es)`,
      eventsPerSecond: reports.reduce((sum, report) => sum + rate(report.windowEvents, report.windowSeconds), 0),
      windowEvents,
      windowSeconds,
      batchLatency: summarizeLatencies(Float64Array.from(reports.flatMap((report) => [...report.batchLatenciesMs]))),
      cpuCores: reports.reduce((sum, report) => sum + report.cpuMs, 0) / 1_000 / (options.warmupS + windowSeconds),
    };
    progress(`JetStream reference: ${formatRate(measurement.eventsPerSecond)}`);
    return measurement;
  } finally {
    await Promise.all(children.map((child) => context.processes.stop(child)));
    await nats.stop();
  }
}

async function createReferenceStream(url: string, replicas: number): Promise<void> {
  const connection = await connect({ servers: url, name: 'rtcdp-bench-harness' });
  try {
    const jsm = await jetstreamManager(connection);
    await jsm.streams.add({
      name: JETSTREAM_STREAM,
      subjects: [`${JETSTREAM_SUBJECT_PREFIX}.>`],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      num_replicas: replicas,
      duplicate_window: DUPLICATE_WINDOW_NANOS,
    });
  } finally {
    await connection.close();
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
