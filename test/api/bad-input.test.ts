import { Metadata, status } from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { callUnary, writeKeyMetadata } from '../../cli/client.js';
import type { RawEvent } from '../../profiles/event.js';
import type { AppliedEvent } from '../../profiles/profile.js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { Struct_FieldsEntry } from '../../proto/gen/google/protobuf/struct.js';
import { Event } from '../../proto/gen/rtcdp/v1/event.js';
import { EventStatus, IngestBatchResponse, type EventResult } from '../../proto/gen/rtcdp/v1/ingest.js';
import type { Profile } from '../../proto/gen/rtcdp/v1/profile.js';
import {
  errorCodeOf,
  expectServiceError,
  getProfile,
  ingestBatch,
  listProfileEvents,
  sendRawUnary,
  startTestNode,
  waitFor,
  type TestNode,
  type TestNodeOptions,
} from '../helpers/grpc-node.js';

const INGEST_BATCH = '/rtcdp.v1.IngestService/IngestBatch';
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** Events stored for "alice" before each case. Every case checks that they are unchanged. */
const BASELINE_EVENTS: RawEvent[] = [
  {
    type: 'identify',
    userId: 'alice',
    messageId: 'alice-1',
    timestamp: '2024-05-01T10:00:00.000Z',
    traits: { plan: 'pro' },
    context: { traits: { email: 'alice@example.com' } },
  },
  { type: 'track', userId: 'alice', messageId: 'alice-2', timestamp: '2024-05-01T10:01:00.000Z', event: 'Product Viewed', properties: { price: 10 } },
  { type: 'track', userId: 'alice', messageId: 'alice-3', timestamp: '2024-05-01T10:02:00.000Z', event: 'Product Viewed', properties: { price: 15 } },
];

interface Fixture {
  node: TestNode;
  /** Metadata with the write key of the workspace that contains alice, or empty in dev mode. */
  metadata: Metadata;
}

/** Starts a node and stores alice's baseline events through gRPC. */
async function setUp(t: Test, options: TestNodeOptions = {}, metadata = new Metadata()): Promise<Fixture> {
  const node = await startTestNode(t, options);
  const response = await ingestBatch(node, BASELINE_EVENTS, metadata);
  t.equal(response.accepted, BASELINE_EVENTS.length, 'baseline events are accepted');
  return { node, metadata };
}

/** Checks that alice's profile still reflects exactly the baseline, and that a good event is still accepted. */
async function checkUnchanged(t: Test, fixture: Fixture, probeUser: string): Promise<void> {
  const profile = await getProfile(fixture.node, 'user_id', 'alice', fixture.metadata);
  t.equal(profile.eventCount, 3, 'alice still has 3 events');
  t.same(eventCounts(profile), { identify: 1, 'Product Viewed': 2 }, 'alice event counts are unchanged');
  t.same(profile.events['Product Viewed']?.sums, { price: 25 }, 'alice sums are unchanged');
  t.same(plain(profile.traits), { plan: 'pro', email: 'alice@example.com' }, 'alice traits are unchanged');

  const probe = await ingestBatch(fixture.node, [{ type: 'track', userId: probeUser, event: 'Probe' }], fixture.metadata);
  t.equal(probe.results[0].status, EventStatus.EVENT_STATUS_ACCEPTED, 'a good event is still accepted');
}

function eventCounts(profile: Profile): Record<string, number> {
  return Object.fromEntries(Object.entries(profile.events).map(([name, stats]) => [name, stats.count]));
}

/** Returns a plain-object copy, so that comparisons ignore null prototypes. */
function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value ?? null));
}

/** Sends one event and returns its result. */
async function sendOne(fixture: Fixture, event: RawEvent): Promise<EventResult> {
  const response = await ingestBatch(fixture.node, [event], fixture.metadata);
  return response.results[0];
}

function checkRejected(t: Test, result: EventResult, code: string, field: string, ...phrases: string[]): void {
  t.equal(result.status, EventStatus.EVENT_STATUS_REJECTED, `${code}: status is REJECTED`);
  t.equal(result.code, code, `${code}: code`);
  t.equal(result.field, field, `${code}: field`);
  for (const phrase of phrases) {
    t.match(result.message, phrase, `${code}: message contains ${JSON.stringify(phrase)}`);
  }
}

