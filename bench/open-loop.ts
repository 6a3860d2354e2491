/**
 * Latency scenario: open-loop ingest at fixed rates, with GetProfile queries at a fixed
 * rate alongside, against an embedded node.
 *
 * 0. The definition files given are applied to the node's workspace.
 * 1. A closed-loop run with the chosen driver measures the maximum rate (unless
 *    `maxRatePerSecond` is given). It also warms the node up and stores the profiles that
 *    the queries read.
 * 2. For each percentage of the maximum, the writers send on a fixed schedule for the
 *    step's duration, and a reader queries profiles that exist at its own fixed rate.
 *    With a Decide rate, a decider calls Decide for those profiles at its own fixed rate too.
 *    Latencies count from each request's due time (open-loop-generator.ts). Before each
 *    step the harness waits until the node has applied everything acknowledged.
 * 3. The end-of-run check compares each sampled profile's eventCount with the events the
 *    writers got stored for it, over all phases.
 */
import { applyDefinitions, type AppliedDefinitions } from './bench-definitions.js';
import { NodeHost } from './children.js';
import { dataDir, writeChart, type RunContext } from './context.js';
import type { CorrectnessResult } from './correctness.js';
import { mergeTallies, type DecisionTally } from './decision-tally.js';
import { checkCorrectness, sum } from './ingest.js';
import { summarizeEncoded, type LatencySummary } from './latency.js';
import type { IngestDriver } from './open-loop-drivers.js';
import { OpenLoopGroup } from './open-loop-children.js';
import type { OpenLoopConfig, OpenLoopReport, StepReport } from './open-loop-generator.js';
import { latencyChart, printLatency } from './open-loop-output.js';
import { formatCount, formatMs, formatRate, machineInfo, progress, type MachineInfo } from './report.js';
import { workloadConfigOf, type WorkloadChoice } from './workload-options.js';
import type { ProfileRef } from './workloads.js';

export interface LatencyOptions {
  driver: IngestDriver;
  /** Events per request of the batch and stream drivers. */
  batchSize: number;
  /** The 100% rate in events per second; undefined measures it with the closed-loop run. */
  maxRatePerSecond?: number;
  ratesPercent: number[];
  stepDurationS: number;
  closedLoopS: number;
  /** Requests each writer keeps in flight in the closed-loop run. */
  inFlightRequests: number;
  generators: number;
  /** GetProfile queries per second during each step; 0 sends none. */
  queryRatePerSecond: number;
  /** Decide calls per second during each step; 0 sends none. */
  decideRatePerSecond: number;
  /** Definition files or directories applied to the workspace before the run. */
  definitions: string[];
  customers: number;
  zipfExponent: number;
  checkSample: number;
  walSync: boolean;
  /** Requests in flight per generator at which a step stops and counts as overloaded. */
  maxOutstandingRequests: number;
  /** A generator whose p99 send lag exceeds this fell behind its schedule, in milliseconds. */
  maxSendLagMs: number;
  workload?: WorkloadChoice;
}

export interface StepSummary {
  percent: number;
  /** Events per second for writes, queries per second for the reader. */
  targetPerSecond: number;
  achievedPerSecond: number;
  latency: LatencySummary;
  scheduledRequests: number;
  sentRequests: number;
  incompleteRequests: number;
  resourceExhaustedRequests: number;
  otherErrorRequests: number;
  firstError: string | null;
  /** A generator stopped the step at its bound of requests in flight. */
  overloaded: boolean;
  /** A generator sent more than 1% of its requests later than maxSendLagMs after they were due. */
  behindSchedule: boolean;
  sendLagP99Ms: number;
  sendLagMaxMs: number;
}

export interface LatencyStep {
  writes: StepSummary;
  queries: StepSummary | null;
  decisions: StepSummary | null;
  /** The decider's own reports of the step, with its pauses and slow calls; null without Decide calls. */
  decideReports: StepReport[] | null;
  nodeCpuCores: number;
  /** Seconds the node took after the previous step to apply everything acknowledged. */
  settleSeconds: number;
}

export interface LatencyResult {
  scenario: 'latency';
  passed: boolean;
  failures: string[];
  machine: MachineInfo;
  loadAverageAfter: number[];
  options: LatencyOptions;
  definitions: AppliedDefinitions | null;
  closedLoop: { eventsPerSecond: number; latency: LatencySummary; resourceExhaustedRequests: number; otherErrorRequests: number };
  maxRatePerSecond: number;
  maxRateSource: 'closed loop' | 'option';
  steps: LatencyStep[];
  protobufBytesPerEvent: number;
  writerCpuCores: number;
  resentRequests: number;
  correctness: CorrectnessResult;
  /** The decider's decisions over the run; null without Decide calls. */
  decisionTally: DecisionTally | null;
  chart: string | null;
}

