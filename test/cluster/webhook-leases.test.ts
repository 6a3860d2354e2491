/**
 * WebhookLeases on the in-memory KvStore and fake time. One node at a time is notified that
 * it delivers a destination. A stop hands the lease over at once, and a dead holder's lease
 * is taken over after its ttl. A fenced node gives its lease up and competes again.
 */
import t from 'tap';
import { silentLogger } from '../../common/logger.js';
import { WebhookLeases } from '../../cluster/webhook-leases.js';
import type { WebhookDestination } from '../../decisions/activation-delivery/webhook-config.js';
import { MemoryKvStore } from '../../storage/memory-kv-store.js';
import { FakeTime } from '../helpers/fake-time.js';

const DESTINATION: WebhookDestination = {
  name: 'crm',
  workspace: 'w',
  url: new URL('http://127.0.0.1:9/hooks'),
  secret: 'webhook-test-secret-0001',
  types: [],
  maxAttempts: 3,
  timeoutMs: 1_000,
  maxBatchActivations: 10,
  maxRequestsPerSecond: 10,
};

/** Starts a node's leases and records whether the listener last heard `acquired` for the destination. */
function startLeases(kv: MemoryKvStore, time: FakeTime, nodeId: string) {
  const events: string[] = [];
  let delivering = false;
  const leases = new WebhookLeases({ kv, nodeId, destinations: [DESTINATION], clock: time.clock(), logger: silentLogger(), webhookLeaseTtlMs: 3_000, webhookLeaseRenewIntervalMs: 500 });
  leases.start({
    acquired: (destination, epoch) => {
      delivering = true;
      events.push(`acquired ${destination} ${epoch}`);
    },
    lost: (destination) => {
      delivering = false;
      events.push(`lost ${destination}`);
    },
  });
  return { leases, events, delivering: () => delivering };
}

t.test('webhook leases - one holder, handed over on stop', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const a = startLeases(kv, time, 'a');
  await time.advance(100);
  const b = startLeases(kv, time, 'b');
  await time.advance(5_000);

  t.ok(a.delivering(), 'the first node delivers');
  t.notOk(b.delivering(), 'the second node does not');
  t.equal(await b.leases.readHolder('crm'), 'a', 'every node reads the holder');

  await a.leases.releaseAll();
  t.equal(await b.leases.readHolder('crm'), null, 'a released lease has no holder');
  await time.advance(500);
  t.ok(b.delivering(), 'the second node takes over within one renewal interval');
  t.equal(await a.leases.readHolder('crm'), 'b');
  t.same(a.events.filter((event) => event.startsWith('lost')), [], 'a stop notifies no loss, because the dispatcher stopped its loops first');
  await b.leases.releaseAll();
});

t.test('webhook leases - a dead holder is taken over after the ttl', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const a = startLeases(kv, time, 'a');
  await time.advance(100);
  const b = startLeases(kv, time, 'b');
  await time.advance(1_000);
  t.ok(a.delivering(), 'the first node delivers');

  // The holder stops renewing without releasing, as a node that died.
  await a.leases.stopCompeting();
  const waitedMs = await time.advanceUntil(() => b.delivering(), 10_000);
  t.ok(waitedMs >= 3_000, `the second node waits at least the ttl, waited ${waitedMs} ms`);
  t.ok(waitedMs <= 3_000 + 600 + 500 + 100, `and at most the ttl, the takeover margin and a renewal interval, waited ${waitedMs} ms`);
  await b.leases.releaseAll();
});

t.test('webhook leases - a relinquished lease is competed for again', async (t) => {
  const time = new FakeTime();
  const kv = new MemoryKvStore();
  const a = startLeases(kv, time, 'a');
  await time.advance(1_000);
  t.match(a.events, [/^acquired crm \d+$/]);
  const firstEpoch = Number(a.events[0].split(' ')[2]);

  await a.leases.relinquish('crm');
  t.notOk(a.delivering(), 'relinquishing notifies the loss at once');
  await time.advance(1_000);
  t.ok(a.delivering(), 'the node acquires the lease again');
  const secondEpoch = Number(a.events.at(-1)?.split(' ')[2]);
  t.ok(secondEpoch > firstEpoch, 'under a new epoch');
  await a.leases.releaseAll();
});
