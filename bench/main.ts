/**
 * rtcdp benchmarks: `npm run bench -- <scenario> [options]`. Each scenario prints progress
 * on stderr, a result table on stdout, and writes a JSON result file (and, except smoke,
 * an SVG chart). The process exits with 1 when a run fails, whatever its speed.
 */
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { runActivation, type ActivationOptions } from './activation.js';
import { runBaseline, type BaselineOptions } from './baseline/baseline.js';
import { APPEND_FSYNC_POLICIES } from './baseline/redis-server.js';
import { runCel, type CelOptions } from './cel.js';
import { BENCH_DEFINITIONS_DIR } from './bench-definitions.js';
import { runCompare, type CompareOptions } from './compare.js';
import { NODE_IDS, runCluster, type ClusterOptions } from './cluster.js';
import { createDataRoot, removeDataRoot, type RunContext } from './context.js';
import { runDecide, type DecideOptions } from './decide.js';
import { runIngest, type IngestOptions } from './ingest.js';
import { runMemory, type MemoryOptions } from './memory.js';
import { INGEST_DRIVERS } from './open-loop-drivers.js';
import { runLatency, type LatencyOptions } from './open-loop.js';
import { runMatching, type MatchingOptions } from './matching.js';
import { runNatsClient, type NatsClientOptions } from './nats-client.js';
import { BENCH_DIR, ChildProcesses } from './processes.js';
import { progress, writeResultFile, writeSummaryFile } from './report.js';
import { runClusterSmoke, runSmoke } from './smoke.js';
import { parseEventMix, parsePropertyBytes, resolveWorkload, type WorkloadChoice, type WorkloadFlags } from './workload-options.js';

const ROOT = path.resolve(BENCH_DIR, '..');

interface CommonOptions {
  resultsDir: string;
  chartsDir: string;
  keepData: boolean;
  seed: number;
  nodeSemiSpaceMib: number;
  callerSemiSpaceMib: number;
  nodeFlags: string;
}

interface ScenarioResult {
  passed: boolean;
}

