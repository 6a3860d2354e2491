/**
 * Reads the UCI "Online Retail" CSV (one row per invoice line) as Segment track events.
 *
 * Each row becomes one "Order Line Purchased" event, or "Order Line Cancelled" when the
 * InvoiceNo starts with "C". The full mapping is described in data/README.md.
 */
import { createReadStream } from 'node:fs';
import { basename } from 'node:path';
import { parse } from 'csv-parse';
import type { RawEvent } from '../../profiles/event.js';
import type { SourceItem } from './index.js';

export const ONLINE_RETAIL_COLUMNS = [
  'InvoiceNo',
  'StockCode',
  'Description',
  'Quantity',
  'InvoiceDate',
  'UnitPrice',
  'CustomerID',
  'Country',
] as const;

type Column = (typeof ONLINE_RETAIL_COLUMNS)[number];

export const PURCHASED_EVENT = 'Order Line Purchased';
export const CANCELLED_EVENT = 'Order Line Cancelled';

/** Error for a row that cannot become an event, naming the column at fault. */
class RowError extends Error {
  constructor(
    readonly column: Column,
    message: string,
  ) {
    super(message);
  }
}

/** Returns whether a CSV header line is the Online Retail header, ignoring a BOM, spaces and line ending. */
export function isOnlineRetailHeader(headerLine: string): boolean {
  const names = headerLine.replace(/^\uFEFF/, '').trim().split(',');
  if (names.length !== ONLINE_RETAIL_COLUMNS.length) {
    return false;
  }

  return names.every((name, index) => name.trim() === ONLINE_RETAIL_COLUMNS[index]);
}

/**
 * Streams the events of an Online Retail CSV file, one per data row, in file order.
 * Throws on the first row that cannot be mapped, naming its line. `openSource` reads the
 * same file without stopping at bad rows.
 */
export async function* readOnlineRetail(file: string): AsyncGenerator<RawEvent> {
  for await (const item of readOnlineRetailItems(file)) {
    if (item.kind === 'error') {
      throw new Error(`${file}:${item.line}: ${item.message}`);
    }

    yield item.event;
  }
}

/**
 * Streams an Online Retail CSV file as source items: an event per valid data row and an
 * error per row that cannot be mapped. A malformed CSV structure, such as an unclosed
 * quote, ends the file with one error item because the parser cannot find the next row.
 * Throws when the file cannot be read or its header is not the Online Retail header.
 */
export async function* readOnlineRetailItems(file: string): AsyncGenerator<SourceItem> {
  const fileName = basename(file);
  const parser = parse({ bom: true, info: true, relax_column_count: true, relax_quotes: true, skip_empty_lines: true });
  const input = createReadStream(file);
  // pipe() does not forward read errors, and without this the loop below would wait forever.
  input.on('error', (error) => parser.destroy(error));
  input.pipe(parser);

  let rowNumber = 0;
  try {
    for await (const parsed of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
      if (rowNumber === 0) {
        checkHeader(file, parsed.record);
        rowNumber = 1;
        continue;
      }

      // NOTE: csv-parse reports the line where a record ends, so a row whose quoted
      // description spans lines is reported at its last line.
      yield rowToItem(parsed.record, fileName, rowNumber, parsed.info.lines);
      rowNumber += 1;
    }
  } catch (error) {
    if (!isCsvError(error)) {
      throw error;
    }

    const message = `invalid CSV, stopped reading the file: ${error.message}`;
    yield { kind: 'error', line: error.lines ?? 0, code: 'INVALID_CSV', field: '', message };
  } finally {
    // Closes the file when the caller stops early, which leaves the input paused and open.
    input.destroy();
  }
}

function isCsvError(error: unknown): error is Error & { code: string; lines?: number } {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof code === 'string' && code.startsWith('CSV_');
}

function checkHeader(file: string, record: string[]): void {
  if (!isOnlineRetailHeader(record.join(','))) {
    throw new Error(
      `${file} is not an Online Retail CSV: expected the header "${ONLINE_RETAIL_COLUMNS.join(',')}", found "${record.join(',')}"`,
    );
  }
}

