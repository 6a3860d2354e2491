/**
 * Opens an event file for `rtcdp send` and `rtcdp dev --load`, choosing the reader by the
 * file's extension and, when the extension is unknown, by its first line.
 */
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { extname } from 'node:path';
import { RtcdpError } from '../../common/errors.js';
import type { RawEvent } from '../../profiles/event.js';
import { ONLINE_RETAIL_COLUMNS, isOnlineRetailHeader, readOnlineRetailItems } from './online-retail.js';
import { readSegmentNdjson } from './ndjson.js';
import { describeFsError } from '../../common/fs-errors.js';

/**
 * One unit read from a file: an event to send, or a line that could not become an event.
 * `line` is the 1-based line in the file. `code` and `field` mirror a server rejection.
 */
export type SourceItem =
  | { kind: 'event'; line: number; event: RawEvent }
  | { kind: 'error'; line: number; code: string; field: string; message: string };

export type SourceFormat = 'online-retail' | 'segment-ndjson';

export interface Source {
  file: string;
  format: SourceFormat;
  /** Reads the file from the start. Each call opens the file again. */
  items(): AsyncGenerator<SourceItem>;
  /** Estimates the number of events from the number of lines, for a progress bar. */
  estimateEvents(): Promise<number>;
}

/** A file that cannot be read as events: missing, unreadable, or of an unknown format. */
export class SourceError extends RtcdpError {
  readonly code = 'INVALID_SOURCE';
}

const NDJSON_EXTENSIONS = new Set(['.ndjson', '.jsonl', '.json']);

const SUPPORTED_FORMATS =
  `.csv with the Online Retail header (${ONLINE_RETAIL_COLUMNS.join(',')}), ` +
  'or .ndjson, .jsonl or .json with one Segment event per line';

/** Checks that `file` is a readable file of a known format and returns its reader. Throws SourceError otherwise. */
export async function openSource(file: string): Promise<Source> {
  await checkReadableFile(file);

  const firstLine = await readFirstLine(file);
  const format = detectFormat(file, firstLine);

  return {
    file,
    format,
    items: () => (format === 'online-retail' ? readOnlineRetailItems(file) : readSegmentNdjson(file)),
    estimateEvents: async () => {
      const lines = await countLines(file);
      return format === 'online-retail' ? Math.max(0, lines - 1) : lines;
    },
  };
}

/** Returns the format of `file`, from its extension when known, otherwise from its first line. */
export function detectFormat(file: string, firstLine: string): SourceFormat {
  const extension = extname(file).toLowerCase();

  if (extension === '.csv') {
    if (!isOnlineRetailHeader(firstLine)) {
      throw new SourceError(`unsupported CSV ${file}: expected the header "${ONLINE_RETAIL_COLUMNS.join(',')}"`);
    }
    return 'online-retail';
  }

  if (NDJSON_EXTENSIONS.has(extension)) {
    return 'segment-ndjson';
  }

  if (isOnlineRetailHeader(firstLine)) {
    return 'online-retail';
  }

  if (firstLine.replace(/^\uFEFF/, '').trimStart().startsWith('{')) {
    return 'segment-ndjson';
  }

  throw new SourceError(`unknown format of ${file}: expected ${SUPPORTED_FORMATS}`);
}

async function checkReadableFile(file: string): Promise<void> {
  let isFile: boolean;
  try {
    isFile = (await stat(file)).isFile();
  } catch (error) {
    throw new SourceError(`cannot read ${file}: ${describeFsError(error)}`);
  }

  if (!isFile) {
    throw new SourceError(`cannot read ${file}: not a regular file`);
  }
}

/** Reads up to the first line break in the first 64 KiB, which is enough for any header. */
async function readFirstLine(file: string): Promise<string> {
  let handle;
  try {
    handle = await open(file, 'r');
    const buffer = Buffer.alloc(64 * 1024);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    const text = buffer.subarray(0, bytesRead).toString('utf8');
    return text.split(/\r?\n/, 1)[0] ?? '';
  } catch (error) {
    throw new SourceError(`cannot read ${file}: ${describeFsError(error)}`);
  } finally {
    await handle?.close();
  }
}

async function countLines(file: string): Promise<number> {
  let lines = 0;
  let lastByte = 0x0a;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    for (let index = chunk.indexOf(0x0a); index !== -1; index = chunk.indexOf(0x0a, index + 1)) {
      lines += 1;
    }
    lastByte = chunk[chunk.length - 1] ?? lastByte;
  }

  // A last line without a line break still counts.
  return lastByte === 0x0a ? lines : lines + 1;
}