function integer(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < min || parsed > max) {
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, received "${value}".`);
    }
    return parsed;
  };
}

function decimal(name: string, min: number, max: number) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < min || parsed > max) {
      throw new InvalidArgumentError(`${name} must be a number from ${min} to ${max}, received "${value}".`);
    }
    return parsed;
  };
}

function choice(name: string, values: string[]) {
  return (value: string): string => {
    if (!values.includes(value)) throw new InvalidArgumentError(`${name} must be one of ${values.join(', ')}, received "${value}".`);
    return value;
  };
}

function integerList(name: string, min: number, max: number) {
  return (value: string): number[] => {
    const parsed = value.split(',').map((part) => Number(part.trim()));
    if (parsed.length === 0 || parsed.some((number) => !Number.isInteger(number) || number < min || number > max)) {
      throw new InvalidArgumentError(`${name} must be a comma-separated list of integers from ${min} to ${max}, received "${value}".`);
    }
    return parsed;
  };
}

/** Wraps a parser that throws RangeError with its message, so commander reports it as an invalid option value. */
function parsedBy<T>(parse: (value: string) => T) {
  return (value: string): T => {
    try {
      return parse(value);
    } catch (error) {
      if (error instanceof RangeError) throw new InvalidArgumentError(error.message);
      throw error;
    }
  };
}

function addCommonOptions(command: Command): Command {
  return command
    .option('--results-dir <dir>', 'directory for the JSON result file', path.join(ROOT, 'bench', 'results'))
    .option('--charts-dir <dir>', 'directory for the SVG chart', path.join(ROOT, 'docs', 'benchmarks'))
    .option('--keep-data', 'keep the RocksDB data directories instead of deleting them', false)
    .option('--seed <n>', 'seed of the load generators and of the sampled customers', integer('--seed', 0, 2 ** 31), 1)
    .option(
      '--node-semi-space-mib <MiB>',
      "V8's --max-semi-space-size of the embedded node process, the young generation's half size; npm start uses 64",
      integer('--node-semi-space-mib', 1, 1_024),
      64,
    )
    .option(
      '--caller-semi-space-mib <MiB>',
      "V8's --max-semi-space-size of the processes that time GetProfile and Decide calls; a small young generation keeps their own GC pauses short",
      integer('--caller-semi-space-mib', 1, 1_024),
      1,
    )
    .option('--node-flags <flags>', 'more Node.js and V8 flags of the node processes, separated by spaces, for example "--single-threaded-gc"', '');
}

/** The settings of CommonOptions that a scenario without charts, seeds or node processes leaves as they are. */
const IN_PROCESS_DEFAULTS: Omit<CommonOptions, 'resultsDir'> = {
  chartsDir: path.join(ROOT, 'docs', 'benchmarks'),
  keepData: false,
  seed: 1,
  nodeSemiSpaceMib: 64,
  callerSemiSpaceMib: 1,
  nodeFlags: '',
};

/** Adds the one common option of a scenario that runs in this process and draws no chart: where its result file goes. */
function addResultsOption(command: Command): Command {
  return command.option('--results-dir <dir>', 'directory for the JSON result file', path.join(ROOT, 'bench', 'results'));
}

/**
 * Runs one scenario with a fresh data root, writes its result file, stops every child
 * process (also on failure or SIGINT/SIGTERM) and sets the exit code.
 */
async function runScenario(name: string, common: CommonOptions, charts: boolean, run: (context: RunContext) => Promise<ScenarioResult>): Promise<void> {
  const processes = new ChildProcesses({ nodeSemiSpaceMib: common.nodeSemiSpaceMib, callerSemiSpaceMib: common.callerSemiSpaceMib, extraNodeFlags: common.nodeFlags.split(' ').filter((flag) => flag !== '') });
  const context: RunContext = {
    processes,
    resultsDir: path.resolve(common.resultsDir),
    chartsDir: charts ? path.resolve(common.chartsDir) : null,
    dataRoot: await createDataRoot(),
    keepData: common.keepData,
    seed: common.seed,
  };
  const stopOnSignal = (signal: NodeJS.Signals) => {
    progress(`received ${signal}; stopping child processes`);
    void processes
      .stopAll(3_000)
      .then(() => removeDataRoot(context))
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);
  process.once('exit', () => processes.killAllNow());

  const startedAt = new Date();
  const tables = captureStdout();
  try {
    const result = await run(context);
    const file = await writeResultFile(context.resultsDir, name, result);
    progress(`wrote ${file}`);
    const summary = await writeSummaryFile({
      scenario: name,
      command: process.argv.slice(2).join(' '),
      startedAt,
      finishedAt: new Date(),
      passed: result.passed,
      tables: tables.text(),
      resultFile: file,
    });
    progress(`wrote ${summary}`);
    process.exitCode = result.passed ? 0 : 1;
    if (!result.passed) progress(`${name} FAILED`);
  } catch (error) {
    progress(`${name} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exitCode = 1;
  } finally {
    tables.stop();
    await processes.stopAll();
    await removeDataRoot(context);
  }
}

/** Copies everything written to stdout from now on, so the run's tables can go into its summary. */
function captureStdout(): { text(): string; stop(): void } {
  const chunks: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
    return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  return {
    text: () => chunks.join(''),
    stop: () => {
      process.stdout.write = write;
    },
  };
}

/** Options of the closed-loop ingest load, shared by ingest, baseline and compare. */
function addLoadOptions(command: Command): Command {
  return command
    .option('--duration-s <s>', 'measured window, in seconds', integer('--duration-s', 1, 3_600), 20)
    .option('--warmup-s <s>', 'warm-up before the window, in seconds', decimal('--warmup-s', 0, 600), 3)
    .option('--batch-size <n>', 'events per IngestBatchRequest, at most 800 because the node rejects a batch over 512,000 bytes as JSON', integer('--batch-size', 1, 800), 500)
    .option('--in-flight-batches <n>', 'unacknowledged batches per generator', integer('--in-flight-batches', 1, 1_000), 8)
    .option('--customers <n>', 'customers the events are spread over', integer('--customers', 1, 100_000_000), 100_000)
    .option('--zipf-exponent <s>', 'Zipf exponent of the customer distribution (0 is uniform)', decimal('--zipf-exponent', 0, 3), 0.99)
    .option('--generators <n>', 'load generator processes', integer('--generators', 1, 64), 1)
    .option('--check-sample <n>', 'customers whose eventCount is checked at the end', integer('--check-sample', 1, 100_000), 200);
}