/** Returns an object nested `depth` levels deep: `{ level1: { level2: ... { levelN: 1 } } }` has depth N. */
function nestedObject(depth: number): Record<string, unknown> {
  let value: unknown = 1;
  for (let level = depth; level >= 1; level--) {
    value = { [`level${level}`]: value };
  }
  return value as Record<string, unknown>;
}

t.test('bad input - malformed protobuf', async (t) => {
  const fixture = await setUp(t);

  // Field 1 (Event) announces 0x7fffffff bytes, and only 2 follow.
  const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x07, 0xde, 0xad]);
  const error = await sendRawUnary(fixture.node.rtcdp.address, INGEST_BATCH, garbage);
  if (Buffer.isBuffer(error)) throw new Error('garbage bytes were accepted');

  t.equal(error.code, status.INVALID_ARGUMENT, 'status is INVALID_ARGUMENT');
  t.equal(errorCodeOf(error), 'MALFORMED_REQUEST', 'trailer code');
  // "premature EOF" is the wording of BinaryReader in @bufbuild/protobuf 2.17.
  t.equal(error.details, 'request is not a valid rtcdp.v1.IngestBatchRequest: premature EOF', 'message names the type and the failure');

  // A wire type of 7 does not exist.
  const badWireType = await sendRawUnary(fixture.node.rtcdp.address, INGEST_BATCH, Buffer.from([0x0f, 0x01]));
  if (Buffer.isBuffer(badWireType)) throw new Error('a request with wire type 7 was accepted');
  t.equal(badWireType.code, status.INVALID_ARGUMENT, 'wire type 7: status is INVALID_ARGUMENT');
  t.equal(errorCodeOf(badWireType), 'MALFORMED_REQUEST', 'wire type 7: trailer code');
  t.match(badWireType.details, 'wire type 7', 'wire type 7: message names the wire type');

  await checkUnchanged(t, fixture, 'probe-malformed');
});

t.test('bad input - invalid UTF-8 in page_token', async (t) => {
  const fixture = await setUp(t);

  // ListProfileEventsRequest.page_token (field 3, tag 0x1a) = [0xff].
  const body = Buffer.from([0x1a, 0x01, 0xff]);
  const error = await sendRawUnary(fixture.node.rtcdp.address, '/rtcdp.v1.ProfileService/ListProfileEvents', body);
  if (Buffer.isBuffer(error)) throw new Error('invalid UTF-8 was accepted');

  t.equal(error.code, status.INVALID_ARGUMENT, 'status is INVALID_ARGUMENT');
  t.match(error.details, 'page_token is not valid UTF-8', 'the request field goes by its proto name');
});

t.test('bad input - invalid UTF-8 in user_id', async (t) => {
  const fixture = await setUp(t);

  // IngestBatchRequest.events (field 1, length 4) containing Event.user_id (field 6, tag 0x32) = [0xff, 0xfe].
  const body = Buffer.from([0x0a, 0x04, 0x32, 0x02, 0xff, 0xfe]);
  const error = await sendRawUnary(fixture.node.rtcdp.address, INGEST_BATCH, body);
  if (Buffer.isBuffer(error)) throw new Error('invalid UTF-8 was accepted');

  t.equal(error.code, status.INVALID_ARGUMENT, 'status is INVALID_ARGUMENT');
  t.equal(errorCodeOf(error), 'MALFORMED_REQUEST', 'trailer code');
  t.match(error.details, 'rtcdp.v1.IngestBatchRequest', 'message names the message type');
  t.match(error.details, 'events[0].userId is not valid UTF-8', 'message names the field and the rule');

  // The same bytes with valid UTF-8 decode, so the failure above is the encoding alone.
  // Event.type (field 1, tag 0x0a) = "identify" and Event.user_id = "b".
  const valid = Buffer.from([0x0a, 0x0d, 0x0a, 0x08, ...Buffer.from('identify'), 0x32, 0x01, 0x62]);
  const response = await sendRawUnary(fixture.node.rtcdp.address, INGEST_BATCH, valid);
  if (!Buffer.isBuffer(response)) throw new Error(`a hand-encoded valid request failed: ${response.details}`);
  t.equal(IngestBatchResponse.decode(response).accepted, 1, 'the same request with valid UTF-8 is accepted');

  await checkUnchanged(t, fixture, 'probe-utf8');
});

