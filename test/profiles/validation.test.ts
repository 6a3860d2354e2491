import t, { type Test } from 'tap';
import type { RawEvent, RejectionCode, ValidationResult } from '../../profiles/event.js';
import {
  DEFAULT_EVENT_LIMITS,
  resolveEventLimits,
  validateBatch,
  validateEvent,
  type EventLimits,
} from '../../profiles/validation.js';

const RECEIVED_AT = '2024-05-01T12:00:00.000Z';
const RECEIVED_AT_MS = Date.parse(RECEIVED_AT);

function context() {
  let next = 0;
  return { receivedAt: new Date(RECEIVED_AT), generateMessageId: () => `generated-${++next}` };
}

function validate(raw: unknown, limits: EventLimits = DEFAULT_EVENT_LIMITS): ValidationResult {
  return validateEvent(raw as RawEvent, limits, context());
}

function track(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'track', event: 'Order Completed', userId: 'user-1', messageId: 'message-1', ...extra };
}

function assertRejected(
  t: Test,
  result: ValidationResult,
  expected: { code: RejectionCode; field: string; message: string },
): void {
  t.equal(result.ok, false, 'event is rejected');
  if (result.ok) {
    return;
  }
  t.equal(result.code, expected.code, 'code');
  t.equal(result.field, expected.field, 'field');
  t.equal(result.message, expected.message, 'message');
}

function acceptedEvent(t: Test, result: ValidationResult) {
  t.equal(result.ok, true, result.ok ? 'event is accepted' : `event is accepted, got ${result.message}`);
  if (!result.ok) {
    throw new Error(`expected an accepted event, got ${result.code}: ${result.message}`);
  }
  return result;
}

function nestedObject(levels: number): Record<string, unknown> {
  let value: Record<string, unknown> = { leaf: true };
  for (let level = 1; level < levels; level++) {
    value = { a: value };
  }
  return value;
}

function objectWithKeys(count: number, prefix = 'key'): Record<string, number> {
  const value: Record<string, number> = {};
  for (let index = 0; index < count; index++) {
    value[`${prefix}${index}`] = index;
  }
  return value;
}

t.test('limits - defaults', async (t) => {
  t.strictSame({ ...DEFAULT_EVENT_LIMITS }, {
    maxEventBytes: 32_768,
    maxBatchBytes: 512_000,
    maxMessageIdLength: 100,
    maxKeysPerObject: 256,
    maxTotalKeys: 2_000,
    maxDepth: 10,
    maxStringLength: 8_192,
    maxIdentifierLength: 255,
    maxFutureSkewMs: 86_400_000,
  });
  t.ok(Object.isFrozen(DEFAULT_EVENT_LIMITS), 'defaults are frozen');
});

t.test('limits - resolve merges over defaults', async (t) => {
  const limits = resolveEventLimits({ maxDepth: 4, maxStringLength: undefined });
  t.equal(limits.maxDepth, 4);
  t.equal(limits.maxStringLength, DEFAULT_EVENT_LIMITS.maxStringLength);
  t.strictSame(resolveEventLimits(), { ...DEFAULT_EVENT_LIMITS });
});

t.test('limits - rejects non-positive integers', async (t) => {
  const cases: [unknown, string][] = [
    [0, '0'],
    [-1, '-1'],
    [1.5, '1.5'],
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, 'Infinity'],
    ['10', '"10"'],
  ];
  for (const [value, shown] of cases) {
    t.throws(
      () => resolveEventLimits({ maxDepth: value as number }),
      new RangeError(`event limit maxDepth must be a positive integer, received ${shown}`),
      `maxDepth ${shown}`,
    );
  }
});

t.test('limits - rejects unknown name', async (t) => {
  t.throws(() => resolveEventLimits({ maxDeph: 3 } as Partial<EventLimits>), {
    name: 'RangeError',
    message: /^unknown event limit "maxDeph", expected one of maxEventBytes, /,
  });
});

t.test('limits - rejects batch limit below event limit', async (t) => {
  t.throws(
    () => resolveEventLimits({ maxBatchBytes: 1_000 }),
    new RangeError('event limit maxBatchBytes must be at least maxEventBytes (32768), received 1000'),
  );
});