/** Options of the Redis baseline, shared by baseline and compare. */
function addRedisOptions(command: Command): Command {
  return command
    .option('--redis-fsync <policy>', "redis-server's appendfsync: everysec (fsync about once a second, Redis's default) or always (fsync before replying, as rtcdp fdatasyncs before acknowledging)", choice('--redis-fsync', APPEND_FSYNC_POLICIES), 'everysec')
    .option('--dedup-ttl-s <s>', "how long the baseline deduplicates a messageId, in seconds (rtcdp's dedup window is 7 days)", integer('--dedup-ttl-s', 1, 2_147_483_647), 604_800)
    .option('--recent-events <n>', 'recent events the baseline keeps per profile, as rtcdp keeps 10; 0 keeps none', integer('--recent-events', 0, 1_000), 10);
}

function addWalSyncOptions(command: Command): Command {
  return command
    .option('--wal-sync', 'fdatasync the RocksDB WAL before acknowledging events', true)
    .option('--no-wal-sync', 'acknowledge after write(2) to the RocksDB WAL, without fdatasync');
}

/** Adds the workload options of ingest and latency. None has a default here, so that resolveWorkload can tell which were given. */
function addWorkloadOptions(command: Command): Command {
  return command
    .option('--workload <kind>', 'zipf: track events with userId for Zipf-distributed customers; sessions: the mix of the options below (default: zipf)', choice('--workload', ['zipf', 'sessions']))
    .option('--session-events <n>', 'sessions: mean events per session, drawn from a geometric distribution (default: 5)', decimal('--session-events', 1, 1_000))
    .option('--event-mix <weights>', 'sessions: relative weights of event types, as track=60,page=30,screen=0,identify=5,alias=5 (the default); anonymous sessions draw only track, page and screen', parsedBy(parseEventMix))
    .option('--known-percent <p>', 'sessions: customers whose events carry their userId from the start, in percent (default: 50)', decimal('--known-percent', 0, 100))
    .option('--conversion-percent <p>', "sessions: anonymous customers' sessions that end in an identify with the userId, after which the customer is known, in percent (default: 20)", decimal('--conversion-percent', 0, 100))
    .option('--property-bytes <list>', 'sessions: sizes of an extra string property on track, page and screen events, in bytes, one drawn per event, as 0,256,4096 (default: 0)', parsedBy(parsePropertyBytes))
    .option('--replay <file>', "send the events of FILE (Segment NDJSON or the Online Retail CSV, as `rtcdp send` reads them) from the start again when it ends, each with a new messageId, instead of generated events");
}

/** `--definitions` of the scenarios that evaluate definitions; a relative path is taken from the current directory, as `rtcdp apply -f` does. */
function addDefinitionsOption(command: Command, defaultDescription: string, defaultValue?: string[]): Command {
  return command.option(
    '--definitions <path...>',
    `definition files, or directories of .yaml, .yml and .json files, applied to workspace "default" before the load, as rtcdp apply -f does (default: ${defaultDescription})`,
    defaultValue,
  );
}

/** Resolves the workload options once, exiting with a usage error on a contradiction. */
function workloadOf(command: Command, flags: WorkloadFlags): WorkloadChoice {
  const resolved = resolveWorkload(flags);
  if (typeof resolved === 'string') command.error(`error: ${resolved}`);
  return resolved as WorkloadChoice;
}

