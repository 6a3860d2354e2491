/**
 * The result of the cluster scenario, built from what each phase recorded (times, shard
 * owners, generator reports) and from the probe's cycles. It also decides what fails the
 * run: wrong counts, stale reads, failed generators, shards that never came back, and
 * phases that did not finish. A missed goal does not fail the run.
 */
import { cyclesOf, cycleLatencies, longestWait, percentile, recoveryTime, unservedTime, type CycleLatencies } from './cluster-analysis.js';
import type { ShardMoveRecord } from './cluster-node-host.js';
import type { ProbeCustomer, ProbeReport } from './cluster-probe.js';
import type { ClusterRun, ClusterSample } from './cluster-run.js';
import type { ClusterOptions } from './cluster.js';
import { describeCorrectness, type CorrectnessResult } from './correctness.js';
import type { GeneratorReport } from './generator.js';
import { summarizeLatencies, type LatencySummary } from './latency.js';
import { machineInfo, type MachineInfo } from './report.js';
import type { ReferenceMeasurement } from './references/references.js';

export const CLUSTER_GOALS = {
  appliedPerSecond: 50_000,
  failoverMs: 10_000,
  handoffPauseMs: 1_000,
};

export interface ThroughputPhase {
  markAt: number;
  sendingEndedAt: number;
  settledAt: number;
  appliedBefore: number;
  reports: GeneratorReport[];
}

export interface FailoverPhase {
  victim: string;
  coordinator: string | null;
  killAt: number;
  before: Map<number, string>;
  /** When the survivors ran the placement over themselves, or null when they did not in time. */
  placedAt: number | null;
  after: Map<number, string>;
  /** The victim's restart, or null when it was skipped because the survivors were not placed. */
  rejoin: { restartAt: number; placedAt: number | null; before: Map<number, string>; after: Map<number, string> } | null;
  endAt: number;
  /** The reason the phase did not finish, or null. */
  problem: string | null;
}

export interface HandoffPhase {
  victim: string;
  stopAt: number;
  exitAt: number;
  exitedOnItsOwn: boolean;
  before: Map<number, string>;
  after: Map<number, string>;
  placedAt: number | null;
  endAt: number;
  problem: string | null;
}

export interface Phases {
  throughput: ThroughputPhase;
  failover: FailoverPhase;
  /** Null when the handoff phase was skipped because the cluster had not recovered from the kill. */
  handoff: HandoffPhase | null;
  probeReport: ProbeReport;
  customers: ProbeCustomer[];
  /** Events/s the generators sent at most during the failover and handoff phases, or null for no limit. */
  faultLoadPerSecond: number | null;
  /** Null when the final check could not run. */
  correctness: CorrectnessResult | null;
  /** Problems of the final check, such as events that were never applied. */
  finalProblems: string[];
  /** JetStream alone on the same machine, or null when it was not measured. */
  reference: ReferenceMeasurement | null;
}

export interface ThroughputResult {
  /** From the end of the warm-up to the moment every stored event was applied. */
  windowSeconds: number;
  /** From the end of the warm-up to the last acknowledgement after sending stopped. */
  sendSeconds: number;
  acknowledgedEvents: number;
  acknowledgedPerSecond: number;
  appliedEvents: number;
  appliedPerSecond: number;
  /** From the last acknowledgement to the moment every stored event was applied. */
  applyLagSeconds: number;
  goalPerSecond: number;
  /** appliedPerSecond divided by the goal. */
  appliedShareOfGoal: number;
  batchLatency: LatencySummary;
  overloadRetries: number;
  perGenerator: Array<{ address: string; acknowledgedPerSecond: number }>;
  generatorCpuCores: number;
}

export interface ShardPause {
  shard: number;
  from: string;
  to: string | null;
  /** Maximum wait for a successful write+read of the shard's probe customer, or null without cycles. */
  pauseMs: number | null;
  /** False when the probe never succeeded again before the window ended. */
  recovered: boolean;
  /** handoffMs that the old owner logged with "handed the shard off", or null when it logged none. */
  handoffMs: number | null;
  /**
   * From the nodes' logs: the time from when the old owner stopped serving the shard until
   * the new owner logged "took over the shard", or null when either record is missing.
   */
  unservedMs: number | null;
}

