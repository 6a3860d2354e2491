/**
 * Identity resolution in cluster mode: two nodes on one nats-server share the identity
 * graph in a KV bucket. Events sent to different nodes at the same time that link the same
 * identifiers end in one profile, and merges move state between shards and nodes.
 */
import t from 'tap';
import type { ClusterNodeOptions } from '../../cluster/cluster-options.js';
import { createLogger } from '../../common/logger.js';
import type { RawEvent } from '../../profiles/event.js';
import type { Identifier } from '../../profiles/identifiers.js';
import { readModelFile } from '../../identity/matching/model-file.js';
import { startClusterNodes } from '../helpers/cluster-nodes.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });
const WORKSPACE = 'w';

const FAST: Partial<ClusterNodeOptions> & { shards: number } = {
  shards: 6,
  leaseTtlMs: 3_000,
  leaseRenewIntervalMs: 500,
  heartbeatIntervalMs: 300,
  memberTimeoutMs: 1_500,
  rebalanceStableForMs: 500,
  checkpointIntervalMs: 200,
  queryTimeoutMs: 20_000,
  actors: { snapshotIntervalMs: 50 },
  logger,
};

const anon = (value: string): Identifier => ({ type: 'anonymous_id', value });
const user = (value: string): Identifier => ({ type: 'user_id', value });

let messages = 0;
const page = (anonymousId: string, extra: RawEvent = {}): RawEvent => ({ type: 'page', name: 'Home', anonymousId, messageId: `m${++messages}`, ...extra });