/** The node, the writers and the query processes of a run. */
export interface OpenLoopParticipants {
  node: NodeHost;
  writers: OpenLoopGroup;
  reader: OpenLoopGroup | null;
  decider: OpenLoopGroup | null;
}

/** The load of one step: writes at a share of the 100% rate, GetProfile and Decide calls at fixed rates. */
export interface StepLoad {
  /** Write rate in percent of the 100% rate; 0 sends no writes. */
  percent: number;
  maxRatePerSecond: number;
  eventsPerRequest: number;
  queryRatePerSecond: number;
  decideRatePerSecond: number;
  profiles: ProfileRef[];
  /** Also wait, before the step, until the node has persisted every profile, so that a step without writes does not share the node with the persistence of the writes before it. Default false. */
  settlePersisted?: boolean;
}

/** A step's summaries; `writes` is null for a step without writes. */
export type MeasuredStep = Omit<LatencyStep, 'writes'> & { writes: StepSummary | null };

/** Deadline of each unary call, in milliseconds. */
const CALL_TIMEOUT_MS = 10_000;
/** Profiles the reader draws its queries from. */
const QUERY_PROFILES = 10_000;
/** Lead time that lets every generator receive a step before it starts, in milliseconds. */
const STEP_LEAD_MS = 300;
const SETTLE_TIMEOUT_MS = 300_000;

export async function runLatency(context: RunContext, options: LatencyOptions): Promise<LatencyResult> {
  const machine = machineInfo();
  const eventsPerRequest = options.driver === 'unary' ? 1 : options.batchSize;
  progress(`latency: driver ${options.driver}, ${eventsPerRequest} events per request, ${options.generators} writer(s), steps at ${options.ratesPercent.join(', ')}% for ${options.stepDurationS} s`);

  const node = await NodeHost.start(context.processes, { dataDir: dataDir(context, 'latency'), walSync: options.walSync });
  try {
    const definitions = await applyDefinitions(node, options.definitions);
    const writers = await OpenLoopGroup.start(context.processes, {
      address: node.address,
      role: 'writer',
      count: options.generators,
      seed: context.seed,
      driver: options.driver,
      batchSize: options.batchSize,
      maxOutstandingRequests: options.maxOutstandingRequests,
      callTimeoutMs: CALL_TIMEOUT_MS,
      workloadOf: (index) => workloadConfigOf(options.workload, options, index, options.generators),
    });
    const reader = options.queryRatePerSecond > 0 ? await startQueryGroup(context, 'reader', options, node.address) : null;
    const decider = options.decideRatePerSecond > 0 ? await startQueryGroup(context, 'decider', options, node.address) : null;
    const participants: OpenLoopParticipants = { node, writers, reader, decider };

    const closedLoop = await runClosedLoop(writers, options);
    const maxRatePerSecond = options.maxRatePerSecond ?? closedLoop.eventsPerSecond;
    if (!(maxRatePerSecond > 0)) throw new Error('the closed-loop run acknowledged no events, so there is no maximum rate to take percentages of');
    const profiles = await writers.sampleProfiles(QUERY_PROFILES);

    const steps: LatencyStep[] = [];
    for (const percent of options.ratesPercent) {
      const step = await measureStep(participants, options, { percent, maxRatePerSecond, eventsPerRequest, profiles, queryRatePerSecond: options.queryRatePerSecond, decideRatePerSecond: options.decideRatePerSecond });
      steps.push({ ...step, writes: step.writes! });
    }

    const reports = await writers.finish();
    await reader?.finish();
    const deciderReports = (await decider?.finish()) ?? null;
    const correctness = await checkCorrectness(node, reports, options, context.seed);
    const totalSeconds = options.closedLoopS + steps.length * options.stepDurationS;

    const failures = latencyFailures(reports, steps, correctness);
    const result: LatencyResult = {
      scenario: 'latency',
      passed: failures.length === 0,
      failures,
      machine,
      loadAverageAfter: machineInfo().loadAverage,
      options,
      definitions,
      closedLoop,
      maxRatePerSecond,
      maxRateSource: options.maxRatePerSecond === undefined ? 'closed loop' : 'option',
      steps,
      protobufBytesPerEvent: reports[0]?.eventSizes.protobufBytes ?? 0,
      writerCpuCores: sum(reports.map((report) => report.cpuMs)) / 1_000 / totalSeconds,
      resentRequests: sum(reports.map((report) => report.resentRequests)),
      correctness,
      decisionTally: deciderReports === null ? null : mergeTallies(deciderReports.flatMap((report) => (report.decisions === null ? [] : [report.decisions]))),
      chart: null,
    };

    result.chart = await writeChart(context, 'latency-open-loop.svg', latencyChart(result));
    printLatency(result);
    return result;
  } finally {
    await node.stop();
  }
}

