/**
 * The cluster's webhook state in KV, on the in-memory KvStore: key tokens, the cursor
 * compare-and-set that fences a node which lost the delivery lease, and the delivery loop
 * that stops when its cursor write is rejected. The loop posts to a real HTTP server on
 * loopback.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { silentLogger } from '../../common/logger.js';
import type { ActivationFeed } from '../../cluster/serving-node.js';
import { DestinationDelivery, emptyDestinationStats } from '../../decisions/activation-delivery/destination-delivery.js';
import { KvDeliveryState } from '../../decisions/activation-delivery/kv-delivery-state.js';
import type { WebhookDeadLetter } from '../../decisions/activation-delivery/delivery-state.js';
import type { WebhookDestination } from '../../decisions/activation-delivery/webhook-config.js';
import { decodeKeyToken, encodeKeyToken, webhookKeys } from '../../decisions/activation-delivery/webhook-kv-keys.js';
import { systemClock } from '../../decisions/activation-delivery/token-bucket.js';
import type { StoredActivation } from '../../profiles/activation-log.js';
import { KvConflictError } from '../../storage/kv-store.js';
import { MemoryKvStore } from '../../storage/memory-kv-store.js';

const WORKSPACE = 'w';

function state(kv: MemoryKvStore, nodeId: string): KvDeliveryState {
  return new KvDeliveryState(kv, { workspace: WORKSPACE, destination: 'crm', nodeId, logger: silentLogger() });
}

function activation(sequence: number): StoredActivation {
  return {
    sequence,
    id: `segment.entered:pro:event:0:${sequence}:user:u${sequence}`,
    type: 'segment.entered',
    workspace: WORKSPACE,
    profileId: `user:u${sequence}`,
    name: 'pro',
    definitionVersion: 1,
    atMs: Date.UTC(2024, 0, 1),
    cause: { kind: 'event', shard: 0, sequence, messageId: `m${sequence}` },
  };
}

/** Returns a feed of `count` activations whose waitBeyond resolves only when its signal aborts. */
function fixedFeed(count: number): ActivationFeed {
  const all = Array.from({ length: count }, (_, i) => activation(i + 1));
  return {
    async list(_workspace, options) {
      const after = options.afterSequence ?? 0;
      const activations = all.filter((stored) => stored.sequence > after).slice(0, options.limit ?? 100);
      return { activations, visibleSequence: count, nextAfterSequence: activations.at(-1)?.sequence ?? after, endSequence: count };
    },
    waitBeyond: (_workspace, _after, signal) => new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })),
  };
}