function addIngestCommand(program: Command): void {
  const command = program
    .command('ingest')
    .description('Sustained IngestStream ingestion to applied profile state, next to a raw grpc-js server with the same load');
  addWalSyncOptions(addLoadOptions(command))
    .option('--no-reference', 'skip the raw grpc-js reference server')
    .option('--cpu-profile', 'record a CPU profile of the node during the window and print its top functions', false)
    .option('--max-in-flight-events <n>', "node's maxInFlightEvents, above which it answers RESOURCE_EXHAUSTED (default: the node's, 50,000)", integer('--max-in-flight-events', 1))
    .option('--snapshot-every-messages <n>', "node's actors.snapshotEveryMessages (default: the node's, 500)", integer('--snapshot-every-messages', 1))
    .option('--snapshot-interval-ms <ms>', "node's actors.snapshotIntervalMs (default: the node's, 5,000 ms)", integer('--snapshot-interval-ms', 1, 2_147_483_647));

  addWorkloadOptions(command);
  addDefinitionsOption(command, 'none');

  addCommonOptions(command).action((options: IngestOptions & CommonOptions & WorkloadFlags) => {
    const workload = workloadOf(command, options);
    return runScenario('ingest', options, true, (context) => runIngest(context, { ...options, workload }));
  });
}

function addLatencyCommand(program: Command): void {
  const command = program
    .command('latency')
    .description(
      'Open-loop write latency at fixed rates from 10% to 90% of the closed-loop maximum, measured from each request\'s scheduled send time, ' +
        'with GetProfile queries at a fixed rate alongside',
    )
    .option('--driver <driver>', 'unary: Ingest, one event per call; batch: IngestBatch calls of --batch-size events; stream: batches of --batch-size on one IngestStream call', choice('--driver', [...INGEST_DRIVERS]), 'batch')
    .option('--batch-size <n>', 'events per request of the batch and stream drivers; a batch is sent every batch-size / rate seconds', integer('--batch-size', 1, 800), 100)
    .option('--max-rate <events/s>', 'the 100% rate in events per second (default: measured by the closed-loop run)', integer('--max-rate', 1))
    .option('--rates-percent <list>', 'write rates of the steps, in percent of the 100% rate', integerList('--rates-percent', 1, 1_000), [10, 20, 30, 40, 50, 60, 70, 80, 90])
    .option('--step-duration-s <s>', 'duration of each step, in seconds', decimal('--step-duration-s', 0.5, 3_600), 10)
    .option('--closed-loop-s <s>', 'duration of the closed-loop run that finds the 100% rate, warms the node up and stores the profiles the queries read, in seconds', decimal('--closed-loop-s', 0.5, 3_600), 10)
    .option('--in-flight-requests <n>', 'requests each writer keeps unanswered in the closed-loop run (default: 64 for unary, 8 for batch and stream)', integer('--in-flight-requests', 1, 10_000))
    .option('--generators <n>', 'writer processes; use more when a step reports BEHIND SCHEDULE', integer('--generators', 1, 64), 1)
    .option('--query-rate <queries/s>', 'GetProfile calls per second during each step, for profiles that exist; 0 sends none', integer('--query-rate', 0, 100_000), 100)
    .option('--decide-rate <calls/s>', 'Decide calls per second during each step, for profiles that exist, on the web or app channel with a small context; 0 sends none. Without decision rules among --definitions, no call chooses a rule', integer('--decide-rate', 0, 100_000), 0)
    .option('--max-outstanding-requests <n>', 'unanswered requests per generator at which a step stops and counts as overloaded', integer('--max-outstanding-requests', 1, 1_000_000), 10_000)
    .option('--max-send-lag-ms <ms>', 'a generator whose p99 delay between a request\'s scheduled and actual send time exceeds this fell behind its schedule', decimal('--max-send-lag-ms', 0, 60_000), 20)
    .option('--customers <n>', 'customers the events are spread over', integer('--customers', 1, 100_000_000), 100_000)
    .option('--zipf-exponent <s>', 'Zipf exponent of the customer distribution (0 is uniform)', decimal('--zipf-exponent', 0, 3), 0.99)
    .option('--check-sample <n>', 'customers whose eventCount is checked at the end', integer('--check-sample', 1, 100_000), 200);
  addWorkloadOptions(addWalSyncOptions(command));
  addDefinitionsOption(command, 'none');

  type Flags = Omit<LatencyOptions, 'inFlightRequests' | 'maxRatePerSecond' | 'queryRatePerSecond' | 'decideRatePerSecond' | 'definitions' | 'workload'> &
    CommonOptions &
    WorkloadFlags & { inFlightRequests?: number; maxRate?: number; queryRate: number; decideRate: number; definitions?: string[] };
  addCommonOptions(command).action((flags: Flags) => {
    const { maxRate, queryRate, decideRate, definitions, ...rest } = flags;
    const options: LatencyOptions = {
      ...rest,
      maxRatePerSecond: maxRate,
      queryRatePerSecond: queryRate,
      decideRatePerSecond: decideRate,
      definitions: definitions ?? [],
      inFlightRequests: flags.inFlightRequests ?? (flags.driver === 'unary' ? 64 : 8),
      workload: workloadOf(command, flags),
    };
    return runScenario('latency', flags, true, (context) => runLatency(context, options));
  });
}