t.test('validation - accepts and normalises track', async (t) => {
  const result = acceptedEvent(
    t,
    validate({
      type: 'track',
      event: 'Order Completed',
      userId: 'user-1',
      anonymousId: 'anonymous-1',
      messageId: 'message-1',
      timestamp: '2024-05-01T13:30:00+02:00',
      sentAt: '2024-05-01T11:30:01Z',
      properties: { total: 39.9, items: [{ sku: 'A-1' }] },
    }),
  );

  t.same(result.event, {
    type: 'track',
    messageId: 'message-1',
    timestamp: '2024-05-01T11:30:00.000Z',
    timestampMs: Date.parse('2024-05-01T11:30:00.000Z'),
    receivedAt: RECEIVED_AT,
    sentAt: '2024-05-01T11:30:01.000Z',
    userId: 'user-1',
    anonymousId: 'anonymous-1',
    event: 'Order Completed',
    properties: { total: 39.9, items: [{ sku: 'A-1' }] },
  });
  t.equal(result.sizeBytes, Buffer.byteLength(JSON.stringify(result.event)), 'sizeBytes is the JSON byte length');
});

t.test('validation - rejects non-object event', async (t) => {
  const cases: [unknown, string][] = [
    [null, 'null'],
    [undefined, 'nothing'],
    [[], 'an array'],
    [42, '42'],
    ['track', '"track"'],
    [new Date(0), 'an instance of Date'],
  ];
  for (const [raw, shown] of cases) {
    assertRejected(t, validate(raw), {
      code: 'INVALID_TYPE',
      field: '',
      message: `the event must be a JSON object, received ${shown}`,
    });
  }
});

t.test('validation - rejects missing type', async (t) => {
  for (const [type, shown] of [[undefined, 'nothing'], [null, 'null'], ['', '""']] as const) {
    assertRejected(t, validate(track({ type })), {
      code: 'MISSING_FIELD',
      field: 'type',
      message: `type is required, received ${shown}`,
    });
  }
});

t.test('validation - rejects unknown type', async (t) => {
  for (const [type, shown] of [['purchase', '"purchase"'], ['Track', '"Track"'], [7, '7']] as const) {
    assertRejected(t, validate(track({ type })), {
      code: 'INVALID_FIELD',
      field: 'type',
      message: `type must be one of track, identify, page, screen, group, alias, received ${shown}`,
    });
  }
});

t.test('validation - accepts every event type', async (t) => {
  const raws = [
    { type: 'track', event: 'Signed Up', userId: 'u' },
    { type: 'identify', userId: 'u', traits: { email: 'a@example.com' } },
    { type: 'page', anonymousId: 'a', name: 'Home', category: 'Docs' },
    { type: 'screen', anonymousId: 'a', name: 'Cart' },
    { type: 'group', userId: 'u', groupId: 'g' },
    { type: 'alias', userId: 'u', previousId: 'a' },
  ];
  for (const raw of raws) {
    const result = acceptedEvent(t, validate(raw));
    t.equal(result.event.type, raw.type);
  }
});

t.test('validation - rejects missing identity', async (t) => {
  assertRejected(t, validate({ type: 'identify', userId: null, anonymousId: '' }), {
    code: 'MISSING_IDENTITY',
    field: 'userId',
    message: 'userId or anonymousId is required, received userId null and anonymousId ""; set one of them',
  });
  assertRejected(t, validate({ type: 'track', event: 'Viewed' }), {
    code: 'MISSING_IDENTITY',
    field: 'userId',
    message: 'userId or anonymousId is required, received no userId and no anonymousId; set one of them',
  });
});

t.test('validation - converts numeric userId', async (t) => {
  const result = acceptedEvent(t, validate(track({ userId: 42, anonymousId: 1.5 })));
  t.equal(result.event.userId, '42');
  t.equal(result.event.anonymousId, '1.5');
});

t.test('validation - rejects identifier of wrong type', async (t) => {
  const cases: [string, unknown, string][] = [
    ['userId', true, 'true'],
    ['userId', Number.NaN, 'NaN'],
    ['anonymousId', { id: 1 }, 'an object'],
    ['groupId', ['g'], 'an array'],
  ];
  for (const [field, value, shown] of cases) {
    assertRejected(t, validate(track({ [field]: value })), {
      code: 'INVALID_TYPE',
      field,
      message: `${field} must be a string or a finite number, received ${shown}`,
    });
  }
});

t.test('validation - rejects identifier over max length', async (t) => {
  assertRejected(t, validate(track({ userId: 'u'.repeat(256) })), {
    code: 'STRING_TOO_LONG',
    field: 'userId',
    message: 'userId must be at most 255 characters, received 256 characters',
  });
  acceptedEvent(t, validate(track({ userId: 'u'.repeat(255) })));
});

