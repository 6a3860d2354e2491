/**
 * Reads a Segment NDJSON file: one JSON object per line, as Segment's archives and
 * exports write them. A line that does not parse becomes an error item and reading goes
 * on with the next line.
 */
import type { RawEvent } from '../../profiles/event.js';
import { parseSegmentLine } from '../../profiles/segment-json.js';
import type { SourceItem } from './index.js';
import { readByteLines } from './lines.js';

/**
 * A lenient decoder would turn each invalid byte into U+FFFD, so two different messageIds
 * could arrive as the same one and the second be dropped as a duplicate.
 */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Streams the events of a Segment NDJSON file in file order, skipping blank lines. */
export async function* readSegmentNdjson(file: string): AsyncGenerator<SourceItem> {
  let lineNumber = 0;
  for await (const bytes of readByteLines(file)) {
    lineNumber += 1;
    const text = decodeLine(bytes);
    if (text === undefined) {
      yield { kind: 'error', line: lineNumber, code: 'INVALID_UTF8', field: '', message: 'the line is not valid UTF-8; fix the file\'s encoding' };
      continue;
    }

    const line = lineNumber === 1 ? text.replace(/^\uFEFF/, '') : text;
    if (line.trim() === '') {
      continue;
    }

    yield* lineToItems(line, lineNumber);
  }
}

function decodeLine(bytes: Buffer): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
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
