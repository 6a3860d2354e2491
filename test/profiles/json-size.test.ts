import t from 'tap';
import { jsonByteLength } from '../../profiles/json-size.js';

const expected = (value: unknown): number => {
  const text = JSON.stringify(value);
  return text === undefined ? 0 : Buffer.byteLength(text, 'utf8');
};

t.test('json size - values of each kind', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['empty string', ''],
    ['ascii', 'Order Completed'],
    ['quote and backslash', 'say "hi" \\ bye'],
    ['short escapes', '\b\f\n\r\t'],
    ['other control characters', '\u0000\u0001\u001f'],
    ['delete character', '\u007f'],
    ['two-byte characters', 'é ß Ω'],
    ['three-byte characters', '€ 日本 \uffff'],
    ['surrogate pair', '😀 𝄞'],
    ['lone high surrogate', 'a\ud800b'],
    ['lone low surrogate', 'a\udc00b'],
    ['high surrogate at the end', 'a\udbff'],
    ['integers', [0, -0, 7, -42, 2 ** 53]],
    ['fractions and exponents', [0.1, -1.5e-7, 1e21, 123456789.125, Number.MIN_VALUE, Number.MAX_VALUE]],
    ['non-finite numbers', [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]],
    ['booleans and null', [true, false, null]],
    ['empty containers', [[], {}]],
    ['undefined and functions in an array', [undefined, () => 1, Symbol('s'), 1]],
    ['undefined and functions in an object', { a: undefined, b: () => 1, c: Symbol('s'), d: 1, e: undefined }],
    ['only omitted members', { a: undefined }],
    ['keys that need escapes', { 'k"ey': 1, 'new\nline': 'é', '😀': [] }],
    ['nested', { type: 'track', properties: { items: [{ sku: 'A-1', price: 9.99 }, null], nested: { deep: [[[]]] } } }],
    ['undefined alone', undefined],
  ];
  for (const [name, value] of cases) {
    t.equal(jsonByteLength(value), expected(value), name);
  }
});

/** A seeded linear congruential generator, so a failure can be run again. */
function randomSource(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const CODE_RANGES: Array<[number, number]> = [
  [0x00, 0x1f],
  [0x20, 0x7f],
  [0x80, 0x7ff],
  [0x800, 0xd7ff],
  [0xd800, 0xdbff],
  [0xdc00, 0xdfff],
  [0xe000, 0xffff],
];

function randomString(random: () => number): string {
  const length = Math.floor(random() * 12);
  let text = '';
  for (let i = 0; i < length; i++) {
    const [low, high] = random() < 0.5 ? CODE_RANGES[1] : CODE_RANGES[Math.floor(random() * CODE_RANGES.length)];
    text += String.fromCharCode(low + Math.floor(random() * (high - low + 1)));
  }
  return text;
}

function randomValue(random: () => number, depth: number): unknown {
  const kind = Math.floor(random() * (depth >= 4 ? 5 : 8));
  switch (kind) {
    case 0:
      return randomString(random);
    case 1:
      return (random() - 0.5) * 10 ** Math.floor(random() * 40 - 20);
    case 2:
      return Math.floor((random() - 0.5) * 1e6);
    case 3:
      return random() < 0.5;
    case 4:
      return random() < 0.8 ? null : undefined;
    case 5:
    case 6: {
      const object: Record<string, unknown> = {};
      const size = Math.floor(random() * 5);
      for (let i = 0; i < size; i++) object[randomString(random)] = randomValue(random, depth + 1);
      return object;
    }
    default:
      return Array.from({ length: Math.floor(random() * 5) }, () => randomValue(random, depth + 1));
  }
}

t.test('json size - random values match JSON.stringify', async (t) => {
  const random = randomSource(20261206);
  let mismatches = 0;
  for (let i = 0; i < 5_000; i++) {
    const value = randomValue(random, 0);
    if (jsonByteLength(value) !== expected(value)) {
      mismatches++;
      if (mismatches <= 3) t.fail(`value ${i} measured ${jsonByteLength(value)} bytes, JSON.stringify gives ${expected(value)}: ${JSON.stringify(value)}`);
    }
  }
  t.equal(mismatches, 0, 'every one of 5,000 random values has the size of its JSON text');
});
