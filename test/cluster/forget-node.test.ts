import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { CLUSTER_BUCKET, ClusterNode } from '../../cluster/cluster-node.js';
import { forgetNode } from '../../cluster/forget-node.js';
import { NatsKvStore } from '../../cluster/kv/nats-kv-store.js';
import { encodeJsonValue } from '../../cluster/kv-json.js';
import { memberKey, type MemberInfo } from '../../cluster/membership.js';
import { createLogger } from '../../common/logger.js';
import { startNatsServer } from '../helpers/nats-server.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });

/** Encodes the member key that a node which crashed for good leaves behind: written once, never updated. */
function ghostMember(heartbeat: number): Uint8Array {
  const member: MemberInfo = { nodeId: 'ghost', incarnation: 'crashed', grpcAddress: '127.0.0.1:1', startedAt: '2026-01-01T00:00:00.000Z', heartbeat };
  return encodeJsonValue(member);
}

async function waitUntil(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}

t.test('forget node - a crashed node leaves the member list, a running one stays', { timeout: 120_000 }, async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const node = await ClusterNode.start({
    servers: [server.url],
    nodeId: 'a',
    dataDir: path.join(t.testdir(), 'a'),
    shards: 2,
    heartbeatIntervalMs: 300,
    memberTimeoutMs: 1_500,
    logger,
  });
  t.teardown(() => node.abort());
  await node.ingest('w', [{ type: 'track', userId: 'u1', messageId: 'm1', event: 'Viewed' }]);

  const connection = await connect({ servers: server.url });
  t.teardown(() => connection.close());
  const kv = await NatsKvStore.open(connection, { bucket: CLUSTER_BUCKET });
  await kv.put(memberKey('ghost'), ghostMember(7));
  const unavailable = async () => (await node.listProfileEvents('w', { type: 'user_id', value: 'u1' })).unavailableNodes;
  await waitUntil(async () => (await unavailable()).includes('ghost'), 'node a counts the ghost as a member that does not answer');

  const options = { observeMs: 1_000, statusTimeoutMs: 2_000 };
  await t.rejects(forgetNode(connection, kv, 'a', options), { code: 'NODE_RUNNING', message: /node a is running: it responded to a status request\. Stop it with rtcdp cluster drain a instead/ });
  await t.rejects(forgetNode(connection, kv, 'nobody', options), { code: 'INVALID_ARGUMENT', message: /node nobody is not in the member list; its members are a, ghost/ });

  const observed = forgetNode(connection, kv, 'ghost', { ...options, observeMs: 2_500 });
  await sleep(500);
  await kv.put(memberKey('ghost'), ghostMember(8));
  await t.rejects(observed, { code: 'NODE_RUNNING', message: /node ghost is running: it wrote a heartbeat within the last 2500 ms/ });
  t.not(await kv.get(memberKey('ghost')), null, 'a node that wrote a heartbeat keeps its key');

  const forgotten = await forgetNode(connection, kv, 'ghost', options);
  t.equal(forgotten.heartbeat, 8, 'returns the last member record');
  t.equal(await kv.get(memberKey('ghost')), null, 'the member key is deleted');
  await waitUntil(async () => (await unavailable()).length === 0, 'node a stops waiting for the ghost');
  t.not(await kv.get(memberKey('a')), null, 'the running node keeps its key');
});