export interface FailoverResult {
  victim: string;
  victimWasCoordinator: boolean;
  killedAtSeconds: number;
  /** Per shard the killed node ran: time from the kill to the first successful write+read started after it. */
  shards: Array<{ shard: number; newOwner: string | null; recoveryMs: number | null }>;
  /** The slowest shard, or null when a shard did not recover. */
  maxRecoveryMs: number | null;
  minRecoveryMs: number | null;
  goalMs: number;
  /** From the kill until the survivors ran a balanced placement over themselves, or null when they did not. */
  placedAfterMs: number | null;
  /** The victim's restart, or null when it was skipped. */
  rejoin: {
    restartedAtSeconds: number;
    /** From the restart until the placement over all three nodes was reached, or null when it was not. */
    placedAfterMs: number | null;
    shards: ShardPause[];
    maxPauseMs: number | null;
    /** Maximum unservedMs over the shards that moved back, or null when no shard has one. */
    maxUnservedMs: number | null;
    /** Maximum wait on the shards that did not move, in the same window, for comparison. */
    unmovedMaxWaitMs: number | null;
  } | null;
}

export interface HandoffResult {
  victim: string;
  stoppedAtSeconds: number;
  /** From SIGTERM to the process exit. */
  exitMs: number;
  exitedOnItsOwn: boolean;
  /** From SIGTERM until the other two nodes ran the placement over themselves, or null when they did not. */
  placedAfterMs: number | null;
  shards: ShardPause[];
  maxPauseMs: number | null;
  p50PauseMs: number | null;
  goalMs: number;
  /** Maximum wait on the shards that did not move, in the same window, for comparison. */
  unmovedMaxWaitMs: number | null;
  /** Maximum and median unservedMs over the moved shards, or null when no shard has one. */
  maxUnservedMs: number | null;
  p50UnservedMs: number | null;
}

export interface ProbeSummary {
  customers: number;
  intervalMs: number;
  cycles: number;
  failures: Record<string, number>;
  firstFailures: string[];
  /** Probe customers whose final eventCount differs from the events the probe got acknowledged. */
  mismatches: Array<{ userId: string; expected: number; actual: number | 'not found' | 'read failed' }>;
}

export interface ClusterResult {
  scenario: 'cluster';
  passed: boolean;
  failures: string[];
  machine: MachineInfo;
  loadAverageAfter: number[];
  options: ClusterOptions;
  nodes: string[];
  shards: number;
  throughput: ThroughputResult;
  /** JetStream alone on the same machine, measured before the nodes start, or null when skipped. */
  jetstreamReference: ReferenceMeasurement | null;
  /** Events/s the generators sent at most during the failover and handoff phases, or null for no limit. */
  faultLoadPerSecond: number | null;
  /** Probe cycles during the throughput window. */
  latency: CycleLatencies;
  failover: FailoverResult;
  /** Null when the phase was skipped. */
  handoff: HandoffResult | null;
  probe: ProbeSummary;
  load: { acknowledgedEvents: number; resentStoredEvents: number; addressSwitches: number; streamErrors: number; overloadRetries: number };
  /** Null when the final check could not run. */
  correctness: CorrectnessResult | null;
  timeline: ClusterSample[];
  markers: Array<{ seconds: number; label: string }>;
  shardMoves: ShardMoveRecord[];
  charts: string[];
}

export function buildClusterResult(run: ClusterRun, options: ClusterOptions, nodes: string[], machine: MachineInfo, phases: Phases): ClusterResult {
  const cycles = phases.probeReport.cycles;
  const { markAt, sendingEndedAt } = phases.throughput;

  const result: ClusterResult = {
    scenario: 'cluster',
    passed: false,
    failures: [],
    machine,
    loadAverageAfter: machineInfo().loadAverage,
    options,
    nodes,
    shards: run.shards,
    throughput: throughputOf(phases.throughput, options),
    jetstreamReference: phases.reference,
    faultLoadPerSecond: phases.faultLoadPerSecond,
    latency: cycleLatencies(cycles, markAt, sendingEndedAt),
    failover: failoverOf(run, phases.failover, phases.probeReport),
    handoff: phases.handoff === null ? null : handoffOf(run, phases.handoff, phases.probeReport),
    probe: probeSummaryOf(phases.probeReport, phases.customers, options),
    load: loadSummaryOf(run.reports),
    correctness: phases.correctness,
    timeline: run.timeline,
    markers: run.markers.map((marker) => ({ seconds: run.secondsOf(marker.timeMs), label: marker.label })),
    shardMoves: run.shardMoves,
    charts: [],
  };

  result.failures = [...phaseProblems(phases), ...clusterFailures(result, run.reports)];
  result.passed = result.failures.length === 0;
  return result;
}

