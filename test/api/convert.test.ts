import t, { type Test } from 'tap';
import { eventFromProto, eventToProto } from '../../api/convert.js';
import type { CustomerEvent, RawEvent, ValidationResult } from '../../profiles/event.js';
import { parseSegmentLine, rawEventToProto } from '../../profiles/segment-json.js';
import { DEFAULT_EVENT_LIMITS, validateEvent } from '../../profiles/validation.js';
import { Event } from '../../proto/gen/rtcdp/v1/event.js';

const RECEIVED_AT = '2024-05-01T12:00:00.000Z';

function validate(raw: RawEvent): ValidationResult {
  return validateEvent(raw, DEFAULT_EVENT_LIMITS, {
    receivedAt: new Date(RECEIVED_AT),
    generateMessageId: () => 'generated-1',
  });
}

function acceptedEvent(t: Test, raw: RawEvent): CustomerEvent {
  const result = validate(raw);
  t.equal(result.ok, true, result.ok ? 'event is accepted' : `event is accepted, got ${result.message}`);
  if (!result.ok) {
    throw new Error(`expected an accepted event, got ${result.code}: ${result.message}`);
  }
  return result.event;
}

/** Encodes and decodes the message, as a gRPC call does. */
function overTheWire(message: Event): Event {
  return Event.decode(Event.encode(message).finish());
}

/** Returns a plain-object copy, so that comparisons ignore null prototypes. */
function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

function emptyEvent(): Event {
  return Event.fromPartial({});
}

const FULL_RAW: RawEvent = {
  type: 'track',
  messageId: 'message-1',
  timestamp: '2024-05-01T10:00:00.000Z',
  sentAt: '2024-05-01T10:00:01.000Z',
  userId: 'user-1',
  anonymousId: 'anonymous-1',
  event: 'Order Completed',
  properties: { total: 39.9, items: [{ sku: 'A-1', quantity: 2 }], coupon: null, gift: false },
  traits: { plan: 'pro' },
  integrations: { All: true, Mixpanel: false },
  context: {
    traits: { email: 'a@example.com' },
    ip: '203.0.113.7',
    userAgent: 'Mozilla/5.0',
    device: { id: 'd-1', type: 'ios' },
    externalIds: [
      { type: 'crm_id', id: 'c-1', collection: 'users', encoding: 'none' },
      { type: 'email', id: 'a@example.com' },
    ],
    locale: 'en-GB',
    library: { name: 'analytics-node', version: '6.0.0' },
    page: { path: '/checkout', referrer: '' },
  },
};

t.test('convert - eventFromProto drops empty strings', async (t) => {
  const message = { ...emptyEvent(), type: 'identify', userId: 'user-1' };
  t.strictSame(eventFromProto(message), { type: 'identify', userId: 'user-1' });
});

t.test('convert - eventFromProto flattens context extra', async (t) => {
  const message: Event = {
    ...emptyEvent(),
    type: 'track',
    context: {
      traits: { email: 'a@example.com' },
      ip: '203.0.113.7',
      userAgent: '',
      device: undefined,
      externalIds: [{ type: 'crm_id', id: 'c-1', collection: '', encoding: '' }],
      extra: { locale: 'en-GB', app: { name: 'shop' } },
    },
  };

  t.same(plain(eventFromProto(message).context), {
    locale: 'en-GB',
    app: { name: 'shop' },
    traits: { email: 'a@example.com' },
    ip: '203.0.113.7',
    externalIds: [{ type: 'crm_id', id: 'c-1' }],
  });
});

t.test('convert - typed context field wins over extra', async (t) => {
  const message: Event = {
    ...emptyEvent(),
    context: { ip: '203.0.113.7', userAgent: '', externalIds: [], extra: { ip: '198.51.100.1', userAgent: 'from extra' } },
  };

  const context = eventFromProto(message).context as Record<string, unknown>;
  t.equal(context.ip, '203.0.113.7', 'typed ip wins');
  t.equal(context.userAgent, 'from extra', 'extra fills an unset typed field');
});

t.test('convert - eventFromProto omits empty context', async (t) => {
  const message: Event = { ...emptyEvent(), context: { ip: '', userAgent: '', externalIds: [] } };
  t.notOk('context' in eventFromProto(message), 'no context');
});

