/**
 * Node host process, forked by the harness: runs one embedded rtcdp node (gRPC on a free
 * 127.0.0.1 port, dev mode, workspace "default") and serves the harness's requests over
 * IPC. Queries are timed here, next to the node, so IPC time is not part of a latency.
 *
 * The config is the JSON in argv[2]. SIGTERM or a closed IPC channel drains the node
 * (applies and persists everything acknowledged) and exits.
 */
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { startEmbedded, type EmbeddedRtcdp } from '../api/embedded.js';
import type { ActorSystemOptions } from '../actors/types.js';
import { createLogger } from '../common/logger.js';
import { RtcdpNode } from '../cluster/node.js';
import { DefinitionRegistry } from '../decisions/definitions/definition-registry.js';
import type { SourceFile } from '../decisions/definitions/document.js';
import { sendEvent, serveIpc } from './ipc.js';
import { createLatencyHistogram, recordMs, summarizeHistogram, type LatencySummary } from './latency.js';
import { PauseMonitor } from './pause-monitor.js';

export interface NodeHostConfig {
  dataDir: string;
  walSync: boolean;
  maxInFlightEvents?: number;
  actors?: ActorSystemOptions;
}

export type NodeStats = ReturnType<EmbeddedRtcdp['node']['stats']>;

export interface NodeSample {
  /** Milliseconds since the Unix epoch. */
  timeMs: number;
  node: NodeStats;
  memory: NodeJS.MemoryUsage;
  /** CPU time used by this process so far, in ms. */
  cpuMs: number;
}

export interface TimedQueries {
  /** Per-query latency of node.getProfile, in microseconds. */
  latenciesUs: Float64Array;
  /** eventCount of each profile, or -1 when it was not found. */
  eventCounts: Int32Array;
  activations: number;
}

const WORKSPACE = 'default';

/** How often waitSettled checks the node, in milliseconds. */
const SETTLE_POLL_MS = 5;

const config = JSON.parse(process.argv[2] ?? '{}') as NodeHostConfig;
const logger = createLogger({ level: 'warn', name: 'rtcdp-bench-node' });

/**
 * Durations of RtcdpNode.decide since the last 'decideTimings' request: the part of a
 * Decide call inside the node, from the service handler's call to the receipt, without the
 * gRPC transport, decoding and encoding, or the caller's process. The prototype is wrapped
 * before the node starts, because the gRPC service binds the method when it is created.
 */
let decideTimings = createLatencyHistogram();
const decide = RtcdpNode.prototype.decide;
RtcdpNode.prototype.decide = async function timedDecide(this: RtcdpNode, ...args: Parameters<RtcdpNode['decide']>) {
  const startedAt = performance.now();
  try {
    return await decide.apply(this, args);
  } finally {
    recordMs(decideTimings, performance.now() - startedAt);
  }
};

/** GC pauses and event-loop delay since the last 'pauses' request. */
const pauses = new PauseMonitor();

const embedded = await startEmbedded({ ...config, port: 0, logger, devMode: true });
let profiler: Session | null = null;
let stopping: Promise<void> | null = null;

/** Returns the node.decide durations recorded since the last call, and starts recording anew. */
function takeDecideTimings(): LatencySummary {
  const summary = summarizeHistogram(decideTimings);
  decideTimings.destroy();
  decideTimings = createLatencyHistogram();
  return summary;
}

function sample(): NodeSample {
  const cpu = process.cpuUsage();
  return { timeMs: epochNow(), node: embedded.node.stats(), memory: process.memoryUsage(), cpuMs: (cpu.user + cpu.system) / 1_000 };
}

function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Runs full GCs until heapUsed stops shrinking (at most 5), so that a measurement counts only live objects. */
async function collectGarbage(): Promise<NodeSample> {
  const gc = globalThis.gc;
  if (gc === undefined) throw new Error('the node host was started without --expose-gc, so it cannot force a GC');

  let previous = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 5; round++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
    const heapUsed = process.memoryUsage().heapUsed;
    if (heapUsed >= previous * 0.999) break;
    previous = heapUsed;
  }
  return sample();
}

/**
 * Resolves once no event is in flight and every mailbox is empty, and with `persisted`
 * also once no actor has unpersisted state. Returns when that was first seen (epoch ms).
 */
