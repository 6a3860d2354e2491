/**
 * Decide scenario: DecisionService.Decide latency against an embedded node that evaluates a
 * definition set, open loop, first without writes and then under open-loop write load.
 *
 * 0. Unless skipped, the decider calls the grpc-js reference server (raw-server.ts), which
 *    responds to Decide at once, at each rate of the steps without writes. That is the floor
 *    that gRPC, loopback and the two processes set on this machine.
 * 1. The definition files are applied to the node's workspace (the bench set by default).
 * 2. A closed-loop write run measures the maximum write rate, warms the node up and stores
 *    the profiles that Decide is called for.
 * 3. One step per Decide rate without writes, then one step per write rate (a share of the
 *    maximum) with Decide at a fixed rate. Each Decide call names a profile that exists, a
 *    channel and a small context, and its latency counts from its scheduled send time
 *    (open-loop-generator.ts).
 * 4. The end-of-run check compares each sampled profile's eventCount with the events the
 *    writers got stored for it, and the decisions each profile received with the caps.
 */
import { applyDefinitions, type AppliedDefinitions } from './bench-definitions.js';
import { NodeHost, RawServer } from './children.js';
import { dataDir, writeChart, type RunContext } from './context.js';
import { describeCorrectness, type CorrectnessResult } from './correctness.js';
import { mergeTallies, type DecisionTally } from './decision-tally.js';
import { checkCorrectness, sum } from './ingest.js';
import type { LatencySummary } from './latency.js';
import type { IngestDriver } from './open-loop-drivers.js';
import { OpenLoopGroup } from './open-loop-children.js';
import { measureQueryStepAlone, measureStep, runClosedLoop, startQueryGroup, type StepSummary } from './open-loop.js';
import type { StepReport } from './open-loop-generator.js';
import { attributeSlowCalls, type GcTotals, type PauseReport, type SlowCallAttribution } from './pause-monitor.js';
import { stepRow } from './open-loop-output.js';
import { formatCount, formatMs, formatRate, machineInfo, printColumns, printTable, progress, type MachineInfo } from './report.js';
import { renderBarChart } from './svg-chart.js';
import { workloadConfigOf } from './workload-options.js';
import type { ProfileRef } from './workloads.js';

export interface DecideOptions {
  /** Decide calls per second of the steps without writes. */
  decideRates: number[];
  /** Write rates of the loaded steps, in percent of the closed-loop maximum. */
  writeRatesPercent: number[];
  /** Decide calls per second during the loaded steps. */
  decideRatePerSecond: number;
  /** Definition files or directories applied before the run. */
  definitions: string[];
  driver: IngestDriver;
  batchSize: number;
  /** The 100% write rate in events per second; undefined measures it with the closed-loop run. */
  maxRatePerSecond?: number;
  stepDurationS: number;
  closedLoopS: number;
  inFlightRequests: number;
  generators: number;
  customers: number;
  zipfExponent: number;
  checkSample: number;
  walSync: boolean;
  maxOutstandingRequests: number;
  maxSendLagMs: number;
  /** Measure the grpc-js reference server first. */
  reference: boolean;
  /** Decide calls at the first rate of `decideRates`, not recorded, before the first step against each server, in seconds. */
  warmupS: number;
}

export interface DecideStep {
  /** 0 for the steps without writes. */
  writePercent: number;
  writes: StepSummary | null;
  decisions: StepSummary;
  /** node.decide inside the node, without gRPC and the caller's process. */
  inNode: LatencySummary;
  nodeCpuCores: number;
  /** The pauses of the node's and the decider's threads during the step, and the slow calls they explain. */
  pauses: StepPauses;
  /** Decide p99 is under the goal, and no call failed. */
  meetsGoal: boolean;
}