t.test('bad input - missing identity', async (t) => {
  const fixture = await setUp(t);

  const response = await ingestBatch(fixture.node, [
    { type: 'track', userId: 'bob', messageId: 'bob-1', event: 'Signed Up' },
    { type: 'track', messageId: 'nobody-1', event: 'Signed Up' },
    { type: 'track', userId: 'bob', messageId: 'bob-2', event: 'Signed Up' },
  ]);

  t.equal(response.results[0].status, EventStatus.EVENT_STATUS_ACCEPTED, 'event before is accepted');
  checkRejected(t, response.results[1], 'MISSING_IDENTITY', 'userId', 'userId or anonymousId is required');
  t.equal(response.results[1].messageId, 'nobody-1', 'rejected result carries its messageId');
  t.equal(response.results[2].status, EventStatus.EVENT_STATUS_ACCEPTED, 'event after is accepted');
  t.equal(response.accepted, 2, 'accepted count');
  t.equal(response.rejected, 1, 'rejected count');

  const bob = await getProfile(fixture.node, 'user_id', 'bob');
  t.equal(bob.eventCount, 2, 'both good events are applied');

  await checkUnchanged(t, fixture, 'probe-identity');
});

t.test('bad input - invalid timestamp', async (t) => {
  const fixture = await setUp(t);

  const result = await sendOne(fixture, { type: 'track', userId: 'alice', event: 'Late', timestamp: 'yesterday' });
  checkRejected(t, result, 'INVALID_TIMESTAMP', 'timestamp', 'timestamp must be an ISO-8601 date-time', '"yesterday"');

  const sentAt = await sendOne(fixture, { type: 'track', userId: 'alice', event: 'Late', sentAt: '2024-13-01T00:00:00Z' });
  checkRejected(t, sentAt, 'INVALID_TIMESTAMP', 'sentAt', 'sentAt must be an ISO-8601 date-time', '"2024-13-01T00:00:00Z"');

  await checkUnchanged(t, fixture, 'probe-timestamp');
});

t.test('bad input - timestamp too far in future', async (t) => {
  const fixture = await setUp(t);

  const future = new Date(Date.now() + 3 * DAY_MS).toISOString();
  const result = await sendOne(fixture, { type: 'track', userId: 'alice', event: 'Early', timestamp: future });
  checkRejected(t, result, 'TIMESTAMP_TOO_FAR_IN_FUTURE', 'timestamp', 'timestamp must be at most 86400000 ms after receivedAt', future);

  await checkUnchanged(t, fixture, 'probe-future');

  const withinSkew = await sendOne(fixture, { type: 'track', userId: 'skewed', event: 'Early', timestamp: new Date(Date.now() + HOUR_MS).toISOString() });
  t.equal(withinSkew.status, EventStatus.EVENT_STATUS_ACCEPTED, 'one hour ahead is within the default skew');
});

t.test('bad input - custom future skew limit', async (t) => {
  const fixture = await setUp(t, { eventLimits: { maxFutureSkewMs: 60_000 } });

  const fiveMinutesAhead = new Date(Date.now() + 5 * 60_000).toISOString();
  const result = await sendOne(fixture, { type: 'track', userId: 'alice', event: 'Early', timestamp: fiveMinutesAhead });
  checkRejected(t, result, 'TIMESTAMP_TOO_FAR_IN_FUTURE', 'timestamp', 'at most 60000 ms after receivedAt');

  await checkUnchanged(t, fixture, 'probe-custom-skew');

  const tenSecondsAhead = new Date(Date.now() + 10_000).toISOString();
  const accepted = await sendOne(fixture, { type: 'track', userId: 'skewed', event: 'Early', timestamp: tenSecondsAhead });
  t.equal(accepted.status, EventStatus.EVENT_STATUS_ACCEPTED, '10 s ahead is within a 60 s skew');
});

t.test('bad input - oversize event', async (t) => {
  const fixture = await setUp(t);

  // Five strings of 8,000 characters: each is under maxStringLength, together about 40 KB.
  const properties = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`blob${i}`, 'x'.repeat(8_000)]));
  const result = await sendOne(fixture, { type: 'track', userId: 'alice', event: 'Huge', properties });

  checkRejected(t, result, 'EVENT_TOO_LARGE', '', 'the event must be at most 32768 bytes as JSON');
  const size = Number(/received (\d+) bytes/.exec(result.message)?.[1]);
  t.ok(size > 40_000, `message gives the event size (${size} bytes)`);

  await checkUnchanged(t, fixture, 'probe-event-size');
});