function addDecideCommand(program: Command): void {
  const command = program
    .command('decide')
    .description(
      'Open-loop DecisionService.Decide latency against a node with definitions applied: at fixed Decide rates without writes, ' +
        'then at one Decide rate under open-loop writes at shares of the closed-loop maximum; goal: p99 under 5 ms',
    )
    .option('--decide-rates <list>', 'Decide calls per second of the steps without writes', integerList('--decide-rates', 1, 100_000), [100, 250, 500, 1_000])
    .option('--write-rates-percent <list>', 'write rates of the loaded steps, in percent of the 100% rate', integerList('--write-rates-percent', 1, 1_000), [25, 50])
    .option('--decide-rate <calls/s>', 'Decide calls per second during the loaded steps', integer('--decide-rate', 1, 100_000), 250)
    .option('--driver <driver>', 'writes: unary (Ingest, one event per call), batch (IngestBatch calls of --batch-size events) or stream', choice('--driver', [...INGEST_DRIVERS]), 'batch')
    .option('--batch-size <n>', 'events per request of the batch and stream drivers', integer('--batch-size', 1, 800), 100)
    .option('--max-rate <events/s>', 'the 100% write rate in events per second (default: measured by the closed-loop run)', integer('--max-rate', 1))
    .option('--step-duration-s <s>', 'duration of each step, in seconds', decimal('--step-duration-s', 0.5, 3_600), 10)
    .option('--closed-loop-s <s>', 'duration of the closed-loop write run that finds the 100% rate, warms the node up and stores the profiles Decide is called for, in seconds', decimal('--closed-loop-s', 0.5, 3_600), 10)
    .option('--in-flight-requests <n>', 'requests each writer keeps unanswered in the closed-loop run', integer('--in-flight-requests', 1, 10_000), 8)
    .option('--generators <n>', 'writer processes', integer('--generators', 1, 64), 1)
    .option('--max-outstanding-requests <n>', 'unanswered requests per generator at which a step stops and counts as overloaded', integer('--max-outstanding-requests', 1, 1_000_000), 10_000)
    .option('--max-send-lag-ms <ms>', "a generator whose p99 delay between a request's scheduled and actual send time exceeds this fell behind its schedule", decimal('--max-send-lag-ms', 0, 60_000), 20)
    .option('--customers <n>', 'customers the events are spread over', integer('--customers', 1, 100_000_000), 100_000)
    .option('--zipf-exponent <s>', 'Zipf exponent of the customer distribution (0 is uniform)', decimal('--zipf-exponent', 0, 3), 0.99)
    .option('--check-sample <n>', 'customers whose eventCount is checked at the end', integer('--check-sample', 1, 100_000), 200)
    .option('--no-reference', 'skip the grpc-js reference server, which answers Decide at once, at each rate of --decide-rates before the node starts')
    .option('--warmup-s <s>', 'Decide calls at the first rate of --decide-rates before the first step against each server, not recorded, in seconds (0 for none)', decimal('--warmup-s', 0, 600), 3);
  addWalSyncOptions(command);
  addDefinitionsOption(command, 'bench/definitions/', [BENCH_DEFINITIONS_DIR]);

  type Flags = Omit<DecideOptions, 'maxRatePerSecond' | 'decideRatePerSecond'> & CommonOptions & { maxRate?: number; decideRate: number };
  addCommonOptions(command).action((flags: Flags) => {
    const { maxRate, decideRate, ...rest } = flags;
    const options: DecideOptions = { ...rest, maxRatePerSecond: maxRate, decideRatePerSecond: decideRate };
    return runScenario('decide', flags, true, (context) => runDecide(context, options));
  });
}

