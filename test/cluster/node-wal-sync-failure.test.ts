/**
 * A node whose WAL sync fails after RocksDB wrote the batch. The events are in the log, so
 * the node applies them without a restart, and a client retry finds them as duplicates.
 */
import t from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import type { RawEvent } from '../../profiles/event.js';

const track = (userId: string, messageId: string): RawEvent => ({ type: 'track', event: 'Viewed', userId, messageId });

t.test('node - applies events whose WAL sync failed', async (t) => {
  // No checkpoint or snapshot writes, so the ingest below runs the only syncs.
  const node = await RtcdpNode.start({ dataDir: t.testdir(), checkpointIntervalMs: 3_600_000, actors: { snapshotEveryMessages: 1_000_000, snapshotIntervalMs: 3_600_000 } });
  t.teardown(() => node.drain());
  const user = { type: 'user_id' as const, value: 'u1' };
  // The first event links u1 in the identity graph, so the events below write only to the log.
  await node.ingest('w', [track('u1', 'm0')]);

  node.store.setWalSyncFault(() => new Error('EIO: i/o error, fdatasync'));
  await t.rejects(node.ingest('w', [track('u1', 'm1'), track('u1', 'm2')]), { code: 'EVENT_LOG_FAILED', written: 2 });
  node.store.setWalSyncFault(null);

  t.equal((await node.getProfile('w', user)).eventCount, 3, 'applied without a restart');
  t.equal(node.stats().inFlightEvents, 0, 'applied events released their in-flight slots once');

  const retried = await node.ingest('w', [track('u1', 'm1'), track('u1', 'm2'), track('u1', 'm3')]);
  t.same(retried.map((result) => result.status), ['duplicate', 'duplicate', 'accepted']);
  t.equal((await node.getProfile('w', user)).eventCount, 4, 'the profile holds each event once');
  t.same((await node.listProfileEvents('w', user)).events.map((event) => event.messageId), ['m3', 'm2', 'm1', 'm0']);
  t.equal(node.stats().inFlightEvents, 0);
});
