import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import { NatsKvStore } from '../../cluster/kv/nats-kv-store.js';
import { decodeLeaseRecord } from '../../cluster/leases/lease-record.js';
import { leaseKey, ShardLeases } from '../../cluster/leases/shard-leases.js';
import { startNatsServer } from '../helpers/nats-server.js';

const SHARDS = Array.from({ length: 8 }, (_, shard) => shard);
// Short leases so the test waits out an expired one in about 2 seconds. A lease is valid
// for 1,000 ms after its write was sent, and a taker waits 1,500 + 500 ms.
const SHORT_LEASES = { leaseTtlMs: 1_500, renewIntervalMs: 300, stallMarginMs: 500, takeoverMarginMs: 500, renewRetryIntervalMs: 200 };

t.test('shard leases on nats - two nodes compete', { timeout: 60_000 }, async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  // One connection per node, as two processes would have.
  const connections = await Promise.all([connect({ servers: server.url }), connect({ servers: server.url })]);
  t.teardown(() => Promise.all(connections.map((nc) => nc.close())));
  const stores = await Promise.all(connections.map((nc) => NatsKvStore.open(nc, { bucket: 'leases', replicas: 1 })));

  const a = new ShardLeases(stores[0], { nodeId: 'node-a', ...SHORT_LEASES });
  const b = new ShardLeases(stores[1], { nodeId: 'node-b', ...SHORT_LEASES });
  a.start();
  b.start();
  t.teardown(() => {
    a.stop();
    b.stop();
  });

  // Each node sends first for half of the shards, so both win some.
  const results = await Promise.all(
    SHARDS.map(async (shard) => {
      if (shard % 2 === 0) return Promise.all([a.acquire(shard), b.acquire(shard)]);
      const [forB, forA] = await Promise.all([b.acquire(shard), a.acquire(shard)]);
      return [forA, forB];
    }),
  );
  for (const shard of SHARDS) {
    const [forA, forB] = results[shard];
    t.equal(Number(forA.acquired) + Number(forB.acquired), 1, `exactly one node acquires shard ${shard}`);
    t.equal(Number(a.owns(shard)) + Number(b.owns(shard)), 1, `exactly one node owns shard ${shard}`);
    const loser = forA.acquired ? forB : forA;
    // The loser either lost the create, or read the winner's record and saw it renewed while waiting.
    t.match(loser, { acquired: false, reason: /^(conflict|held)$/ }, `the other node did not get shard ${shard}`);
  }

  // Both nodes renew several times. Ownership and epochs stay as they were.
  const epochsBefore = SHARDS.map((shard) => a.epoch(shard) || b.epoch(shard));
  await sleep(1_500);
  t.same(SHARDS.map((shard) => a.epoch(shard) || b.epoch(shard)), epochsBefore, 'renewals keep every epoch');
  const stored = await stores[0].get(leaseKey(0));
  t.ok(stored!.revision > epochsBefore[0], 'the record of shard 0 was renewed');
  t.equal(decodeLeaseRecord(stored!.value, stored!.key, stored!.revision).epoch, epochsBefore[0], 'the renewed record stores the epoch');

  // A release hands the shard over at once.
  const nodes = [
    { name: 'node-a', leases: a },
    { name: 'node-b', leases: b },
  ];
  const shard = 0;
  const [owner, other] = a.owns(shard) ? nodes : [nodes[1], nodes[0]];
  t.equal(await owner.leases.release(shard), true, `${owner.name} releases shard ${shard}`);
  const handedOver = await other.leases.acquire(shard);
  t.match(handedOver, { acquired: true, previous: { holder: owner.name, epoch: epochsBefore[shard], released: true } }, `${other.name} takes it at once`);
  t.ok((handedOver as { epoch: number }).epoch > epochsBefore[shard], 'the new tenure has a higher epoch');

  // The node with the most shards stops without releasing. The other waits out its leases.
  const [stopping, taker] = a.ownedShards().length >= b.ownedShards().length ? nodes : [nodes[1], nodes[0]];
  const heldShards = stopping.leases.ownedShards();
  t.ok(heldShards.length > 0, `${stopping.name} owns shards ${heldShards.join(', ')}`);
  stopping.leases.stop();
  const startedAt = performance.now();
  const takeovers = await Promise.all(heldShards.map((shard) => taker.leases.acquire(shard)));
  const waitedMs = performance.now() - startedAt;
  t.ok(takeovers.every((result) => result.acquired), `${taker.name} takes the shards over`);
  t.ok(waitedMs >= 2_000, `${taker.name} waited ${Math.round(waitedMs)} ms, at least ttl + margin`);
  t.same(taker.leases.ownedShards(), SHARDS, `${taker.name} owns every shard`);
});
