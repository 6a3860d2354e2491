/**
 * Webhook delivery from an embedded node on real RocksDB to a real HTTP server on loopback:
 * order, signatures, retries, dead letters, the rate limit and the durable cursor. Waits and
 * backoffs run on a virtual clock, so no check depends on how fast the machine is.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { startEmbedded } from '../../api/embedded.js';
import { RtcdpNode } from '../../cluster/node.js';
import { silentLogger } from '../../common/logger.js';
import type { WebhookDestination } from '../../decisions/activation-delivery/webhook-config.js';
import { WebhookDispatcher, type WebhookDispatcherOptions } from '../../decisions/activation-delivery/webhook-dispatcher.js';
import { idempotencyKey, verifyWebhookSignature, type WebhookBody } from '../../decisions/activation-delivery/webhook-payload.js';
import { TokenBucket, type Clock } from '../../decisions/activation-delivery/token-bucket.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import type { RawEvent } from '../../profiles/event.js';

const WORKSPACE = 'w';
const SECRET = 'webhook-test-secret-0001';
const SEGMENT = `apiVersion: rtcdp/v1
kind: Segment
metadata: { name: pro }
spec: { condition: 'has(traits.plan) && traits.plan == "pro"' }
`;

interface ReceivedRequest {
  body: string;
  headers: IncomingHttpHeaders;
  status: number;
}

type Responder = (index: number) => { status: number; headers?: Record<string, string> };

/** An HTTP server on 127.0.0.1 that records every request and responds with what `respond` returns. */
async function startReceiver(t: Test, respond: Responder = () => ({ status: 204 })) {
  const requests: ReceivedRequest[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const answer = respond(requests.length);
      requests.push({ body: Buffer.concat(chunks).toString('utf8'), headers: request.headers, status: answer.status });
      response.writeHead(answer.status, answer.headers).end(answer.status >= 400 ? 'rejected by the test receiver' : undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`);
  const accepted = () => requests.filter((request) => request.status < 300).flatMap((request) => (JSON.parse(request.body) as WebhookBody).activations);
  return { url, requests, accepted };
}

/** A clock that moves only when a wait sleeps on it, so waits end at once and are recorded. */
class VirtualClock implements Clock {
  nowMs = Date.UTC(2024, 0, 1);
  readonly sleeps: number[] = [];

  now(): number {
    return this.nowMs;
  }

  async sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    this.sleeps.push(ms);
    this.nowMs += ms;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function destination(url: URL, overrides: Partial<WebhookDestination> = {}): WebhookDestination {
  return { name: 'crm', workspace: WORKSPACE, url, secret: SECRET, types: [], maxAttempts: 8, timeoutMs: 5_000, maxBatchActivations: 100, maxRequestsPerSecond: 1_000, ...overrides };
}

async function startNode(t: Test, dataDir = t.testdir()): Promise<RtcdpNode> {
  const node = await RtcdpNode.start({ dataDir, actors: { snapshotIntervalMs: 20 } });
  t.teardown(() => node.drain());
  await new DefinitionRegistry(node.definitionStore).apply(WORKSPACE, [{ name: 'segments.yaml', content: SEGMENT }]);
  return node;
}

function startDispatcher(t: Test, node: RtcdpNode, destinations: WebhookDestination[], options: Partial<WebhookDispatcherOptions> = {}): WebhookDispatcher {
  const dispatcher = new WebhookDispatcher({ destinations, feed: node.activations, store: node.store, logger: silentLogger(), clock: new VirtualClock(), random: () => 0, ...options });
  dispatcher.start();
  // Registered after the node's teardown, so it runs first, while the store is open.
  t.teardown(() => dispatcher.stop());
  return dispatcher;
}

function identify(userId: string, messageId: string, plan: string): RawEvent {
  return { type: 'identify', userId, messageId, traits: { plan } };
}

/** Polls `done` every 20 ms; fails after 15 s. */
async function waitFor(what: string, done: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 750; i++) {
    if (await done()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

t.test('webhooks - entries and exits arrive in order, signed', async (t) => {
  const receiver = await startReceiver(t);
  const node = await startNode(t);
  startDispatcher(t, node, [destination(receiver.url)]);

  await node.ingest(WORKSPACE, [identify('u1', 'm1', 'pro')]);
  await node.ingest(WORKSPACE, [identify('u2', 'm2', 'pro')]);
  await node.ingest(WORKSPACE, [identify('u1', 'm3', 'free')]);
  await waitFor('three activations', () => receiver.accepted().length >= 3);

  const delivered = receiver.accepted();
  const stored = (await node.activations.list(WORKSPACE, { limit: 100 })).activations;
  t.same(
    delivered.map((activation) => `${activation.sequence} ${activation.type} ${activation.profileId}`),
    stored.map((activation) => `${activation.sequence} ${activation.type} ${activation.profileId}`),
    'every stored activation once, in log order',
  );
  t.same(
    delivered.filter((activation) => activation.profileId === 'user:u1').map((activation) => activation.type),
    ['segment.entered', 'segment.exited'],
  );

  const first = delivered[0];
  t.same(Object.keys(first).sort(), ['at', 'cause', 'definitionVersion', 'id', 'name', 'profileId', 'sequence', 'type'], 'no action, channel or step for a segment');
  t.equal(first.id, stored[0].id);
  t.equal(first.name, 'pro');
  t.equal(first.definitionVersion, 1);
  t.equal(first.at, new Date(stored[0].atMs).toISOString());
  t.match(first.cause, { kind: 'event', messageId: 'm1' });

  for (const request of receiver.requests) {
    const body = JSON.parse(request.body) as WebhookBody;
    t.equal(request.headers['content-type'], 'application/json');
    t.ok(verifyWebhookSignature(SECRET, request.body, request.headers['x-rtcdp-signature'] as string), 'the signature verifies');
    t.notOk(verifyWebhookSignature('another-secret-000000', request.body, request.headers['x-rtcdp-signature'] as string), 'another secret fails');
    t.notOk(verifyWebhookSignature(SECRET, `${request.body} `, request.headers['x-rtcdp-signature'] as string), 'a changed body fails');
    t.match(request.headers['x-rtcdp-timestamp'], /^\d+$/, 'the timestamp is in Unix seconds');
    t.equal(request.headers['idempotency-key'], `${body.activations[0].id} ${body.activations[body.activations.length - 1].id}`);
  }
});

t.test('webhooks - 500s are retried with backoff until a 2xx', async (t) => {
  const receiver = await startReceiver(t, (index) => ({ status: index < 2 ? 500 : 200 }));
  const node = await startNode(t);
  const clock = new VirtualClock();
  const dispatcher = startDispatcher(t, node, [destination(receiver.url)], { clock, retryBaseDelayMs: 1_000 });

  await node.ingest(WORKSPACE, [identify('u1', 'm1', 'pro')]);
  await waitFor('a delivered batch', () => dispatcher.stats('crm').deliveredBatches === 1);

  t.same(receiver.requests.map((request) => request.status), [500, 500, 200]);
  t.equal(new Set(receiver.requests.map((request) => request.body)).size, 1, 'every attempt sends the same body');
  t.equal(new Set(receiver.requests.map((request) => request.headers['idempotency-key'])).size, 1, 'and the same idempotency key');
  t.same(clock.sleeps, [500, 1_000], 'exponential backoff, with the jitter factor at its minimum of 0.5');
  t.same(receiver.accepted().map((activation) => activation.profileId), ['user:u1'], 'nothing lost');
  t.match(dispatcher.stats('crm'), { failedAttempts: 2, deliveredBatches: 1, deliveredActivations: 1, deadLetteredBatches: 0 });
  t.same(await dispatcher.listDeadLetters('crm'), []);
});

t.test('webhooks - Retry-After sets the wait before a retry', async (t) => {
  const receiver = await startReceiver(t, (index) => (index === 0 ? { status: 429, headers: { 'Retry-After': '7' } } : { status: 200 }));
  const node = await startNode(t);
  const clock = new VirtualClock();
  const dispatcher = startDispatcher(t, node, [destination(receiver.url)], { clock, retryBaseDelayMs: 1_000 });

  await node.ingest(WORKSPACE, [identify('u1', 'm1', 'pro')]);
  await waitFor('a delivered batch', () => dispatcher.stats('crm').deliveredBatches === 1);

  t.same(receiver.requests.map((request) => request.status), [429, 200]);
  t.same(clock.sleeps, [7_000], 'the wait is the 7 s the receiver asked for, not the backoff');
});

t.test('webhooks - a 400 goes to the dead letters without retries', async (t) => {
  const receiver = await startReceiver(t, (index) => ({ status: index === 0 ? 400 : 200 }));
  const node = await startNode(t);
  const dispatcher = startDispatcher(t, node, [destination(receiver.url, { maxBatchActivations: 1 })]);

  await node.ingest(WORKSPACE, [identify('u1', 'm1', 'pro')]);
  await waitFor('a dead letter', () => dispatcher.stats('crm').deadLetteredBatches === 1);
  await node.ingest(WORKSPACE, [identify('u2', 'm2', 'pro')]);
  await waitFor('the next batch', () => dispatcher.stats('crm').deliveredBatches === 1);

  t.same(receiver.requests.map((request) => request.status), [400, 200], 'the rejected batch was sent once, and delivery went on');
  t.same(receiver.accepted().map((activation) => activation.profileId), ['user:u2']);

  const [deadLetter, ...others] = await dispatcher.listDeadLetters('crm');
  t.same(others, []);
  t.match(deadLetter, { version: 1, destination: 'crm', workspace: WORKSPACE, firstSequence: 1, lastSequence: 1, attempts: 1, status: 400, error: 'received HTTP 400: rejected by the test receiver' });
  t.same(deadLetter.activations.map((activation) => activation.profileId), ['user:u1'], 'the dead letter keeps the activations');
  t.equal(dispatcher.stats('crm').cursor, 2);
});

t.test('webhooks - replayed dead letters are sent again', async (t) => {
  // Requests 0 and 2 (the first batch and its first replay) are rejected, the others accepted.
  const receiver = await startReceiver(t, (index) => ({ status: index === 0 || index === 2 ? 400 : 200 }));
  const node = await startNode(t);
  const clock = new VirtualClock();
  const dispatcher = startDispatcher(t, node, [destination(receiver.url, { maxBatchActivations: 1 })], { clock });

  await node.ingest(WORKSPACE, [identify('u1', 'm1', 'pro')]);
  await waitFor('a dead letter', () => dispatcher.stats('crm').deadLetteredBatches === 1);
  await node.ingest(WORKSPACE, [identify('u2', 'm2', 'pro')]);
  await waitFor('the next batch', () => dispatcher.stats('crm').deliveredBatches === 1);

  await t.rejects(dispatcher.queueReplays('crm', { firstSequences: [1, 7, 9] }), { code: 'WEBHOOK_DEAD_LETTER_NOT_FOUND', message: /no dead letter with first sequence 7, 9/ }, 'unknown first sequences are named');
  t.equal((await dispatcher.listDeadLetters('crm'))[0].replayQueuedAtMs, undefined, 'a rejected request queues nothing');

  const failedAtMs = clock.nowMs;
  t.equal(await dispatcher.queueReplays('crm', { firstSequences: [1] }), 1, 'one dead letter queued');
  await waitFor('the first replay', () => receiver.requests.length === 3);
  await waitFor('the failed replay stored', async () => (await dispatcher.listDeadLetters('crm'))[0]?.attempts === 2);
  const [failed, ...others] = await dispatcher.listDeadLetters('crm');
  t.same(others, []);
  t.match(failed, { firstSequence: 1, attempts: 2, status: 400, error: 'received HTTP 400: rejected by the test receiver' }, 'a failed replay stays a dead letter with the attempts added');
  t.equal(failed.replayQueuedAtMs, undefined, 'and is no longer queued');
  t.ok(failed.failedAtMs >= failedAtMs, 'failedAt is the time of the replay');

  t.equal(await dispatcher.queueReplays('crm', { all: true }), 1, 'all dead letters queued');
  await waitFor('the second replay', () => receiver.accepted().length === 2);
  await waitFor('the dead letter deleted', async () => (await dispatcher.listDeadLetters('crm')).length === 0);

  const replayed = JSON.parse(receiver.requests[3].body) as WebhookBody;
  t.same(replayed, JSON.parse(receiver.requests[0].body), 'the replay carries the stored activations in the same body shape');
  t.ok(verifyWebhookSignature(SECRET, receiver.requests[3].body, receiver.requests[3].headers['x-rtcdp-signature'] as string), 'the replay is signed');
  t.same(receiver.accepted().map((activation) => activation.sequence), [2, 1], 'the replayed batch arrives after the later activation');
  t.equal(dispatcher.stats('crm').cursor, 2, 'the cursor stays where it was');
});

t.test('webhooks - a batch goes to the dead letters after maxAttempts', async (t) => {
  const receiver = await startReceiver(t, () => ({ status: 503 }));
  const node = await startNode(t);
  const dispatcher = startDispatcher(t, node, [destination(receiver.url, { maxAttempts: 3 })]);

  await node.ingest(WORKSPACE, [identify('u1', 'm1', 'pro')]);
  await waitFor('a dead letter', () => dispatcher.stats('crm').deadLetteredBatches === 1);

  t.equal(receiver.requests.length, 3);
  t.match(await dispatcher.listDeadLetters('crm'), [{ attempts: 3, status: 503 }]);
});

t.test('webhooks - failed attempts count across restarts', async (t) => {
  let first: WebhookDispatcher | null = null;
  let stopping: Promise<void> | null = null;
  const receiver = await startReceiver(t, (received) => {
    // The second request stops the first dispatcher. Its grace period passes at once on the
    // virtual clock, so that request is aborted and counts as neither failed nor delivered.
    if (received === 1) stopping = first!.stop();
    return { status: 503 };
  });
  const node = await startNode(t);
  first = startDispatcher(t, node, [destination(receiver.url, { maxAttempts: 3 })]);

  await node.ingest(WORKSPACE, [identify('u1', 'm1', 'pro')]);
  await waitFor('the first dispatcher to stop', () => stopping !== null);
  await stopping;
  t.equal(receiver.requests.length, 2, 'the first dispatcher sent the batch twice');
  t.equal(first.stats('crm').failedAttempts, 1, 'one attempt failed before the stop aborted the second');

  const second = startDispatcher(t, node, [destination(receiver.url, { maxAttempts: 3 })]);
  await waitFor('a dead letter', () => second.stats('crm').deadLetteredBatches === 1);

  t.equal(receiver.requests.length, 4, 'the restarted dispatcher made the second and third attempts only');
  t.equal(second.stats('crm').failedAttempts, 2);
  t.match(await second.listDeadLetters('crm'), [{ attempts: 3, status: 503 }], 'the dead letter counts the failed attempts of both dispatchers');
});

t.test('webhooks - a refused connection is retried', async (t) => {
  // A port that was free a moment ago: nothing listens on it, so connecting fails at once.
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  const node = await startNode(t);
  const dispatcher = startDispatcher(t, node, [destination(new URL(`http://127.0.0.1:${port}/hooks`), { maxAttempts: 2 })]);

  await node.ingest(WORKSPACE, [identify('u1', 'm1', 'pro')]);
  await waitFor('a dead letter', () => dispatcher.stats('crm').deadLetteredBatches === 1);

  const [deadLetter] = await dispatcher.listDeadLetters('crm');
  t.equal(deadLetter.attempts, 2);
  t.equal(deadLetter.status, undefined);
  t.match(deadLetter.error, /^request failed: fetch failed \(.*ECONNREFUSED.*\)$/);
});

t.test('webhooks - a request that times out is retried', async (t) => {
  // A receiver that reads each request and never responds.
  const silent = createServer(() => {});
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    silent.closeAllConnections();
    return new Promise<void>((resolve) => silent.close(() => resolve()));
  });
  const url = new URL(`http://127.0.0.1:${(silent.address() as AddressInfo).port}/hooks`);
  const node = await startNode(t);
  const dispatcher = startDispatcher(t, node, [destination(url, { maxAttempts: 2, timeoutMs: 100 })]);

  await node.ingest(WORKSPACE, [identify('u1', 'm1', 'pro')]);
  await waitFor('a dead letter', () => dispatcher.stats('crm').deadLetteredBatches === 1);

  t.match(await dispatcher.listDeadLetters('crm'), [{ attempts: 2, error: 'timed out after 100 ms' }]);
  t.equal(dispatcher.stats('crm').failedAttempts, 2);
});