t.test('convert - eventFromProto keeps empty external id', async (t) => {
  const message: Event = {
    ...emptyEvent(),
    context: { ip: '', userAgent: '', externalIds: [{ type: 'email', id: '', collection: '', encoding: '' }] },
  };
  const context = eventFromProto(message).context as Record<string, unknown>;
  t.strictSame(context.externalIds, [{ type: 'email', id: '' }]);
});

t.test('convert - eventToProto splits context', async (t) => {
  const event = acceptedEvent(t, FULL_RAW);
  const message = eventToProto(event);

  t.equal(message.type, 'track');
  t.equal(message.receivedAt, RECEIVED_AT);
  t.equal(message.groupId, '', 'unset string field is empty');
  t.equal(message.context?.ip, '203.0.113.7');
  t.equal(message.context?.userAgent, 'Mozilla/5.0');
  t.same(plain(message.context?.traits), { email: 'a@example.com' });
  t.same(plain(message.context?.device), { id: 'd-1', type: 'ios' });
  t.strictSame(message.context?.externalIds, [
    { type: 'crm_id', id: 'c-1', collection: 'users', encoding: 'none' },
    { type: 'email', id: 'a@example.com', collection: '', encoding: '' },
  ]);
  t.same(plain(message.context?.extra), {
    locale: 'en-GB',
    library: { name: 'analytics-node', version: '6.0.0' },
    page: { path: '/checkout', referrer: '' },
  });
});

t.test('convert - eventToProto without context', async (t) => {
  const message = eventToProto(acceptedEvent(t, { type: 'identify', userId: 'u' }));
  t.equal(message.context, undefined, 'context');
  t.equal(message.properties, undefined, 'properties');
});

t.test('convert - round trip over the wire', async (t) => {
  const event = acceptedEvent(t, FULL_RAW);
  const decoded = eventFromProto(overTheWire(eventToProto(event)));
  const again = acceptedEvent(t, decoded);

  t.same(plain(again), plain(event));
});

t.test('convert - round trip of minimal event', async (t) => {
  const event = acceptedEvent(t, { type: 'alias', userId: 'u', previousId: 'a', messageId: 'm' });
  const again = acceptedEvent(t, eventFromProto(overTheWire(eventToProto(event))));
  t.strictSame(again, event);
});

t.test('convert - raw event round trip', async (t) => {
  const direct = acceptedEvent(t, FULL_RAW);
  const viaProto = acceptedEvent(t, eventFromProto(overTheWire(rawEventToProto(FULL_RAW))));
  t.same(plain(viaProto), plain(direct));
});

t.test('segment json - rawEventToProto converts numeric ids', async (t) => {
  const message = rawEventToProto({ type: 'group', userId: 42, groupId: 7, anonymousId: null });
  t.equal(message.userId, '42');
  t.equal(message.groupId, '7');
  t.equal(message.anonymousId, '');
});

t.test('segment json - rawEventToProto keeps invalid values for the server', async (t) => {
  const message = rawEventToProto({ type: 'purchase', timestamp: 'yesterday' });
  t.equal(message.type, 'purchase');
  t.equal(message.timestamp, 'yesterday');
});

t.test('segment json - rawEventToProto rejects unrepresentable values', async (t) => {
  const cases: [RawEvent, string][] = [
    [{ userId: true }, 'userId must be a string or a finite number, received true'],
    [{ event: { name: 'x' } }, 'event must be a string or a finite number, received an object'],
    [{ properties: [1] }, 'properties must be a JSON object, received an array'],
    [{ context: 'web' }, 'context must be a JSON object, received "web"'],
    [{ context: { device: 'phone' } }, 'context.device must be a JSON object, received "phone"'],
    [{ context: { externalIds: {} } }, 'context.externalIds must be an array, received an object'],
    [{ context: { externalIds: [{ type: 't', id: 'i' }, 5] } }, 'context.externalIds[1] must be an object with a type and an id, received 5'],
    [{ context: { externalIds: [{ type: 't', id: false }] } }, 'context.externalIds[0].id must be a string or a finite number, received false'],
  ];
  for (const [raw, message] of cases) {
    t.throws(() => rawEventToProto(raw), new TypeError(message), message);
  }
});