export interface StepPauses {
  node: Omit<PauseReport, 'pauses'>;
  decider: Omit<PauseReport, 'pauses'>;
  /** Calls over the goal, sorted by the GC pauses that explain them (pause-monitor.ts): the node's (first) or the decider's (second). */
  slowCalls: SlowCallAttribution;
}

export interface DecideResult {
  scenario: 'decide';
  passed: boolean;
  failures: string[];
  machine: MachineInfo;
  loadAverageAfter: number[];
  options: DecideOptions;
  definitions: AppliedDefinitions | null;
  goalP99Ms: number;
  closedLoop: { eventsPerSecond: number; latency: LatencySummary };
  maxRatePerSecond: number;
  steps: DecideStep[];
  /** Decide against the grpc-js reference server, one step per rate of `decideRates`; empty when skipped. */
  reference: StepSummary[];
  /** Decide calls the node responded to before the first step, which `decisionTally` counts too. */
  warmupCalls: number;
  decisionTally: DecisionTally;
  deciderCpuCores: number;
  correctness: CorrectnessResult;
  chart: string | null;
}

/** The product's goal for Decide in embedded mode: p99 under 5 ms. */
export const DECIDE_GOAL_P99_MS = 5;

const CALL_TIMEOUT_MS = 10_000;
/** Profiles the decider draws its calls from. */
const DECIDE_PROFILES = 10_000;

export async function runDecide(context: RunContext, options: DecideOptions): Promise<DecideResult> {
  const machine = machineInfo();
  const eventsPerRequest = options.driver === 'unary' ? 1 : options.batchSize;
  progress(`decide: Decide at ${options.decideRates.join(', ')}/s without writes, at ${options.decideRatePerSecond}/s with writes at ${options.writeRatesPercent.join(', ')}% of the maximum, ${options.stepDurationS} s steps`);
  const reference = options.reference ? await measureReference(context, options) : [];

  const node = await NodeHost.start(context.processes, { dataDir: dataDir(context, 'decide'), walSync: options.walSync });
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
      workloadOf: (index) => workloadConfigOf(undefined, options, index, options.generators),
    });
    const decider = await startQueryGroup(context, 'decider', options, node.address);
    const participants = { node, writers, reader: null, decider };

    const closedLoop = await runClosedLoop(writers, options);
    const maxRatePerSecond = options.maxRatePerSecond ?? closedLoop.eventsPerSecond;
    if (!(maxRatePerSecond > 0)) throw new Error('the closed-loop run acknowledged no events, so there is no maximum rate to take percentages of');
    const profiles = await writers.sampleProfiles(DECIDE_PROFILES);

    const loads = [
      ...options.decideRates.map((rate) => ({ percent: 0, decideRatePerSecond: rate })),
      ...options.writeRatesPercent.map((percent) => ({ percent, decideRatePerSecond: options.decideRatePerSecond })),
    ];
    const warmupCalls = await warmUp(decider, options, profiles);
    const steps: DecideStep[] = [];
    for (const load of loads) {
      await node.decideTimings();
      await node.pauses();
      const settlePersisted = load.percent === 0;
      const step = await measureStep(participants, options, { ...load, maxRatePerSecond, eventsPerRequest, profiles, queryRatePerSecond: 0, settlePersisted });
      const inNode = await node.decideTimings();
      const pauses = stepPauses(await node.pauses(), step.decideReports!);
      const decisions = step.decisions!;
      steps.push({ writePercent: load.percent, writes: step.writes, decisions, inNode, nodeCpuCores: step.nodeCpuCores, pauses, meetsGoal: meetsGoal(decisions) });
    }

    const reports = await writers.finish();
    const deciderReports = await decider.finish();
    const correctness = await checkCorrectness(node, reports, options, context.seed);
    const decisionTally = mergeTallies(deciderReports.flatMap((report) => (report.decisions === null ? [] : [report.decisions])));
    const decideSeconds = options.closedLoopS + loads.length * options.stepDurationS;

    const failures = decideFailures(steps, decisionTally, correctness, sum(reports.map((report) => report.unresolvedEvents)));
    const result: DecideResult = {
      scenario: 'decide',
      passed: failures.length === 0,
      failures,
      machine,
      loadAverageAfter: machineInfo().loadAverage,
      options,
      definitions,
      goalP99Ms: DECIDE_GOAL_P99_MS,
      closedLoop: { eventsPerSecond: closedLoop.eventsPerSecond, latency: closedLoop.latency },
      maxRatePerSecond,
      steps,
      reference,
      warmupCalls,
      decisionTally,
      deciderCpuCores: sum(deciderReports.map((report) => report.cpuMs)) / 1_000 / decideSeconds,
      correctness,
      chart: null,
    };

    result.chart = await writeChart(context, 'decide-latency.svg', decideChart(result));
    printDecide(result);
    return result;
  } finally {
    await node.stop();
  }
}