function addBaselineCommand(program: Command): void {
  const command = program
    .command('baseline')
    .description('The ingest load against the Redis baseline: a stateless gRPC service doing one Lua read-modify-write per event in redis-server; needs redis-server');
  addRedisOptions(addLoadOptions(command));

  addCommonOptions(command).action((options: BaselineOptions & CommonOptions) =>
    runScenario('baseline', options, false, (context) => runBaseline(context, options)),
  );
}

function addCompareCommand(program: Command): void {
  const command = program
    .command('compare')
    .description(
      'In one run with the same load: rtcdp embedded, the Redis baseline, and the grpc-js, core NATS and RocksDB references, ' +
        'with rtcdp as a share of each; needs redis-server and nats-server',
    );
  addRedisOptions(addWalSyncOptions(addLoadOptions(command))).option('--no-nats-reference', 'skip the core NATS reference, which needs nats-server');

  addCommonOptions(command).action((options: CompareOptions & CommonOptions) =>
    runScenario('compare', options, true, (context) => runCompare(context, options)),
  );
}

function addMemoryCommand(program: Command): void {
  const command = program
    .command('memory')
    .description('Heap per resident profile, and RSS while storing many profiles with a bounded number resident')
    .option('--resident-profiles <n>', 'profiles made resident for the heap-per-profile measurement', integer('--resident-profiles', 1, 10_000_000), 100_000)
    .option('--tracks-per-profile <n>', 'track events per profile after its identify event (names cycle through 10)', integer('--tracks-per-profile', 0, 1_000), 10)
    .option('--profiles <n>', 'profiles stored for the bounded-RSS measurement', integer('--profiles', 1, 100_000_000), 1_000_000)
    .option('--stored-tracks-per-profile <n>', 'track events per profile in the bounded-RSS measurement', integer('--stored-tracks-per-profile', 0, 1_000), 0)
    .option('--max-resident <n>', 'maxResidentActors of the node in the bounded-RSS measurement', integer('--max-resident', 1, 100_000_000), 100_000)
    .option('--wal-sync', 'fdatasync the RocksDB WAL before acknowledging events', true)
    .option('--no-wal-sync', 'acknowledge after write(2) to the RocksDB WAL, without fdatasync')
    .option('--generators <n>', 'load generator processes', integer('--generators', 1, 64), 1)
    .option('--batch-size <n>', 'events per IngestBatchRequest', integer('--batch-size', 1, 500), 500)
    .option('--in-flight-batches <n>', 'unacknowledged batches per generator', integer('--in-flight-batches', 1, 1_000), 8)
    .option('--check-sample <n>', 'profiles whose eventCount is checked at the end of each part', integer('--check-sample', 1, 100_000), 200);

  addCommonOptions(command).action((options: MemoryOptions & CommonOptions) =>
    runScenario('memory', options, true, (context) => runMemory(context, options)),
  );
}

function addActivationCommand(program: Command): void {
  const command = program
    .command('activation')
    .description('getProfile latency when the profile activates from RocksDB, and when it is already resident')
    .option('--profiles <n>', 'profiles stored before the node restarts', integer('--profiles', 1, 100_000_000), 50_000)
    .option('--queries <n>', 'distinct profiles queried after the restart (at most --profiles minus the warm-up queries)', integer('--queries', 1, 10_000_000), 10_000)
    .option('--tracks-per-profile <n>', 'track events per profile after its identify event', integer('--tracks-per-profile', 0, 1_000), 10)
    .option('--wal-sync', 'fdatasync the RocksDB WAL before acknowledging events', true)
    .option('--no-wal-sync', 'acknowledge after write(2) to the RocksDB WAL, without fdatasync')
    .option('--generators <n>', 'load generator processes', integer('--generators', 1, 64), 1)
    .option('--batch-size <n>', 'events per IngestBatchRequest', integer('--batch-size', 1, 500), 500)
    .option('--in-flight-batches <n>', 'unacknowledged batches per generator', integer('--in-flight-batches', 1, 1_000), 8);

  addCommonOptions(command).action((options: ActivationOptions & CommonOptions) =>
    runScenario('activation', options, true, (context) => runActivation(context, options)),
  );
}

