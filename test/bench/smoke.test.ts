import t from 'tap';
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Definitions in bench/definitions/: 5 computed traits, 3 segments, 5 decision rules and a contact policy. */
const BENCH_DEFINITION_COUNT = 14;

function sumOf(counts: Record<string, number>): number {
  return Object.values(counts).reduce((total, count) => total + count, 0);
}

/**
 * The smoke run, with its two latency runs and its decide run, takes about a minute on a
 * 2-core machine (an estimate from runs while other tests ran). This bound only stops a hung run.
 */
const RUN_TIMEOUT_MS = 240_000;

interface Run {
  code: number | string;
  stdout: string;
  stderr: string;
}

/** Runs the benchmark harness as a child process and stops it by PID (SIGTERM, then SIGKILL) if it runs too long. */
function runBench(args: string[]): Promise<Run> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'main.ts'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));

  const term = setTimeout(() => child.kill('SIGTERM'), RUN_TIMEOUT_MS);
  const kill = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS + 10_000);
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      clearTimeout(term);
      clearTimeout(kill);
      resolve({ code: code ?? signal ?? 'unknown', stdout, stderr });
    });
  });
}

t.test('bench smoke - runs every scenario', async (t) => {
  const resultsDir = t.testdir();
  const run = await runBench(['smoke', '--results-dir', resultsDir]);
  t.equal(run.code, 0, `bench smoke exits 0; stderr:\n${run.stderr.slice(-4_000)}`);

  const files = (await readdir(resultsDir)).filter((name) => /^smoke-.*\.json$/.test(name));
  t.equal(files.length, 1, 'writes one smoke result file');
  const result = JSON.parse(await readFile(path.join(resultsDir, files[0]), 'utf8'));

  t.equal(result.passed, true, `smoke result passed; failures: ${JSON.stringify(result.failures)}`);
  t.same(result.failures, []);
  t.type(result.machine.cpus, 'number');
  t.type(result.machine.nodeVersion, 'string');

  t.test('ingest result', async (t) => {
    const { ingest } = result;
    t.equal(ingest.passed, true);
    t.ok(ingest.rtcdp.appliedPerSecond > 0, 'rtcdp applied/s is positive');
    t.ok(ingest.rtcdp.acknowledgedPerSecond > 0, 'rtcdp acknowledged/s is positive');
    t.ok(ingest.rtcdp.batchLatency.count > 0, 'batch latencies were recorded');
    t.type(ingest.rtcdp.batchLatency.p50Ms, 'number');
    t.type(ingest.rtcdp.batchLatency.p99Ms, 'number');
    t.ok(ingest.reference.acknowledgedPerSecond > 0, 'reference acknowledged/s is positive');
    t.ok(ingest.ratioToReference > 0, 'ratio to the reference is positive');
    t.equal(ingest.rtcdp.correctness.passed, true);
    t.ok(ingest.rtcdp.correctness.sampledCustomers > 0, 'some customers were checked');
    t.equal(ingest.rtcdp.rejectedEvents, 0);
  });

  t.test('memory result', async (t) => {
    const { memory } = result;
    t.equal(memory.passed, true);
    t.ok(memory.heapPerProfile.heapBytesPerProfile > 0, 'heap per profile is positive');
    t.equal(memory.heapPerProfile.resident, memory.options.residentProfiles);
    t.equal(memory.heapPerProfile.correctness.passed, true);
    t.ok(memory.boundedRss.peakRss > 0, 'peak RSS is positive');
    t.ok(memory.boundedRss.peakHeapUsed > 0, 'peak heap is positive');
    t.ok(memory.boundedRss.samples.length > 0, 'memory was sampled');
    t.ok(memory.boundedRss.passivations > 0, 'profiles above the resident limit were passivated');
    t.equal(memory.boundedRss.correctness.passed, true);
  });

  t.test('activation result', async (t) => {
    const { activation } = result;
    t.equal(activation.passed, true);
    t.equal(activation.fromRocksDb.activations, activation.fromRocksDb.queries, 'each cold query activated its profile');
    t.equal(activation.resident.activations, 0, 'resident queries activated nothing');
    t.ok(activation.fromRocksDb.latency.count > 0, 'cold latencies were recorded');
    t.type(activation.fromRocksDb.latency.p99Ms, 'number');
    t.type(activation.resident.latency.maxMs, 'number');
    t.equal(activation.correctness.passed, true);
  });

  t.test('baseline result', async (t) => {
    const { baseline } = result;
    t.equal(baseline.passed, true, `baseline failures: ${JSON.stringify(baseline.failures)}`);
    t.ok(baseline.baseline.appliedPerSecond > 0, 'baseline applied/s is positive');
    t.ok(baseline.baseline.batchLatency.count > 0, 'batch latencies were recorded');
    t.equal(baseline.baseline.appendFsync, 'everysec');
    t.equal(baseline.baseline.rejectedEvents, 0);
    t.equal(baseline.baseline.serviceAppliedEvents, baseline.baseline.generatorFirstAttemptEvents, 'the service applied what the generators were acknowledged');
    t.ok(baseline.baseline.redisKeys > 0, 'Redis holds keys');
    t.equal(baseline.baseline.correctness.passed, true);
    t.ok(baseline.baseline.correctness.sampledCustomers > 0, 'some customers were checked');
  });

  t.test('latency result', async (t) => {
    t.equal(result.latency.length, 2, 'two latency runs: unary with sessions, stream with a replayed file');
    for (const latency of result.latency) {
      const name = `${latency.options.driver} driver`;
      t.equal(latency.passed, true, `${name} passed; failures: ${JSON.stringify(latency.failures)}`);
      t.ok(latency.maxRatePerSecond > 0, `${name}: the closed loop found a rate`);
      t.same(latency.steps.map((step: { writes: { percent: number } }) => step.writes.percent), [20, 50], `${name}: one step per rate`);
      for (const step of latency.steps) {
        t.ok(step.writes.latency.count > 0, `${name} ${step.writes.percent}%: write latencies were recorded`);
        t.ok(step.writes.latency.p999Ms >= step.writes.latency.p50Ms, `${name} ${step.writes.percent}%: p99.9 is at least p50`);
        t.equal(step.writes.sentRequests, step.writes.scheduledRequests, `${name} ${step.writes.percent}%: every scheduled request was sent`);
        t.ok(step.queries.latency.count > 0, `${name} ${step.writes.percent}%: GetProfile latencies were recorded`);
        t.equal(step.queries.otherErrorRequests, 0, `${name} ${step.writes.percent}%: every GetProfile found its profile`);
      }
      t.equal(latency.correctness.passed, true, `${name}: correctness check passed`);
      t.ok(latency.correctness.otherProfiles.sampledProfiles > 0, `${name}: anonymous or replayed profiles were checked`);
    }
    t.equal(result.latency[1].correctness.sampledCustomers, 0, 'a replayed file has no numbered customers');

    const withDecide = result.latency[0];
    t.equal(withDecide.definitions.definitions, BENCH_DEFINITION_COUNT, 'the bench definitions were applied');
    for (const step of withDecide.steps) {
      t.ok(step.decisions.latency.count > 0, `${step.writes.percent}%: Decide latencies were recorded`);
      t.equal(step.decisions.otherErrorRequests, 0, `${step.writes.percent}%: every Decide call found its profile`);
    }
    t.equal(result.latency[1].decisionTally, null, 'a run without Decide calls has no decisions');
    t.equal(result.latency[1].steps[0].decisions, null, 'a run without Decide calls has no Decide latency');
  });

  t.test('decide result', async (t) => {
    const { decide } = result;
    t.equal(decide.passed, true, `decide failures: ${JSON.stringify(decide.failures)}`);
    t.equal(decide.definitions.definitions, BENCH_DEFINITION_COUNT, 'the bench definitions were applied');
    t.equal(decide.goalP99Ms, 5);
    t.same(
      decide.steps.map((step: { writePercent: number; writes: unknown }) => [step.writePercent, step.writes === null]),
      [
        [0, true],
        [25, false],
      ],
      'one step without writes, then one with writes at 25%',
    );

    let recorded = 0;
    for (const step of decide.steps) {
      const name = `writes at ${step.writePercent}%`;
      t.equal(step.decisions.sentRequests, step.decisions.scheduledRequests, `${name}: every scheduled Decide call was sent`);
      t.ok(step.decisions.latency.count > 0, `${name}: Decide latencies were recorded`);
      t.ok(step.decisions.latency.p999Ms >= step.decisions.latency.p50Ms, `${name}: p99.9 is at least p50`);
      t.equal(step.decisions.otherErrorRequests, 0, `${name}: every Decide call found its profile`);
      t.type(step.meetsGoal, 'boolean');
      recorded += step.decisions.latency.count;
    }
    t.ok(decide.steps[1].writes.latency.count > 0, 'write latencies were recorded under Decide');

    t.equal(decide.reference.length, 1, 'the grpc-js reference ran at the one Decide rate');
    t.equal(decide.reference[0].targetPerSecond, 50);
    t.equal(decide.reference[0].sentRequests, decide.reference[0].scheduledRequests, 'every scheduled reference call was sent');
    t.ok(decide.reference[0].latency.count > 0, 'reference latencies were recorded');
    t.equal(decide.reference[0].otherErrorRequests, 0, 'the reference answered every call');

    const tally = decide.decisionTally;
    t.ok(decide.warmupCalls > 0, 'the decider warmed up before the first step');
    t.equal(tally.calls, recorded + decide.warmupCalls, 'every answered call was counted once');
    t.equal(tally.calls, tally.noneChosen + sumOf(tally.chosenPerRule), 'each call chose one rule or none');
    t.ok(tally.calls - tally.noneChosen > 0, 'some calls chose a rule');
    t.same(tally.candidatesPerChannel.web, { min: 4, max: 4 }, 'a web receipt lists the 4 rules that answer web');
    t.same(tally.candidatesPerChannel.app, { min: 2, max: 2 }, 'an app receipt lists the 2 rules that answer app');
    t.notOk('big_order_thanks' in tally.chosenPerRule, 'the email rule never answers web or app');

    t.ok((tally.maxPerProfilePerRule.vip_offer ?? 0) <= 1, 'vip_offer: at most 1 a day per profile');
    t.ok((tally.maxPerProfilePerRule.app_install ?? 0) <= 1, 'app_install: at most 1 a week per profile');
    t.ok((tally.maxPerProfilePerRule.cart_reminder ?? 0) <= 1, 'cart_reminder: a 10-minute cooldown allows 1 in the run');
    t.ok((tally.maxPerProfilePerRule.category_discovery ?? 0) <= 1, 'category_discovery: a 1-hour cooldown allows 1 in the run');
    t.ok((tally.maxPerProfilePerChannel.app ?? 0) <= 2, 'contact policy: at most 2 an hour on app');
    t.ok(tally.maxPerProfile <= 5, 'contact policy: at most 5 a day');

    t.equal(decide.correctness.passed, true);
    t.ok(decide.correctness.sampledCustomers > 0, 'some customers were checked');
  });
});

