/**
 * Webhook delivery in cluster mode: two cluster processes on a real nats-server, both
 * configured with the same destination, POST to a real HTTP server on loopback. One node
 * at a time holds the destination's lease and delivers, and the other takes over after the
 * shared cursor when the holder stops.
 */
import path from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { startClusterProcess, type ClusterProcess } from '../../api/cluster.js';
import { callUnary, createWebhookClient, writeKeyMetadata } from '../../cli/client.js';
import { ConfigError } from '../../common/errors.js';
import { createLogger } from '../../common/logger.js';
import { resolveWebhookLeaseTimings } from '../../cluster/webhook-leases.js';
import type { WebhookDestination } from '../../decisions/activation-delivery/webhook-config.js';
import type { WebhookBody } from '../../decisions/activation-delivery/webhook-payload.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import type { WebhookDestinationStatus } from '../../proto/gen/rtcdp/v1/webhooks.js';
import type { RawEvent } from '../../profiles/event.js';
import { waitFor } from '../helpers/cluster-nodes.js';
import { startNatsServer } from '../helpers/nats-server.js';
import { runCli } from '../helpers/node-process.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });
const WORKSPACE = 'default';
const SHARDS = 4;
const SEGMENT = `apiVersion: rtcdp/v1
kind: Segment
metadata: { name: pro }
spec: { condition: 'has(traits.plan) && traits.plan == "pro"' }
`;

/**
 * Starts an HTTP server on 127.0.0.1 that counts how often each activation id arrived. It
 * responds 204, or 400 without counting while `reject` returns true for a batch's profile ids.
 */
