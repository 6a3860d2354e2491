import http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { status, type StatusObject } from '@grpc/grpc-js';
import { ERROR_CODE_TRAILER } from '../../api/status.js';
import { rawEventToProto } from '../../profiles/segment-json.js';
import type { IngestBatchResponse } from '../../proto/gen/rtcdp/v1/ingest.js';
import { startTestNode } from '../helpers/grpc-node.js';

t.test('api server - stop cancels a call that never ends', async (t) => {
  const node = await startTestNode(t);
  const session = http2.connect(`http://${node.rtcdp.address}`);
  session.on('error', () => {});
  t.teardown(() => session.destroy());

  // An IngestBatch call whose client never sends its request keeps the server's graceful shutdown waiting.
  const stream = session.request({ ':method': 'POST', ':path': '/rtcdp.v1.IngestService/IngestBatch', 'content-type': 'application/grpc', te: 'trailers' });
  stream.on('error', () => {});
  const streamClosed = new Promise<void>((resolve) => stream.on('close', () => resolve()));
  // The server sends no headers before the first response message, so give it time to start the call.
  await new Promise<void>((resolve) => session.on('connect', () => resolve()));
  await sleep(300);

  const startedMs = Date.now();
  await node.rtcdp.server.stop({ graceMs: 300 });
  const elapsedMs = Date.now() - startedMs;

  t.ok(elapsedMs >= 300, `stop waited for the grace period (${elapsedMs} ms)`);
  t.ok(elapsedMs < 2_300, `stop returned within the grace period and the forced-close wait (${elapsedMs} ms)`);
  await streamClosed;
  t.pass('the open stream was closed');
});

t.test('api server - stop ends an open IngestStream with UNAVAILABLE', async (t) => {
  const node = await startTestNode(t);
  const call = node.ingest.ingestStream();
  const responses: IngestBatchResponse[] = [];
  call.on('data', (response: IngestBatchResponse) => responses.push(response));
  call.on('error', () => {
    // The status event below carries the same code and details.
  });
  const finished = new Promise<StatusObject>((resolve) => call.on('status', resolve));

  const event = { type: 'track', event: 'Viewed', userId: 'streamer', messageId: 'stream-1' };
  call.write({ events: [rawEventToProto(event)], batchId: 'first' });
  while (responses.length === 0) await sleep(10);

  // The client keeps the stream open, as a sender between two batches does.
  const startedMs = Date.now();
  await node.rtcdp.server.stop({ graceMs: 5_000 });
  const elapsedMs = Date.now() - startedMs;
  const final = await finished;

  t.equal(final.code, status.UNAVAILABLE, 'the stream ends with UNAVAILABLE, which clients retry elsewhere');
  t.equal(final.metadata.get(ERROR_CODE_TRAILER)[0], 'NODE_UNAVAILABLE', 'with the node\'s error code');
  t.match(final.details, 'the node is stopping, so this stream ends here; send the batches that got no response to another node');
  t.same(responses.map((response) => response.batchId), ['first'], 'the batch sent before the stop was answered');
  t.ok(elapsedMs < 5_000, `stop did not wait out the grace period for the open stream (${elapsedMs} ms)`);
});