t.test('bench - rejects an invalid option value', async (t) => {
  const run = await runBench(['ingest', '--batch-size', '0']);
  t.not(run.code, 0);
  t.match(run.stderr, /--batch-size must be an integer from 1 to 800/);
});

t.test('bench decide - rejects a missing definitions path', async (t) => {
  const run = await runBench(['decide', '--definitions', 'bench/no-such-definitions', '--closed-loop-s', '0.5']);
  t.not(run.code, 0);
  t.match(run.stderr, /cannot read --definitions bench\/no-such-definitions: no such file or directory/);
});

t.test('bench latency - rejects contradicting workload options', async (t) => {
  const run = await runBench(['latency', '--replay', 'data/segment-sample.ndjson', '--session-events', '3']);
  t.not(run.code, 0);
  t.match(run.stderr, /--session-events set the sessions workload, which --replay does not use/);
});

t.test('correctness check - reports mismatches', async (t) => {
  const { compareCounts } = await import('../../bench/correctness.js');
  const expected = Int32Array.from([3, 0, 5]);

  const matching = compareCounts(expected, [0, 1, 2], Int32Array.from([3, -1, 5]));
  t.equal(matching.passed, true);
  t.equal(matching.sampledEvents, 8);

  const differing = compareCounts(expected, [0, 1, 2], Int32Array.from([2, 0, 5]));
  t.equal(differing.passed, false);
  t.same(differing.mismatches, [
    { userId: 'user-0', expected: 3, actual: 2 },
    { userId: 'user-1', expected: 0, actual: 0 },
  ]);

  const missing = compareCounts(expected, [2], Int32Array.from([-1]));
  t.same(missing.mismatches, [{ userId: 'user-2', expected: 5, actual: 'not found' }]);

  t.equal(compareCounts(expected, [], new Int32Array(0)).passed, false, 'an empty sample does not pass');
});