t.test('validation - rejects track without event', async (t) => {
  assertRejected(t, validate(track({ event: '' })), {
    code: 'MISSING_FIELD',
    field: 'event',
    message: 'event is required for track events, received ""',
  });
});

t.test('validation - rejects alias without previousId', async (t) => {
  assertRejected(t, validate({ type: 'alias', userId: 'u' }), {
    code: 'MISSING_FIELD',
    field: 'previousId',
    message: 'previousId is required for alias events, received nothing',
  });
});

t.test('validation - rejects group without groupId', async (t) => {
  assertRejected(t, validate({ type: 'group', userId: 'u', groupId: null }), {
    code: 'MISSING_FIELD',
    field: 'groupId',
    message: 'groupId is required for group events, received null',
  });
});

t.test('validation - rejects non-string event name', async (t) => {
  assertRejected(t, validate(track({ event: 12 })), {
    code: 'INVALID_TYPE',
    field: 'event',
    message: 'event must be a string, received 12',
  });
});

t.test('validation - generates missing messageId', async (t) => {
  for (const messageId of [undefined, null, '']) {
    const result = acceptedEvent(t, validate(track({ messageId })));
    t.equal(result.event.messageId, 'generated-1');
  }
});

t.test('validation - rejects long messageId', async (t) => {
  assertRejected(t, validate(track({ messageId: 'm'.repeat(101) })), {
    code: 'MESSAGE_ID_TOO_LONG',
    field: 'messageId',
    message: 'messageId must be at most 100 characters, received 101 characters',
  });
  acceptedEvent(t, validate(track({ messageId: 'm'.repeat(100) })));
});

t.test('validation - rejects non-string messageId', async (t) => {
  assertRejected(t, validate(track({ messageId: 5 })), {
    code: 'INVALID_TYPE',
    field: 'messageId',
    message: 'messageId must be a string, received 5',
  });
});

t.test('validation - rejects invalid timestamp', async (t) => {
  assertRejected(t, validate(track({ timestamp: 'yesterday' })), {
    code: 'INVALID_TIMESTAMP',
    field: 'timestamp',
    message: 'timestamp must be an ISO-8601 date-time, received "yesterday"',
  });
});

t.test('validation - rejects timestamps Date.parse accepts', async (t) => {
  const cases: [unknown, string][] = [
    ['2024-02-30T00:00:00Z', '"2024-02-30T00:00:00Z"'],
    ['2023-02-29T00:00:00Z', '"2023-02-29T00:00:00Z"'],
    ['2024-13-01T00:00:00Z', '"2024-13-01T00:00:00Z"'],
    ['2024-01-01T24:00:00Z', '"2024-01-01T24:00:00Z"'],
    ['2024-01-01T10:60:00Z', '"2024-01-01T10:60:00Z"'],
    ['2024-01-01T10:00:60Z', '"2024-01-01T10:00:60Z"'],
    ['2024-01-01T10:00:00+24:00', '"2024-01-01T10:00:00+24:00"'],
    ['2024-01-01', '"2024-01-01"'],
    ['Mon, 01 Jan 2024 00:00:00 GMT', '"Mon, 01 Jan 2024 00:00:00 GMT"'],
    ['2024-1-1T00:00:00Z', '"2024-1-1T00:00:00Z"'],
    ['2024-01-01T00:00:00.Z', '"2024-01-01T00:00:00.Z"'],
    [1714557600000, '1714557600000'],
    [{}, 'an object'],
  ];
  for (const [timestamp, shown] of cases) {
    assertRejected(t, validate(track({ timestamp })), {
      code: 'INVALID_TIMESTAMP',
      field: 'timestamp',
      message: `timestamp must be an ISO-8601 date-time, received ${shown}`,
    });
  }
});

