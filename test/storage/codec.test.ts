import t from 'tap';
import { decode, encode, encodeWithEncodedField } from '../../storage/codec.js';

const snapshot = { profileId: 'user:u1', traits: { plan: 'pro', score: 0.5, tags: ['a', 'b'] }, recent: [Buffer.from([1, 2, 3])], eventCount: 2 ** 40 };

t.test('codec - encoded field, same bytes as whole record', async (t) => {
  const around = encodeWithEncodedField({ version: 1, epoch: 7 }, 'snapshot', encode(snapshot));

  t.same(decode(around), { version: 1, epoch: 7, snapshot });
  t.ok(around.equals(encode({ version: 1, epoch: 7, snapshot })), 'the same bytes as encoding the whole record');
});

t.test('codec - encoded field of any msgpack value', async (t) => {
  for (const value of [null, 0, -1, 'text', [], {}, Buffer.alloc(300, 9), 'x'.repeat(70_000)]) {
    t.same(decode(encodeWithEncodedField({ a: 'b' }, 'value', encode(value))), { a: 'b', value });
  }
});
