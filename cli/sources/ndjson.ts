/**
 * Reads a Segment NDJSON file: one JSON object per line, as Segment's archives and
 * exports write them. A line that does not parse becomes an error item and reading goes
 * on with the next line.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { RawEvent } from '../../profiles/event.js';
import { parseSegmentLine } from '../../profiles/segment-json.js';
import type { SourceItem } from './index.js';

/** Streams the events of a Segment NDJSON file in file order, skipping blank lines. */
export async function* readSegmentNdjson(file: string): AsyncGenerator<SourceItem> {
  const input = createReadStream(file, { encoding: 'utf8' });
  const lines = createInterface({ input, crlfDelay: Infinity });

  let lineNumber = 0;
  try {
    for await (const text of lines) {
      lineNumber += 1;
      const line = lineNumber === 1 ? text.replace(/^\uFEFF/, '') : text;
      if (line.trim() === '') {
        continue;
      }

      yield* lineToItems(line, lineNumber);
    }
  } finally {
    // readline does not close its input when the caller stops early.
    input.destroy();
  }
}

function lineToItems(line: string, lineNumber: number): SourceItem[] {
  const parsed = parseSegmentLine(line, lineNumber);
  if (!parsed.ok) {
    // The summary prints FILE:LINE already, so a "line N: " prefix would repeat it.
    const message = parsed.message.replace(/^line \d+: /, '');
    return [{ kind: 'error', line: lineNumber, code: 'INVALID_LINE', field: '', message }];
  }

  return parsed.events.map((event: RawEvent) => ({ kind: 'event', line: lineNumber, event }));
}
