/**
 * Reads a Segment NDJSON file: one JSON object per line, as Segment's archives and
 * exports write them. A line that does not parse becomes an error item and reading goes
 * on with the next line. An event without a messageId gets one made of the file name, the
 * line number and a hash of the line. So sending the same file again is deduplicated as for
 * events that carry their own, and an edited line counts as a new event.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { RawEvent } from '../../profiles/event.js';
import { parseSegmentLine } from '../../profiles/segment-json.js';
import type { SourceItem } from './index.js';
import { readByteLines } from './lines.js';

/**
 * A lenient decoder would turn each invalid byte into U+FFFD, so two different messageIds
 * could arrive as the same one and the second be dropped as a duplicate.
 */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Largest .json file read as one JSON document before it is read line by line. */
const MAX_DOCUMENT_BYTES = 64 * 1024 * 1024;

/**
 * Streams the events of a Segment NDJSON file in file order, skipping blank lines. A .json
 * file that contains one JSON document (an event, a `{"batch": [...]}` envelope or an array of
 * events), pretty-printed or not, is read as that document instead.
 */
export async function* readSegmentNdjson(file: string): AsyncGenerator<SourceItem> {
  const document = await readJsonDocument(file);
  if (document !== undefined) {
    yield* documentToItems(document, path.basename(file));
    return;
  }

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

    yield* lineToItems(line, lineNumber, path.basename(file));
  }
}

/** Returns the parsed content of a .json file that is one JSON document, else undefined. */
async function readJsonDocument(file: string): Promise<unknown> {
  if (path.extname(file).toLowerCase() !== '.json' || (await stat(file)).size > MAX_DOCUMENT_BYTES) return undefined;
  const text = decodeLine(await readFile(file));
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch {
    return undefined;
  }
}

/** Turns a whole-file document into items, all on line 1, as a line of an NDJSON file would be. */
function documentToItems(document: unknown, fileName: string): SourceItem[] {
  const text = JSON.stringify(Array.isArray(document) ? { batch: document } : document);
  return lineToItems(text, 1, fileName);
}

function decodeLine(bytes: Buffer): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

function lineToItems(line: string, lineNumber: number, fileName: string): SourceItem[] {
  const parsed = parseSegmentLine(line, lineNumber);
  if (!parsed.ok) {
    // The summary prints FILE:LINE already, so a "line N: " prefix would repeat it.
    const message = parsed.message.replace(/^line \d+: /, '');
    return [{ kind: 'error', line: lineNumber, code: 'INVALID_LINE', field: '', message }];
  }

  const single = parsed.events.length === 1;
  return parsed.events.map((event: RawEvent, index) => {
    if (event.messageId === undefined || event.messageId === '') event.messageId = lineMessageId(fileName, single ? `${lineNumber}` : `${lineNumber}.${index + 1}`, line);
    return { kind: 'event', line: lineNumber, event };
  });
}

/** Maximum length of a file name kept whole in a made-up messageId, which must fit the 100-character default limit. */
const MAX_NAME_IN_ID = 48;

/** Returns `ndjson:NAME:LINE:HASH`, with a hash in place of a long file name. */
function lineMessageId(fileName: string, position: string, line: string): string {
  const name = fileName.length <= MAX_NAME_IN_ID ? fileName : createHash('sha256').update(fileName).digest('hex').slice(0, 16);
  const hash = createHash('sha256').update(line).digest('hex').slice(0, 16);
  return `ndjson:${name}:${position}:${hash}`;
}
