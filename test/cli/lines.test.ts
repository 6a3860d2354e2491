import { writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { readByteLines } from '../../cli/sources/lines.js';

async function linesOf(file: string): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of readByteLines(file)) lines.push(line.toString('latin1'));
  return lines;
}

t.test('byte lines - every line ending', async (t) => {
  const file = path.join(t.testdir(), 'endings.txt');
  writeFileSync(file, 'a\nb\r\nc\rd\n\ne');

  t.same(await linesOf(file), ['a', 'b', 'c', 'd', '', 'e']);
});

t.test('byte lines - CRLF split across chunks', async (t) => {
  // createReadStream reads 64 KiB chunks, so "\r" ends the first chunk and "\n" starts the second.
  const first = 'x'.repeat(64 * 1024 - 1);
  const file = path.join(t.testdir(), 'boundary.txt');
  writeFileSync(file, `${first}\r\nsecond\n`);

  const lines = await linesOf(file);
  t.equal(lines.length, 2, 'the CRLF ends one line, not two');
  t.equal(lines[0].length, first.length);
  t.equal(lines[1], 'second');
});

t.test('byte lines - invalid UTF-8 bytes kept', async (t) => {
  const file = path.join(t.testdir(), 'bytes.txt');
  writeFileSync(file, Buffer.from([0x61, 0xff, 0x0a, 0xfe]));

  const lines: Buffer[] = [];
  for await (const line of readByteLines(file)) lines.push(Buffer.from(line));
  t.same(lines.map((line) => [...line]), [[0x61, 0xff], [0xfe]]);
});
