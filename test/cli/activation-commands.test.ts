/**
 * Segments end to end through the processes a user runs: `rtcdp dev`, `rtcdp apply`,
 * `rtcdp send`, `rtcdp profile get`, `rtcdp activations list` and `rtcdp activations tail`,
 * over gRPC on loopback.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { RTCDP_BIN, runCli, startNodeProcess } from '../helpers/node-process.js';

const rtcdp = runCli;

const DEFINITIONS = `apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: ltv }
spec: { kind: sum, event: Order Completed, property: revenue }
---
apiVersion: rtcdp/v1
kind: Segment
metadata: { name: big_spenders }
spec: { condition: 'computed.ltv > 100.0' }
`;

function orders(userId: string, revenues: number[], prefix: string): string {
  return revenues.map((revenue, i) => JSON.stringify({ type: 'track', event: 'Order Completed', userId, messageId: `${prefix}-${i}`, properties: { revenue } })).join('\n');
}

/** Starts a node in the test's directory and applies the segment definitions; returns the directory and the --server arguments. */
async function startWithSegments(t: Test): Promise<{ dir: string; server: string[] }> {
  const dir = t.testdir();
  const node = await startNodeProcess(path.join(dir, 'data'));
  t.teardown(() => node.stop());
  const server = ['--server', node.address];

  const definitions = path.join(dir, 'segments.yaml');
  writeFileSync(definitions, DEFINITIONS);
  const applied = await rtcdp(['apply', '-f', definitions, ...server]);
  t.equal(applied.code, 0, `apply exits 0; stderr: ${applied.stderr}`);
  return { dir, server };
}

/** Polls `activations list` until it shows `count` activations; fails after 10 s. */
async function waitForActivations(server: string[], count: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const listed = await rtcdp(['activations', 'list', '--output', 'json', ...server]);
    if (listed.code === 0 && (JSON.parse(listed.stdout).activations ?? []).length >= count) return;
    if (Date.now() > deadline) throw new Error(`fewer than ${count} activations listed within 10 s: ${listed.stdout}${listed.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

t.test('activation commands - a segment entry shows in profile get, list and tail', async (t) => {
  const { dir, server } = await startWithSegments(t);

  // The tail starts first and, from the oldest, receives both entries: one stored before the second send, one after.
  const tail = spawn(process.execPath, [RTCDP_BIN, 'activations', 'tail', '--after', '0', '--count', '2', '--output', 'json', ...server], { stdio: ['ignore', 'pipe', 'pipe'] });
  let tailOutput = '';
  let tailErrors = '';
  tail.stdout.on('data', (chunk: Buffer) => (tailOutput += chunk.toString()));
  tail.stderr.on('data', (chunk: Buffer) => (tailErrors += chunk.toString()));
  const tailExit = new Promise<number | null>((resolve) => tail.on('exit', resolve));
  t.teardown(() => tail.kill('SIGKILL'));

  const first = path.join(dir, 'first.ndjson');
  writeFileSync(first, `${orders('ada', [60, 50], 'a')}\n${orders('bob', [20], 'b')}\n`);
  t.equal((await rtcdp(['send', first, ...server])).code, 0);

  const profile = await rtcdp(['profile', 'get', '--user-id', 'ada', ...server]);
  t.equal(profile.code, 0, profile.stderr);
  t.match(profile.stdout, /computed traits:\n\s+ltv\s+110\n/);
  t.match(profile.stdout, /segments:\n\s+SEGMENT\s+ENTERED AT\s+VERSION\n\s+big_spenders\s+\S+Z\s+1\n/);

  const second = path.join(dir, 'second.ndjson');
  writeFileSync(second, `${orders('bob', [90], 'c')}\n`);
  t.equal((await rtcdp(['send', second, ...server])).code, 0);

  t.equal(await tailExit, 0, `tail stops after --count activations; stderr: ${tailErrors}`);
  const streamed = tailOutput
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { sequence: string | number; type: string; profileId: string; name: string });
  t.same(
    streamed.map((activation) => [Number(activation.sequence), activation.type, activation.profileId, activation.name]),
    [
      [1, 'segment.entered', 'user:ada', 'big_spenders'],
      [2, 'segment.entered', 'user:bob', 'big_spenders'],
    ],
  );

  const list = await rtcdp(['activations', 'list', '--after', '1', ...server]);
  t.equal(list.code, 0, list.stderr);
  t.match(list.stdout, /^SEQUENCE\s+AT\s+TYPE\s+NAME\s+VERSION\s+PROFILE\s+CAUSE\n2\s+\S+\s+segment\.entered\s+big_spenders\s+1\s+user:bob\s+event c-0 /);
  t.match(list.stdout, /continue with --after 2\n$/);

  const filtered = await rtcdp(['activations', 'list', '--type', 'segment.exited', '--output', 'json', ...server]);
  t.same(JSON.parse(filtered.stdout).activations ?? [], [], 'no exits');
});

t.test('activation commands - tail starts after the newest activation', async (t) => {
  const { dir, server } = await startWithSegments(t);
  const before = path.join(dir, 'before.ndjson');
  writeFileSync(before, `${orders('ada', [60, 50], 'a')}\n`);
  t.equal((await rtcdp(['send', before, ...server])).code, 0);
  // An activation is visible once its profile is persisted, a moment after the send returns.
  await waitForActivations(server, 1);

  const tail = spawn(process.execPath, [RTCDP_BIN, 'activations', 'tail', '--count', '1', '--output', 'json', ...server], { stdio: ['ignore', 'pipe', 'pipe'] });
  let tailOutput = '';
  let tailErrors = '';
  tail.stdout.on('data', (chunk: Buffer) => (tailOutput += chunk.toString()));
  const following = new Promise<void>((resolve) => {
    tail.stderr.on('data', (chunk: Buffer) => {
      tailErrors += chunk.toString();
      if (tailErrors.includes('\n')) resolve();
    });
  });
  const tailExit = new Promise<number | null>((resolve) => tail.on('exit', resolve));
  t.teardown(() => tail.kill('SIGKILL'));

  await following;
  t.match(tailErrors, /^following the activations after sequence 1; stop with Ctrl-C\n/);
  const after = path.join(dir, 'after.ndjson');
  writeFileSync(after, `${orders('bob', [90, 20], 'b')}\n`);
  t.equal((await rtcdp(['send', after, ...server])).code, 0);

  t.equal(await tailExit, 0, `tail stops after --count activations; stderr: ${tailErrors}`);
  const streamed = tailOutput.trim().split('\n').map((line) => JSON.parse(line) as { sequence: string | number; profileId: string });
  t.same(
    streamed.map((activation) => [Number(activation.sequence), activation.profileId]),
    [[2, 'user:bob']],
    'only the entry stored after the tail started',
  );
});

t.test('activation commands - bad options name the option and the rule', async (t) => {
  const badType = await rtcdp(['activations', 'list', '--type', 'segment.joined']);
  t.equal(badType.code, 2);
  t.match(badType.stderr, /invalid --type "segment\.joined": expected one of segment\.entered, segment\.exited/);

  const badLimit = await rtcdp(['activations', 'list', '--limit', '5000']);
  t.equal(badLimit.code, 2);
  t.match(badLimit.stderr, /invalid --limit "5000": expected an integer from 1 to 1000/);
});
