import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { startNatsCluster, startNatsServer } from '../helpers/nats-server.js';

function isProcessRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Runs `action` until it succeeds or `timeoutMs` has passed, because requests time out or fail
 * while the cluster elects new leaders after a server is killed.
 */
async function retryFor<T>(timeoutMs: number, action: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;

  while (true) {
    try {
      return await action();
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    await sleep(250);
  }
}

t.test('nats harness - single server JetStream KV', { timeout: 30_000 }, async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.kill());
  t.match(server.url, /^nats:\/\/127\.0\.0\.1:\d+$/);

  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  const kv = await new Kvm(nc).create('leases');

  const created = await kv.create('shard-1', 'node-a');
  t.ok(created > 0, 'create of a new key returns its revision');
  // nats-server 2.9.10 rejects both compare-and-set failures as "wrong last sequence".
  await t.rejects(kv.create('shard-1', 'node-b'), { message: /wrong last sequence/ }, 'create of an existing key fails');

  const updated = await kv.update('shard-1', 'node-a', created);
  t.ok(updated > created, 'update with the current revision succeeds');
  await t.rejects(kv.update('shard-1', 'node-b', created), { message: /wrong last sequence/ }, 'update with a stale revision fails');
  t.equal((await kv.get('shard-1'))?.string(), 'node-a', 'the failed writes left the value unchanged');

  await nc.close();
  await server.stop();
  t.notOk(isProcessRunning(server.pid), `nats-server PID ${server.pid} is gone after stop`);
});

t.test('nats harness - three server cluster', { timeout: 55_000 }, async (t) => {
  const servers = await startNatsCluster(3);
  t.teardown(() => Promise.all(servers.map((server) => server.kill())));
  t.equal(servers.length, 3);

  const nc = await connect({ servers: servers.map((server) => server.url) });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);

  const stream = await jsm.streams.add({ name: 'EVENTS', subjects: ['events.>'], num_replicas: 3 });
  t.equal(stream.config.num_replicas, 3);

  const acked: string[] = [];
  for (let i = 0; i < 5; i++) {
    const first = await js.publish('events.a', `before-${i}`, { msgID: `before-${i}` });
    t.notOk(first.duplicate, `first publish of before-${i} is stored`);
    const second = await js.publish('events.a', `before-${i}`, { msgID: `before-${i}` });
    t.ok(second.duplicate, `second publish of before-${i} is reported as a duplicate`);
    t.equal(second.seq, first.seq, `duplicate of before-${i} points to the stored message`);
    acked.push(`before-${i}`);
  }

  // Killing the stream leader forces an election, which is harder than losing a follower.
  const leaderName = (await jsm.streams.info('EVENTS')).cluster?.leader;
  const victim = servers.find((server) => server.serverName === leaderName);
  if (victim === undefined) throw new Error(`stream leader ${leaderName} is not one of the started servers`);
  await victim.kill();
  t.notOk(isProcessRunning(victim.pid), `killed nats-server PID ${victim.pid} is gone`);

  for (let i = 0; i < 5; i++) {
    // Retrying with the same message ID is safe because the stream drops duplicates.
    const ack = await retryFor(20_000, () => js.publish('events.b', `after-${i}`, { msgID: `after-${i}`, timeout: 2_000 }));
    t.ok(ack.seq > 0, `after-${i} is acknowledged with two of three servers`);
    acked.push(`after-${i}`);
  }

  // Adding the same durable consumer again succeeds, so a retry after a timed-out request is safe.
  // A short ack wait brings back a message whose delivery a failed fetch lost.
  const consumerConfig = { durable_name: 'reader', ack_policy: AckPolicy.Explicit, ack_wait: 2_000_000_000 };
  await retryFor(20_000, () => jsm.consumers.add('EVENTS', consumerConfig));
  const consumer = await retryFor(20_000, () => js.consumers.get('EVENTS', 'reader'));

  // Messages by stream sequence, so a redelivered one counts once.
  const received = new Map<number, string>();
  const deadline = Date.now() + 30_000;
  while (received.size < acked.length && Date.now() < deadline) {
    try {
      const batch = await consumer.fetch({ max_messages: acked.length - received.size, expires: 2_000 });
      for await (const message of batch) {
        received.set(message.seq, message.string());
        message.ack();
      }
    } catch (error) {
      // On a loaded machine a fetch can miss its idle heartbeats while the cluster settles
      // after the election. The next fetch picks up where it stopped.
      t.comment(`fetch failed, retrying: ${(error as Error).message}`);
    }
  }

  const inOrder = [...received.entries()].sort(([a], [b]) => a - b).map(([, text]) => text);
  t.same(inOrder, acked, 'every acknowledged message is read back in order');
});