function throughputOf(phase: ThroughputPhase, options: ClusterOptions): ThroughputResult {
  const { reports, markAt, sendingEndedAt, settledAt, appliedBefore } = phase;
  const sendSeconds = (sendingEndedAt - markAt) / 1_000;
  const windowSeconds = (settledAt - markAt) / 1_000;
  const acknowledgedEvents = sum(reports.map((report) => report.windowAcceptedEvents));
  const appliedEvents = sum(reports.map((report) => report.acceptedEvents)) - appliedBefore;
  const appliedPerSecond = appliedEvents / windowSeconds;

  return {
    windowSeconds,
    sendSeconds,
    acknowledgedEvents,
    acknowledgedPerSecond: acknowledgedEvents / sendSeconds,
    appliedEvents,
    appliedPerSecond,
    applyLagSeconds: (settledAt - sendingEndedAt) / 1_000,
    goalPerSecond: CLUSTER_GOALS.appliedPerSecond,
    appliedShareOfGoal: appliedPerSecond / CLUSTER_GOALS.appliedPerSecond,
    batchLatency: summarizeLatencies(concatenate(reports.map((report) => report.batchLatenciesMs))),
    overloadRetries: sum(reports.map((report) => report.overloadRetries)),
    perGenerator: reports.map((report) => ({ address: report.address, acknowledgedPerSecond: report.windowAcceptedEvents / sendSeconds })),
    generatorCpuCores: sum(reports.map((report) => report.cpuMs)) / 1_000 / (options.warmupS + sendSeconds),
  };
}

function failoverOf(run: ClusterRun, phase: FailoverPhase, probe: ProbeReport): FailoverResult {
  const shards = shardsOn(phase.before, phase.victim).map((shard) => ({
    shard,
    newOwner: phase.after.get(shard) ?? null,
    recoveryMs: recoveryTime(cyclesOf(probe.cycles, shard), phase.killAt),
  }));
  const times = shards.map((shard) => shard.recoveryMs);
  const recovered = times.length > 0 && times.every((time) => time !== null);

  return {
    victim: phase.victim,
    victimWasCoordinator: phase.coordinator === phase.victim,
    killedAtSeconds: run.secondsOf(phase.killAt),
    shards,
    maxRecoveryMs: recovered ? Math.max(...(times as number[])) : null,
    minRecoveryMs: recovered ? Math.min(...(times as number[])) : null,
    goalMs: CLUSTER_GOALS.failoverMs,
    placedAfterMs: phase.placedAt === null ? null : phase.placedAt - phase.killAt,
    rejoin: phase.rejoin === null ? null : rejoinOf(run, phase.rejoin, phase.endAt, probe),
  };
}

function rejoinOf(run: ClusterRun, rejoin: NonNullable<FailoverPhase['rejoin']>, endAt: number, probe: ProbeReport): NonNullable<FailoverResult['rejoin']> {
  const shards = movedShardPauses(run.shardMoves, probe, rejoin.before, rejoin.after, rejoin.restartAt, endAt);
  const pauses = knownPauses(shards);
  const unserved = knownUnserved(shards);
  const unmovedWaits = unmovedWaitsOf(probe, rejoin.before, shards, rejoin.restartAt, endAt);
  return {
    restartedAtSeconds: run.secondsOf(rejoin.restartAt),
    placedAfterMs: rejoin.placedAt === null ? null : rejoin.placedAt - rejoin.restartAt,
    shards,
    maxPauseMs: pauses.length > 0 ? Math.max(...pauses) : null,
    maxUnservedMs: unserved.length > 0 ? Math.max(...unserved) : null,
    unmovedMaxWaitMs: unmovedWaits.length > 0 ? Math.max(...unmovedWaits) : null,
  };
}