t.test('identity cluster - merges across nodes, races converge, quarantine is shared', { timeout: 180_000 }, async (t) => {
  const nodes = await startClusterNodes(t, ['a', 'b'], FAST);

  t.test('identify on one node merges a visitor whose events went to the other', async (t) => {
    await nodes[0].ingest(WORKSPACE, [page('a1'), page('a1')]);
    await nodes[1].ingest(WORKSPACE, [{ type: 'track', event: 'Signed Up', userId: 'u1', messageId: 'signup-u1' }]);
    await nodes[1].ingest(WORKSPACE, [{ type: 'identify', userId: 'u1', anonymousId: 'a1', messageId: 'identify-u1', traits: { plan: 'pro' } }]);

    for (const node of nodes) {
      const profile = await node.getProfile(WORKSPACE, anon('a1'));
      t.equal(profile.profileId, 'user:u1', `node ${node.nodeId} finds the survivor by the anonymous id`);
      t.equal(profile.eventCount, 4, `node ${node.nodeId} sees both profiles' events`);
      t.same(profile.merges.map((merge) => merge.profileId), ['anon:a1']);
    }

    await nodes[0].ingest(WORKSPACE, [page('a1')]);
    t.equal((await nodes[1].getProfile(WORKSPACE, user('u1'))).eventCount, 5, 'a later event of the visitor reaches the survivor');
  });

  t.test('an unmerge through one node splits the profiles on every node', async (t) => {
    const result = await nodes[1].identityAdmin.unmerge(WORKSPACE, user('u1'), anon('a1'));
    t.match(result.plan, { survivor: 'user:u1', restored: 'anon:a1', profiles: ['anon:a1'] });

    for (const node of nodes) {
      const survivor = await node.getProfile(WORKSPACE, user('u1'));
      t.equal(survivor.eventCount, 2, `node ${node.nodeId}: the sign-up and the identify stay with the user`);
      t.same(survivor.merges, []);
      const restored = await node.getProfile(WORKSPACE, anon('a1'));
      t.equal(restored.profileId, 'anon:a1', `node ${node.nodeId} finds the restored profile by the anonymous id`);
      t.equal(restored.eventCount, 3, `node ${node.nodeId}: the visitor's three page views`);
    }

    // The owners publish activations with the next snapshot, shortly after the states change.
    const listUnmerged = async () => (await nodes[0].activations.list(WORKSPACE, { limit: 1_000 })).activations.filter((activation) => activation.type === 'profile.unmerged');
    let unmerged = await listUnmerged();
    for (let attempt = 0; attempt < 100 && unmerged.length < 2; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      unmerged = await listUnmerged();
    }
    t.same(unmerged.map((activation) => `${activation.profileId} ${activation.name}`).sort(), ['anon:a1 user:u1', 'user:u1 anon:a1'], 'each profile gets one profile.unmerged naming the other');

    // Node a cached the visitor's profile as merged into the user. The event may go there
    // first, and the user's actor forwards it to the restored profile.
    await nodes[0].ingest(WORKSPACE, [page('a1')]);
    t.equal((await nodes[1].getProfile(WORKSPACE, anon('a1'))).eventCount, 4, 'a later event of the visitor reaches the restored profile');
    t.equal((await nodes[1].getProfile(WORKSPACE, user('u1'))).eventCount, 2);
  });

  t.test('events sent to both nodes at once that link the same visitors converge', async (t) => {
    const visitors = Array.from({ length: 24 }, (_, i) => `race-${i}`);
    // Every event carries the same device id, so all visitors are one person; half the
    // events go through each node, all at the same time.
    await Promise.all(visitors.map((visitor, i) => nodes[i % 2].ingest(WORKSPACE, [page(visitor, { context: { device: { id: 'shared-device' } } })])));

    const profiles = new Set<string>();
    for (const [i, visitor] of visitors.entries()) profiles.add((await nodes[i % 2].getProfile(WORKSPACE, anon(visitor))).profileId);
    t.equal(profiles.size, 1, `every visitor reaches one profile (${[...profiles].join(', ')})`);
    const profile = await nodes[0].getProfile(WORKSPACE, { type: 'device_id', value: 'shared-device' });
    t.equal(profile.eventCount, visitors.length, 'holding every event once');
  });

  t.test('a quarantined link filed through one node is approved through the other', async (t) => {
    await nodes[0].ingest(WORKSPACE, [{ type: 'identify', userId: 'u7', traits: { email: 'shared@example.com' }, messageId: 'u7-1' }]);
    await nodes[1].ingest(WORKSPACE, [{ type: 'identify', userId: 'u8', traits: { email: 'shared@example.com' }, messageId: 'u8-1' }]);

    const pending = await nodes[0].identityAdmin.listQuarantine(WORKSPACE, 'pending');
    t.match(pending, [{ reason: 'MERGE_PROTECTED', profileId: 'user:u8', otherProfileId: 'user:u7' }]);
    await nodes[1].identityAdmin.approve(WORKSPACE, pending[0].id);

    const merged = await nodes[0].getProfile(WORKSPACE, user('u8'));
    t.equal(merged.profileId, 'user:u7');
    t.equal(merged.eventCount, 2);
  });
});

t.test('identity cluster - online matching merges near-duplicates through the log', { timeout: 120_000 }, async (t) => {
  const model = await readModelFile(new URL('../fixtures/splink-fake-1000-model.json', import.meta.url).pathname);
  const matching = { model, workers: 1, minMatchProbability: 0.99999, minReviewProbability: 0.9 };
  const nodes = await startClusterNodes(t, ['a', 'b'], { ...FAST, matching });

  // The blocking index is shared in NATS KV, so the two people are found though each went through another node.
  await nodes[0].ingest(WORKSPACE, [{ type: 'identify', anonymousId: 'm1', messageId: 'match-1', traits: { firstName: 'Robert', lastName: 'Allen', birthday: '1971-05-24', email: 'robert255@smith.net' } }]);
  await nodes[0].matching!.settled();
  await nodes[1].ingest(WORKSPACE, [{ type: 'identify', anonymousId: 'm2', messageId: 'match-2', traits: { firstName: 'Robert', lastName: 'Alan', birthday: '1971-06-24', email: 'roberta25@smith.net' } }]);
  await nodes[1].matching!.settled();

  const profile = await nodes[1].getProfile(WORKSPACE, anon('m2'));
  t.equal(profile.profileId, (await nodes[1].getProfile(WORKSPACE, anon('m1'))).profileId, 'node b finds one profile by either id');
  t.equal(profile.eventCount, 2);
  t.match(profile.merges, [{ rule: 'fuzzy-match' }]);
});
