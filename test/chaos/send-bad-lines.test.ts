/**
 * `rtcdp send` with one bad line among good ones. Each case expects that line to get its
 * own rejection or client error and every good line, before and after it, to be accepted.
 * One bad line must not end the send or change another event.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { sendSources, type SendSummary } from '../../cli/sender.js';
import { openSource } from '../../cli/sources/index.js';
import { startTestNode } from '../helpers/grpc-node.js';

/** Lines of good events for `userId`, with messageIds `${prefix}-0` and so on. */
function goodLines(userId: string, prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => JSON.stringify({ type: 'track', userId, messageId: `${prefix}-${i}`, event: 'Page Viewed' }));
}

/** Starts a node with its data in `dir`/data, so that the test files can go in `dir`. */
function startNodeIn(t: Test, dir: string) {
  return startTestNode(t, { dataDir: path.join(dir, 'data') });
}

/** Sends `file`, and returns the summary or the message of the error that ended the send. */
async function send(address: string, file: string): Promise<SendSummary | string> {
  try {
    return await sendSources([await openSource(file)], { server: address, progress: 'off', notice: () => {}, maxAttempts: 3 });
  } catch (error) {
    return (error as Error).message;
  }
}

t.test('chaos - send line nested 60 levels deep', async (t) => {
  const dir = t.testdir();
  const node = await startNodeIn(t, dir);
  const depth = 60;
  const deepLine = `{"type":"track","userId":"nested","messageId":"nested-deep","event":"Deep","properties":${'{"a":'.repeat(depth)}{}${'}'.repeat(depth)}}`;
  const file = path.join(dir, 'nested.ndjson');
  writeFileSync(file, [...goodLines('nested', 'before', 100), deepLine, ...goodLines('nested', 'after', 100)].join('\n') + '\n');

  const summary = await send(node.rtcdp.address, file);
  if (typeof summary === 'string') {
    t.fail(`the send ended with an error instead of rejecting one line: ${summary}`);
    return;
  }
  t.equal(summary.accepted, 200, 'every good line is accepted');
  t.equal(summary.rejected + summary.clientErrors, 1, 'the deep line alone is rejected');
  t.equal(summary.firstRejections[0]?.line, 101, 'the rejection names the deep line');
});

t.test('chaos - send event larger than 4 MiB', async (t) => {
  const dir = t.testdir();
  const node = await startNodeIn(t, dir);
  const hugeLine = JSON.stringify({ type: 'track', userId: 'huge', messageId: 'huge-1', event: 'Huge', properties: { text: 'x'.repeat(5 * 1024 * 1024) } });
  const file = path.join(dir, 'huge.ndjson');
  writeFileSync(file, [...goodLines('huge', 'before', 3), hugeLine, ...goodLines('huge', 'after', 3)].join('\n') + '\n');

  const summary = await send(node.rtcdp.address, file);
  if (typeof summary === 'string') {
    t.fail(`the send ended with an error instead of rejecting one event: ${summary}`);
    return;
  }
  t.equal(summary.accepted, 6, 'every good line is accepted');
  t.equal(summary.rejected + summary.clientErrors, 1, 'the huge event alone is rejected');
});

t.test('chaos - send lines with invalid UTF-8', async (t) => {
  const dir = t.testdir();
  const node = await startNodeIn(t, dir);
  // The two messageIds differ only in their last byte, 0xFF or 0xFE, which are never valid in UTF-8.
  const lines = [
    Buffer.from(goodLines('utf8', 'valid', 1)[0]),
    Buffer.concat([Buffer.from('{"type":"track","userId":"utf8","event":"E","messageId":"bytes-'), Buffer.from([0xff]), Buffer.from('"}')]),
    Buffer.concat([Buffer.from('{"type":"track","userId":"utf8","event":"E","messageId":"bytes-'), Buffer.from([0xfe]), Buffer.from('"}')]),
  ];
  const file = path.join(dir, 'invalid-utf8.ndjson');
  writeFileSync(file, Buffer.concat(lines.flatMap((line) => [line, Buffer.from('\n')])));

  const summary = await send(node.rtcdp.address, file);
  if (typeof summary === 'string') {
    t.fail(`the send ended with an error: ${summary}`);
    return;
  }
  t.equal(summary.accepted, 1, 'only the valid line is accepted');
  t.equal(summary.duplicates, 0, 'no line is taken for a duplicate of another');
  t.equal(summary.rejected + summary.clientErrors, 2, 'each line with invalid UTF-8 gets its own error');
});