/** Starts one reader (GetProfile) or decider (Decide) process. */
export function startQueryGroup(context: RunContext, role: Exclude<OpenLoopConfig['role'], 'writer'>, options: Pick<LatencyOptions, 'driver' | 'maxOutstandingRequests'>, address: string): Promise<OpenLoopGroup> {
  return OpenLoopGroup.start(context.processes, {
    address,
    role,
    count: 1,
    seed: context.seed + (role === 'reader' ? 1_000_003 : 2_000_003),
    driver: options.driver,
    batchSize: 1,
    maxOutstandingRequests: options.maxOutstandingRequests,
    callTimeoutMs: CALL_TIMEOUT_MS,
    workloadOf: () => null,
  });
}

export async function runClosedLoop(writers: OpenLoopGroup, options: Pick<LatencyOptions, 'closedLoopS' | 'inFlightRequests'>): Promise<LatencyResult['closedLoop']> {
  progress(`latency: closed loop for ${options.closedLoopS} s, ${options.inFlightRequests} requests in flight per writer`);
  const reports = await writers.closedLoop(options.closedLoopS * 1_000, options.inFlightRequests);
  const durationS = Math.max(...reports.map((report) => report.durationMs)) / 1_000;
  const closedLoop = {
    eventsPerSecond: sum(reports.map((report) => report.acknowledgedEvents)) / durationS,
    latency: summarizeEncoded(reports.map((report) => report.latency)),
    resourceExhaustedRequests: sum(reports.map((report) => report.resourceExhaustedRequests)),
    otherErrorRequests: sum(reports.map((report) => report.otherErrorRequests)),
  };

  const firstError = reports.find((report) => report.firstError !== null)?.firstError;
  progress(`latency: closed loop ${formatRate(closedLoop.eventsPerSecond)}, p99 ${formatMs(closedLoop.latency.p99Ms)}${firstError === undefined ? '' : `, first error ${firstError}`}`);
  return closedLoop;
}

/**
 * Runs one step: after the node has applied everything acknowledged, the writers, the reader
 * and the decider each send on their own fixed schedule from the same start time.
 */
export async function measureStep(participants: OpenLoopParticipants, options: Pick<LatencyOptions, 'stepDurationS' | 'maxSendLagMs'>, plan: StepLoad): Promise<MeasuredStep> {
  const { node, writers, reader, decider } = participants;
  const settleStarted = Date.now();
  await node.waitSettled(SETTLE_TIMEOUT_MS, plan.settlePersisted ?? false);
  const settleSeconds = (Date.now() - settleStarted) / 1_000;

  const targetPerSecond = (plan.maxRatePerSecond * plan.percent) / 100;
  const startAtEpochMs = Date.now() + STEP_LEAD_MS;
  const durationMs = options.stepDurationS * 1_000;
  const responseWaitMs = CALL_TIMEOUT_MS + 5_000;
  const before = await node.sample();

  const queryStep = (group: OpenLoopGroup | null, requestsPerSecond: number) =>
    group === null || requestsPerSecond === 0 ? Promise.resolve(null) : group.step({ startAtEpochMs, requestsPerSecond, durationMs, profiles: plan.profiles }, responseWaitMs);
  const [writeReports, queryReports, decideReports] = await Promise.all([
    targetPerSecond > 0 ? writers.step({ startAtEpochMs, requestsPerSecond: targetPerSecond / plan.eventsPerRequest, durationMs }, responseWaitMs) : Promise.resolve(null),
    queryStep(reader, plan.queryRatePerSecond),
    queryStep(decider, plan.decideRatePerSecond),
  ]);
  const after = await node.sample();

  const summarize = (reports: StepReport[] | null, perSecond: number) => (reports === null ? null : summarizeStep(plan.percent, perSecond, reports, startAtEpochMs, durationMs, options.maxSendLagMs));
  const step: MeasuredStep = {
    writes: summarize(writeReports, targetPerSecond),
    queries: summarize(queryReports, plan.queryRatePerSecond),
    decisions: summarize(decideReports, plan.decideRatePerSecond),
    decideReports,
    nodeCpuCores: (after.cpuMs - before.cpuMs) / (after.timeMs - before.timeMs),
    settleSeconds,
  };
  progress(describeStep(step));
  return step;
}