function handoffOf(run: ClusterRun, phase: HandoffPhase, probe: ProbeReport): HandoffResult {
  const shards = movedShardPauses(run.shardMoves, probe, phase.before, phase.after, phase.stopAt, phase.endAt);
  const pauses = knownPauses(shards);
  const unmovedWaits = unmovedWaitsOf(probe, phase.before, shards, phase.stopAt, phase.endAt);
  const unserved = knownUnserved(shards);

  return {
    victim: phase.victim,
    stoppedAtSeconds: run.secondsOf(phase.stopAt),
    exitMs: phase.exitAt - phase.stopAt,
    exitedOnItsOwn: phase.exitedOnItsOwn,
    placedAfterMs: phase.placedAt === null ? null : phase.placedAt - phase.stopAt,
    shards,
    maxPauseMs: pauses.length > 0 ? Math.max(...pauses) : null,
    p50PauseMs: pauses.length > 0 ? percentile(pauses, 50) : null,
    goalMs: CLUSTER_GOALS.handoffPauseMs,
    unmovedMaxWaitMs: unmovedWaits.length > 0 ? Math.max(...unmovedWaits) : null,
    maxUnservedMs: unserved.length > 0 ? Math.max(...unserved) : null,
    p50UnservedMs: unserved.length > 0 ? percentile(unserved, 50) : null,
  };
}

/** Returns the pauses of the shards whose owner differs between `before` and `after`, over [fromMs, toMs). */
function movedShardPauses(moves: ShardMoveRecord[], probe: ProbeReport, before: Map<number, string>, after: Map<number, string>, fromMs: number, toMs: number): ShardPause[] {
  const pauses: ShardPause[] = [];
  for (const [shard, from] of before) {
    const to = after.get(shard) ?? null;
    if (to === from) continue;

    const wait = longestWait(cyclesOf(probe.cycles, shard), fromMs, toMs);
    const handoff = moves.find((move) => move.shard === shard && move.nodeId === from && move.message === 'handed the shard off' && move.timeMs >= fromMs && move.timeMs < toMs);
    const unservedMs = unservedTime(moves, shard, from, to, fromMs, toMs);
    pauses.push({ shard, from, to, pauseMs: wait?.waitMs ?? null, recovered: wait?.recovered ?? false, handoffMs: handoff?.handoffMs ?? null, unservedMs });
  }
  return pauses.sort((a, b) => a.shard - b.shard);
}

function knownPauses(shards: ShardPause[]): number[] {
  return shards.map((shard) => shard.pauseMs).filter((pause): pause is number => pause !== null);
}

function knownUnserved(shards: ShardPause[]): number[] {
  return shards.map((shard) => shard.unservedMs).filter((value): value is number => value !== null);
}

/** Returns the maximum probe wait over [fromMs, toMs) of each shard in `before` that did not move. */
function unmovedWaitsOf(probe: ProbeReport, before: Map<number, string>, moved: ShardPause[], fromMs: number, toMs: number): number[] {
  const unmoved = [...before.keys()].filter((shard) => !moved.some((pause) => pause.shard === shard));
  return unmoved.map((shard) => longestWait(cyclesOf(probe.cycles, shard), fromMs, toMs)?.waitMs ?? 0);
}

function probeSummaryOf(report: ProbeReport, customers: ProbeCustomer[], options: ClusterOptions): ProbeSummary {
  const mismatches: ProbeSummary['mismatches'] = [];
  customers.forEach((customer, i) => {
    const expected = report.storedEvents[i];
    const actual = report.finalEventCounts[i];
    if (actual === expected || (expected === 0 && actual === -1)) return;

    let found: ProbeSummary['mismatches'][number]['actual'] = actual ?? 'read failed';
    if (actual === -1) found = 'not found';
    mismatches.push({ userId: customer.userId, expected, actual: found });
  });

  return {
    customers: customers.length,
    intervalMs: options.probeIntervalMs,
    cycles: report.cycles.length,
    failures: report.failures,
    firstFailures: report.firstFailures,
    mismatches,
  };
}