t.test('bad input - oversize batch', async (t) => {
  const fixture = await setUp(t);

  // 30 events of about 20 KB each: every event is valid, the batch is about 600 KB.
  const events = Array.from({ length: 30 }, (_, i) => ({
    type: 'track',
    userId: 'bulk',
    messageId: `bulk-${i}`,
    event: 'Bulk',
    properties: { a: 'x'.repeat(7_000), b: 'y'.repeat(7_000), c: 'z'.repeat(6_000) },
  }));
  const response = await ingestBatch(fixture.node, events);

  t.equal(response.results.length, 30, 'one result per event');
  t.equal(response.rejected, 30, 'every event is rejected');
  t.equal(response.accepted, 0, 'no event is accepted');
  const codes = new Set(response.results.map((result) => result.code));
  t.same([...codes], ['BATCH_TOO_LARGE'], 'every code is BATCH_TOO_LARGE');
  t.match(response.results[0].message, 'the batch must be at most 512000 bytes as JSON', 'message names the rule');
  t.equal(response.results[29].messageId, 'bulk-29', 'results keep their messageId');

  const error = await expectServiceError(getProfile(fixture.node, 'user_id', 'bulk'));
  t.equal(error.code, status.NOT_FOUND, 'nothing of the batch is stored');

  await checkUnchanged(t, fixture, 'probe-batch-size');
});

t.test('bad input - request over receive limit', async (t) => {
  const fixture = await setUp(t);

  // 300 events of about 16 KB: about 4.8 MB, over the server's 4 MiB receive limit.
  const events = Array.from({ length: 300 }, (_, i) => ({
    type: 'track',
    userId: 'flood',
    messageId: `flood-${i}`,
    event: 'Flood',
    properties: { a: 'x'.repeat(8_000), b: 'y'.repeat(8_000) },
  }));
  const error = await expectServiceError(ingestBatch(fixture.node, events));

  t.equal(error.code, status.RESOURCE_EXHAUSTED, 'status is RESOURCE_EXHAUSTED');
  // grpc-js 1.14 rejects the request before any rtcdp code runs, so there is no rtcdp trailer.
  t.match(error.details, /^Received message larger than max \(\d+ vs 4194304\)$/, 'grpc-js message gives both sizes');
  t.equal(errorCodeOf(error), '', 'no rtcdp error code');

  const flood = await expectServiceError(getProfile(fixture.node, 'user_id', 'flood'));
  t.equal(flood.code, status.NOT_FOUND, 'nothing of the request is stored');

  await checkUnchanged(t, fixture, 'probe-receive-limit');
});

t.test('bad input - nesting too deep', async (t) => {
  const fixture = await setUp(t);

  // properties is at depth 1, so 11 nested objects put the innermost at depth 12.
  const result = await sendOne(fixture, { type: 'track', userId: 'alice', event: 'Deep', properties: nestedObject(11) });

  const field = 'properties.level1.level2.level3.level4.level5.level6.level7.level8.level9.level10';
  checkRejected(t, result, 'NESTING_TOO_DEEP', field, `${field} must be at most 10 levels deep, received 11 levels`);

  const traits = await sendOne(fixture, { type: 'identify', userId: 'alice', context: { traits: nestedObject(10) } });
  checkRejected(t, traits, 'NESTING_TOO_DEEP', 'context.traits.level1.level2.level3.level4.level5.level6.level7.level8.level9', 'at most 10 levels deep');

  const atLimit = await sendOne(fixture, { type: 'track', userId: 'nested', event: 'Deep', properties: nestedObject(9) });
  t.equal(atLimit.status, EventStatus.EVENT_STATUS_ACCEPTED, 'depth 10 is accepted');

  await checkUnchanged(t, fixture, 'probe-nesting');
});

/** Encodes an IngestBatchRequest of one event whose properties hold exactly `entries`, keys as given. */
function batchWithProperties(event: Event, entries: Array<[string, unknown]>): Buffer {
  const struct = new BinaryWriter();
  for (const [key, value] of entries) struct.uint32(10).bytes(Struct_FieldsEntry.encode({ key, value }).finish());

  // Event.properties is field 13; appended after the rest of the event, it is the one decoded.
  const eventBytes = Buffer.concat([Buffer.from(Event.encode(event).finish()), Buffer.from(new BinaryWriter().uint32(106).bytes(struct.finish()).finish())]);
  return Buffer.from(new BinaryWriter().uint32(10).bytes(eventBytes).finish());
}

