/**
 * A profile whose snapshot is larger than NATS's max_payload cannot be persisted in the
 * snapshot bucket. A drain still ends: the handoff gives up persisting after its grace,
 * and the next owner replays the log. (test/cluster/shard-rpc.test.ts covers replies over
 * max_payload, which a query to another node for such a profile gets.)
 */
import path from 'node:path';
import t from 'tap';
import { ClusterNode } from '../../cluster/cluster-node.js';
import { createLogger } from '../../common/logger.js';
import type { RawEvent } from '../../profiles/event.js';
import { startNatsServer } from '../helpers/nats-server.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });

/** Returns an identify with three 8,000-character traits (about 24 KB), under the event limit and max_payload; four of them make a profile over it. */
function bigIdentify(index: number): RawEvent {
  const traits = Object.fromEntries([0, 1, 2].map((slot) => [`note_${index}_${slot}`, 'x'.repeat(8_000)]));
  return { type: 'identify', userId: 'big', messageId: `big-${index}`, traits };
}

t.test('oversized snapshot - a drain still ends', { timeout: 120_000 }, async (t) => {
  const server = await startNatsServer({ maxPayloadBytes: 65_536 });
  t.teardown(() => server.stop());
  const node = await ClusterNode.start({
    servers: [server.url],
    nodeId: 'solo',
    dataDir: path.join(t.testdir(), 'solo'),
    shards: 2,
    leaseTtlMs: 3_000,
    leaseRenewIntervalMs: 500,
    heartbeatIntervalMs: 300,
    memberTimeoutMs: 1_500,
    handoffTimeoutMs: 2_000,
    logger,
  });
  t.teardown(() => node.abort());
  while (node.status().hosted.length < 2) await new Promise((resolve) => setTimeout(resolve, 50));

  const results = await node.ingest('w', [0, 1, 2, 3].map(bigIdentify));
  t.ok(results.every((result) => result.status === 'accepted'), 'each event fits max_payload and is stored');
  await node.ingest('w', [{ type: 'track', userId: 'small', messageId: 'small-1', event: 'Viewed' }]);

  const small = await node.getProfile('w', { type: 'user_id', value: 'small' });
  t.equal(small.eventCount, 1, 'a small profile is served');
  const big = await node.getProfile('w', { type: 'user_id', value: 'big' });
  t.equal(big.eventCount, 4, 'the owner serves the big profile itself');

  const startedMs = Date.now();
  await node.drain({ timeoutMs: 3_000 });
  const elapsedMs = Date.now() - startedMs;
  t.equal(node.state, 'stopped', 'the drain ends');
  t.ok(elapsedMs < 30_000, `within the handoff timeout and the persist grace (${elapsedMs} ms)`);
});