/** Runs one step of a query group by itself, against the server it calls, such as the grpc-js reference. */
export async function measureQueryStepAlone(group: OpenLoopGroup, options: Pick<LatencyOptions, 'stepDurationS' | 'maxSendLagMs'>, requestsPerSecond: number, profiles: ProfileRef[]): Promise<StepSummary> {
  const startAtEpochMs = Date.now() + STEP_LEAD_MS;
  const durationMs = options.stepDurationS * 1_000;
  const reports = await group.step({ startAtEpochMs, requestsPerSecond, durationMs, profiles }, CALL_TIMEOUT_MS + 5_000);
  return summarizeStep(0, requestsPerSecond, reports, startAtEpochMs, durationMs, options.maxSendLagMs);
}

/**
 * Achieved rate: events acknowledged in the step divided by the time from its start to its
 * last response, or to its scheduled end when the responses came sooner.
 */
function summarizeStep(percent: number, targetPerSecond: number, reports: StepReport[], startAtEpochMs: number, durationMs: number, maxSendLagMs: number): StepSummary {
  const lastAnswer = Math.max(...reports.map((report) => report.lastResponseEpochMs));
  const elapsedS = Math.max(durationMs, lastAnswer - startAtEpochMs) / 1_000;
  const sendLagP99Ms = Math.max(...reports.map((report) => report.sendLagP99Ms));

  return {
    percent,
    targetPerSecond,
    achievedPerSecond: sum(reports.map((report) => report.acknowledgedEvents)) / elapsedS,
    latency: summarizeEncoded(reports.map((report) => report.latency)),
    scheduledRequests: sum(reports.map((report) => report.scheduledRequests)),
    sentRequests: sum(reports.map((report) => report.sentRequests)),
    incompleteRequests: sum(reports.map((report) => report.sentRequests - report.completedRequests)),
    resourceExhaustedRequests: sum(reports.map((report) => report.resourceExhaustedRequests)),
    otherErrorRequests: sum(reports.map((report) => report.otherErrorRequests)),
    firstError: reports.find((report) => report.firstError !== null)?.firstError ?? null,
    overloaded: reports.some((report) => report.overloaded),
    behindSchedule: sendLagP99Ms > maxSendLagMs,
    sendLagP99Ms,
    sendLagMaxMs: Math.max(...reports.map((report) => report.sendLagMaxMs)),
  };
}

function describeStep(step: MeasuredStep): string {
  const { writes, queries, decisions } = step;
  const parts: string[] = [];
  if (writes !== null) {
    const flags = [writes.overloaded ? 'OVERLOADED' : '', writes.behindSchedule ? 'BEHIND SCHEDULE' : ''].filter((flag) => flag !== '').join(', ');
    parts.push(
      `${writes.percent}%: target ${formatRate(writes.targetPerSecond)}, achieved ${formatRate(writes.achievedPerSecond)}, ` +
        `p50 ${formatMs(writes.latency.p50Ms)}, p99 ${formatMs(writes.latency.p99Ms)}, errors ${formatCount(writes.resourceExhaustedRequests + writes.otherErrorRequests)}${flags === '' ? '' : ` [${flags}]`}`,
    );
  } else {
    parts.push('no writes');
  }
  if (queries !== null) parts.push(`GetProfile p99 ${formatMs(queries.latency.p99Ms)}`);
  if (decisions !== null) parts.push(`Decide at ${formatRate(decisions.targetPerSecond)}: p50 ${formatMs(decisions.latency.p50Ms)}, p99 ${formatMs(decisions.latency.p99Ms)}, errors ${formatCount(decisions.resourceExhaustedRequests + decisions.otherErrorRequests)}`);
  return `step: ${parts.join('; ')}`;
}

function latencyFailures(reports: OpenLoopReport[], steps: LatencyStep[], correctness: CorrectnessResult): string[] {
  const failures: string[] = [];
  if (!correctness.passed) failures.push('correctness check failed');
  const unresolved = sum(reports.map((report) => report.unresolvedEvents));
  if (unresolved > 0) failures.push(`${unresolved} events failed with an unknown outcome and could not be resent, so their profiles' expected eventCount is unknown`);
  if (steps.every((step) => step.writes.latency.count === 0)) failures.push('no write latency was recorded');
  return failures;
}