/**
 * Calls the grpc-js reference server at each rate of the steps without writes, from a
 * decider process of its own that runs as the node's decider does.
 */
async function measureReference(context: RunContext, options: DecideOptions): Promise<StepSummary[]> {
  const server = await RawServer.start(context.processes);
  try {
    const decider = await startQueryGroup(context, 'decider', options, server.address);
    try {
      const profiles = Array.from({ length: DECIDE_PROFILES }, (_, i) => ({ type: 'user_id' as const, value: `reference-${i}` }));
      await warmUp(decider, options, profiles);
      const steps: StepSummary[] = [];
      for (const rate of options.decideRates) {
        const step = await measureQueryStepAlone(decider, options, rate, profiles);
        progress(`decide: grpc-js reference at ${formatRate(rate)}: p50 ${formatMs(step.latency.p50Ms)}, p99 ${formatMs(step.latency.p99Ms)}`);
        steps.push(step);
      }
      return steps;
    } finally {
      await decider.kill();
    }
  } finally {
    await server.stop();
  }
}

/**
 * Sends Decide calls that no step records, so that the first step does not measure V8
 * compiling the decider's and the server's code paths.
 */
async function warmUp(decider: OpenLoopGroup, options: DecideOptions, profiles: ProfileRef[]): Promise<number> {
  if (options.warmupS === 0) return 0;
  const step = await measureQueryStepAlone(decider, { stepDurationS: options.warmupS, maxSendLagMs: options.maxSendLagMs }, options.decideRates[0], profiles);
  return step.latency.count;
}

/** Lines the decider's slow calls up with the GC pauses of the node and of the decider. */
function stepPauses(nodePauses: PauseReport, deciderReports: StepReport[]): StepPauses {
  const decider = deciderReports[0].pauses!;
  const slowCalls = deciderReports.flatMap((report) => report.slowCalls);
  const { pauses: nodeList, ...node } = nodePauses;
  const { pauses: deciderList, ...deciderTotals } = decider;
  return { node, decider: deciderTotals, slowCalls: attributeSlowCalls(slowCalls, nodeList, deciderList, DECIDE_GOAL_P99_MS) };
}

function meetsGoal(decisions: StepSummary): boolean {
  const failed = decisions.resourceExhaustedRequests + decisions.otherErrorRequests + decisions.incompleteRequests;
  return decisions.latency.count > 0 && failed === 0 && decisions.latency.p99Ms < DECIDE_GOAL_P99_MS;
}

/**
 * Lists the reasons the run failed: a profile not found, a step without any Decide latency,
 * no rule ever chosen, or wrong event counts. A missed latency goal is reported, not a
 * failure, and so are calls that failed because the node was overloaded
 * (RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED).
 */