t.test('validation - normalises timestamp forms', async (t) => {
  const cases: [string, string][] = [
    ['2024-05-01T10:00:00Z', '2024-05-01T10:00:00.000Z'],
    ['2024-05-01T10:00:00.123Z', '2024-05-01T10:00:00.123Z'],
    ['2024-05-01T10:00:00.123456789Z', '2024-05-01T10:00:00.123Z'],
    ['2024-05-01T10:00:00.5Z', '2024-05-01T10:00:00.500Z'],
    ['2024-05-01T12:00:00+02:00', '2024-05-01T10:00:00.000Z'],
    ['2024-05-01T12:00:00+0200', '2024-05-01T10:00:00.000Z'],
    ['2024-05-01T12:00:00+02', '2024-05-01T10:00:00.000Z'],
    ['2024-05-01T05:30:00-04:30', '2024-05-01T10:00:00.000Z'],
    ['2024-05-01T10:00', '2024-05-01T10:00:00.000Z'],
    ['2024-05-01T10:00:00', '2024-05-01T10:00:00.000Z'],
    ['2024-05-01 10:00:00Z', '2024-05-01T10:00:00.000Z'],
    ['2024-05-01t10:00:00z', '2024-05-01T10:00:00.000Z'],
    ['2024-02-29T10:00:00Z', '2024-02-29T10:00:00.000Z'],
    ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z'],
  ];
  for (const [timestamp, expected] of cases) {
    const result = acceptedEvent(t, validate(track({ timestamp })));
    t.equal(result.event.timestamp, expected, timestamp);
    t.equal(result.event.timestampMs, Date.parse(expected), `${timestamp} in ms`);
  }
});

t.test('validation - timestamp defaults to receivedAt', async (t) => {
  const result = acceptedEvent(t, validate(track({ timestamp: '' })));
  t.equal(result.event.timestamp, RECEIVED_AT);
  t.equal(result.event.timestampMs, RECEIVED_AT_MS);
});

t.test('validation - rejects timestamp far in future', async (t) => {
  assertRejected(t, validate(track({ timestamp: '2024-05-02T12:00:00.001Z' })), {
    code: 'TIMESTAMP_TOO_FAR_IN_FUTURE',
    field: 'timestamp',
    message:
      'timestamp must be at most 86400000 ms after receivedAt 2024-05-01T12:00:00.000Z, received "2024-05-02T12:00:00.001Z"',
  });
  const atLimit = acceptedEvent(t, validate(track({ timestamp: '2024-05-02T12:00:00.000Z' })));
  t.equal(atLimit.event.timestampMs, RECEIVED_AT_MS + 86_400_000);
});

t.test('validation - keeps timestamp without skew correction', async (t) => {
  const result = acceptedEvent(
    t,
    validate(track({ timestamp: '2024-05-01T08:00:00Z', sentAt: '2024-05-01T09:00:00Z' })),
  );
  t.equal(result.event.timestamp, '2024-05-01T08:00:00.000Z');
  t.equal(result.event.sentAt, '2024-05-01T09:00:00.000Z');
});

t.test('validation - rejects invalid sentAt', async (t) => {
  assertRejected(t, validate(track({ sentAt: '2024-05-01T10:00:00+25:00' })), {
    code: 'INVALID_TIMESTAMP',
    field: 'sentAt',
    message: 'sentAt must be an ISO-8601 date-time, received "2024-05-01T10:00:00+25:00"',
  });
});

t.test('validation - sets receivedAt from context', async (t) => {
  const result = acceptedEvent(t, validate(track({ receivedAt: '2000-01-01T00:00:00Z' })));
  t.equal(result.event.receivedAt, RECEIVED_AT);
});

t.test('validation - rejects non-object properties', async (t) => {
  const cases: [string, Record<string, unknown>, string, string][] = [
    ['properties', { properties: [1, 2] }, 'properties', 'an array'],
    ['traits', { traits: 'vip' }, 'traits', '"vip"'],
    ['integrations', { integrations: true }, 'integrations', 'true'],
    ['context', { context: 3 }, 'context', '3'],
    ['context.traits', { context: { traits: [] } }, 'context.traits', 'an array'],
    ['context.device', { context: { device: 'phone' } }, 'context.device', '"phone"'],
  ];
  for (const [name, extra, field, shown] of cases) {
    t.test(name, async (t) => {
      assertRejected(t, validate(track(extra)), {
        code: 'INVALID_TYPE',
        field,
        message: `${field} must be a JSON object, received ${shown}`,
      });
    });
  }
});

t.test('validation - rejects non-string context ip', async (t) => {
  assertRejected(t, validate(track({ context: { ip: 127001 } })), {
    code: 'INVALID_TYPE',
    field: 'context.ip',
    message: 'context.ip must be a string, received 127001',
  });
});

