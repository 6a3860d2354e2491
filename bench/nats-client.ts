/**
 * The `nats-client` scenario: the client's own CPU time per JetStream publish and per KV put,
 * the two requests a cluster node makes most (one per event appended, one per snapshot
 * written), in three setups of the client. By default every request builds Error objects
 * with stack traces in case it fails later (async traces), and one more after its reply
 * settled it. Cluster nodes connect with `noAsyncTraces: true` and skip the last Error
 * (cluster/nats/settled-requests.ts).
 *
 * One nats-server with JetStream on 127.0.0.1, and this process as the only client. The run
 * passes when the stream contains every published message and the bucket every key.
 */
import path from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { restoreSettledRequestErrors, skipSettledRequestErrors } from '../cluster/nats/settled-requests.js';
import type { RunContext } from './context.js';
import { NatsServerProcess } from './nats-server.js';
import { formatCount, machineInfo, progress, type MachineInfo } from './report.js';

export interface NatsClientOptions {
  /** Requests of each kind per round and setting. */
  requests: number;
  /** Requests in flight at a time. */
  inFlight: number;
  /** Rounds. Each measures every setup, and the table shows the median round. */
  rounds: number;
  /** Payload of each message and value, in bytes. */
  payloadBytes: number;
}

type RequestKind = 'publish' | 'kv put';

/** The client with its defaults, without async traces, and as cluster nodes run it: without async traces and without the Error built after a reply. */
type ClientSetup = 'default' | 'no async traces' | 'nodes';

const SETUPS: readonly ClientSetup[] = ['default', 'no async traces', 'nodes'];

const SETUP_LABELS: Record<ClientSetup, string> = {
  default: 'defaults (async traces on)',
  'no async traces': 'async traces off',
  nodes: 'as nodes: async traces off, settled requests patched',
};

interface Measurement {
  kind: RequestKind;
  setup: ClientSetup;
  requestsPerSecond: number;
  clientCpuUsPerRequest: number;
}

export interface NatsClientResult {
  passed: boolean;
  machine: MachineInfo;
  options: NatsClientOptions;
  /** Every round's measurements. */
  rounds: Measurement[][];
  /** Per kind and setup, the round with the median client CPU per request (of an even count, the upper middle one). */
  medians: Measurement[];
}

export async function runNatsClient(context: RunContext, options: NatsClientOptions): Promise<NatsClientResult> {
  const server = await NatsServerProcess.start(context.processes, path.join(context.dataRoot, 'nats'));
  progress(`nats-server ${server.pid} listens on ${server.url}`);

  const rounds: Measurement[][] = [];
  let passed = true;
  try {
    // A tenth of a round with each setup, not counted, so that the first measured one does not pay for the JIT.
    const warmUp = { ...options, requests: Math.ceil(options.requests / 10) };
    for (const [i, setup] of SETUPS.entries()) await measureSetup(server.url, setup, `w${i}`, warmUp);
    progress('warm-up done');

    for (let round = 1; round <= options.rounds; round++) {
      const measured: Measurement[] = [];
      // Rotate the order, so a drift in the machine's load does not always favour one setup.
      const order = SETUPS.map((_, i) => (i + round) % SETUPS.length);
      for (const i of order) {
        const { measurements, complete } = await measureSetup(server.url, SETUPS[i], `r${round}s${i}`, options);
        measured.push(...measurements);
        passed &&= complete;
      }
      rounds.push(measured);
      progress(`round ${round} of ${options.rounds} done`);
    }
  } finally {
    restoreSettledRequestErrors();
    await server.stop();
  }

  const medians = medianMeasurements(rounds);
  printTable(medians, options);
  return { passed, machine: machineInfo(), options, rounds, medians };
}

/** Publishes and puts `options.requests` times each on a new connection; `complete` is false when the server lacks any. */
async function measureSetup(url: string, setup: ClientSetup, name: string, options: NatsClientOptions): Promise<{ measurements: Measurement[]; complete: boolean }> {
  if (setup === 'nodes') skipSettledRequestErrors();
  else restoreSettledRequestErrors();

  const connection = await connect({ servers: url, name: `rtcdp-bench-${name}`, noAsyncTraces: setup !== 'default' });
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
        { kind: 'publish', setup, ...publish },
        { kind: 'kv put', setup, ...put },
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
    SETUPS.map((setup) => {
      const all = rounds.flat().filter((measurement) => measurement.kind === kind && measurement.setup === setup);
      const sorted = [...all].sort((a, b) => a.clientCpuUsPerRequest - b.clientCpuUsPerRequest);
      return sorted[Math.floor(sorted.length / 2)];
    }),
  );
}

function printTable(medians: readonly Measurement[], options: NatsClientOptions): void {
  const title = `NATS client: ${formatCount(options.requests)} requests of each kind, ${options.inFlight} in flight, ${options.payloadBytes} B each (${options.rounds === 1 ? 'one round' : `median of ${options.rounds} rounds`})`;
  const rows = [['REQUEST', 'CLIENT', 'REQUESTS/S', 'CLIENT CPU/REQUEST']];
  for (const measurement of medians) {
    rows.push([measurement.kind, SETUP_LABELS[measurement.setup], formatCount(measurement.requestsPerSecond), `${measurement.clientCpuUsPerRequest.toFixed(1)} µs`]);
  }

  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  const lines = [title, '-'.repeat(title.length), ...rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd()), ''];
  process.stdout.write(`${lines.join('\n')}\n`);
}