function decideFailures(steps: DecideStep[], tally: DecisionTally, correctness: CorrectnessResult, unresolvedEvents: number): string[] {
  const failures: string[] = [];
  if (!correctness.passed) failures.push('correctness check failed');
  if (unresolvedEvents > 0) failures.push(`${unresolvedEvents} events failed with an unknown outcome and could not be resent, so their profiles' expected eventCount is unknown`);

  for (const step of steps) {
    const { decisions } = step;
    const label = describeLoad(step);
    if (decisions.latency.count === 0) failures.push(`${label}: no Decide latency was recorded`);
  }
  if (tally.notFound > 0) failures.push(`${tally.notFound} Decide calls for profiles the writers stored failed with NOT_FOUND`);
  if (tally.calls > 0 && tally.noneChosen === tally.calls) failures.push('no Decide call chose a rule: are decision rules among the definitions?');
  return failures;
}

function describeLoad(step: DecideStep): string {
  return step.writes === null ? `Decide at ${formatRate(step.decisions.targetPerSecond)} without writes` : `Decide at ${formatRate(step.decisions.targetPerSecond)} with writes at ${step.writePercent}%`;
}

const HEADER = ['writes', 'Decide target', 'achieved', 'p50', 'p90', 'p99', 'p99.9', 'max', 'RESOURCE_EXHAUSTED', 'other errors', 'note'];

function printDecide(result: DecideResult): void {
  const { options, decisionTally: tally } = result;
  printTable('decide', [
    ['definitions', result.definitions === null ? 'none' : `${formatCount(result.definitions.definitions)} from ${result.definitions.paths.join(', ')}`],
    ['100% write rate', `${formatRate(result.maxRatePerSecond)} (${options.maxRatePerSecond === undefined ? `closed loop, ${options.closedLoopS} s, p99 ${formatMs(result.closedLoop.latency.p99Ms)}` : '--max-rate'})`],
    ['writes', `${options.driver}, ${options.driver === 'unary' ? 1 : options.batchSize} events per request, ${options.generators} writer process(es)`],
    ['steps', `${options.stepDurationS} s each`],
    ['Decide calls', `${formatCount(tally.calls)} answered: ${formatCount(tally.withAction)} with an action, ${formatCount(tally.controlGroup)} in a control group, ${formatCount(tally.noneChosen)} with no rule chosen`],
    ['chosen per rule', Object.entries(tally.chosenPerRule).map(([rule, count]) => `${rule} ${formatCount(count)}`).join(', ') || 'none'],
    ['candidate rules per receipt', Object.entries(tally.candidatesPerChannel).map(([channel, range]) => `${channel} ${range.min === range.max ? range.min : `${range.min} to ${range.max}`}`).join(', ') || 'none'],
    ['most decisions of one profile', `${tally.maxPerProfile} in total; per rule ${Object.entries(tally.maxPerProfilePerRule).map(([rule, count]) => `${rule} ${count}`).join(', ') || 'none'}`],
    ['decider CPU', `${result.deciderCpuCores.toFixed(2)} cores`],
    ['correctness', describeCorrectness(result.correctness)],
    ['result', result.passed ? 'passed' : `FAILED: ${result.failures.join('; ')}`],
  ]);

  const rows = result.steps.map((step) => {
    const [, ...cells] = stepRow(step.decisions, `node ${step.nodeCpuCores.toFixed(2)} cores`);
    const writes = step.writes === null ? 'none' : `${step.writePercent}% (${formatRate(step.writes.achievedPerSecond)})`;
    const goal = step.meetsGoal ? `p99 under ${DECIDE_GOAL_P99_MS} ms` : `GOAL MISSED (p99 ${DECIDE_GOAL_P99_MS} ms)`;
    cells[cells.length - 1] = [goal, cells[cells.length - 1]].filter((note) => note !== '').join(', ');
    return [writes, ...cells];
  });
  printColumns(`Decide latency from the scheduled send time; goal: p99 under ${DECIDE_GOAL_P99_MS} ms`, HEADER, rows);

  if (result.reference.length > 0) {
    const referenceRows = result.reference.map((step) => ['none', ...stepRow(step, '').slice(1)]);
    printColumns('Decide against the grpc-js reference server, which answers at once (measured first, same decider)', HEADER, referenceRows);
  }

  const inNodeRows = result.steps.map((step) => {
    const writes = step.writes === null ? 'none' : `${step.writePercent}%`;
    const { count, p50Ms, p90Ms, p99Ms, p999Ms, maxMs } = step.inNode;
    return [writes, formatRate(step.decisions.targetPerSecond), formatCount(count), ...[p50Ms, p90Ms, p99Ms, p999Ms, maxMs].map(formatMs)];
  });
  printColumns('Decide inside the node (node.decide, without gRPC and the caller)', ['writes', 'Decide target', 'calls', 'p50', 'p90', 'p99', 'p99.9', 'max'], inNodeRows);

  const pauseRows = result.steps.map((step) => {
    const { node, decider, slowCalls } = step.pauses;
    const writes = step.writes === null ? 'none' : `${step.writePercent}%`;
    const explained = [slowCalls.explainedByFirst, slowCalls.explainedBySecond, slowCalls.explainedByBoth, slowCalls.unexplained].map(formatCount);
    return [writes, formatRate(step.decisions.targetPerSecond), formatCount(slowCalls.slowCalls), ...explained, describeGc(node.gc), describeGc(decider.gc), `${formatMs(node.loopDelayP99Ms)} / ${formatMs(node.loopDelayMaxMs)}`];
  });
  printColumns(
    `Decide calls over ${DECIDE_GOAL_P99_MS} ms, by the GC pauses that explain them`,
    ['writes', 'Decide target', 'slow calls', 'node GC', 'decider GC', 'both', 'neither', 'node GC pauses: count, total, max', 'decider GC pauses', 'node loop delay p99 / max'],
    pauseRows,
  );

  const loaded = result.steps.filter((step) => step.writes !== null);
  if (loaded.length > 0) {
    const writeRows = loaded.map((step) => [`${step.writePercent}%`, ...stepRow(step.writes!, '').slice(1)]);
    printColumns('write latency during the loaded steps, per event', ['writes', 'target', 'achieved', 'p50', 'p90', 'p99', 'p99.9', 'max', 'RESOURCE_EXHAUSTED', 'other errors', 'note'], writeRows);
  }
}

