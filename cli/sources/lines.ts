/**
 * Splits a file into lines of raw bytes, so each line can be decoded strictly on its own.
 * Lines end at "\n", "\r\n" or a lone "\r", as with readline.
 */
import { createReadStream } from 'node:fs';

const LF = 0x0a;
const CR = 0x0d;

/** Streams the lines of `file` as buffers, without their line endings. */
export async function* readByteLines(file: string): AsyncGenerator<Buffer> {
  const input = createReadStream(file);
  let pending: Buffer = Buffer.alloc(0);
  let skipLineFeed = false;

  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      let data: Buffer = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      if (skipLineFeed && data[0] === LF) data = data.subarray(1);
      skipLineFeed = false;

      let start = 0;
      for (let i = 0; i < data.length; i++) {
        if (data[i] !== LF && data[i] !== CR) continue;
        yield data.subarray(start, i);
        if (data[i] === CR) {
          if (i + 1 < data.length && data[i + 1] === LF) i += 1;
          else if (i + 1 === data.length) skipLineFeed = true;
        }
        start = i + 1;
      }
      pending = data.subarray(start);
    }
    if (pending.length > 0) yield pending;
  } finally {
    input.destroy();
  }
}
