/**
 * Cluster scenario: one nats-server with JetStream and three rtcdp cluster nodes (n1, n2,
 * n3), each in its own process on 127.0.0.1, under load from generator processes, one or
 * more per node. One node is the victim (by default n2 or n3, whichever runs more shards).
 * A probe process runs write+read cycles for one customer per shard through the other two
 * nodes during the whole run. Phases:
 *
 * 1. Throughput: after a warm-up, the generators send for a fixed window. The window ends
 *    when every owner has applied every stored event. The probe's cycles in the window give
 *    the acknowledgement-to-visible latency.
 * 2. Failover: under load, the victim gets SIGKILL. For each shard it ran, the time from
 *    the kill to the end of the first successful write+read that started after the kill.
 *    Then the victim restarts on its data directory and takes its shards back by handoff.
 * 3. Handoff: under load, the victim gets SIGTERM and hands its shards to the other two.
 *    For each moved shard, the longest wait for a successful write+read.
 *
 * At the end, a sample of customers must have exactly the events the generators got
 * acknowledged, and each probe customer exactly the probe's. Otherwise the run fails.
 * When the cluster does not recover from the kill within --fault-timeout-s, the handoff
 * phase is skipped and the run fails, but the result file is still written.
 */
import { shardOf } from '../cluster/routing.js';
import { profileIdForIdentifier } from '../profiles/identifiers.js';
import { ProbeProcess } from './cluster-children.js';
import type { ClusterTimings } from './cluster-node-host.js';
import { printCluster, writeClusterCharts } from './cluster-output.js';
import type { ProbeCustomer } from './cluster-probe.js';
import { buildClusterResult, type ClusterResult, type FailoverPhase, type HandoffPhase, type ThroughputPhase } from './cluster-result.js';
import { ClusterRun, epochNow, newRunTag } from './cluster-run.js';
import type { RunContext } from './context.js';
import { checkEventCounts, describeCorrectness, mergeAcceptedCounts, sampleCustomers, type CorrectnessResult } from './correctness.js';
import { formatCount, formatRate, machineInfo, progress, sleep } from './report.js';
import { measureJetStreamReference } from './references/references.js';

export interface ClusterOptions {
  durationS: number;
  warmupS: number;
  batchSize: number;
  inFlightBatches: number;
  customers: number;
  zipfExponent: number;
  generatorsPerNode: number;
  shards: number;
  probeIntervalMs: number;
  /** Load before each fault and after the cluster recovered from it, in seconds. */
  faultLoadS: number;
  /**
   * Share of the throughput phase's acknowledged events/s that the generators send during
   * the failover and handoff phases. 0 sends as fast as acknowledgements allow.
   */
  faultLoadShare: number;
  /** Maximum wait for the cluster to recover from a fault or to place its shards, in seconds. */
  faultTimeoutS: number;
  checkSample: number;
  /** Whether to measure JetStream alone first, with one publisher process per node (the JetStream reference). */
  jetstreamReference: boolean;
  /** The node that is killed and later stopped. Undefined picks n2 or n3, whichever the placement gives more shards. */
  victim?: string;
  /** Node timings. Undefined keeps the node's defaults. */
  leaseTtlMs?: number;
  leaseRenewIntervalMs?: number;
  heartbeatIntervalMs?: number;
  memberTimeoutMs?: number;
  rebalanceStableForMs?: number;
  checkpointIntervalMs?: number;
}

export const NODE_IDS = ['n1', 'n2', 'n3'];
/** Deadline of a probe call: longer than the node's default query timeout (10 s), so the node's own error comes first. */
const PROBE_CALL_TIMEOUT_MS = 20_000;
const APPLY_TIMEOUT_MS = 300_000;
/** Maximum wait for a new cluster to run every shard where the placement puts it. */
const START_TIMEOUT_MS = 60_000;
const RECOVERY_POLL_MS = 100;

