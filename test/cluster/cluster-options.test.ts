import t from 'tap';
import { resolveClusterNodeOptions } from '../../cluster/cluster-options.js';
import { resolveNodeOptions } from '../../cluster/node-options.js';

const required = { servers: ['nats://127.0.0.1:4222'], dataDir: '/tmp/rtcdp-options-test', nodeId: 'a' };

t.test('options - profiles remember more messageIds in cluster mode', async (t) => {
  const cluster = resolveClusterNodeOptions(required).profileLimits;
  const embedded = resolveNodeOptions({ dataDir: required.dataDir }).profileLimits;

  t.equal(cluster.recentMessageIds, 1_000, 'a cluster profile keeps 1,000 ids');
  t.equal(cluster.messageIdRetentionMs, 7 * 24 * 3_600_000, 'for 7 days');
  t.equal(embedded.recentMessageIds, 32, 'an embedded profile keeps 32, because its log deduplicates');
  t.equal(embedded.messageIdRetentionMs, 0, 'whatever their age');
});

t.test('options - profile limits are validated', async (t) => {
  t.throws(() => resolveClusterNodeOptions({ ...required, profileLimits: { messageIdRetentionMs: -1 } }), /profileLimits\.messageIdRetentionMs must be 0 \(no time limit\) or a positive integer of ms, received -1/);
  t.throws(() => resolveNodeOptions({ dataDir: required.dataDir, profileLimits: { recentMessageIds: 0 } }), /profileLimits\.recentMessageIds must be an integer from 1/);
  t.throws(() => resolveClusterNodeOptions({ ...required, profileLimits: { recentMessageIdz: 5 } as object }), /unknown profile limit "recentMessageIdz", expected one of recentEvents, recentMessageIds, messageIdRetentionMs/);
  t.equal(resolveClusterNodeOptions({ ...required, profileLimits: { recentMessageIds: undefined } }).profileLimits.recentMessageIds, 1_000, 'an undefined limit takes the default');
  t.equal(resolveClusterNodeOptions({ ...required, profileLimits: { messageIdRetentionMs: 0 } }).profileLimits.messageIdRetentionMs, 0, '0 turns the time limit off');
  t.equal(resolveClusterNodeOptions({ ...required, profileLimits: { recentMessageIds: 5 } }).profileLimits.messageIdRetentionMs, 7 * 24 * 3_600_000, 'a partial setting keeps the other cluster defaults');
});
