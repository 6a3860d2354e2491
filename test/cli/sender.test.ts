import t from 'tap';
import { join } from 'node:path';
import { type ServerDuplexStream, Server, ServerCredentials, status } from '@grpc/grpc-js';
import {
  EventStatus,
  type EventResult,
  type IngestBatchRequest,
  type IngestBatchResponse,
  IngestServiceService,
} from '../../proto/gen/rtcdp/v1/ingest.js';
import { SendError, sendSources } from '../../cli/sender.js';
import { openSource } from '../../cli/sources/index.js';

type IngestCall = ServerDuplexStream<IngestBatchRequest, IngestBatchResponse>;

/**
 * Decides what the fake server does with a batch on a stream: "respond", or fail the
 * stream with a gRPC status after storing the batch (so a resend meets duplicates).
 */
type BatchHandler = (context: { stream: number; batchOnStream: number }) => 'respond' | { fail: status; details: string };

interface FakeServer {
  address: string;
  /** Sizes of the batches received, in order, resends included. */
  batchSizes: number[];
  streams: number;
  maxOutstanding: number;
  authorizations: string[];
  stop(): void;
}

/**
 * Starts an IngestService that stores messageIds in memory. A stored id comes back as a
 * duplicate, and an event named "Bad Event" is rejected on its `event` field.
 */
async function startFakeServer(handle: BatchHandler = () => 'respond', responseDelayMs = 0): Promise<FakeServer> {
  const stored = new Set<string>();
  const server = new Server();
  const fake: FakeServer = { address: '', batchSizes: [], streams: 0, maxOutstanding: 0, authorizations: [], stop: () => server.forceShutdown() };

  server.addService(IngestServiceService, {
    ingest: () => undefined,
    ingestBatch: () => undefined,
    ingestStream: (call: IngestCall) => {
      const stream = ++fake.streams;
      fake.authorizations.push(String(call.metadata.get('authorization')[0] ?? ''));
      let batchOnStream = 0;
      let outstanding = 0;
      let failed = false;

      call.on('data', (request: IngestBatchRequest) => {
        batchOnStream += 1;
        outstanding += 1;
        fake.maxOutstanding = Math.max(fake.maxOutstanding, outstanding);
        fake.batchSizes.push(request.events.length);
        const response = applyBatch(request, stored);
        const action = handle({ stream, batchOnStream });

        if (failed) {
          return;
        }
        if (action !== 'respond') {
          failed = true;
          call.emit('error', { code: action.fail, details: action.details });
          return;
        }
        setTimeout(() => {
          outstanding -= 1;
          if (!failed) {
            call.write(response);
          }
        }, responseDelayMs);
      });
      call.on('end', () => setTimeout(() => !failed && call.end(), responseDelayMs + 10));
      call.on('error', () => undefined);
    },
  });

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound)));
  });
  fake.address = `127.0.0.1:${port}`;
  return fake;
}

function applyBatch(request: IngestBatchRequest, stored: Set<string>): IngestBatchResponse {
  const results: EventResult[] = request.events.map((event, index) => {
    const base = { index, messageId: event.messageId, code: '', field: '', message: '' };
    if (event.event === 'Bad Event') {
      return { ...base, status: EventStatus.EVENT_STATUS_REJECTED, code: 'INVALID_FIELD', field: 'event', message: 'bad event name' };
    }
    if (stored.has(event.messageId)) {
      return { ...base, status: EventStatus.EVENT_STATUS_DUPLICATE };
    }
    stored.add(event.messageId);
    return { ...base, status: EventStatus.EVENT_STATUS_ACCEPTED };
  });

  const count = (eventStatus: EventStatus) => results.filter((result) => result.status === eventStatus).length;
  return {
    results,
    batchId: request.batchId,
    accepted: count(EventStatus.EVENT_STATUS_ACCEPTED),
    duplicates: count(EventStatus.EVENT_STATUS_DUPLICATE),
    rejected: count(EventStatus.EVENT_STATUS_REJECTED),
  };
}

