import t from 'tap';
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The cluster smoke run took 45 to 84 s on a busy 2-core machine, so this bound only stops a hung run. */
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

t.test('bench cluster-smoke - runs the cluster scenario', async (t) => {
  const resultsDir = t.testdir();
  const run = await runBench(['cluster-smoke', '--results-dir', resultsDir]);
  t.equal(run.code, 0, `bench cluster-smoke exits 0; stderr:\n${run.stderr.slice(-4_000)}`);

  const files = (await readdir(resultsDir)).filter((name) => /^cluster-smoke-.*\.json$/.test(name));
  t.equal(files.length, 1, 'writes one cluster-smoke result file');
  const result = JSON.parse(await readFile(path.join(resultsDir, files[0]), 'utf8'));

  t.equal(result.passed, true, `cluster-smoke result passed; failures: ${JSON.stringify(result.failures)}`);
  t.same(result.failures, []);
  t.same(result.charts, [], 'writes no chart');

  t.test('throughput and latency', async (t) => {
    const { throughput, latency } = result;
    t.ok(throughput.appliedPerSecond > 0, 'applied/s is positive');
    t.ok(throughput.acknowledgedPerSecond > 0, 'acknowledged/s is positive');
    t.equal(throughput.goalPerSecond, 50_000);
    t.equal(throughput.perGenerator.length, 3, 'one generator per node');
    t.ok(latency.cycles > 0, 'probe cycles ran in the window');
    t.type(latency.ackToVisible.p99Ms, 'number');
    t.type(latency.write.p50Ms, 'number');
  });

  t.test('JetStream reference', async (t) => {
    const reference = result.jetstreamReference;
    t.ok(reference.eventsPerSecond > 0, 'JetStream alone acknowledged events');
    t.ok(reference.windowEvents > 0, 'in the window');
    t.match(reference.description, /with a message id, file storage, 1 replica\(s\), 16 subjects, 3 publisher process\(es\)/);
  });

  t.test('failover', async (t) => {
    const { failover } = result;
    t.ok(failover.shards.length > 0, 'the killed node ran shards');
    for (const shard of failover.shards) {
      t.type(shard.recoveryMs, 'number', `shard ${shard.shard} recovered`);
      t.not(shard.newOwner, failover.victim, `shard ${shard.shard} moved off the killed node`);
    }
    t.type(failover.maxRecoveryMs, 'number');
    t.type(failover.placedAfterMs, 'number', 'the survivors ran every shard');
    t.ok(failover.rejoin, 'the killed node was restarted');
    t.ok(failover.rejoin?.shards.length > 0, 'the restarted node took shards back');
  });

  t.test('handoff', async (t) => {
    const { handoff } = result;
    if (handoff === null) {
      t.fail('the handoff phase was skipped');
      return;
    }
    t.equal(handoff.exitedOnItsOwn, true, 'the stopped node exited after SIGTERM');
    t.ok(handoff.shards.length > 0, 'the stopped node handed shards off');
    for (const shard of handoff.shards) {
      t.type(shard.pauseMs, 'number', `shard ${shard.shard} has a pause`);
      t.equal(shard.recovered, true, `shard ${shard.shard} was writable and readable again`);
      t.type(shard.handoffMs, 'number', `shard ${shard.shard} has the logged handoffMs`);
    }
    t.type(handoff.p50PauseMs, 'number');
  });

  t.test('correctness', async (t) => {
    t.equal(result.correctness.passed, true);
    t.ok(result.correctness.sampledCustomers > 0, 'some customers were checked');
    t.same(result.probe.mismatches, [], 'probe customers have the acknowledged eventCount');
    t.ok(result.load.acknowledgedEvents > 0, 'the generators got events acknowledged');
  });
});