t.test('validation - rejects nesting too deep', async (t) => {
  acceptedEvent(t, validate(track({ properties: nestedObject(10) })));
  assertRejected(t, validate(track({ properties: nestedObject(11) })), {
    code: 'NESTING_TOO_DEEP',
    field: 'properties.a.a.a.a.a.a.a.a.a.a',
    message: 'properties.a.a.a.a.a.a.a.a.a.a must be at most 10 levels deep, received 11 levels',
  });
});

t.test('validation - counts arrays and context in depth', async (t) => {
  const limits = resolveEventLimits({ maxDepth: 2 });
  assertRejected(t, validate(track({ properties: { items: [{ sku: 'A' }] } }), limits), {
    code: 'NESTING_TOO_DEEP',
    field: 'properties.items[0]',
    message: 'properties.items[0] must be at most 2 levels deep, received 3 levels',
  });
  assertRejected(t, validate(track({ context: { traits: { address: { city: 'Oslo' } } } }), limits), {
    code: 'NESTING_TOO_DEEP',
    field: 'context.traits.address',
    message: 'context.traits.address must be at most 2 levels deep, received 3 levels',
  });
});

t.test('validation - rejects too many keys per object', async (t) => {
  acceptedEvent(t, validate(track({ properties: objectWithKeys(256) })));
  assertRejected(t, validate(track({ properties: { list: [objectWithKeys(257)] } })), {
    code: 'TOO_MANY_KEYS',
    field: 'properties.list[0]',
    message: 'properties.list[0] must have at most 256 keys, received 257 keys',
  });
});

t.test('validation - rejects too many keys in total', async (t) => {
  const limits = resolveEventLimits({ maxTotalKeys: 10 });
  const properties = objectWithKeys(6, 'p');
  const traits = objectWithKeys(3, 't');
  acceptedEvent(t, validate(track({ properties, traits }), limits));

  assertRejected(t, validate(track({ properties, traits, context: { locale: 'en-GB', timezone: 'Europe/London' } }), limits), {
    code: 'TOO_MANY_KEYS',
    field: 'context',
    message: 'the event must have at most 10 object keys in total, and context brings the count to 11',
  });
});

t.test('validation - rejects __proto__ key', async (t) => {
  const raw = JSON.parse('{"type":"identify","userId":"u","traits":{"__proto__":{"polluted":1}}}');
  assertRejected(t, validate(raw), {
    code: 'FORBIDDEN_KEY',
    field: 'traits.__proto__',
    message: 'traits.__proto__ is not allowed because keys named __proto__, constructor and prototype could pollute object prototypes',
  });
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is not polluted');
});

t.test('validation - rejects __proto__ key in pollution attempt', async (t) => {
  const payload = JSON.parse('{"__proto__":{"polluted":1}}');
  t.ok(Object.hasOwn(payload, '__proto__'), 'JSON.parse creates an own __proto__ key');

  assertRejected(t, validate(track({ properties: payload })), {
    code: 'FORBIDDEN_KEY',
    field: 'properties.__proto__',
    message: 'properties.__proto__ is not allowed because keys named __proto__, constructor and prototype could pollute object prototypes',
  });
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is not polluted');
});

t.test('validation - rejects forbidden keys everywhere', async (t) => {
  const cases: [string, unknown, string][] = [
    ['constructor', track({ properties: { constructor: { prototype: {} } } }), 'properties.constructor'],
    ['prototype', track({ integrations: { All: true, prototype: 1 } }), 'integrations.prototype'],
    ['nested array', track({ properties: { items: [{ ok: 1 }, JSON.parse('{"__proto__":1}')] } }), 'properties.items[1].__proto__'],
    ['context', track({ context: JSON.parse('{"__proto__":{"x":1}}') }), 'context.__proto__'],
    ['context extra', track({ context: { app: JSON.parse('{"__proto__":{"x":1}}') } }), 'context.app.__proto__'],
    ['external id', track({ context: { externalIds: [{ type: 't', id: 'i', constructor: 'x' }] } }), 'context.externalIds[0].constructor'],
    ['top level', JSON.parse('{"type":"track","event":"E","userId":"u","__proto__":{"x":1}}'), '__proto__'],
  ];
  for (const [name, raw, field] of cases) {
    t.test(name, async (t) => {
      assertRejected(t, validate(raw), {
        code: 'FORBIDDEN_KEY',
        field,
        message: `${field} is not allowed because keys named __proto__, constructor and prototype could pollute object prototypes`,
      });
    });
  }
});