async function startReceiver(t: Test, reject: (profileIds: string[]) => boolean = () => false) {
  const received = new Map<string, number>();
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as WebhookBody;
      if (reject(body.activations.map((activation) => activation.profileId))) {
        response.writeHead(400).end('rejected by the test receiver');
        return;
      }
      for (const activation of body.activations) received.set(activation.id, (received.get(activation.id) ?? 0) + 1);
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`), received };
}

function destination(url: URL, overrides: Partial<WebhookDestination> = {}): WebhookDestination {
  return { name: 'crm', workspace: WORKSPACE, url, secret: 'webhook-test-secret-0001', types: [], maxAttempts: 5, timeoutMs: 5_000, maxBatchActivations: 10, maxRequestsPerSecond: 1_000, ...overrides };
}

/** Starts one cluster process per node id, with short shard and webhook lease timings. */
async function startProcesses(t: Test, nodeIds: string[], webhooks: WebhookDestination[]): Promise<ClusterProcess[]> {
  const server = await startNatsServer();
  t.teardown(() => server.stop());

  const processes: ClusterProcess[] = [];
  t.teardown(() => Promise.all(processes.map((started) => started.stop())));
  const root = t.testdir();
  for (const nodeId of nodeIds) {
    processes.push(
      await startClusterProcess({
        servers: [server.url],
        nodeId,
        dataDir: path.join(root, nodeId),
        host: '127.0.0.1',
        port: 0,
        devMode: true,
        logger,
        shards: SHARDS,
        leaseTtlMs: 3_000,
        leaseRenewIntervalMs: 500,
        heartbeatIntervalMs: 300,
        memberTimeoutMs: 1_500,
        rebalanceStableForMs: 500,
        checkpointIntervalMs: 200,
        queryTimeoutMs: 20_000,
        drainTimeoutMs: 10_000,
        webhooks,
        webhookLeaseTtlMs: 1_500,
        webhookLeaseRenewIntervalMs: 250,
      }),
    );
  }
  await waitFor(
    async () => processes.reduce((sum, started) => sum + started.node.status().hosted.length, 0),
    (hosted) => hosted === SHARDS,
    'every shard hosted',
  );
  return processes;
}

/** Ingests the events through `node`, again while any is rejected because its shard is moving. */
async function ingestAll(node: ClusterProcess['node'], events: RawEvent[]): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      const results = await node.ingest(WORKSPACE, events);
      if (results.every((result) => result.status === 'accepted' || result.status === 'duplicate')) return;
    } catch {
      // A shard without an owner yet; the next attempt resends the same messageIds.
    }
    await sleep(200);
  }
  throw new Error('events were not accepted after 100 attempts');
}

async function listDestinations(address: string): Promise<WebhookDestinationStatus[]> {
  const client = createWebhookClient(address);
  try {
    return (await callUnary(client.listWebhookDestinations.bind(client), {}, writeKeyMetadata(undefined))).destinations;
  } finally {
    client.close();
  }
}

async function listDeadLetterSequences(address: string): Promise<number[]> {
  const client = createWebhookClient(address);
  try {
    const response = await callUnary(client.listWebhookDeadLetters.bind(client), { destination: 'crm', limit: 0, afterSequence: 0 }, writeKeyMetadata(undefined));
    return response.deadLetters.map((deadLetter) => deadLetter.firstSequence);
  } finally {
    client.close();
  }
}

async function replayAll(address: string): Promise<number> {
  const client = createWebhookClient(address);
  try {
    return (await callUnary(client.replayWebhookDeadLetters.bind(client), { destination: 'crm', all: true, firstSequences: [] }, writeKeyMetadata(undefined))).queued;
  } finally {
    client.close();
  }
}

async function lastActivationSequence(node: ClusterProcess['node']): Promise<number> {
  return (await node.activations.list(WORKSPACE, { limit: 1 })).visibleSequence;
}

const identify = (userId: string): RawEvent => ({ type: 'identify', userId, messageId: `m-${userId}`, traits: { plan: 'pro' } });

t.test('webhook lease timings - defaults and rules', async (t) => {
  t.match(resolveWebhookLeaseTimings({}), { ttlMs: 10_000, renewIntervalMs: 2_000, stallMarginMs: 1_500, takeoverMarginMs: 1_000 }, 'defaults');
  t.throws(() => resolveWebhookLeaseTimings({ webhookLeaseTtlMs: 0 }), new ConfigError('webhookLeaseTtlMs must be an integer number of milliseconds from 1 to 2147483647, received 0'));
  t.throws(
    () => resolveWebhookLeaseTimings({ webhookLeaseTtlMs: 3_000, webhookLeaseRenewIntervalMs: 1_001 }),
    new ConfigError('webhookLeaseRenewIntervalMs must be at most (webhookLeaseTtlMs - 1000 ms stall margin) / 2 (1000 ms), so that one failed renewal does not end the lease, received 1001'),
  );
});

t.test('webhooks in cluster mode - one holder delivers, the other takes over', { timeout: 120_000 }, async (t) => {
  const receiver = await startReceiver(t);
  const processes = await startProcesses(t, ['a', 'b'], [destination(receiver.url)]);
  await new DefinitionRegistry(processes[0].node.definitionStore).apply(WORKSPACE, [{ name: 'segments.yaml', content: SEGMENT }]);

  const firstUsers = Array.from({ length: 30 }, (_, i) => `u${i}`);
  await ingestAll(processes[0].node, firstUsers.map(identify));
  await waitFor(async () => receiver.received.size, (size) => size >= firstUsers.length, 'an activation per user', 30_000);
  const lastFirst = await lastActivationSequence(processes[0].node);
  t.equal(lastFirst, firstUsers.length, 'one activation per user in the stream');
  const listed = await waitFor(
    () => Promise.all(processes.map((started) => listDestinations(started.address))),
    (both) => both.every((destinations) => destinations[0]?.cursor === lastFirst),
    'the cursor at the last activation on both nodes',
  );
  // A second copy would come from the other node's loop, which runs only while it holds the lease.
  await sleep(1_000);

  t.equal(receiver.received.size, firstUsers.length, 'every activation id arrived');
  t.same([...receiver.received.values()].filter((count) => count !== 1), [], 'each activation id arrived exactly once');
  const [onA, onB] = listed.map((destinations) => destinations[0]);
  t.ok(onA.deliveringNode === 'a' || onA.deliveringNode === 'b', `a node delivers, named ${onA.deliveringNode}`);
  t.equal(onB.deliveringNode, onA.deliveringNode, 'both nodes name the same lease holder');
  t.equal(onB.cursor, onA.cursor, 'both nodes show the same cursor');
  const holder = processes.find((started) => started.node.nodeId === onA.deliveringNode) as ClusterProcess;
  const other = processes.find((started) => started !== holder) as ClusterProcess;
  t.equal(holder.webhooks?.stats('crm').deliveredActivations, firstUsers.length, 'the holder counts every activation it delivered');
  t.equal(other.webhooks?.stats('crm').deliveredActivations, 0, 'the other node delivered nothing');

  const table = await runCli(['webhooks', 'list', '--server', other.address]);
  t.equal(table.code, 0, `webhooks list exits 0; stderr: ${table.stderr}`);
  t.match(table.stdout, new RegExp(`^NAME\\s+URL\\s+TYPES\\s+CURSOR\\s+DELIVERED BY\\s+DELIVERED\\s+`), 'a cluster node adds the DELIVERED BY column');
  t.match(table.stdout, new RegExp(`\\ncrm\\s+\\S+\\s+all\\s+${lastFirst}\\s+${holder.node.nodeId}\\s+0\\s+0\\s+0\\s+0\\s+0\\s+0\\n$`), 'the other node shows the shared cursor, the holder and its own zero counters');

  await holder.stop();
  const laterUsers = Array.from({ length: 20 }, (_, i) => `v${i}`);
  await ingestAll(other.node, laterUsers.map(identify));
  const expected = [...firstUsers, ...laterUsers].length;
  await waitFor(async () => receiver.received.size, (size) => size >= expected, 'the activations after the takeover', 30_000);
  const last = await lastActivationSequence(other.node);
  t.equal(last, expected, 'one activation per user in the stream');
  const [afterTakeover] = await waitFor(() => listDestinations(other.address), (destinations) => destinations[0]?.cursor === last, 'the cursor at the last activation');

  t.equal(receiver.received.size, expected, 'every activation id arrived at least once');
  t.equal(afterTakeover.deliveringNode, other.node.nodeId, 'the remaining node holds the lease');
  t.equal(other.webhooks?.stats('crm').deliveredActivations, laterUsers.length, 'the remaining node delivered what followed the takeover, and nothing before it');
});

t.test('webhooks in cluster mode - the holder performs a replay queued elsewhere', { timeout: 120_000 }, async (t) => {
  let rejecting = true;
  const receiver = await startReceiver(t, (profileIds) => rejecting && profileIds.includes('user:bad'));
  const processes = await startProcesses(t, ['a', 'b'], [destination(receiver.url, { maxBatchActivations: 1 })]);
  await new DefinitionRegistry(processes[0].node.definitionStore).apply(WORKSPACE, [{ name: 'segments.yaml', content: SEGMENT }]);

  await ingestAll(processes[0].node, [identify('bad')]);
  const [holderName] = await waitFor(
    () => Promise.all(processes.map(async (started) => (await listDestinations(started.address))[0]?.deliveringNode ?? '')),
    (names) => names[0] !== '' && names[0] === names[1],
    'a lease holder that both nodes name',
  );
  const holder = processes.find((started) => started.node.nodeId === holderName) as ClusterProcess;
  const other = processes.find((started) => started !== holder) as ClusterProcess;
  await waitFor(() => listDeadLetterSequences(other.address), (sequences) => sequences.length === 1, 'the dead letter listed on the other node');
  t.same(await listDeadLetterSequences(other.address), [1], 'the other node lists the dead letter that the holder stored');

  rejecting = false;
  await ingestAll(processes[0].node, [identify('good')]);
  await waitFor(async () => receiver.received.size, (size) => size === 1, 'the later activation delivered');
  t.equal(await replayAll(other.address), 1, 'the node without the lease queues the replay');

  await waitFor(async () => receiver.received.size, (size) => size === 2, 'the replayed activation', 30_000);
  t.same([...receiver.received.values()], [1, 1], 'each activation id arrived once');
  await waitFor(() => listDeadLetterSequences(holder.address), (sequences) => sequences.length === 0, 'the dead letter deleted');
  t.equal(holder.webhooks?.stats('crm').replayedBatches, 1, 'the holder replayed it');
  t.equal(other.webhooks?.stats('crm').replayedBatches, 0, 'the node that queued it sent nothing');
});
