import t from 'tap';
import { join } from 'node:path';
import { readSegmentNdjson } from '../../cli/sources/ndjson.js';
import { type SourceItem, detectFormat, openSource } from '../../cli/sources/index.js';

const HEADER = 'InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country';

async function collect(generator: AsyncGenerator<SourceItem>): Promise<SourceItem[]> {
  const items: SourceItem[] = [];
  for await (const item of generator) {
    items.push(item);
  }
  return items;
}

t.test('ndjson - events, blank lines and a bad line', async (t) => {
  const lines = [
    '{"type":"track","messageId":"m1","userId":"u1","event":"Signed Up"}',
    '',
    '{"type":"identify","messageId":"m2","userId":"u1","traits":{"email":"alice@example.com"}}',
    '{"type":"track", not json',
    '   ',
    '{"type":"page","messageId":"m3","anonymousId":"a1","name":"Home"}',
  ];
  const dir = t.testdir({ 'events.ndjson': `${lines.join('\n')}\n` });
  const items = await collect(readSegmentNdjson(join(dir, 'events.ndjson')));

  t.equal(items.length, 4);
  t.strictSame(items[0], {
    kind: 'event',
    line: 1,
    event: { type: 'track', messageId: 'm1', userId: 'u1', event: 'Signed Up' },
  });
  t.match(items[1], { kind: 'event', line: 3, event: { messageId: 'm2' } });
  t.match(items[2], { kind: 'error', line: 4, code: 'INVALID_LINE', field: '' });
  t.match(items[2], { message: /^invalid JSON/ }, 'the message does not repeat the line number');
  t.match(items[3], { kind: 'event', line: 6, event: { messageId: 'm3' } });
});

t.test('ndjson - batch envelope yields each event', async (t) => {
  const line = JSON.stringify({
    batch: [
      { type: 'track', messageId: 'b1', userId: 'u1', event: 'A' },
      { type: 'track', messageId: 'b2', userId: 'u2', event: 'B' },
    ],
    context: { ip: '192.0.2.1' },
  });
  const dir = t.testdir({ 'batch.jsonl': `${line}\r\n` });
  const items = await collect(readSegmentNdjson(join(dir, 'batch.jsonl')));

  t.equal(items.length, 2);
  t.match(items[0], { kind: 'event', line: 1, event: { messageId: 'b1', context: { ip: '192.0.2.1' } } });
  t.match(items[1], { kind: 'event', line: 1, event: { messageId: 'b2' } });
});

t.test('ndjson - events without a messageId get one from the line', async (t) => {
  const batch = JSON.stringify({ batch: [{ type: 'track', userId: 'u1', event: 'A' }, { type: 'track', userId: 'u1', event: 'A' }] });
  const lines = ['{"type":"track","userId":"u1","event":"A"}', '{"type":"track","userId":"u1","event":"A"}', batch, '{"type":"track","messageId":"","userId":"u1","event":"B"}'];
  const dir = t.testdir({ 'events.ndjson': `${lines.join('\n')}\n`, 'edited.ndjson': `${lines[0].replace('"A"', '"C"')}\n` });
  const ids = (await collect(readSegmentNdjson(join(dir, 'events.ndjson')))).map((item) => (item.kind === 'event' ? item.event.messageId : undefined));
  const again = (await collect(readSegmentNdjson(join(dir, 'events.ndjson')))).map((item) => (item.kind === 'event' ? item.event.messageId : undefined));
  const edited = (await collect(readSegmentNdjson(join(dir, 'edited.ndjson')))).map((item) => (item.kind === 'event' ? item.event.messageId : undefined));

  t.match(ids, [/^ndjson:events\.ndjson:1:[0-9a-f]{16}$/, /^ndjson:events\.ndjson:2:/, /^ndjson:events\.ndjson:3\.1:/, /^ndjson:events\.ndjson:3\.2:/, /^ndjson:events\.ndjson:4:/]);
  t.equal(new Set(ids).size, 5, 'identical events on other lines or in one envelope get other ids');
  t.same(again, ids, 'reading the file again gives the same ids');
  t.not(edited[0]?.toString().split(':')[3], (ids[0] as string).split(':')[3], 'an edited line gets another hash');
});

t.test('ndjson - a long file name is hashed in made-up ids', async (t) => {
  const name = `${'x'.repeat(60)}.ndjson`;
  const dir = t.testdir({ [name]: '{"type":"track","userId":"u1","event":"A"}\n' });
  const [item] = await collect(readSegmentNdjson(join(dir, name)));
  const id = item.kind === 'event' ? String(item.event.messageId) : '';

  t.match(id, /^ndjson:[0-9a-f]{16}:1:[0-9a-f]{16}$/);
  t.ok(id.length <= 100, 'the id fits the default messageId limit');
});