t.test('validation - output objects are fresh plain objects', async (t) => {
  const input = { properties: { cart: { total: 1 } }, context: { app: { name: 'shop' } } };
  const result = acceptedEvent(t, validate(track(input)));
  const { properties, context } = result.event;
  t.equal(Object.getPrototypeOf(properties), Object.prototype, 'properties');
  t.equal(Object.getPrototypeOf(properties?.cart), Object.prototype, 'properties.cart');
  t.equal(Object.getPrototypeOf(context), Object.prototype, 'context');
  t.equal(Object.getPrototypeOf(context?.app), Object.prototype, 'context.app');
  t.not(properties?.cart, input.properties.cart, 'nested objects are copies, not the input');
});

t.test('validation - rejects string over max length', async (t) => {
  const properties = { 'line items': [{ note: 'n'.repeat(8_193) }] };
  assertRejected(t, validate(track({ properties })), {
    code: 'STRING_TOO_LONG',
    field: 'properties["line items"][0].note',
    message: 'properties["line items"][0].note must be at most 8192 characters, received 8193 characters',
  });
  acceptedEvent(t, validate(track({ properties: { note: 'n'.repeat(8_192) } }), resolveEventLimits({ maxEventBytes: 65_536 })));
});

t.test('validation - rejects long top-level string', async (t) => {
  assertRejected(t, validate(track({ context: { userAgent: 'a'.repeat(8_193) } })), {
    code: 'STRING_TOO_LONG',
    field: 'context.userAgent',
    message: 'context.userAgent must be at most 8192 characters, received 8193 characters',
  });
});

t.test('validation - rejects non-finite numbers', async (t) => {
  const cases: [number, string][] = [
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, 'Infinity'],
    [Number.NEGATIVE_INFINITY, '-Infinity'],
  ];
  for (const [value, shown] of cases) {
    assertRejected(t, validate(track({ properties: { revenue: value } })), {
      code: 'INVALID_TYPE',
      field: 'properties.revenue',
      message: `properties.revenue must be a finite number, received ${shown}`,
    });
  }
});

t.test('validation - rejects values that are not JSON', async (t) => {
  const cases: [unknown, string][] = [
    [new Date(0), 'an instance of Date'],
    [Buffer.from('x'), 'an instance of Buffer'],
    [new Map(), 'an instance of Map'],
    [() => 1, 'a function'],
    [Symbol('s'), 'a symbol'],
    [10n, 'the bigint 10n'],
  ];
  for (const [value, shown] of cases) {
    assertRejected(t, validate(track({ properties: { value } })), {
      code: 'INVALID_TYPE',
      field: 'properties.value',
      message: `properties.value must be a JSON value, received ${shown}`,
    });
  }
});

t.test('validation - drops undefined values', async (t) => {
  const result = acceptedEvent(t, validate(track({ properties: { kept: 1, dropped: undefined, list: [1, undefined] } })));
  t.same(result.event.properties, { kept: 1, list: [1, null] });
  t.notOk(Object.hasOwn(result.event.properties ?? {}, 'dropped'), 'undefined key is absent');
});

t.test('validation - drops empty strings and objects', async (t) => {
  const result = acceptedEvent(
    t,
    validate({
      type: 'page',
      anonymousId: 'a',
      userId: '',
      messageId: 'm',
      name: '',
      category: '',
      sentAt: '',
      properties: {},
      traits: { gone: undefined },
      integrations: {},
      context: { ip: '', userAgent: '', traits: {}, device: {}, externalIds: [] },
    }),
  );
  t.strictSame(Object.keys(result.event), ['type', 'messageId', 'timestamp', 'timestampMs', 'receivedAt', 'anonymousId']);
});

t.test('validation - keeps empty values inside objects', async (t) => {
  const result = acceptedEvent(t, validate(track({ properties: { coupon: '', tags: [], extra: {} } })));
  t.same(result.event.properties, { coupon: '', tags: [], extra: {} });
});

t.test('validation - drops unknown top-level fields', async (t) => {
  const result = acceptedEvent(t, validate(track({ channel: 'server', version: 2, originalTimestamp: '2024-05-01T10:00:00Z' })));
  t.notOk('channel' in result.event, 'channel');
  t.notOk('version' in result.event, 'version');
  t.notOk('originalTimestamp' in result.event, 'originalTimestamp');
});