function loadSummaryOf(reports: GeneratorReport[]): ClusterResult['load'] {
  return {
    acknowledgedEvents: sum(reports.map((report) => report.acceptedEvents)),
    resentStoredEvents: sum(reports.map((report) => report.resentStoredEvents)),
    addressSwitches: sum(reports.map((report) => report.addressSwitches)),
    streamErrors: sum(reports.map((report) => report.streamErrors)),
    overloadRetries: sum(reports.map((report) => report.overloadRetries)),
  };
}

/** Lists the phases that did not finish and the problems of the final check. */
function phaseProblems(phases: Phases): string[] {
  const problems: string[] = [];
  if (phases.failover.problem !== null) problems.push(`failover phase: ${phases.failover.problem}`);
  if (phases.handoff === null) problems.push('handoff phase skipped, because the cluster did not recover from the kill');
  else if (phases.handoff.problem !== null) problems.push(`handoff phase: ${phases.handoff.problem}`);
  problems.push(...phases.finalProblems);
  return problems;
}

/** Lists everything else that fails the run. A missed goal does not, because the table reports it next to its figure. */
function clusterFailures(result: ClusterResult, reports: GeneratorReport[]): string[] {
  const failures: string[] = [];
  if (result.correctness !== null && !result.correctness.passed) failures.push(`correctness check ${describeCorrectness(result.correctness)}`);
  if (result.probe.mismatches.length > 0) failures.push(`${result.probe.mismatches.length} probe customers have another eventCount than the probe got acknowledged: ${JSON.stringify(result.probe.mismatches.slice(0, 3))}`);

  const stale = result.probe.failures.stale ?? 0;
  const excess = result.probe.failures.excess ?? 0;
  if (stale > 0) failures.push(`${stale} probe reads missed an event acknowledged before them`);
  if (excess > 0) failures.push(`${excess} probe reads showed more events than the probe got acknowledged`);

  for (const report of reports) {
    if (report.fatalError !== null) failures.push(`a load generator failed: ${report.fatalError}`);
    if (report.unacknowledgedBatches > 0) failures.push(`a load generator ended with ${report.unacknowledgedBatches} unacknowledged batches`);
  }
  const rejected = sum(reports.map((report) => report.rejectedEvents));
  if (rejected > 0) failures.push(`the cluster rejected ${rejected} generated events, which are all valid`);
  if (!(result.throughput.appliedPerSecond > 0)) failures.push('the cluster applied no events in the throughput window');

  if (result.failover.shards.length === 0) failures.push(`${result.failover.victim} ran no shard when it was killed`);
  const unrecovered = result.failover.shards.filter((shard) => shard.recoveryMs === null);
  if (unrecovered.length > 0) failures.push(`shards ${unrecovered.map((shard) => shard.shard).join(', ')} were not writable and readable again after the kill`);

  const moved = [...(result.failover.rejoin?.shards ?? []), ...(result.handoff?.shards ?? [])];
  const stuck = moved.filter((shard) => !shard.recovered);
  if (stuck.length > 0) failures.push(`shards ${stuck.map((shard) => shard.shard).join(', ')} were not writable and readable again after moving`);

  if (result.handoff !== null) {
    if (!result.handoff.exitedOnItsOwn) failures.push(`${result.handoff.victim} did not exit within --fault-timeout-s after SIGTERM`);
    if (result.handoff.shards.length === 0) failures.push(`${result.handoff.victim} ran no shard when it was stopped`);
  }
  return failures;
}

function shardsOn(owners: Map<number, string>, nodeId: string): number[] {
  return [...owners].filter(([, owner]) => owner === nodeId).map(([shard]) => shard).sort((a, b) => a - b);
}

function sum(values: number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

function concatenate(arrays: Float64Array[]): Float64Array {
  const result = new Float64Array(sum(arrays.map((array) => array.length)));
  let offset = 0;
  for (const array of arrays) {
    result.set(array, offset);
    offset += array.length;
  }
  return result;
}