t.test('segment json - rawEventToProto rejects non-object event', async (t) => {
  t.throws(() => rawEventToProto([] as unknown as RawEvent), new TypeError('the event must be a JSON object, received an array'));
});

t.test('segment json - parses one event', async (t) => {
  const line = JSON.stringify(FULL_RAW);
  const parsed = parseSegmentLine(line, 1);
  t.equal(parsed.ok, true, 'parsed');
  if (parsed.ok) {
    t.strictSame(parsed.events, [FULL_RAW]);
  }
});

t.test('segment json - parses batch envelope', async (t) => {
  const line = JSON.stringify({
    batch: [
      { type: 'track', event: 'A', userId: 'u', context: { ip: '203.0.113.7' }, integrations: { Mixpanel: false } },
      { type: 'identify', userId: 'u', sentAt: '2024-05-01T10:00:05Z' },
      'not an event',
    ],
    context: { ip: '198.51.100.1', locale: 'en-GB' },
    integrations: { All: true },
    sentAt: '2024-05-01T10:00:00Z',
    writeKey: 'ignored',
  });

  const parsed = parseSegmentLine(line, 3);
  t.equal(parsed.ok, true, 'parsed');
  if (!parsed.ok) {
    return;
  }
  t.strictSame(parsed.events, [
    {
      type: 'track',
      event: 'A',
      userId: 'u',
      context: { ip: '203.0.113.7', locale: 'en-GB' },
      integrations: { All: true, Mixpanel: false },
      sentAt: '2024-05-01T10:00:00Z',
    },
    {
      type: 'identify',
      userId: 'u',
      sentAt: '2024-05-01T10:00:05Z',
      context: { ip: '198.51.100.1', locale: 'en-GB' },
      integrations: { All: true },
    },
    'not an event',
  ]);
});

t.test('segment json - reports invalid JSON', async (t) => {
  const line = '{"type": "track",';
  let reason = '';
  try {
    JSON.parse(line);
  } catch (error) {
    reason = (error as Error).message;
  }

  t.strictSame(parseSegmentLine(line, 12), { ok: false, message: `line 12: invalid JSON: ${reason}` });
});

t.test('segment json - rejects non-object line', async (t) => {
  t.strictSame(parseSegmentLine('[{"type":"track"}]', 4), {
    ok: false,
    message: 'line 4: expected a JSON object with one event or a "batch" array, received an array',
  });
  t.strictSame(parseSegmentLine('null', 5), {
    ok: false,
    message: 'line 5: expected a JSON object with one event or a "batch" array, received null',
  });
});

t.test('segment json - rejects batch that is not an array', async (t) => {
  t.strictSame(parseSegmentLine('{"batch":{"type":"track"}}', 9), {
    ok: false,
    message: 'line 9: batch must be an array of events, received an object',
  });
});

t.test('segment json - __proto__ in a line is rejected', async (t) => {
  const line = '{"type":"identify","userId":"u","traits":{"__proto__":{"polluted":1}}}';
  const parsed = parseSegmentLine(line, 1);
  t.equal(parsed.ok, true, 'parsed');
  if (!parsed.ok) {
    return;
  }

  const result = validate(parsed.events[0] as RawEvent);
  t.equal(result.ok, false, 'rejected');
  if (!result.ok) {
    t.equal(result.code, 'FORBIDDEN_KEY');
    t.equal(result.field, 'traits.__proto__');
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is not polluted');
});

t.test('segment json - __proto__ in envelope context stays a key', async (t) => {
  const line = '{"batch":[{"type":"identify","userId":"u"}],"context":{"__proto__":{"polluted":1}}}';
  const parsed = parseSegmentLine(line, 1);
  t.equal(parsed.ok, true, 'parsed');
  if (!parsed.ok) {
    return;
  }

  const context = (parsed.events[0] as RawEvent).context as Record<string, unknown>;
  t.ok(Object.hasOwn(context, '__proto__'), 'merged context has an own __proto__ key');
  const result = validate(parsed.events[0] as RawEvent);
  t.equal(result.ok ? '' : result.code, 'FORBIDDEN_KEY');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is not polluted');
});
