import t from 'tap';
import { RtcdpNode } from '../../cluster/node.js';
import type { RawEvent } from '../../profiles/event.js';

const track = (userId: string, messageId: string, extra: RawEvent = {}): RawEvent => ({ type: 'track', event: 'Viewed', userId, messageId, ...extra });

t.test('node - restart replays events after the checkpoint', async (t) => {
  const dataDir = t.testdir();
  // Snapshots and checkpoints so rare that a forced stop leaves everything in the log only.
  const rare = { checkpointIntervalMs: 3_600_000, actors: { snapshotEveryMessages: 1_000_000, snapshotIntervalMs: 3_600_000 } };
  const first = await RtcdpNode.start({ dataDir, ...rare });
  await first.ingest('w', Array.from({ length: 50 }, (_, i) => track('u1', `m${i}`)));
  t.equal((await first.getProfile('w', { type: 'user_id', value: 'u1' })).eventCount, 50);
  await first.abort();

  const second = await RtcdpNode.start({ dataDir });
  t.teardown(() => second.drain());
  t.equal((await second.getProfile('w', { type: 'user_id', value: 'u1' })).eventCount, 50, 'replayed from the log');
  await second.ingest('w', [track('u1', 'm0'), track('u1', 'new')]);
  t.equal((await second.getProfile('w', { type: 'user_id', value: 'u1' })).eventCount, 51, 'duplicates are not applied');
});

t.test('node - drain persists profiles and checkpoints', async (t) => {
  const dataDir = t.testdir();
  const first = await RtcdpNode.start({ dataDir });
  await first.ingest('w', [track('u1', 'a'), track('u2', 'b')]);
  await first.drain();
  t.equal(first.state, 'stopped');

  const second = await RtcdpNode.start({ dataDir });
  t.teardown(() => second.drain());
  t.equal(second.stats().inFlightEvents, 0, 'nothing to replay after a drain');
  t.equal((await second.getProfile('w', { type: 'user_id', value: 'u2' })).eventCount, 1);
});

t.test('node - rejects a changed shard count', async (t) => {
  const dataDir = t.testdir();
  const first = await RtcdpNode.start({ dataDir, shards: 8 });
  await first.drain();

  await t.rejects(RtcdpNode.start({ dataDir, shards: 4 }), {
    code: 'DATA_DIRECTORY_MISMATCH',
    message: `data directory ${dataDir} was created with 8 shards, but shards is 4, and the shard count cannot change. Use shards 8 (--shards 8 on the command line) with this directory, or a new data directory for 4 shards`,
  });
});

t.test('node - pruned messageIds are accepted again but applied once', async (t) => {
  const node = await RtcdpNode.start({
    dataDir: t.testdir(),
    dedupWindowMs: 1,
    checkpointIntervalMs: 10,
    pruneIntervalMs: 3_600_000,
    actors: { snapshotIntervalMs: 10 },
  });
  t.teardown(() => node.drain());
  await node.ingest('w', [track('u1', 'old')]);
  await node.getProfile('w', { type: 'user_id', value: 'u1' });

  let pruned = 0;
  for (let attempt = 0; attempt < 100 && pruned === 0; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    pruned = await node.pruneLog();
  }
  t.equal(pruned, 1, 'the record past the window and the checkpoint is pruned');

  const [result] = await node.ingest('w', [track('u1', 'old')]);
  t.equal(result.status, 'accepted', 'the log no longer knows the messageId');
  t.equal((await node.getProfile('w', { type: 'user_id', value: 'u1' })).eventCount, 1, 'the profile still applies it once');
});

t.test('node - invalid options name the rule', async (t) => {
  await t.rejects(RtcdpNode.start({ dataDir: '' }), new RangeError('dataDir must be a non-empty path, received ""'));
  await t.rejects(RtcdpNode.start({ dataDir: t.testdir(), maxInFlightEvents: 0 }), new RangeError('maxInFlightEvents must be an integer from 1 to 9007199254740991, received 0'));
  await t.rejects(RtcdpNode.start({ dataDir: t.testdir(), shards: 70_000 }), new RangeError('shards must be an integer from 1 to 65536, received 70000'));
});

t.test('node - workspace names are checked', async (t) => {
  const node = await RtcdpNode.start({ dataDir: t.testdir() });
  t.teardown(() => node.drain());

  await t.rejects(node.ingest('Bad/Name', [track('u', 'm')]), { code: 'INVALID_ARGUMENT' });
});