t.test('webhooks - the rate limit spaces requests', async (t) => {
  const receiver = await startReceiver(t);
  const node = await startNode(t);
  for (const user of ['u1', 'u2', 'u3', 'u4']) await node.ingest(WORKSPACE, [identify(user, `m-${user}`, 'pro')]);
  await waitFor('four stored activations', async () => (await node.activations.list(WORKSPACE, {})).activations.length === 4);

  const clock = new VirtualClock();
  const dispatcher = startDispatcher(t, node, [destination(receiver.url, { maxBatchActivations: 1, maxRequestsPerSecond: 2 })], { clock });
  await waitFor('four batches', () => dispatcher.stats('crm').deliveredBatches === 4);

  t.same(receiver.accepted().map((activation) => activation.sequence), [1, 2, 3, 4], 'one activation per request, in order');
  t.equal(dispatcher.stats('crm').rateLimitWaits, 3, 'every request after the first waited for a token');
  t.same(clock.sleeps.slice(0, 3), [500, 500, 500], 'half a second apart at 2 requests per second');
});

t.test('webhooks - a type filter skips other activations', async (t) => {
  const receiver = await startReceiver(t);
  const node = await startNode(t);
  const dispatcher = startDispatcher(t, node, [destination(receiver.url, { types: ['segment.exited'] })]);

  await node.ingest(WORKSPACE, [identify('u1', 'm1', 'pro')]);
  await node.ingest(WORKSPACE, [identify('u1', 'm2', 'free')]);
  await waitFor('the exit', () => receiver.accepted().length === 1);

  t.same(receiver.accepted().map((activation) => `${activation.sequence} ${activation.type}`), ['2 segment.exited']);
  await waitFor('the cursor past the exit', () => dispatcher.stats('crm').cursor === 2);
});