function eventLines(count: number, extra: Record<string, unknown> = {}): string[] {
  return Array.from({ length: count }, (_, index) =>
    JSON.stringify({ type: 'track', messageId: `m${index + 1}`, userId: `u${index % 7}`, event: 'Viewed', ...extra }),
  );
}

t.test('sender - tallies and rejection locations', async (t) => {
  const fake = await startFakeServer();
  t.teardown(fake.stop);
  const lines = eventLines(1200);
  lines[9] = JSON.stringify({ type: 'track', messageId: 'bad', userId: 'u1', event: 'Bad Event' });
  lines[19] = '{"type": broken';
  lines[29] = JSON.stringify({ type: 'track', messageId: 'ctx', userId: 'u1', event: 'Viewed', context: 'not an object' });
  const dir = t.testdir({ 'events.ndjson': `${lines.join('\n')}\n` });
  const file = join(dir, 'events.ndjson');
  const notices: string[] = [];

  const summary = await sendSources([await openSource(file)], {
    server: fake.address,
    writeKey: 'key-1',
    progress: 'off',
    notice: (line) => notices.push(line),
  });

  t.equal(summary.sent, 1198);
  t.equal(summary.accepted, 1197);
  t.equal(summary.duplicates, 0);
  t.equal(summary.rejected, 1);
  t.equal(summary.clientErrors, 2);
  t.strictSame(fake.batchSizes, [500, 500, 198]);
  t.strictSame(summary.exampleIdentifier, { type: 'user_id', value: 'u0' });
  t.equal(fake.authorizations[0], 'Bearer key-1', 'write key sent as a bearer token');
  t.strictSame(notices, []);
  t.match(summary.firstRejections, [
    { file, line: 10, code: 'INVALID_FIELD', field: 'event', message: 'bad event name' },
    { file, line: 20, code: 'INVALID_LINE', field: '' },
    { file, line: 30, code: 'INVALID_EVENT', field: 'context' },
  ]);
});

t.test('sender - sending again gives duplicates', async (t) => {
  const fake = await startFakeServer();
  t.teardown(fake.stop);
  const dir = t.testdir({ 'events.ndjson': `${eventLines(50).join('\n')}\n` });
  const source = await openSource(join(dir, 'events.ndjson'));

  const first = await sendSources([source], { server: fake.address, progress: 'off' });
  const second = await sendSources([source], { server: fake.address, progress: 'off' });

  t.equal(first.accepted, 50);
  t.equal(second.accepted, 0);
  t.equal(second.duplicates, 50);
  t.equal(fake.authorizations[0], '', 'no write key, no authorization header');
});

t.test('sender - byte cap splits batches', async (t) => {
  const fake = await startFakeServer();
  t.teardown(fake.stop);
  // About 10 KB of JSON per event, so 44 of them fit in 450 KB.
  const lines = eventLines(100, { properties: { note: 'x'.repeat(10_000) } });
  const dir = t.testdir({ 'big.ndjson': `${lines.join('\n')}\n` });
  const eventBytes = Buffer.byteLength(JSON.parse(JSON.stringify(lines[0])));

  const summary = await sendSources([await openSource(join(dir, 'big.ndjson'))], { server: fake.address, progress: 'off' });

  const perBatch = Math.floor(450_000 / eventBytes);
  t.equal(summary.accepted, 100);
  t.strictSame(fake.batchSizes, [perBatch, perBatch, 100 - 2 * perBatch]);
});

t.test('sender - batch size option', async (t) => {
  const fake = await startFakeServer();
  t.teardown(fake.stop);
  const dir = t.testdir({ 'events.ndjson': `${eventLines(25).join('\n')}\n` });

  await sendSources([await openSource(join(dir, 'events.ndjson'))], { server: fake.address, progress: 'off', batchSize: 10 });

  t.strictSame(fake.batchSizes, [10, 10, 5]);
});