t.test('validation - accepts external ids', async (t) => {
  const externalIds = [
    { type: 'crm_id', id: 'c-1', collection: 'users', encoding: 'none', note: 'dropped' },
    { type: 'email', id: 'a@example.com', collection: '' },
  ];
  const result = acceptedEvent(t, validate(track({ context: { externalIds } })));
  t.strictSame(result.event.context?.externalIds, [
    { type: 'crm_id', id: 'c-1', collection: 'users', encoding: 'none' },
    { type: 'email', id: 'a@example.com' },
  ]);
});

t.test('validation - rejects invalid external id', async (t) => {
  const valid = { type: 'crm_id', id: 'c-1' };
  const cases: [string, unknown, string, string][] = [
    ['empty id', { type: 'email', id: '' }, 'context.externalIds[2].id', '""'],
    ['missing id', { type: 'email' }, 'context.externalIds[2].id', 'nothing'],
    ['numeric type', { type: 3, id: 'x' }, 'context.externalIds[2].type', '3'],
    ['numeric collection', { type: 't', id: 'x', collection: 1 }, 'context.externalIds[2].collection', '1'],
  ];
  for (const [name, entry, field, shown] of cases) {
    t.test(name, async (t) => {
      assertRejected(t, validate(track({ context: { externalIds: [valid, valid, entry] } })), {
        code: 'INVALID_FIELD',
        field,
        message: `${field} must be a non-empty string, received ${shown}`,
      });
    });
  }
});

t.test('validation - rejects malformed external ids', async (t) => {
  assertRejected(t, validate(track({ context: { externalIds: [{ type: 't', id: 'i' }, 'x'] } })), {
    code: 'INVALID_FIELD',
    field: 'context.externalIds[1]',
    message: 'context.externalIds[1] must be an object with a type and an id, received "x"',
  });
  assertRejected(t, validate(track({ context: { externalIds: { type: 't', id: 'i' } } })), {
    code: 'INVALID_TYPE',
    field: 'context.externalIds',
    message: 'context.externalIds must be an array, received an object',
  });
});

t.test('validation - rejects external id over max length', async (t) => {
  assertRejected(t, validate(track({ context: { externalIds: [{ type: 't', id: 'i'.repeat(256) }] } })), {
    code: 'STRING_TOO_LONG',
    field: 'context.externalIds[0].id',
    message: 'context.externalIds[0].id must be at most 255 characters, received 256 characters',
  });
});

t.test('validation - rejects event over max bytes', async (t) => {
  const text = 'x'.repeat(8_000);
  const properties = { a: text, b: text, c: text, d: text, e: text };
  const event = acceptedEvent(t, validate(track({ properties: { a: properties.a } }))).event;
  const expectedBytes = Buffer.byteLength(JSON.stringify({ ...event, properties }));

  assertRejected(t, validate(track({ properties })), {
    code: 'EVENT_TOO_LARGE',
    field: '',
    message: `the event must be at most 32768 bytes as JSON, received ${expectedBytes} bytes`,
  });
});

t.test('validation - counts event size in UTF-8 bytes', async (t) => {
  const result = acceptedEvent(t, validate(track({ properties: { city: 'Zürich 東京' } })));
  t.equal(result.sizeBytes, Buffer.byteLength(JSON.stringify(result.event), 'utf8'));
  t.ok(result.sizeBytes > JSON.stringify(result.event).length, 'multi-byte characters count more than one byte');
});

t.test('validation - truncates received value in message', async (t) => {
  const type = 'x'.repeat(100);
  assertRejected(t, validate(track({ type })), {
    code: 'INVALID_FIELD',
    field: 'type',
    message: `type must be one of track, identify, page, screen, group, alias, received "${'x'.repeat(64)}" (first 64 of 100 characters)`,
  });
});

t.test('validation - never throws on hostile input', async (t) => {
  const throwingGetter = Object.defineProperty(track(), 'properties', {
    enumerable: true,
    get() {
      throw new Error('getter failed');
    },
  });
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  const cyclic: Record<string, unknown> = { name: 'loop' };
  cyclic.self = cyclic;

  const cases: [string, unknown, RejectionCode, string, string][] = [
    ['throwing getter', throwingGetter, 'INVALID_TYPE', '', 'the event could not be read: getter failed'],
    [
      'revoked proxy',
      track({ properties: revoked.proxy }),
      'INVALID_TYPE',
      '',
      "the event could not be read: Cannot perform 'IsArray' on a proxy that has been revoked",
    ],
    [
      'cycle',
      track({ properties: cyclic }),
      'NESTING_TOO_DEEP',
      `properties${'.self'.repeat(10)}`,
      `properties${'.self'.repeat(10)} must be at most 10 levels deep, received 11 levels`,
    ],
  ];
  for (const [name, raw, code, field, message] of cases) {
    t.test(name, async (t) => {
      assertRejected(t, validate(raw), { code, field, message });
    });
  }
});