export async function runCluster(context: RunContext, options: ClusterOptions): Promise<ClusterResult> {
  const machine = machineInfo();
  const victim = chooseVictim(options.shards, options.victim);
  progress(`cluster: ${NODE_IDS.length} nodes, ${options.shards} shards, ${options.generatorsPerNode} generator(s) per node, batches of ${options.batchSize}, ${formatCount(options.customers)} customers; ${victim} will be killed and stopped`);
  const reference = options.jetstreamReference ? await measureJetStreamReference(context, options, { publishers: NODE_IDS.length, shards: options.shards, replicas: 1 }) : null;

  const run = await ClusterRun.start(context, NODE_IDS, options.shards, timingsOf(options), {
    generatorsPerNode: options.generatorsPerNode,
    batchSize: options.batchSize,
    inFlightBatches: options.inFlightBatches,
    workload: { kind: 'zipf', customers: options.customers, exponent: options.zipfExponent },
    seed: context.seed,
  });
  let probe: ProbeProcess | null = null;

  try {
    const placement = await run.waitPlaced(NODE_IDS, START_TIMEOUT_MS);
    if (placement.problem !== null) throw new Error(`the cluster did not start: ${placement.problem}`);
    progress('cluster: every shard runs where the placement puts it');

    const customers = probeCustomers(options.shards, newRunTag());
    const maxRunMs = maxRunDurationMs(options);
    probe = await ProbeProcess.start(context.processes, {
      // The probe never sends to the victim, so its cycles measure the cluster, not a dead connection.
      addresses: NODE_IDS.filter((nodeId) => nodeId !== victim).map((nodeId) => run.node(nodeId).address),
      customers,
      intervalMs: options.probeIntervalMs,
      callTimeoutMs: PROBE_CALL_TIMEOUT_MS,
      runTag: newRunTag(),
      maxRunMs,
    });
    run.startSampling(maxRunMs);

    const throughput = await runThroughputPhase(run, probe, options);
    const faultRate = faultLoadRate(throughput, options);
    const failover = await runFailoverPhase(run, probe, victim, faultRate, options);
    // Stopping a node of a cluster that has not recovered would measure nothing useful.
    const recovered = failover.problem === null;
    const handoff = recovered ? await runHandoffPhase(run, victim, faultRate, options) : null;

    progress('cluster: final check: waiting for every stored event to be applied');
    const finalProblems: string[] = [];
    await probe.pause();
    try {
      await run.waitApplied(recovered ? APPLY_TIMEOUT_MS : options.faultTimeoutS * 1_000);
    } catch (error) {
      finalProblems.push((error as Error).message);
    }
    const correctness = await checkCorrectness(run, options, context.seed).catch((error: Error) => {
      finalProblems.push(`the correctness check could not run: ${error.message}`);
      return null;
    });

    const probeReport = await probe.stop();
    probe = null;
    await run.stopSampling();

    const result = buildClusterResult(run, options, NODE_IDS, machine, { throughput, failover, handoff, probeReport, customers, faultLoadPerSecond: faultRate.total ?? null, correctness, finalProblems, reference });
    result.charts = await writeClusterCharts(context, result);
    printCluster(result);
    return result;
  } finally {
    if (probe !== null) await probe.stop().catch((error) => progress(`cluster: stopping the probe failed: ${(error as Error).message}`));
    await run.close();
  }
}

function timingsOf(options: ClusterOptions): ClusterTimings {
  return {
    leaseTtlMs: options.leaseTtlMs,
    leaseRenewIntervalMs: options.leaseRenewIntervalMs,
    heartbeatIntervalMs: options.heartbeatIntervalMs,
    memberTimeoutMs: options.memberTimeoutMs,
    rebalanceStableForMs: options.rebalanceStableForMs,
    checkpointIntervalMs: options.checkpointIntervalMs,
  };
}

/** Returns a time bound for every child of the run. The harness stops them much earlier. */
function maxRunDurationMs(options: ClusterOptions): number {
  return (options.warmupS + options.durationS + 6 * options.faultLoadS + 6 * options.faultTimeoutS) * 1_000 + APPLY_TIMEOUT_MS * 2;
}

/**
 * Returns the node to kill and stop: `requested`, or else n2. n1 starts first and usually
 * becomes the coordinator, so by default the coordinator survives. The coordinator gives
 * every node an even share of the shards, so each one has some once there are at least as
 * many shards as nodes.
 */
function chooseVictim(shards: number, requested: string | undefined): string {
  const victim = requested ?? 'n2';
  if (!NODE_IDS.includes(victim)) throw new Error(`victim must be one of ${NODE_IDS.join(', ')}, received "${victim}"`);
  if (shards < NODE_IDS.length) {
    throw new Error(`with ${shards} shards over ${NODE_IDS.length} nodes a node may get no shard, and then none fails over. Choose --shards ${NODE_IDS.length} or more.`);
  }
  return victim;
}

