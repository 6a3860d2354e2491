import t from 'tap';
import { join } from 'node:path';
import type { RawEvent } from '../../profiles/event.js';
import {
  isOnlineRetailHeader,
  parseInvoiceDate,
  readOnlineRetail,
  readOnlineRetailItems,
  revenueOf,
} from '../../cli/sources/online-retail.js';
import type { SourceItem } from '../../cli/sources/index.js';

const HEADER = 'InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country';

// Rows taken from the December 2010 file. The last two lines are an exact duplicate pair.
const SAMPLE = [
  HEADER,
  '536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom',
  '536381,82567,"AIRLINE LOUNGE,METAL SIGN",2,2010-12-01 09:41:00,2.1,15311.0,United Kingdom',
  'C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom',
  '536414,22139,,56,2010-12-01 11:52:00,0.0,,United Kingdom',
  'C537251,22429,ENAMEL MEASURING JUG CREAM,-2,2010-12-06 10:45:00,4.25,,United Kingdom',
  '536409,22866,HAND WARMER SCOTTY DOG DESIGN,1,2010-12-01 11:45:00,2.1,17908.0,United Kingdom',
  '536409,22866,HAND WARMER SCOTTY DOG DESIGN,1,2010-12-01 11:45:00,2.1,17908.0,United Kingdom',
].join('\n');

async function collect<T>(generator: AsyncGenerator<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of generator) {
    items.push(item);
  }
  return items;
}

function writeSample(t: { testdir(fixture: Record<string, string>): string }, content: string, name = 'retail.csv'): string {
  const dir = t.testdir({ [name]: content });
  return join(dir, name);
}

t.test('online retail - maps a purchase row', async (t) => {
  const events = await collect(readOnlineRetail(writeSample(t, SAMPLE)));

  t.equal(events.length, 7);
  t.strictSame(events[0], {
    type: 'track',
    messageId: 'online-retail:retail.csv:1',
    timestamp: '2010-12-01T08:26:00.000Z',
    userId: '17850',
    event: 'Order Line Purchased',
    properties: {
      invoiceNo: '536365',
      stockCode: '85123A',
      description: 'WHITE HANGING HEART T-LIGHT HOLDER',
      quantity: 6,
      unitPrice: 2.55,
      revenue: 15.3,
      country: 'United Kingdom',
    },
    context: { traits: { country: 'United Kingdom' } },
  });
});

t.test('online retail - quoted description with comma', async (t) => {
  const events = await collect(readOnlineRetail(writeSample(t, SAMPLE)));
  const properties = events[1].properties as Record<string, unknown>;

  t.equal(properties.description, 'AIRLINE LOUNGE,METAL SIGN');
  t.equal(properties.stockCode, '82567');
  t.equal(properties.revenue, 4.2);
  t.equal(events[1].userId, '15311');
});

t.test('online retail - cancellation keeps negative quantity', async (t) => {
  const events = await collect(readOnlineRetail(writeSample(t, SAMPLE)));

  t.strictSame(events[2], {
    type: 'track',
    messageId: 'online-retail:retail.csv:3',
    timestamp: '2010-12-01T09:41:00.000Z',
    userId: '14527',
    event: 'Order Line Cancelled',
    properties: {
      invoiceNo: 'C536379',
      stockCode: 'D',
      description: 'Discount',
      quantity: -1,
      unitPrice: 27.5,
      revenue: -27.5,
      country: 'United Kingdom',
    },
    context: { traits: { country: 'United Kingdom' } },
  });
});

t.test('online retail - blank customer becomes guest', async (t) => {
  const events = await collect(readOnlineRetail(writeSample(t, SAMPLE)));

  t.strictSame(events[3], {
    type: 'track',
    messageId: 'online-retail:retail.csv:4',
    timestamp: '2010-12-01T11:52:00.000Z',
    anonymousId: 'guest-536414',
    event: 'Order Line Purchased',
    properties: {
      invoiceNo: '536414',
      stockCode: '22139',
      quantity: 56,
      unitPrice: 0,
      revenue: 0,
      country: 'United Kingdom',
    },
    context: { traits: { country: 'United Kingdom' } },
  });
  t.notOk('userId' in events[3], 'a guest row has no userId');
  t.equal(events[4].anonymousId, 'guest-C537251', 'a guest cancellation is its own anonymous profile');
  t.equal(events[4].event, 'Order Line Cancelled');
});

t.test('online retail - duplicate lines both emitted', async (t) => {
  const events = await collect(readOnlineRetail(writeSample(t, SAMPLE)));
  const [first, second] = events.slice(5);

  t.equal(first.messageId, 'online-retail:retail.csv:6');
  t.equal(second.messageId, 'online-retail:retail.csv:7');
  const withoutIds = (event: RawEvent) => ({ ...event, messageId: undefined });
  t.strictSame(withoutIds(first), withoutIds(second), 'the two events differ only in messageId');
});