t.test('bad input - __proto__ key over gRPC', async (t) => {
  const fixture = await setUp(t);

  // ts-proto clients drop a "__proto__" key when they encode, so the request is built by
  // hand, as a client in another language would send it.
  const probe = Event.fromPartial({ type: 'track', userId: 'mallory', messageId: 'mallory-1', event: 'Probe' });
  const body = batchWithProperties(probe, [
    ['__proto__', { polluted: 'yes' }],
    ['plan', 'pro'],
  ]);
  const response = await sendRawUnary(fixture.node.rtcdp.address, INGEST_BATCH, body);
  if (!Buffer.isBuffer(response)) throw new Error(`the request failed as a whole: ${response.details}`);

  const [result] = IngestBatchResponse.decode(response).results;
  checkRejected(t, result, 'FORBIDDEN_KEY', 'properties.__proto__', '__proto__');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is not polluted');

  await t.rejects(getProfile(fixture.node, 'user_id', 'mallory'), 'the rejected event stored nothing');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is not polluted after reading');

  await checkUnchanged(t, fixture, 'probe-proto');
});

t.test('bad input - constructor and prototype keys', async (t) => {
  const fixture = await setUp(t);

  const cases: Array<{ event: RawEvent; field: string }> = [
    { event: { type: 'track', userId: 'alice', event: 'Probe', properties: { constructor: 1 } }, field: 'properties.constructor' },
    { event: { type: 'track', userId: 'alice', event: 'Probe', properties: { prototype: { polluted: 'yes' } } }, field: 'properties.prototype' },
    { event: { type: 'track', userId: 'alice', event: 'Probe', properties: { cart: { constructor: { prototype: 1 } } } }, field: 'properties.cart.constructor' },
    { event: { type: 'identify', userId: 'alice', traits: { prototype: 'x' } }, field: 'traits.prototype' },
    { event: { type: 'identify', userId: 'alice', context: { traits: { constructor: 'x' } } }, field: 'context.traits.constructor' },
    { event: { type: 'track', userId: 'alice', event: 'Probe', context: { constructor: { name: 'x' } } }, field: 'context.constructor' },
  ];
  for (const { event, field } of cases) {
    const result = await sendOne(fixture, event);
    checkRejected(t, result, 'FORBIDDEN_KEY', field, `${field} is not allowed`, 'could pollute object prototypes');
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is not polluted');

  await checkUnchanged(t, fixture, 'probe-forbidden');
});

t.test('bad input - write keys', async (t) => {
  const shopAKey = 'wk_live_4f9c2a7e1b3d';
  const shopBKey = 'wk_live_8e1d5b0c6a2f';
  const writeKeys = new Map([
    [shopAKey, 'shop-a'],
    [shopBKey, 'shop-b'],
  ]);
  const fixture = await setUp(t, { devMode: false, writeKeys }, writeKeyMetadata(shopAKey));

  const unknownKey = 'wk_live_0000deadbeef';
  const unknown = await expectServiceError(ingestBatch(fixture.node, BASELINE_EVENTS, writeKeyMetadata(unknownKey)));
  t.equal(unknown.code, status.UNAUTHENTICATED, 'unknown key: status is UNAUTHENTICATED');
  t.equal(errorCodeOf(unknown), 'UNAUTHENTICATED', 'unknown key: trailer code');
  t.match(unknown.details, 'unknown write key', 'unknown key: message names the problem');
  t.notMatch(unknown.details, unknownKey, 'unknown key: message does not contain the key');
  t.match(unknown.details, 'ending in "beef"', 'unknown key: message gives the last 4 characters');

  // A short key must not be echoed either, not even as its last 4 characters.
  const shortKey = 'k9x';
  const short = await expectServiceError(ingestBatch(fixture.node, BASELINE_EVENTS, writeKeyMetadata(shortKey)));
  t.equal(short.code, status.UNAUTHENTICATED, 'short key: status is UNAUTHENTICATED');
  t.equal(short.details, 'unknown write key', 'short key: message does not contain the key');

  const missing = await expectServiceError(ingestBatch(fixture.node, BASELINE_EVENTS, new Metadata()));
  t.equal(missing.code, status.UNAUTHENTICATED, 'missing key: status is UNAUTHENTICATED');
  t.equal(errorCodeOf(missing), 'UNAUTHENTICATED', 'missing key: trailer code');
  t.match(missing.details, 'missing write key', 'missing key: message names the problem');
  t.match(missing.details, 'authorization: Bearer', 'missing key: message says how to send one');

  const read = await expectServiceError(getProfile(fixture.node, 'user_id', 'alice', new Metadata()));
  t.equal(read.code, status.UNAUTHENTICATED, 'missing key: GetProfile is UNAUTHENTICATED');

  await checkUnchanged(t, fixture, 'probe-auth');

  const stored = await fixture.node.rtcdp.node.getProfile('shop-a', { type: 'user_id', value: 'alice' });
  t.equal(stored.workspace, 'shop-a', 'shop-a key writes to workspace shop-a');

  const hidden = await expectServiceError(getProfile(fixture.node, 'user_id', 'alice', writeKeyMetadata(shopBKey)));
  t.equal(hidden.code, status.NOT_FOUND, 'shop-b does not see alice of shop-a');
  const hiddenByEmail = await expectServiceError(getProfile(fixture.node, 'email', 'alice@example.com', writeKeyMetadata(shopBKey)));
  t.equal(hiddenByEmail.code, status.NOT_FOUND, 'shop-b does not find alice of shop-a by email');

  const shopB = await ingestBatch(fixture.node, [{ type: 'track', userId: 'alice', messageId: 'alice-1', event: 'Shop B Visit' }], writeKeyMetadata(shopBKey));
  t.equal(shopB.results[0].status, EventStatus.EVENT_STATUS_ACCEPTED, 'messageIds are deduplicated per workspace');
  const aliceB = await getProfile(fixture.node, 'user_id', 'alice', writeKeyMetadata(shopBKey));
  t.equal(aliceB.eventCount, 1, 'shop-b alice has only its own event');
  t.same(eventCounts(aliceB), { 'Shop B Visit': 1 }, 'shop-b alice event names');

  await checkUnchanged(t, fixture, 'probe-auth-after');
});

function throwOnPoison(applied: AppliedEvent): void {
  if (applied.event.event === 'Poison') throw new Error(`cannot apply poison event ${applied.event.messageId}`);
}

t.test('bad input - poison event', async (t) => {
  const dataDir = t.testdir();
  const fixture = await setUp(t, { dataDir, beforeApply: throwOnPoison });

  const response = await ingestBatch(fixture.node, [
    { type: 'track', userId: 'carol', messageId: 'carol-before', event: 'Checkout Started', properties: { total: 5 } },
    { type: 'track', userId: 'carol', messageId: 'carol-poison', event: 'Poison' },
    { type: 'track', userId: 'carol', messageId: 'carol-after', event: 'Order Completed', properties: { total: 7 } },
  ]);
  for (const [index, result] of response.results.entries()) {
    t.equal(result.status, EventStatus.EVENT_STATUS_ACCEPTED, `event ${index} is accepted by the log`);
  }

  const deadLetters = await waitForDeadLetters(fixture, 1);
  t.equal(deadLetters.length, 1, 'one dead letter');
  t.equal(deadLetters[0].messageId, 'carol-poison', 'dead letter messageId');
  t.equal(deadLetters[0].attempts, 3, 'dead letter attempts');
  t.match(deadLetters[0].error, 'cannot apply poison event carol-poison', 'dead letter error text');
  t.equal(deadLetters[0].profileId, 'user:carol', 'dead letter profile id');

  const carol = await getProfile(fixture.node, 'user_id', 'carol');
  t.equal(carol.eventCount, 2, 'the good events are applied once');
  t.same(eventCounts(carol), { 'Checkout Started': 1, 'Order Completed': 1 }, 'each good event counted once');
  t.same(carol.events['Checkout Started']?.sums, { total: 5 }, 'event before is summed once');
  t.same(carol.events['Order Completed']?.sums, { total: 7 }, 'event after is summed once');

  const history = await listProfileEvents(fixture.node, { type: 'user_id', value: 'carol' }, 10, '');
  t.same(
    history.events.map((event) => event.messageId),
    ['carol-after', 'carol-before'],
    'the history holds each good event once and not the poison event',
  );

  const later = await ingestBatch(fixture.node, [{ type: 'track', userId: 'carol', messageId: 'carol-later', event: 'Order Completed', properties: { total: 1 } }]);
  t.equal(later.accepted, 1, 'carol still takes events');
  const carolLater = await getProfile(fixture.node, 'user_id', 'carol');
  t.equal(carolLater.eventCount, 3, 'the next event is applied');

  await checkUnchanged(t, fixture, 'probe-poison');

  await fixture.node.rtcdp.stop();
  const restarted = { ...fixture, node: await startTestNode(t, { dataDir, beforeApply: throwOnPoison }) };
  const carolRestarted = await getProfile(restarted.node, 'user_id', 'carol');
  t.equal(carolRestarted.eventCount, 3, 'after restart the good events are still counted once');
  const deadLettersRestarted = await restarted.node.rtcdp.node.listDeadLetters('default');
  t.equal(deadLettersRestarted.length, 1, 'after restart there is still one dead letter');

  await checkUnchanged(t, restarted, 'probe-poison-restarted');
});

async function waitForDeadLetters(fixture: Fixture, count: number) {
  let found = await fixture.node.rtcdp.node.listDeadLetters('default');
  await waitFor(async () => {
    found = await fixture.node.rtcdp.node.listDeadLetters('default');
    return found.length >= count;
  }, `${count} dead letters`);
  return found;
}

t.test('bad input - duplicate messageId', async (t) => {
  const fixture = await setUp(t);

  const first = await ingestBatch(fixture.node, [
    { type: 'track', userId: 'dave', messageId: 'dave-1', event: 'Clicked' },
    { type: 'track', userId: 'dave', messageId: 'dave-1', event: 'Clicked' },
    { type: 'track', userId: 'erin', messageId: 'dave-1', event: 'Clicked' },
  ]);
  t.equal(first.results[0].status, EventStatus.EVENT_STATUS_ACCEPTED, 'first copy is accepted');
  t.equal(first.results[1].status, EventStatus.EVENT_STATUS_DUPLICATE, 'second copy in the batch is DUPLICATE');
  t.equal(first.results[2].status, EventStatus.EVENT_STATUS_DUPLICATE, 'same messageId for another user is DUPLICATE');
  t.equal(first.duplicates, 2, 'duplicate count');
  t.equal(first.accepted, 1, 'accepted count');

  const again = await ingestBatch(fixture.node, [
    { type: 'track', userId: 'dave', messageId: 'dave-1', event: 'Clicked' },
    { type: 'track', userId: 'alice', messageId: 'alice-2', event: 'Product Viewed', properties: { price: 10 } },
  ]);
  t.equal(again.results[0].status, EventStatus.EVENT_STATUS_DUPLICATE, 'copy in a later batch is DUPLICATE');
  t.equal(again.results[1].status, EventStatus.EVENT_STATUS_DUPLICATE, 'resent baseline event is DUPLICATE');
  t.equal(again.results[1].messageId, 'alice-2', 'duplicate result carries its messageId');

  const dave = await getProfile(fixture.node, 'user_id', 'dave');
  t.equal(dave.eventCount, 1, 'dave has the event once');
  const erin = await expectServiceError(getProfile(fixture.node, 'user_id', 'erin'));
  t.equal(erin.code, status.NOT_FOUND, 'the duplicate for erin is not stored');

  await checkUnchanged(t, fixture, 'probe-duplicate');
});

t.test('bad input - identifier too long for an error message', async (t) => {
  const fixture = await setUp(t);
  const { profiles } = fixture.node;
  const getUser = (value: string) => callUnary(profiles.getProfile.bind(profiles), { identifier: { type: 'user_id', value } }, fixture.metadata, 5_000);

  // The not-found message quotes the identifier, and a query limits its length only by the request size.
  const error = await expectServiceError(getUser('x'.repeat(100_000)));
  t.equal(error.code, status.NOT_FOUND, 'status is NOT_FOUND');
  t.equal(errorCodeOf(error), 'PROFILE_NOT_FOUND', 'trailer code');
  t.match(error.details, /^no profile found for user_id "x{100}/, 'message starts as usual');
  t.match(error.details, /\(95,\d{3} more characters\)$/, 'message says how much it left out');
  t.ok(error.details.length <= 4_200, `message is shortened, got ${error.details.length} characters`);

  const alice = await getUser('alice');
  t.equal(alice.profile?.eventCount, 3, 'the same connection still serves calls');
  await checkUnchanged(t, fixture, 'probe-long-identifier');
});