/** Returns one probe customer per shard, customer i on shard i, with user ids unique to this run. */
export function probeCustomers(shards: number, runTag: string): ProbeCustomer[] {
  return Array.from({ length: shards }, (_, shard) => {
    // About `shards` candidates are needed on average, so the bound only stops a broken hash.
    for (let candidate = 0; candidate < shards * 1_000; candidate++) {
      const userId = `probe-${runTag}-${shard}-${candidate}`;
      if (shardOf(profileIdForIdentifier({ type: 'user_id', value: userId })!, shards) === shard) return { userId, shard };
    }
    throw new Error(`found no probe user id for shard ${shard} of ${shards}`);
  });
}

async function runThroughputPhase(run: ClusterRun, probe: ProbeProcess, options: ClusterOptions): Promise<ThroughputPhase> {
  const group = await run.startLoad('throughput', NODE_IDS, (options.warmupS + options.durationS) * 1_000 + 60_000);
  progress(`cluster: warming up for ${options.warmupS} s`);
  await sleep(options.warmupS * 1_000);

  const markAt = run.mark('throughput window starts');
  const [marks, backlog] = await Promise.all([group.mark(), run.backlog()]);
  // NOTE: an estimate. The backlog also contains up to one probe event per customer. Each
  // shard's unreadRecords is the server's count when it sent the last record the owner read,
  // so it misses events appended since. Over a window of many seconds both errors are small.
  const appliedBefore = sum(marks.map((mark) => mark.acceptedEvents)) - backlog;

  const endAt = Date.now() + options.durationS * 1_000;
  while (Date.now() < endAt) {
    await sleep(Math.min(1_000, endAt - Date.now()));
    const states = await group.progress();
    const acknowledged = sum(states.map((state) => state.windowAcceptedEvents));
    const seconds = (epochNow() - markAt) / 1_000;
    progress(`cluster: ${seconds.toFixed(0)}/${options.durationS} s, ${formatCount(acknowledged)} acknowledged (${formatRate(acknowledged / seconds)}), ${formatCount(await run.backlog())} not yet applied`);
  }

  const reports = await run.stopLoad();
  const sendingEndedAt = run.mark('sending stopped');
  await probe.pause();
  const settledAt = await run.waitApplied(APPLY_TIMEOUT_MS);
  await probe.resume();
  progress(`cluster: every stored event applied ${((settledAt - sendingEndedAt) / 1_000).toFixed(2)} s after sending stopped`);

  return { markAt, sendingEndedAt, settledAt, appliedBefore, reports };
}

async function runFailoverPhase(run: ClusterRun, probe: ProbeProcess, victim: string, rate: FaultLoadRate, options: ClusterOptions): Promise<FailoverPhase> {
  const survivors = NODE_IDS.filter((nodeId) => nodeId !== victim);
  const timeoutMs = options.faultTimeoutS * 1_000;
  await run.startLoad('failover', NODE_IDS, 4 * (options.faultLoadS + options.faultTimeoutS) * 1_000 + 60_000, rate.perGenerator);
  await sleep(options.faultLoadS * 1_000);

  const statuses = await run.statuses();
  const coordinator = [...statuses.values()].find((status) => status.coordinator)?.nodeId ?? null;
  const before = await run.owners();
  const victimShards = shardsOn(before, victim);

  const killAt = run.mark(`${victim} killed (SIGKILL)`);
  await run.node(victim).kill();
  await waitForProbeRecovery(probe, victimShards, killAt, timeoutMs);
  const placement = await run.waitPlaced(survivors, timeoutMs);
  const phase: FailoverPhase = { victim, coordinator, killAt, before, placedAt: placement.placedAtMs, after: placement.owners, rejoin: null, endAt: 0, problem: placement.problem };

  if (placement.placedAtMs === null) {
    progress(`cluster: ${placement.problem}`);
  } else {
    progress(`cluster: ${victim}'s ${victimShards.length} shards run on ${survivors.join(' and ')} ${((placement.placedAtMs - killAt) / 1_000).toFixed(1)} s after the kill`);
    await sleep(options.faultLoadS * 1_000);
    const rejoined = await rejoin(run, victim, timeoutMs);
    phase.rejoin = rejoined;
    phase.problem = rejoined.problem;
    if (phase.problem === null) await sleep(options.faultLoadS * 1_000);
  }

  phase.endAt = epochNow();
  await run.stopLoad();
  return phase;
}