function addClusterCommand(program: Command): void {
  const command = program
    .command('cluster')
    .description(
      'Three cluster nodes and nats-server on 127.0.0.1: throughput to applied state, acknowledgement-to-visible latency, ' +
        'failover after SIGKILL of a node and the pause per shard while a node hands its shards off after SIGTERM',
    )
    .option('--duration-s <s>', 'measured throughput window, in seconds', integer('--duration-s', 1, 3_600), 30)
    .option('--warmup-s <s>', 'warm-up before the throughput window, in seconds', decimal('--warmup-s', 0, 600), 5)
    .option('--batch-size <n>', 'events per IngestBatchRequest, at most 800 because a node rejects a batch over 512,000 bytes as JSON', integer('--batch-size', 1, 800), 500)
    .option('--in-flight-batches <n>', 'unacknowledged batches per generator', integer('--in-flight-batches', 1, 1_000), 8)
    .option('--customers <n>', 'customers the events are spread over', integer('--customers', 1, 100_000_000), 100_000)
    .option('--zipf-exponent <s>', 'Zipf exponent of the customer distribution (0 is uniform)', decimal('--zipf-exponent', 0, 3), 0.99)
    .option('--generators-per-node <n>', 'load generator processes per node; each sends to its node and moves to another when its node fails', integer('--generators-per-node', 1, 16), 1)
    .option('--shards <n>', 'virtual shards of the cluster', integer('--shards', 3, 4_096), 16)
    .option('--victim <node>', 'node to kill and later stop: n1, n2 or n3 (default: n2 or n3, whichever the placement gives more shards)', choice('--victim', NODE_IDS))
    .option('--probe-interval-ms <ms>', 'wait between two write+read cycles of a probe customer (one per shard), in milliseconds', integer('--probe-interval-ms', 1, 60_000), 50)
    .option('--fault-load-s <s>', 'load before each fault and after the cluster recovered from it, in seconds', decimal('--fault-load-s', 0, 600), 5)
    .option('--fault-load-share <share>', "share of the throughput phase's acknowledged events/s sent during the failover and handoff phases; 0 sends as fast as acknowledgements allow", decimal('--fault-load-share', 0, 10), 0.5)
    .option('--fault-timeout-s <s>', 'maximum wait for the cluster to recover from a fault or place its shards, and for a stopped node to exit, in seconds', integer('--fault-timeout-s', 1, 3_600), 60)
    .option('--check-sample <n>', 'customers whose eventCount is checked at the end', integer('--check-sample', 1, 100_000), 200)
    .option('--no-jetstream-reference', 'skip measuring JetStream alone (one publisher process per node, each event one message with an id) before the nodes start')
    .option('--lease-ttl-ms <ms>', "nodes' shard lease length (default: the node's, 5,000 ms)", integer('--lease-ttl-ms', 100, 3_600_000))
    .option('--lease-renew-interval-ms <ms>', "nodes' time between lease renewals (default: the node's, 1,000 ms)", integer('--lease-renew-interval-ms', 10, 3_600_000))
    .option('--heartbeat-interval-ms <ms>', "nodes' time between membership heartbeats (default: the node's, 1,000 ms)", integer('--heartbeat-interval-ms', 10, 3_600_000))
    .option('--member-timeout-ms <ms>', "time after which a silent member counts as gone (default: the node's, 4,000 ms)", integer('--member-timeout-ms', 10, 3_600_000))
    .option('--rebalance-stable-for-ms <ms>', "time the member list must stay unchanged before shards move (default: the node's, 2,000 ms)", integer('--rebalance-stable-for-ms', 0, 3_600_000))
    .option('--checkpoint-interval-ms <ms>', "nodes' time between shard checkpoint writes (default: the node's, 1,000 ms)", integer('--checkpoint-interval-ms', 10, 3_600_000));

  addCommonOptions(command).action((options: ClusterOptions & CommonOptions) =>
    runScenario('cluster', options, true, (context) => runCluster(context, options)),
  );
}