t.test('sender - window bounds outstanding batches', async (t) => {
  const fake = await startFakeServer(() => 'respond', 20);
  t.teardown(fake.stop);
  const dir = t.testdir({ 'events.ndjson': `${eventLines(200).join('\n')}\n` });

  const summary = await sendSources([await openSource(join(dir, 'events.ndjson'))], {
    server: fake.address,
    progress: 'off',
    batchSize: 10,
    concurrency: 3,
  });

  t.equal(summary.accepted, 200);
  t.equal(fake.maxOutstanding, 3);
});

t.test('sender - resends after RESOURCE_EXHAUSTED', async (t) => {
  // The first stream stores the third batch, then fails before responding to it.
  const fake = await startFakeServer(({ stream, batchOnStream }) =>
    stream === 1 && batchOnStream === 3 ? { fail: status.RESOURCE_EXHAUSTED, details: 'node over its in-flight limit' } : 'respond',
  );
  t.teardown(fake.stop);
  const dir = t.testdir({ 'events.ndjson': `${eventLines(100).join('\n')}\n` });
  const notices: string[] = [];

  const summary = await sendSources([await openSource(join(dir, 'events.ndjson'))], {
    server: fake.address,
    progress: 'off',
    batchSize: 10,
    concurrency: 4,
    notice: (line) => notices.push(line),
  });

  t.equal(fake.streams, 2);
  t.equal(summary.sent, 100);
  t.equal(summary.accepted + summary.duplicates, 100, 'every event acknowledged once');
  t.ok(summary.duplicates >= 10, 'the stored batch comes back as duplicates');
  t.equal(notices.length, 1);
  t.match(notices[0], /^ingest stream failed \(RESOURCE_EXHAUSTED: node over its in-flight limit\); reconnecting in \d+ ms, attempt 2 of 10/);
});

t.test('sender - gives up after max attempts', async (t) => {
  const fake = await startFakeServer(() => ({ fail: status.UNAVAILABLE, details: 'node is draining' }));
  t.teardown(fake.stop);
  const dir = t.testdir({ 'events.ndjson': `${eventLines(5).join('\n')}\n` });

  const sending = sendSources([await openSource(join(dir, 'events.ndjson'))], {
    server: fake.address,
    progress: 'off',
    maxAttempts: 3,
    notice: () => undefined,
  });

  await t.rejects(sending, SendError);
  await t.rejects(sending, {
    message: new RegExp(`^ingest stream to ${fake.address} failed 3 times in a row: UNAVAILABLE: node is draining$`),
  });
  t.equal(fake.streams, 3);
});

t.test('sender - non-retryable status fails at once', async (t) => {
  const fake = await startFakeServer(() => ({ fail: status.UNAUTHENTICATED, details: 'unknown write key ending in "ey-1"' }));
  t.teardown(fake.stop);
  const dir = t.testdir({ 'events.ndjson': `${eventLines(5).join('\n')}\n` });

  const sending = sendSources([await openSource(join(dir, 'events.ndjson'))], { server: fake.address, progress: 'off' });

  await t.rejects(sending, { name: 'SendError', message: /failed: UNAUTHENTICATED: unknown write key/ });
  t.equal(fake.streams, 1);
});

t.test('sender - abort signal stops the send', async (t) => {
  const fake = await startFakeServer(() => 'respond', 200);
  t.teardown(fake.stop);
  const dir = t.testdir({ 'events.ndjson': `${eventLines(100).join('\n')}\n` });
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 50);

  const sending = sendSources([await openSource(join(dir, 'events.ndjson'))], {
    server: fake.address,
    progress: 'off',
    batchSize: 10,
    concurrency: 1,
    signal: controller.signal,
  });

  await t.rejects(sending, { name: 'AbortedError', message: 'send was aborted' });
});