t.test('webhooks - the cursor survives a node restart', async (t) => {
  const receiver = await startReceiver(t);
  const dataDir = t.testdir();
  const options = { dataDir, port: 0, host: '127.0.0.1', logger: silentLogger(), actors: { snapshotIntervalMs: 20 }, webhooks: [destination(receiver.url)] };

  const first = await startEmbedded(options);
  await new DefinitionRegistry(first.node.definitionStore).apply(WORKSPACE, [{ name: 'segments.yaml', content: SEGMENT }]);
  await first.node.ingest(WORKSPACE, [identify('u1', 'm1', 'pro')]);
  await waitFor('the entry delivered', () => first.webhooks?.stats('crm').deliveredBatches === 1);
  await first.stop();
  t.equal(first.webhooks?.state, 'stopped');

  const second = await startEmbedded(options);
  t.teardown(() => second.stop());
  await second.node.ingest(WORKSPACE, [identify('u1', 'm2', 'free')]);
  await waitFor('the exit delivered', () => second.webhooks?.stats('crm').deliveredBatches === 1);

  t.same(
    receiver.accepted().map((activation) => `${activation.sequence} ${activation.type}`),
    ['1 segment.entered', '2 segment.exited'],
    'the acknowledged entry is not sent again after the restart',
  );
  t.equal(second.webhooks?.stats('crm').cursor, 2);
});