t.test('ndjson - a .json file may hold one document', async (t) => {
  const event = { type: 'track', messageId: 'p1', userId: 'u1', event: 'A' };
  const dir = t.testdir({
    'pretty.json': JSON.stringify(event, null, 2),
    'array.json': JSON.stringify([event, { ...event, messageId: 'p2' }], null, 2),
    'lines.json': `${JSON.stringify(event)}\n${JSON.stringify({ ...event, messageId: 'p3' })}\n`,
    'pretty.ndjson': JSON.stringify(event, null, 2),
  });
  const messageIds = async (name: string) => (await collect(readSegmentNdjson(join(dir, name)))).map((item) => (item.kind === 'event' ? item.event.messageId : item.code));

  t.same(await messageIds('pretty.json'), ['p1'], 'a pretty-printed event');
  t.same(await messageIds('array.json'), ['p1', 'p2'], 'an array of events');
  t.same(await messageIds('lines.json'), ['p1', 'p3'], 'one event per line, as before');
  t.same(await messageIds('pretty.ndjson'), Array(6).fill('INVALID_LINE'), 'an .ndjson file is read line by line');
});

t.test('ndjson - BOM on first line ignored', async (t) => {
  const dir = t.testdir({ 'bom.ndjson': '\uFEFF{"type":"track","messageId":"m1","userId":"u1","event":"A"}\n' });
  const items = await collect(readSegmentNdjson(join(dir, 'bom.ndjson')));

  t.match(items, [{ kind: 'event', line: 1, event: { messageId: 'm1' } }]);
});

t.test('openSource - picks reader by extension', async (t) => {
  const dir = t.testdir({
    'retail.csv': `${HEADER}\n536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n`,
    'events.ndjson': '{"type":"track","messageId":"m1","userId":"u1","event":"A"}\n',
    'events.json': '{"type":"track","messageId":"m1","userId":"u1","event":"A"}\n',
    'retail.txt': `${HEADER}\n`,
    'events.log': '{"type":"track"}\n',
  });

  t.equal((await openSource(join(dir, 'retail.csv'))).format, 'online-retail');
  t.equal((await openSource(join(dir, 'events.ndjson'))).format, 'segment-ndjson');
  t.equal((await openSource(join(dir, 'events.json'))).format, 'segment-ndjson');
  t.equal((await openSource(join(dir, 'retail.txt'))).format, 'online-retail', 'unknown extension, header matches');
  t.equal((await openSource(join(dir, 'events.log'))).format, 'segment-ndjson', 'unknown extension, JSON object');
});

t.test('openSource - estimates events from lines', async (t) => {
  const dir = t.testdir({
    'retail.csv': `${HEADER}\nrow1\nrow2\nrow3`,
    'events.ndjson': '{}\n{}\n',
  });

  t.equal(await (await openSource(join(dir, 'retail.csv'))).estimateEvents(), 3, 'header excluded, last line unterminated');
  t.equal(await (await openSource(join(dir, 'events.ndjson'))).estimateEvents(), 2);
});

t.test('openSource - clear errors', async (t) => {
  const dir = t.testdir({
    'other.csv': 'id,name\n1,a\n',
    'notes.txt': 'hello\n',
    folder: {},
  });

  await t.rejects(openSource(join(dir, 'missing.ndjson')), {
    name: 'SourceError',
    message: `cannot read ${join(dir, 'missing.ndjson')}: no such file`,
  });
  await t.rejects(openSource(join(dir, 'folder')), { message: /not a regular file$/ });
  await t.rejects(openSource(join(dir, 'other.csv')), { message: /^unsupported CSV .*other\.csv: expected the header "InvoiceNo,/ });
  await t.rejects(openSource(join(dir, 'notes.txt')), { message: /^unknown format of .*notes\.txt: expected \.csv/ });
});

t.test('detectFormat - extension wins over content', async (t) => {
  t.equal(detectFormat('a.NDJSON', 'not json at all'), 'segment-ndjson', 'extensions are case-insensitive');
  t.throws(() => detectFormat('a.csv', '{"type":"track"}'), { message: /unsupported CSV a\.csv/ });
});

t.test('ndjson - missing file rejects', async (t) => {
  await t.rejects(collect(readSegmentNdjson('/no/such/dir/events.ndjson')), { code: 'ENOENT' });
});
