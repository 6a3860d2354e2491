/**
 * The `nats-client` scenario: the client's own CPU time per JetStream publish and per KV put,
 * the two requests a cluster node makes most (one per event appended, one per snapshot
 * written), with the client's async traces on and off. With them on, which is the client's
 * default, every request builds Error objects with stack traces in case it fails later.
 * Cluster nodes connect with `noAsyncTraces: true`.
 *
 * One nats-server with JetStream on 127.0.0.1, and this process as the only client. The run
 * passes when the stream contains every published message and the bucket every key.
 */
import path from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { RunContext } from './context.js';
import { NatsServerProcess } from './nats-server.js';
import { formatCount, machineInfo, progress, type MachineInfo } from './report.js';

export interface NatsClientOptions {
  /** Requests of each kind per round and setting. */
  requests: number;
  /** Requests in flight at a time. */
  inFlight: number;
  /** Rounds. Each measures both settings, and the table shows the median round. */
  rounds: number;
  /** Payload of each message and value, in bytes. */
  payloadBytes: number;
}

type RequestKind = 'publish' | 'kv put';

interface Measurement {
  kind: RequestKind;
  asyncTraces: boolean;
  requestsPerSecond: number;
  clientCpuUsPerRequest: number;
}

export interface NatsClientResult {
  passed: boolean;
  machine: MachineInfo;
  options: NatsClientOptions;
  /** Every round's measurements. */
  rounds: Measurement[][];
  /** Per kind and setting, the round with the median client CPU per request (of an even count, the upper middle one). */
  medians: Measurement[];
}

const SETTINGS = [true, false];

export async function runNatsClient(context: RunContext, options: NatsClientOptions): Promise<NatsClientResult> {
  const server = await NatsServerProcess.start(context.processes, path.join(context.dataRoot, 'nats'));
  progress(`nats-server ${server.pid} listens on ${server.url}`);

  const rounds: Measurement[][] = [];
  let passed = true;
  try {
    // A tenth of a round with each setting, not counted, so that the first measured one does not pay for the JIT.
    const warmUp = { ...options, requests: Math.ceil(options.requests / 10) };
    for (const asyncTraces of SETTINGS) await measureSetting(server.url, asyncTraces, `w${asyncTraces ? 't' : 'n'}`, warmUp);
    progress('warm-up done');

    for (let round = 1; round <= options.rounds; round++) {
      const measured: Measurement[] = [];
      // Alternate the order, so a drift in the machine's load does not always favour one setting.
      const settings = round % 2 === 1 ? SETTINGS : [...SETTINGS].reverse();
      for (const asyncTraces of settings) {
        const { measurements, complete } = await measureSetting(server.url, asyncTraces, `r${round}${asyncTraces ? 't' : 'n'}`, options);
        measured.push(...measurements);
        passed &&= complete;
      }
      rounds.push(measured);
      progress(`round ${round} of ${options.rounds} done`);
    }
  } finally {
    await server.stop();
  }

  const medians = medianMeasurements(rounds);
  printTable(medians, options);
  return { passed, machine: machineInfo(), options, rounds, medians };
}

/** Publishes and puts `options.requests` times each on a new connection; `complete` is false when the server lacks any. */
async function measureSetting(url: string, asyncTraces: boolean, name: string, options: NatsClientOptions): Promise<{ measurements: Measurement[]; complete: boolean }> {
  const connection = await connect({ servers: url, name: `rtcdp-bench-${name}`, noAsyncTraces: !asyncTraces });
  try {
    const jsm = await jetstreamManager(connection);
    const stream = `BENCH_${name.toUpperCase()}`;
    await jsm.streams.add({ name: stream, subjects: [`bench.${name}.>`] });
    const js = jetstream(connection);
    const kv = await new Kvm(connection).create(`bench_${name}`);
    const payload = new Uint8Array(options.payloadBytes);

    const publish = await timed(options, (i) => js.publish(`bench.${name}.${i % 16}`, payload, { msgID: `m${i}` }));
    const put = await timed(options, (i) => kv.put(`k${i}`, payload));

    const stored = (await jsm.streams.info(stream)).state.messages;
    const keys = (await jsm.streams.info(`KV_bench_${name}`)).state.messages;
    return {
      measurements: [
        { kind: 'publish', asyncTraces, ...publish },
        { kind: 'kv put', asyncTraces, ...put },
      ],
      complete: stored === options.requests && keys === options.requests,
    };
  } finally {
    await drainQuietly(connection);
  }
}

/** Runs `request` for 0 .. requests-1 with `inFlight` outstanding; returns the rate and this process's CPU per request. */
async function timed(options: NatsClientOptions, request: (i: number) => Promise<unknown>): Promise<{ requestsPerSecond: number; clientCpuUsPerRequest: number }> {
  const cpuBefore = process.cpuUsage();
  const startedAt = performance.now();

  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < options.requests) await request(next++);
  };
  await Promise.all(Array.from({ length: options.inFlight }, worker));

  const elapsedS = (performance.now() - startedAt) / 1_000;
  const cpu = process.cpuUsage(cpuBefore);
  return { requestsPerSecond: options.requests / elapsedS, clientCpuUsPerRequest: (cpu.user + cpu.system) / options.requests };
}

async function drainQuietly(connection: NatsConnection): Promise<void> {
  try {
    await connection.drain();
  } catch {
    await connection.close();
  }
}

function medianMeasurements(rounds: readonly Measurement[][]): Measurement[] {
  const kinds: RequestKind[] = ['publish', 'kv put'];
  return kinds.flatMap((kind) =>
    SETTINGS.map((asyncTraces) => {
      const all = rounds.flat().filter((measurement) => measurement.kind === kind && measurement.asyncTraces === asyncTraces);
      const sorted = [...all].sort((a, b) => a.clientCpuUsPerRequest - b.clientCpuUsPerRequest);
      return sorted[Math.floor(sorted.length / 2)];
    }),
  );
}

function printTable(medians: readonly Measurement[], options: NatsClientOptions): void {
  const title = `NATS client: ${formatCount(options.requests)} requests of each kind, ${options.inFlight} in flight, ${options.payloadBytes} B each (${options.rounds === 1 ? 'one round' : `median of ${options.rounds} rounds`})`;
  const rows = [['REQUEST', 'ASYNC TRACES', 'REQUESTS/S', 'CLIENT CPU/REQUEST']];
  for (const measurement of medians) {
    rows.push([measurement.kind, measurement.asyncTraces ? 'on (default)' : 'off (nodes)', formatCount(measurement.requestsPerSecond), `${measurement.clientCpuUsPerRequest.toFixed(1)} µs`]);
  }

  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  const lines = [title, '-'.repeat(title.length), ...rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd()), ''];
  process.stdout.write(`${lines.join('\n')}\n`);
}