async function waitSettled(options: { timeoutMs: number; persisted: boolean }): Promise<{ settledAtMs: number }> {
  const deadline = Date.now() + options.timeoutMs;

  for (;;) {
    const stats = embedded.node.stats();
    const settled = stats.inFlightEvents === 0 && stats.actors.queued === 0 && (!options.persisted || stats.actors.dirty === 0);
    if (settled) return { settledAtMs: epochNow() };

    if (Date.now() > deadline) {
      throw new Error(`node did not settle within ${options.timeoutMs} ms: ${stats.inFlightEvents} events in flight, ${stats.actors.queued} queued, ${stats.actors.dirty} dirty actors`);
    }
    await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
  }
}

async function eventCountOf(userId: string, type = 'user_id'): Promise<number> {
  try {
    const profile = await embedded.node.getProfile(WORKSPACE, { type, value: userId });
    return profile.eventCount;
  } catch (error) {
    if ((error as { code?: string }).code === 'PROFILE_NOT_FOUND') return -1;
    throw error;
  }
}

/** Queries the profiles one at a time and times each getProfile call. */
async function timeQueries(userIds: string[]): Promise<TimedQueries> {
  const latenciesUs = new Float64Array(userIds.length);
  const eventCounts = new Int32Array(userIds.length);
  const activationsBefore = embedded.node.stats().actors.activations;

  for (let i = 0; i < userIds.length; i++) {
    const started = performance.now();
    eventCounts[i] = await eventCountOf(userIds[i]);
    latenciesUs[i] = (performance.now() - started) * 1_000;
  }

  return { latenciesUs, eventCounts, activations: embedded.node.stats().actors.activations - activationsBefore };
}

/**
 * Applies definition files to the workspace, as `rtcdp dev --definitions` does, and returns
 * how many definitions the set holds. An invalid set stores nothing and fails with every
 * issue in the message.
 */
async function applyDefinitions(files: SourceFile[]): Promise<{ definitions: number }> {
  const outcome = await new DefinitionRegistry(embedded.node.definitionStore).apply(WORKSPACE, files);
  if (outcome.issues.length > 0) {
    const issues = outcome.issues.map((issue) => `${issue.file}: ${issue.path}: ${issue.rule} (line ${issue.line}, column ${issue.column})`);
    throw new Error(`definitions are invalid, so none was applied:\n${issues.join('\n')}`);
  }
  return { definitions: outcome.results.length };
}

async function startProfiler(): Promise<null> {
  profiler = new Session();
  profiler.connect();
  await profiler.post('Profiler.enable');
  await profiler.post('Profiler.start');
  return null;
}

async function stopProfiler(path: string): Promise<null> {
  if (profiler === null) throw new Error('CPU profiler is not running; send "startProfiler" first');
  const { profile } = await profiler.post('Profiler.stop');
  await writeFile(path, JSON.stringify(profile));
  profiler.disconnect();
  profiler = null;
  return null;
}

/** Drains the node once, however many times it is called. */
function drain(): Promise<void> {
  stopping ??= embedded.stop();
  return stopping;
}

function stopAndExit(code: number): void {
  drain().then(
    () => process.exit(code),
    (error) => {
      logger.error({ err: error }, 'node host failed to drain the node');
      process.exit(1);
    },
  );
}

serveIpc(
  {
    stats: () => sample(),
    gc: () => collectGarbage(),
    waitSettled: (options: { timeoutMs: number; persisted: boolean }) => waitSettled(options),
    eventCounts: async (userIds: string[]) => Int32Array.from(await Promise.all(userIds.map((userId) => eventCountOf(userId)))),
    eventCountsOf: async (profiles: Array<{ type: string; value: string }>) =>
      Int32Array.from(await Promise.all(profiles.map((profile) => eventCountOf(profile.value, profile.type)))),
    timeQueries: (userIds: string[]) => timeQueries(userIds),
    decideTimings: () => takeDecideTimings(),
    pauses: () => pauses.take(),
    applyDefinitions: (files: SourceFile[]) => applyDefinitions(files),
    startProfiler: () => startProfiler(),
    stopProfiler: (path: string) => stopProfiler(path),
    drain: async () => {
      await drain();
      return null;
    },
  },
  () => stopAndExit(1),
);

process.on('SIGTERM', () => stopAndExit(0));
sendEvent('ready', { address: embedded.address, pid: process.pid });