/** Starts an HTTP server on 127.0.0.1 that counts the requests and responds 204 once `beforeResponse` resolves. */
async function startReceiver(t: Test, beforeResponse: () => Promise<void>) {
  let requests = 0;
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      requests += 1;
      void beforeResponse().then(() => response.writeHead(204).end());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`), requests: () => requests };
}

function destination(url: URL): WebhookDestination {
  return { name: 'crm', workspace: WORKSPACE, url, secret: 'webhook-test-secret-0001', types: [], maxAttempts: 3, timeoutMs: 5_000, maxBatchActivations: 1, maxRequestsPerSecond: 1_000 };
}

function deadLetter(firstSequence: number): WebhookDeadLetter {
  return { version: 1, destination: 'crm', workspace: WORKSPACE, firstSequence, lastSequence: firstSequence, activations: [], attempts: 1, status: 400, error: 'received HTTP 400', failedAtMs: 0 };
}

t.test('webhook kv keys - tokens are valid and reversible', async (t) => {
  t.equal(encodeKeyToken('default'), 'default', 'a workspace id keeps its spelling');
  t.equal(encodeKeyToken('CRM_eu-1'), 'CRM_eu-1', 'a destination name keeps its spelling');
  t.equal(encodeKeyToken('a.b=c'), 'a=2Eb=3Dc', 'a dot and the escape character are escaped');
  t.equal(encodeKeyToken('ü'), '=C3=BC', 'each UTF-8 byte is escaped');
  for (const text of ['a.b=c', 'ü x/y', '=2E', 'default']) t.equal(decodeKeyToken(encodeKeyToken(text)), text, `${JSON.stringify(text)} round-trips`);
  t.throws(() => encodeKeyToken(''), RangeError, 'an empty text has no token');
  t.throws(() => decodeKeyToken('a.b'), RangeError, 'a token with a dot is invalid');
  t.equal(webhookKeys.deadLetter('w', 'crm', 7), 'dead-letter.w.crm.000000000000007');
  t.equal(webhookKeys.lease('w', 'crm'), 'lease.w.crm');
});

t.test('webhook kv state - a stale holder cannot move the cursor', async (t) => {
  const kv = new MemoryKvStore();
  const stale = state(kv, 'a');
  t.equal(await stale.claimCursor(), 0, 'a new destination starts at 0');
  await stale.writeCursor(5);

  const taker = state(kv, 'b');
  t.equal(await taker.claimCursor(), 5, 'the taker resumes after the shared cursor');
  await t.rejects(stale.writeCursor(6), KvConflictError, 'the stale holder cursor write is rejected');
  t.equal(await taker.readCursor(), 5, 'the cursor stays where the taker claimed it');

  await taker.writeCursor(7);
  t.equal(await stale.readCursor(), 7, 'every node reads the shared cursor');
});

t.test('webhook kv state - dead letters are shared', async (t) => {
  const kv = new MemoryKvStore();
  const holder = state(kv, 'a');
  await holder.claimCursor();
  await holder.writeDeadLetter(deadLetter(3), 3);
  await holder.writeDeadLetter(deadLetter(12), 12);

  const other = state(kv, 'b');
  t.same((await other.listDeadLetters()).map((listed) => listed.firstSequence), [3, 12], 'another node lists them, oldest first');
  t.same((await other.listDeadLetters(10, 3)).map((listed) => listed.firstSequence), [12], 'after a sequence');
  t.equal(await other.readCursor(), 12, 'the dead letter moved the cursor');

  await other.claimCursor();
  await t.rejects(holder.writeDeadLetter(deadLetter(13), 13), KvConflictError, 'a fenced dead letter write is rejected');
  t.same((await other.listDeadLetters()).map((listed) => listed.firstSequence), [3, 12], 'and its dead letter is deleted again');
});

t.test('webhook kv state - failed attempts are shared', async (t) => {
  const kv = new MemoryKvStore();
  const holder = state(kv, 'a');
  t.equal(await holder.readAttempts(5), 0, 'none stored');

  await holder.writeAttempts(5, 2);
  const next = state(kv, 'b');
  t.equal(await next.readAttempts(5), 2, 'the next node reads the count of the same batch');
  t.equal(await next.readAttempts(6), 0, 'and none for a batch that starts elsewhere');

  await next.writeAttempts(5, 3);
  t.equal(await holder.readAttempts(5), 3, 'the last write counts');
});

t.test('webhook kv state - fenced dead letter keeps the holder\'s', async (t) => {
  const kv = new MemoryKvStore();
  const stale = state(kv, 'a');
  await stale.claimCursor();

  const holder = state(kv, 'b');
  await holder.claimCursor();
  const holders = { ...deadLetter(3), lastSequence: 12, error: 'received HTTP 400 by b' };
  await holder.writeDeadLetter(holders, 12);

  await t.rejects(stale.writeDeadLetter(deadLetter(3), 3), KvConflictError, 'the stale dead letter write is rejected');
  const listed = await holder.listDeadLetters();
  t.equal(listed.length, 1, 'the dead letter of the holder is still listed');
  t.same(listed[0], holders, 'with the content the holder wrote');
});

t.test('webhook kv state - a fenced delivery loop stops', async (t) => {
  const kv = new MemoryKvStore();
  let releaseResponse: () => void = () => {};
  const responseReleased = new Promise<void>((resolve) => (releaseResponse = resolve));
  let requestArrived: () => void = () => {};
  const arrived = new Promise<void>((resolve) => (requestArrived = resolve));
  const receiver = await startReceiver(t, async () => {
    requestArrived();
    await responseReleased;
  });

  let fenced = 0;
  const stats = emptyDestinationStats();
  const delivery = new DestinationDelivery({
    destination: destination(receiver.url),
    feed: fixedFeed(3),
    state: state(kv, 'a'),
    retry: { baseDelayMs: 1, maxDelayMs: 1, maxRetryAfterMs: 1, random: () => 0 },
    clock: systemClock,
    logger: silentLogger(),
    stats,
    onFenced: () => (fenced += 1),
  });
  delivery.start();
  t.teardown(() => delivery.stop(0));

  // Another node claims the cursor while the first batch is in flight.
  await arrived;
  t.equal(await state(kv, 'b').claimCursor(), 0, 'the taker claims the cursor before the first batch is acknowledged');
  releaseResponse();

  for (let i = 0; i < 250 && fenced === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(fenced, 1, 'the loop reports that it was fenced');
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.equal(receiver.requests(), 1, 'the loop sends nothing after the rejected cursor write');
  t.equal(await state(kv, 'c').readCursor(), 0, 'the cursor did not move');
  t.equal(stats.deliveredBatches, 0, 'the batch does not count as delivered');
});

t.test('webhook kv state - replays are queued for the holder', async (t) => {
  const kv = new MemoryKvStore();
  const holder = state(kv, 'a');
  await holder.claimCursor();
  await holder.writeDeadLetter(deadLetter(3), 3);
  await holder.writeDeadLetter(deadLetter(12), 12);
  t.same(await holder.listQueuedReplays(10), [], 'nothing is queued before a request');

  const requester = state(kv, 'b');
  await t.rejects(requester.queueReplays({ firstSequences: [3, 4] }, 1_000), { code: 'WEBHOOK_DEAD_LETTER_NOT_FOUND', message: /first sequence 4;/ });
  t.same(await holder.listQueuedReplays(10), [], 'a request with an unknown sequence queues nothing');

  t.equal(await requester.queueReplays({ firstSequences: [12] }, 1_000), 1);
  const queued = await holder.listQueuedReplays(10);
  t.same(queued.map((listed) => [listed.firstSequence, listed.replayQueuedAtMs]), [[12, 1_000]], 'the holder finds the replay that another node queued');

  await holder.writeFailedReplay({ ...queued[0], attempts: 2, error: 'received HTTP 500' });
  const [, failed] = await requester.listDeadLetters();
  t.match(failed, { firstSequence: 12, attempts: 2, error: 'received HTTP 500' }, 'a failed replay stays a dead letter');
  t.equal(failed.replayQueuedAtMs, undefined, 'no longer queued');
  t.same(await holder.listQueuedReplays(10), [], 'and is not listed again');

  t.equal(await requester.queueReplays({ all: true }, 2_000), 2, 'every dead letter queued');
  t.same((await holder.listQueuedReplays(10)).map((listed) => listed.firstSequence), [3, 12], 'oldest first');
  await holder.deleteDeadLetter(3);
  t.same((await requester.listDeadLetters()).map((listed) => listed.firstSequence), [12], 'a delivered replay is deleted');
});
