import http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { startTestNode } from '../helpers/grpc-node.js';

t.test('api server - stop cancels a call that never ends', async (t) => {
  const node = await startTestNode(t);
  const session = http2.connect(`http://${node.rtcdp.address}`);
  session.on('error', () => {});
  t.teardown(() => session.destroy());

  // An IngestStream whose client never sends END_STREAM keeps the server's graceful shutdown waiting.
  const stream = session.request({ ':method': 'POST', ':path': '/rtcdp.v1.IngestService/IngestStream', 'content-type': 'application/grpc', te: 'trailers' });
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