function rowToItem(record: string[], fileName: string, rowNumber: number, line: number): SourceItem {
  if (record.length !== ONLINE_RETAIL_COLUMNS.length) {
    const message = `expected ${ONLINE_RETAIL_COLUMNS.length} columns, found ${record.length}`;
    return { kind: 'error', line, code: 'INVALID_ROW', field: '', message };
  }

  try {
    return { kind: 'event', line, event: rowToEvent(record, fileName, rowNumber) };
  } catch (error) {
    if (error instanceof RowError) {
      return { kind: 'error', line, code: 'INVALID_ROW', field: error.column, message: error.message };
    }
    throw error;
  }
}

/**
 * Maps one data row to a track event. `rowNumber` counts data rows from 1 and goes into
 * the messageId. Row content cannot identify a row, because the data has exact
 * duplicate lines that are separate purchases.
 */
export function rowToEvent(record: readonly string[], fileName: string, rowNumber: number): RawEvent {
  const [invoiceNo, stockCode, description, quantityText, invoiceDate, unitPriceText, customerId, country] = record.map(
    (value) => value.trim(),
  );

  const quantity = parseNumber(quantityText, 'Quantity');
  const unitPrice = parseNumber(unitPriceText, 'UnitPrice');
  const properties: Record<string, unknown> = {
    invoiceNo: requireValue(invoiceNo, 'InvoiceNo'),
    stockCode,
    ...(description === '' ? {} : { description }),
    quantity,
    unitPrice,
    revenue: revenueOf(quantity, unitPrice),
    ...(country === '' ? {} : { country }),
  };

  return {
    type: 'track',
    messageId: `online-retail:${fileName}:${rowNumber}`,
    timestamp: parseInvoiceDate(invoiceDate),
    ...identityOf(customerId, invoiceNo),
    event: invoiceNo.startsWith('C') ? CANCELLED_EVENT : PURCHASED_EVENT,
    properties,
    ...(country === '' ? {} : { context: { traits: { country } } }),
  };
}

/** Returns the userId of a customer, or for a guest checkout (no CustomerID) an anonymousId per invoice. */
function identityOf(customerId: string, invoiceNo: string): { userId: string } | { anonymousId: string } {
  if (customerId === '') {
    return { anonymousId: `guest-${invoiceNo}` };
  }

  // The data writes customer ids as floats ("17850.0").
  return { userId: customerId.replace(/\.0+$/, '') };
}

/**
 * Returns quantity × unitPrice rounded half away from zero to 2 decimals (pence), so a
 * float product such as 6 × 2.55 = 15.299999999999999 is stored as 15.3. A cancellation
 * has a negative quantity and so a negative revenue.
 */
export function revenueOf(quantity: number, unitPrice: number): number {
  const product = quantity * unitPrice;
  const cents = Math.round(Math.abs(product) * 100);
  return cents === 0 ? 0 : (Math.sign(product) * cents) / 100;
}

/**
 * Converts "2010-12-01 08:26:00" to "2010-12-01T08:26:00.000Z". The file gives UK local
 * time without a zone, and this reader takes it as UTC, so times in British Summer Time
 * (from 27 March 2011) are one hour late.
 */
export function parseInvoiceDate(value: string): string {
  const match = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/.exec(value);
  if (!match) {
    throw new RowError('InvoiceDate', `invalid InvoiceDate "${value}": expected YYYY-MM-DD HH:MM:SS`);
  }

  const [year, month, day, hour, minute, second] = match.slice(1).map((part) => Number(part ?? '0'));
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  const roundTrips = date.getUTCMonth() === month - 1 && date.getUTCDate() === day && date.getUTCHours() === hour;
  if (!roundTrips || minute > 59 || second > 59) {
    throw new RowError('InvoiceDate', `invalid InvoiceDate "${value}": no such date or time`);
  }

  return date.toISOString();
}

function parseNumber(value: string, column: Column): number {
  const number = value === '' ? Number.NaN : Number(value);
  if (!Number.isFinite(number)) {
    throw new RowError(column, `invalid ${column} "${value}": expected a number`);
  }

  return number;
}

function requireValue(value: string, column: Column): string {
  if (value === '') {
    throw new RowError(column, `missing ${column}`);
  }

  return value;
}