t.test('webhooks - token bucket waits for the next token', async (t) => {
  const clock = new VirtualClock();
  const bucket = new TokenBucket(4, clock);
  const signal = new AbortController().signal;

  t.equal(await bucket.take(signal), 0, 'a full bucket grants at once');
  t.equal(await bucket.take(signal), 250, 'then one token per 250 ms at 4 per second');
  t.equal(await bucket.take(signal), 250);
  clock.nowMs += 10_000;
  t.equal(await bucket.take(signal), 0, 'a long pause refills it');
  t.equal(await bucket.take(signal), 250, 'but only up to its capacity of one');

  const stopped = new AbortController();
  stopped.abort();
  t.equal(await bucket.take(stopped.signal), null, 'an aborted signal takes no token');
});

t.test('webhooks - idempotency key encodes unsafe characters', async (t) => {
  t.equal(idempotencyKey([{ id: 'segment.entered:pro:event:0:1:user:u1' }]), 'segment.entered:pro:event:0:1:user:u1 segment.entered:pro:event:0:1:user:u1');
  t.equal(idempotencyKey([{ id: 'a b' }, { id: 'x' }, { id: 'é%' }]), 'a%20b %C3%A9%25');
  t.notOk(verifyWebhookSignature(SECRET, '{}', undefined), 'a missing header fails');
  t.notOk(verifyWebhookSignature(SECRET, '{}', 'sha1=00'), 'another algorithm fails');
});