/** Restarts the victim on its data directory and waits until it runs its shards again. */
async function rejoin(run: ClusterRun, victim: string, timeoutMs: number): Promise<NonNullable<FailoverPhase['rejoin']> & { problem: string | null }> {
  const before = await run.owners();
  const restartAt = run.mark(`${victim} restarted`);
  await run.startNode(victim);
  const placement = await run.waitPlaced(NODE_IDS, timeoutMs);

  if (placement.placedAtMs === null) progress(`cluster: ${placement.problem}`);
  else progress(`cluster: shards placed over ${NODE_IDS.join(', ')} again ${((placement.placedAtMs - restartAt) / 1_000).toFixed(1)} s after the restart`);
  return { restartAt, placedAt: placement.placedAtMs, before, after: placement.owners, problem: placement.problem };
}

async function runHandoffPhase(run: ClusterRun, victim: string, rate: FaultLoadRate, options: ClusterOptions): Promise<HandoffPhase> {
  const survivors = NODE_IDS.filter((nodeId) => nodeId !== victim);
  const timeoutMs = options.faultTimeoutS * 1_000;
  await run.startLoad('handoff', NODE_IDS, 4 * (options.faultLoadS + options.faultTimeoutS) * 1_000 + 60_000, rate.perGenerator);
  await sleep(options.faultLoadS * 1_000);

  const before = await run.owners();
  const stopAt = run.mark(`${victim} stopped (SIGTERM)`);
  const node = run.node(victim);
  node.requestStop();
  const exitedOnItsOwn = await node.waitForExit(timeoutMs);
  const exitAt = epochNow();
  progress(`cluster: ${victim} ${exitedOnItsOwn ? 'exited' : 'did not exit and got SIGKILL'} ${((exitAt - stopAt) / 1_000).toFixed(1)} s after SIGTERM`);

  const placement = await run.waitPlaced(survivors, timeoutMs);
  if (placement.problem !== null) progress(`cluster: ${placement.problem}`);
  else await sleep(options.faultLoadS * 1_000);

  const endAt = epochNow();
  await run.stopLoad();
  return { victim, stopAt, exitAt, exitedOnItsOwn, before, after: placement.owners, placedAt: placement.placedAtMs, endAt, problem: placement.problem };
}

/** The load of the failover and handoff phases, in events per second; undefined is unlimited. */
export interface FaultLoadRate {
  total: number | undefined;
  perGenerator: number | undefined;
}

/**
 * Returns faultLoadShare of the throughput phase's acknowledged rate. At full load every
 * probe cycle waits in the nodes' queues for up to seconds, which would hide the pause a
 * fault causes. A cluster in production also runs with room to spare.
 */
function faultLoadRate(phase: ThroughputPhase, options: ClusterOptions): FaultLoadRate {
  const acknowledged = sum(phase.reports.map((report) => report.windowAcceptedEvents));
  const perSecond = acknowledged / ((phase.sendingEndedAt - phase.markAt) / 1_000);
  if (options.faultLoadShare === 0 || !(perSecond > 0)) return { total: undefined, perGenerator: undefined };

  const total = Math.max(1, Math.round(perSecond * options.faultLoadShare));
  const generators = NODE_IDS.length * options.generatorsPerNode;
  progress(`cluster: the failover and handoff phases send ${formatRate(total)} (${Math.round(options.faultLoadShare * 100)}% of the acknowledged rate)`);
  return { total, perGenerator: Math.max(1, Math.round(total / generators)) };
}

/** Waits until the probe customer of each of `shards` had a successful write+read that started after `sinceMs`. */
async function waitForProbeRecovery(probe: ProbeProcess, shards: number[], sinceMs: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const successes = await probe.firstSuccesses(sinceMs);
    const waiting = shards.filter((shard) => successes[shard] === null);
    if (waiting.length === 0) return;
    await sleep(RECOVERY_POLL_MS);
  }
  // The result records the shards that did not recover, and the run then fails.
  progress(`cluster: not every shard was writable and readable again within ${timeoutMs} ms`);
}

async function checkCorrectness(run: ClusterRun, options: ClusterOptions, seed: number): Promise<CorrectnessResult> {
  const counts = mergeAcceptedCounts(run.reports, options.customers);
  const sample = sampleCustomers(counts, options.checkSample, seed);
  const reader = run.node(run.liveNodeIds()[0]);
  const correctness = await checkEventCounts(reader, counts, sample);
  progress(`cluster: correctness check ${describeCorrectness(correctness)}`);
  return correctness;
}

function shardsOn(owners: Map<number, string>, nodeId: string): number[] {
  return [...owners].filter(([, owner]) => owner === nodeId).map(([shard]) => shard).sort((a, b) => a - b);
}

function sum(values: number[]): number {
  return values.reduce((total, value) => total + value, 0);
}