t.test('online retail - items carry file line numbers', async (t) => {
  const items = await collect(readOnlineRetailItems(writeSample(t, `${SAMPLE}\n`)));

  t.strictSame(
    items.map((item) => item.line),
    [2, 3, 4, 5, 6, 7, 8],
  );
});

t.test('online retail - invalid rows become errors', async (t) => {
  const content = [
    HEADER,
    '536365,85123A,GOOD ROW,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom',
    '536366,22633,BAD QUANTITY,six,2010-12-01 08:28:00,1.85,17850.0,United Kingdom',
    '536367,84879,BAD DATE,32,2010-02-30 08:34:00,1.69,13047.0,United Kingdom',
    '536368,22960,SHORT ROW,6',
    '536369,21756,GOOD AGAIN,3,2010-12-01 08:35:00,5.95,13047.0,United Kingdom',
  ].join('\n');
  const items = await collect(readOnlineRetailItems(writeSample(t, content)));
  const errors = items.filter((item): item is Extract<SourceItem, { kind: 'error' }> => item.kind === 'error');
  const events = items.filter((item): item is Extract<SourceItem, { kind: 'event' }> => item.kind === 'event');

  t.equal(events.length, 2);
  t.equal(events[1].event.messageId, 'online-retail:retail.csv:5', 'bad rows still count as data rows');
  t.strictSame(
    errors.map(({ line, code, field }) => ({ line, code, field })),
    [
      { line: 3, code: 'INVALID_ROW', field: 'Quantity' },
      { line: 4, code: 'INVALID_ROW', field: 'InvoiceDate' },
      { line: 5, code: 'INVALID_ROW', field: '' },
    ],
  );
  t.equal(errors[0].message, 'invalid Quantity "six": expected a number');
  t.equal(errors[1].message, 'invalid InvoiceDate "2010-02-30 08:34:00": no such date or time');
  t.equal(errors[2].message, 'expected 8 columns, found 4');
});

t.test('online retail - readOnlineRetail throws on bad row', async (t) => {
  const content = `${HEADER}\n536366,22633,BAD QUANTITY,six,2010-12-01 08:28:00,1.85,17850.0,United Kingdom\n`;
  const file = writeSample(t, content);

  await t.rejects(collect(readOnlineRetail(file)), { message: `${file}:2: invalid Quantity "six": expected a number` });
});

t.test('online retail - wrong header rejected', async (t) => {
  const file = writeSample(t, 'id,name\n1,a\n');

  await t.rejects(collect(readOnlineRetail(file)), { message: /is not an Online Retail CSV/ });
});

t.test('online retail - header detection', async (t) => {
  t.ok(isOnlineRetailHeader(HEADER));
  t.ok(isOnlineRetailHeader(`\uFEFF${HEADER}\r`), 'BOM and CR are ignored');
  t.notOk(isOnlineRetailHeader('InvoiceNo,StockCode,Description'));
  t.notOk(isOnlineRetailHeader(HEADER.replace('Country', 'Region')));
});

t.test('online retail - revenue rounding', async (t) => {
  t.equal(revenueOf(6, 2.55), 15.3, 'float product 15.299999999999999 rounds to 15.3');
  t.equal(revenueOf(-2, 4.25), -8.5);
  t.equal(revenueOf(3, 0.125), 0.38, 'half a penny rounds away from zero');
  t.equal(revenueOf(-3, 0.125), -0.38, 'and away from zero when negative');
  t.equal(revenueOf(56, 0), 0);
  t.ok(Object.is(revenueOf(-1, 0), 0), 'zero revenue is never -0');
});

t.test('online retail - invoice date parsing', async (t) => {
  t.equal(parseInvoiceDate('2010-12-01 08:26:00'), '2010-12-01T08:26:00.000Z');
  t.equal(parseInvoiceDate('2011-04-28 19:53'), '2011-04-28T19:53:00.000Z', 'seconds are optional');
  t.throws(() => parseInvoiceDate('12/1/2010 8:26'), { message: /expected YYYY-MM-DD HH:MM:SS/ });
  t.throws(() => parseInvoiceDate('2010-12-01 24:00:00'), { message: /no such date or time/ });
});

t.test('online retail - unclosed quote ends file', async (t) => {
  const content = [
    HEADER,
    '536365,85123A,GOOD ROW,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom',
    '536366,22633,"UNCLOSED QUOTE,6,2010-12-01 08:28:00,1.85,17850.0,United Kingdom',
    '536367,84879,NEVER READ,32,2010-12-01 08:34:00,1.69,13047.0,United Kingdom',
  ].join('\n');
  const items = await collect(readOnlineRetailItems(writeSample(t, content)));

  t.equal(items.length, 2);
  t.equal(items[0].kind, 'event');
  t.match(items[1], { kind: 'error', code: 'INVALID_CSV', message: /^invalid CSV, stopped reading the file: Quote Not Closed/ });
});

t.test('online retail - missing file rejects', async (t) => {
  await t.rejects(collect(readOnlineRetail('/no/such/dir/retail.csv')), { code: 'ENOENT' });
});