function addSmokeCommand(program: Command): void {
  const command = program.command('smoke').description('A few-second run of every scenario at tiny sizes, for CI; writes no chart and exits 1 on any failure');
  addCommonOptions(command).action((options: CommonOptions) => runScenario('smoke', options, false, (context) => runSmoke(context)));

  const cluster = program
    .command('cluster-smoke')
    .description('A short run of the cluster scenario at tiny sizes and with short node timings, for CI; writes no chart and exits 1 on any failure');
  addCommonOptions(cluster).action((options: CommonOptions) => runScenario('cluster-smoke', options, false, (context) => runClusterSmoke(context)));
}

function addCelCommand(program: Command): void {
  const command = program
    .command('cel')
    .description('Evaluations per second of segment conditions compiled once, with @marcbachmann/cel-js and @bufbuild/cel on a 30-field profile')
    .option('--duration-s <s>', 'measured time per library, condition and round, in seconds', decimal('--duration-s', 0.1, 60), 1)
    .option('--rounds <n>', 'measurements per library and condition; the table shows the median', integer('--rounds', 1, 21), 3);

  addResultsOption(command).action((options: CelOptions & Pick<CommonOptions, 'resultsDir'>) => runScenario('cel', { ...IN_PROCESS_DEFAULTS, ...options }, false, () => runCel(options)));
}

function addNatsClientCommand(program: Command): void {
  const command = program
    .command('nats-client')
    .description("Client CPU per JetStream publish and per KV put with the NATS client's defaults, with its async traces off, and as cluster nodes run it (async traces off, no Error built after a reply); needs nats-server")
    .option('--requests <n>', 'requests of each kind per round and setting', integer('--requests', 1_000, 10_000_000), 20_000)
    .option('--in-flight <n>', 'requests in flight at a time', integer('--in-flight', 1, 10_000), 200)
    .option('--rounds <n>', 'rounds, each measuring every setup; the table shows the median', integer('--rounds', 1, 21), 3)
    .option('--payload-bytes <n>', 'bytes of each message and value', integer('--payload-bytes', 0, 1_000_000), 400);

  addResultsOption(command).action((options: NatsClientOptions & Pick<CommonOptions, 'resultsDir'>) =>
    runScenario('nats-client', { ...IN_PROCESS_DEFAULTS, ...options }, false, (context) => runNatsClient(context, options)),
  );
}

function addMatchingCommand(program: Command): void {
  const command = program
    .command('matching')
    .description(
      'Fuzzy person matching in Piscina workers: comparisons per second on random pairs, and batch matching of FEBRL 4, FEBRL 3 and Splink data sets ' +
        'with precision, recall, F1 and run time, with the event loop delay of the main thread during each; goals: FEBRL 4 F1 0.98, 1,000,000 comparisons/s, delay p99 under 10 ms',
    )
    .option('--workers <n>', 'worker threads', integer('--workers', 1, 64), 2)
    .option('--pairs-per-task <n>', 'pairs per worker task', integer('--pairs-per-task', 1_000, 1_000_000), 4_096)
    .option('--throughput-pairs <n>', 'random pairs compared in each round of the throughput measurement', integer('--throughput-pairs', 10_000, 1_000_000_000), 5_000_000)
    .option('--throughput-rounds <n>', 'rounds of the throughput measurement; the table shows the median round', integer('--throughput-rounds', 1, 21), 3)
    .option('--data-dir <dir>', 'directory with febrl/ and splink-fake-1000/', path.join(ROOT, 'data'))
    .option('--splink-50k <file>', 'historical_figures_with_errors_50k.csv of the Splink data sets, matched too when given');

  addCommonOptions(command).action((options: MatchingOptions & CommonOptions) => runScenario('matching', options, true, (context) => runMatching(context, options)));
}

const program = new Command()
  .name('npm run bench --')
  .description('rtcdp benchmarks. Traffic goes only to 127.0.0.1; every child process is stopped at the end.');

addIngestCommand(program);
addLatencyCommand(program);
addDecideCommand(program);
addBaselineCommand(program);
addCompareCommand(program);
addMemoryCommand(program);
addActivationCommand(program);
addClusterCommand(program);
addSmokeCommand(program);
addCelCommand(program);
addNatsClientCommand(program);
addMatchingCommand(program);

await program.parseAsync(process.argv);