function describeGc(gc: GcTotals): string {
  return `${formatCount(gc.count)}, ${formatMs(gc.totalMs)}, ${formatMs(gc.maxMs)}`;
}

function decideChart(result: DecideResult): string {
  return renderBarChart({
    title: `Decide p99 from the scheduled send time, ${result.machine.cpus} cores, 100% writes = ${formatCount(result.maxRatePerSecond)} events/s${result.reference.length > 0 ? '; grey: grpc-js reference server' : ''}`,
    yLabel: 'Decide p99, ms',
    bars: [
      ...result.reference.map((step) => ({
        label: `reference ${formatCount(step.targetPerSecond)}/s`,
        value: step.latency.p99Ms,
        valueLabel: formatMs(step.latency.p99Ms),
        color: '#9d9d9d',
      })),
      ...result.steps.map((step) => ({
        label: step.writes === null ? `${formatCount(step.decisions.targetPerSecond)}/s` : `${formatCount(step.decisions.targetPerSecond)}/s, ${step.writePercent}% writes`,
        value: step.decisions.latency.p99Ms,
        valueLabel: formatMs(step.decisions.latency.p99Ms),
        color: step.meetsGoal ? '#59a14f' : '#e15759',
      })),
    ],
    referenceLine: { value: DECIDE_GOAL_P99_MS, label: `goal: p99 under ${DECIDE_GOAL_P99_MS} ms`, labelBelow: true },
    // Loaded steps can take hundreds of ms, which would flatten the steps near the goal.
    yMax: 50,
    width: 160 + 130 * (result.reference.length + result.steps.length),
  });
}