t.test('validation - never throws on odd shapes', async (t) => {
  const shapes: unknown[] = [
    Object.create(null),
    { type: 'track', event: ['E'], userId: 'u' },
    { type: 'identify', userId: 'u', context: [] },
    { type: 'identify', userId: 'u', context: { externalIds: [null, undefined] } },
    { type: 'identify', userId: 'u', properties: { deep: [[[[[[[[[[[[1]]]]]]]]]]]] } },
    { type: 'identify', userId: 'u', sentAt: 0 },
    new Proxy({}, {}),
  ];
  for (const shape of shapes) {
    t.doesNotThrow(() => validate(shape));
  }
});

t.test('validation - passes on generator errors', async (t) => {
  const failing = {
    receivedAt: new Date(RECEIVED_AT),
    generateMessageId: () => {
      throw new Error('no entropy');
    },
  };
  t.throws(() => validateEvent(track({ messageId: '' }), DEFAULT_EVENT_LIMITS, failing), { message: 'no entropy' });
});

t.test('batch - keeps good events beside a bad one', async (t) => {
  const results = validateBatch(
    [track({ messageId: 'm1' }), track({ messageId: 'm2', timestamp: 'yesterday' }), track({ messageId: 'm3' })],
    DEFAULT_EVENT_LIMITS,
    context(),
  );

  t.equal(results.length, 3);
  t.equal(results[0]?.ok, true, 'first accepted');
  assertRejected(t, results[1] as ValidationResult, {
    code: 'INVALID_TIMESTAMP',
    field: 'timestamp',
    message: 'timestamp must be an ISO-8601 date-time, received "yesterday"',
  });
  t.equal(results[2]?.ok, true, 'third accepted');
});

t.test('batch - generates distinct messageIds', async (t) => {
  const results = validateBatch([track({ messageId: undefined }), track({ messageId: undefined })], DEFAULT_EVENT_LIMITS, context());
  const ids = results.map((result) => (result.ok ? result.event.messageId : ''));
  t.strictSame(ids, ['generated-1', 'generated-2']);
});

t.test('batch - rejects every event over max bytes', async (t) => {
  const limits = resolveEventLimits({ maxBatchBytes: 40_000 });
  const raws = [
    track({ messageId: 'm1', properties: { note: 'x'.repeat(8_000) } }),
    track({ messageId: 'm2', properties: { note: 'x'.repeat(8_000) } }),
    track({ messageId: 'm3', properties: { note: 'x'.repeat(8_000) } }),
    track({ messageId: 'm4', properties: { note: 'x'.repeat(8_000) } }),
    track({ messageId: 'm5', properties: { note: 'x'.repeat(8_000) } }),
  ];
  const sizes = validateBatch(raws, DEFAULT_EVENT_LIMITS, context()).map((result) => (result.ok ? result.sizeBytes : 0));
  const total = sizes.reduce((sum, size) => sum + size, 0);
  t.ok(total > 40_000, 'the batch is over the limit');

  const results = validateBatch(raws, limits, context());
  t.equal(results.length, 5);
  for (const result of results) {
    assertRejected(t, result, {
      code: 'BATCH_TOO_LARGE',
      field: '',
      message: `the batch must be at most 40000 bytes as JSON, received ${total} bytes`,
    });
  }
});

t.test('batch - accepts batch at max bytes', async (t) => {
  const raws = [track({ messageId: 'm1' }), track({ messageId: 'm2' })];
  const sizes = validateBatch(raws, DEFAULT_EVENT_LIMITS, context()).map((result) => (result.ok ? result.sizeBytes : 0));
  const limits = resolveEventLimits({ maxEventBytes: sizes[0]!, maxBatchBytes: sizes[0]! + sizes[1]! });

  const results = validateBatch(raws, limits, context());
  t.strictSame(results.map((result) => result.ok), [true, true]);
});

t.test('batch - empty batch', async (t) => {
  t.strictSame(validateBatch([], DEFAULT_EVENT_LIMITS, context()), []);
});
