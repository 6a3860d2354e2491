import t from 'tap';
import { spawn, execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import path from 'node:path';
import { RTCDP_BIN } from '../helpers/node-process.js';
import { connect } from '@nats-io/transport-node';
import { CLUSTER_BUCKET } from '../../cluster/cluster-node.js';
import { NatsKvStore } from '../../cluster/kv/nats-kv-store.js';
import { encodeJsonValue } from '../../cluster/kv-json.js';
import { memberKey, type MemberInfo } from '../../cluster/membership.js';
import { natsServerBinary, startNatsServer } from '../helpers/nats-server.js';

const run = promisify(execFile);
const SAMPLE = path.join(path.dirname(RTCDP_BIN), '..', 'data', 'segment-sample.ndjson');
const DEFINITIONS = path.join(path.dirname(SAMPLE), 'definitions');

/** Returns a port that was free a moment ago. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Polls `done` every 100 ms; throws naming `what` after 20 s. */
async function waitFor(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function rtcdp(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [RTCDP_BIN, ...args], { timeout: 90_000 });
}

t.test('cluster commands - up, status, shards, drain and stop', { timeout: 180_000 }, async (t) => {
  const dataDir = t.testdir();
  const natsPort = await freePort();
  const grpcPort = await freePort();
  const natsUrl = `nats://127.0.0.1:${natsPort}`;

  const up = spawn(process.execPath, [RTCDP_BIN, 'cluster', 'up', '--nodes', '2', '--shards', '4', '--data', dataDir, '--nats-port', String(natsPort), '--grpc-port', String(grpcPort), '--nats-server', natsServerBinary(), '--definitions', DEFINITIONS, '--load', SAMPLE, '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  up.stdout.on('data', (chunk) => (output += chunk));
  up.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => up.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (up.exitCode === null) up.kill('SIGKILL');
  });

  const deadline = Date.now() + 90_000;
  while (!output.includes('Press Ctrl-C to stop.')) {
    if (Date.now() > deadline || up.exitCode !== null) throw new Error(`cluster up did not become ready: ${output}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  t.match(output, /shards running: 4 of 4, assigned to 2 of 2 nodes/, 'reports every shard running on its assigned node');
  t.match(output, /accepted 11, duplicates 0, rejected 1/, 'loads the sample file, whose one invalid event is rejected');

  const status = JSON.parse((await rtcdp(['cluster', 'status', '--nats', natsUrl, '--output', 'json'])).stdout);
  t.same(status.members.map((member: { nodeId: string }) => member.nodeId), ['n1', 'n2'], 'status lists both nodes');
  t.equal(status.shards, 4);
  t.equal(status.members.reduce((sum: number, member: { status: { hosted: unknown[] } }) => sum + member.status.hosted.length, 0), 4, 'the nodes run 4 shards between them');

  const second = await rtcdp(['cluster', 'up', '--nodes', '1', '--data', path.join(dataDir, 'second'), '--nats-port', String(natsPort), '--nats-server', natsServerBinary()]).catch((error: { code: number; stderr: string }) => error);
  t.equal((second as { code?: number }).code, 2, 'a second cluster on the same NATS port is a usage error');
  t.match(second.stderr, `port ${natsPort} on 127.0.0.1 is already in use, so nats-server cannot listen on it`, 'and names the port');

  const table = (await rtcdp(['cluster', 'status', '--nats', natsUrl])).stdout;
  t.match(table, /NODE\s+GRPC\s+STATE\s+SHARDS/, 'status prints a members table');

  const shards = JSON.parse((await rtcdp(['cluster', 'shards', '--nats', natsUrl, '--output', 'json'])).stdout);
  t.equal(shards.length, 4);
  t.ok(shards.every((shard: { leaseHolder: string | null; assignedTo: string }) => shard.leaseHolder === shard.assignedTo), 'every lease is held by the assigned node');

  const upApplied = /definitions: (\d+) applied through 127\.0\.0\.1:\d+ \((\d+) new or changed\)/.exec(output);
  t.ok(upApplied, 'cluster up applies --definitions before it loads the sample');
  const count = Number(upApplied?.[1]);
  t.ok(count > 0 && upApplied?.[2] === upApplied?.[1], `every one of the ${count} definitions is new`);
  t.ok(output.indexOf('definitions:') < output.indexOf('loading '), 'definitions come before the load');

  const applied = await rtcdp(['apply', '--server', `127.0.0.1:${grpcPort}`, '-f', DEFINITIONS]);
  t.match(applied.stdout, `applied: ${count} definitions (${count} unchanged)`, 'an apply through the first node finds them stored');
  const listed = JSON.parse((await rtcdp(['definitions', 'get', '--server', `127.0.0.1:${grpcPort + 1}`, '--output', 'json'])).stdout) as unknown[];
  t.equal(listed.length, count, 'the second node lists every applied definition');

  const drain = await rtcdp(['cluster', 'drain', 'n2', '--nats', natsUrl]);
  t.match(drain.stdout, /node n2 has left the cluster/);
  await waitFor(() => /node n2 exited \(code 0\), so 127\.0\.0\.1:\d+ no longer answers/.test(output), 'cluster up to report that n2 exited');
  const after = JSON.parse((await rtcdp(['cluster', 'status', '--nats', natsUrl, '--output', 'json'])).stdout);
  t.same(after.members.map((member: { nodeId: string }) => member.nodeId), ['n1'], 'n2 is gone');
  t.equal(after.members[0].status.hosted.length, 4, 'n1 runs every shard');

  // n2 stored the history of the profiles on its shards, and took it with it when it left.
  const histories = await Promise.all(['cust-1001', 'cust-1002'].map((userId) => rtcdp(['profile', 'events', '--server', `127.0.0.1:${grpcPort}`, '--user-id', userId])));
  const lost = histories.filter((history) => history.stdout.startsWith('no events'));
  t.ok(lost.length > 0, 'a profile of the drained node lists no events');
  for (const history of lost) t.match(history.stderr, "warning: node n2 owned this profile's shard and is no longer a member of the cluster, so this page is missing the events that only it stored. A node that rejoins with its data directory serves them again", 'and the command names the node that took them');

  const unknown = await rtcdp(['cluster', 'drain', 'nope', '--nats', natsUrl, '--timeout-ms', '1000']).catch((error: { code: number; stderr: string }) => error);
  t.equal((unknown as { code?: number }).code, 2, 'draining an unknown node is a usage error');
  t.match(unknown.stderr, 'node nope is not a member of the cluster; its members are n1', 'and names the members');

  up.kill('SIGINT');
  t.equal(await exited, 0, 'cluster up exits with 0 after SIGINT');
  t.match(output, /stopped n1[\s\S]*stopped nats-server/, 'stops the node, then NATS');

  const again = await rtcdp(['cluster', 'up', '--data', dataDir, '--nats-port', String(natsPort), '--load', SAMPLE]).catch((error: { code: number; stderr: string }) => error);
  t.equal((again as { code?: number }).code, 2, 'loading into an existing cluster is a usage error');
  t.match(again.stderr, "already contains a cluster's data, so --load would send its events again", 'and says why');
});

t.test('cluster commands - status without a cluster fails clearly', async (t) => {
  const failed = await rtcdp(['cluster', 'status', '--nats', `nats://127.0.0.1:${await freePort()}`]).catch((error: { code: number; stderr: string }) => error);
  t.equal((failed as { code?: number }).code, 1, 'exits with 1');
  t.match(failed.stderr, /cannot connect to NATS/);
  t.match(failed.stderr, /Check that nats-server runs there, or pass the cluster's servers with --nats nats:\/\/HOST:PORT/, 'and says what to do');
});

t.test('cluster up - rejects ports past 65535', async (t) => {
  const failed = await rtcdp(['cluster', 'up', '--nodes', '2', '--data', t.testdir(), '--nats-port', String(await freePort()), '--grpc-port', '65535']).catch((error: { code: number; stderr: string }) => error);
  t.equal((failed as { code?: number }).code, 2, 'exits with 2');
  t.match(failed.stderr, 'invalid --grpc-port 65535: 2 nodes need ports 65535 to 65536', 'names the option and the ports');
});

t.test('cluster up - rejects a NATS port among node ports', { timeout: 60_000 }, async (t) => {
  const grpcPort = await freePort();
  const failed = await rtcdp(['cluster', 'up', '--nodes', '3', '--data', t.testdir(), '--nats-port', String(grpcPort + 1), '--grpc-port', String(grpcPort)]).catch((error: { code: number; stderr: string }) => error);
  t.equal((failed as { code?: number }).code, 2, 'exits with 2');
  t.match(failed.stderr, `invalid --nats-port ${grpcPort + 1}`, 'names the option');
});

t.test('cluster commands - forget removes a crashed node', { timeout: 60_000 }, async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const connection = await connect({ servers: server.url });
  t.teardown(() => connection.close());
  const kv = await NatsKvStore.open(connection, { bucket: CLUSTER_BUCKET });
  const member: MemberInfo = { nodeId: 'crashed', incarnation: 'old', grpcAddress: '127.0.0.1:1', startedAt: '2026-01-01T00:00:00.000Z', heartbeat: 3 };
  await kv.put(memberKey('crashed'), encodeJsonValue(member));

  const status = await rtcdp(['cluster', 'status', '--nats', server.url, '--timeout-ms', '500']);
  t.match(status.stdout, /crashed +127\.0\.0\.1:1 +no report/, 'status lists the crashed node without a report');
  t.match(status.stdout, 'no report from crashed: a node that crashed and will not run again stays listed until rtcdp cluster forget NODE removes it', 'and says how to remove it');

  const forgot = await rtcdp(['cluster', 'forget', 'crashed', '--nats', server.url, '--observe-ms', '1000', '--timeout-ms', '500']);
  t.match(forgot.stdout, /forgot node crashed \(started 2026-01-01T00:00:00.000Z, 3 heartbeats\)/, 'reports the node it removed');
  t.match(forgot.stderr, /checking for 1000 ms that node crashed writes no heartbeat/, 'says what it waits for');
  t.equal(await kv.get(memberKey('crashed')), null, 'the member key is gone');

  const again = await rtcdp(['cluster', 'forget', 'crashed', '--nats', server.url, '--observe-ms', '1000']).catch((error: { code: number; stderr: string }) => error);
  t.equal((again as { code?: number }).code, 2, 'a node not in the member list is a usage error');
  t.match(again.stderr, /node crashed is not in the member list; its members are none/);
});
