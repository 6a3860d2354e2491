/**
 * Realistic Segment-style events, encoded straight into IngestBatchRequest bytes.
 *
 * Encoding a google.protobuf.Struct with ts-proto takes several microseconds per event,
 * which on a 2-core machine would take CPU from the node under test. So the constant part
 * of each track event (type, name, properties, context) is encoded once per variant, and
 * each event only adds its own messageId, timestamp, userId and anonymousId. Protobuf
 * decoders accept fields in any order, so the bytes decode to the same Event that
 * ts-proto would send; `checkBatchDecodes` verifies that.
 */
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { Event, type DeepPartial } from '../proto/gen/rtcdp/v1/event.js';
import { IngestBatchRequest } from '../proto/gen/rtcdp/v1/ingest.js';

export const TRACK_EVENT_NAMES = [
  'Product Viewed',
  'Product Added',
  'Product Removed',
  'Cart Viewed',
  'Checkout Started',
  'Payment Info Entered',
  'Order Completed',
  'Coupon Applied',
  'Products Searched',
  'Wishlist Updated',
] as const;

/** Pre-encoded property and context variants per event name. */
const VARIANTS_PER_NAME = 64;

const CATEGORIES = ['Footwear', 'Outerwear', 'Accessories', 'Electronics', 'Home', 'Beauty', 'Toys', 'Books'];
const CURRENCIES = ['USD', 'EUR', 'GBP'];
const USER_AGENTS = [
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148',
];
const FIRST_NAMES = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken'];
const LAST_NAMES = ['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen', 'Thompson'];
const CITIES = [
  ['Lisbon', 'PT', 'pt-PT', 'Europe/Lisbon'],
  ['Berlin', 'DE', 'de-DE', 'Europe/Berlin'],
  ['Austin', 'US', 'en-US', 'America/Chicago'],
  ['Osaka', 'JP', 'ja-JP', 'Asia/Tokyo'],
];
const PLANS = ['free', 'starter', 'pro', 'enterprise'];
const INDUSTRIES = ['retail', 'media', 'finance', 'travel', 'education'];

// Field tags: field number << 3 | wire type 2 (length-delimited).
const TAG_BATCH_EVENTS = (1 << 3) | 2;
const TAG_BATCH_ID = (2 << 3) | 2;
const TAG_MESSAGE_ID = (2 << 3) | 2;
const TAG_TIMESTAMP = (3 << 3) | 2;
const TAG_USER_ID = (6 << 3) | 2;
const TAG_ANONYMOUS_ID = (7 << 3) | 2;

export function userIdOf(customer: number): string {
  return `user-${customer}`;
}

export function anonymousIdOf(customer: number): string {
  return `anon-${customer}`;
}

/** The fields of an event as `Event.fromPartial` takes them: any may be left out, nested messages too. */
export type EventFields = DeepPartial<Event>;

/** Builds one IngestBatchRequest at a time; messageIds are `${prefix}-${n}` with n counting up. */
export class BatchEncoder {
  readonly #trackTails: Uint8Array[][];
  readonly #messageIdPrefix: string;
  readonly #random: () => number;
  #writer = new BinaryWriter();
  #timestamp = '';
  #nextMessage = 0;
  #events = 0;

  constructor(messageIdPrefix: string, random: () => number) {
    this.#messageIdPrefix = messageIdPrefix;
    this.#random = random;
    this.#trackTails = TRACK_EVENT_NAMES.map((name) => Array.from({ length: VARIANTS_PER_NAME }, () => encodeTrackTail(name, random)));
  }

  /** Starts a batch; every event in it gets the current time as its timestamp. */
  begin(): void {
    this.#writer = new BinaryWriter();
    this.#timestamp = new Date().toISOString();
    this.#events = 0;
  }

  addTrack(customer: number, nameIndex: number): void {
    const variants = this.#trackTails[nameIndex];
    const tail = variants[Math.floor(this.#random() * variants.length)];

    this.#writer.uint32(TAG_BATCH_EVENTS).fork();
    this.#writer.uint32(TAG_MESSAGE_ID).string(this.#newMessageId());
    this.#writer.uint32(TAG_TIMESTAMP).string(this.#timestamp);
    this.#writer.uint32(TAG_USER_ID).string(userIdOf(customer));
    this.#writer.uint32(TAG_ANONYMOUS_ID).string(anonymousIdOf(customer));
    this.#writer.raw(tail);
    this.#writer.join();
    this.#events++;
  }

  /**
   * Adds an event from its pre-encoded constant part (`encodeEventTail`), with a new
   * messageId, the batch's timestamp and the identifiers given. An empty userId is left
   * out, so the event belongs to the profile of its anonymousId.
   */
  addWithTail(tail: Uint8Array, userId: string, anonymousId: string): void {
    this.#writer.uint32(TAG_BATCH_EVENTS).fork();
    this.#writer.uint32(TAG_MESSAGE_ID).string(this.#newMessageId());
    this.#writer.uint32(TAG_TIMESTAMP).string(this.#timestamp);
    if (userId !== '') this.#writer.uint32(TAG_USER_ID).string(userId);
    if (anonymousId !== '') this.#writer.uint32(TAG_ANONYMOUS_ID).string(anonymousId);
    this.#writer.raw(tail);
    this.#writer.join();
    this.#events++;
  }

  /** Adds an event encoded without a messageId (a replayed file's event, with its own timestamp and identifiers), giving it a new messageId. */
  addWithMessageId(tail: Uint8Array): void {
    this.#writer.uint32(TAG_BATCH_EVENTS).fork();
    this.#writer.uint32(TAG_MESSAGE_ID).string(this.#newMessageId());
    this.#writer.raw(tail);
    this.#writer.join();
    this.#events++;
  }

  /** Adds an event encoded in full, with a new messageId and the batch's timestamp; for events too rare to pre-encode. */
  addEvent(event: EventFields): void {
    const message = Event.fromPartial({ ...event, messageId: this.#newMessageId(), timestamp: this.#timestamp });
    this.#writer.uint32(TAG_BATCH_EVENTS).fork();
    Event.encode(message, this.#writer);
    this.#writer.join();
    this.#events++;
  }

  /** Adds an identify event with 20 traits; with userId and anonymousId the profile gets 3 identifiers. */
  addIdentify(customer: number): void {
    const event = Event.fromPartial({
      type: 'identify',
      messageId: this.#newMessageId(),
      timestamp: this.#timestamp,
      userId: userIdOf(customer),
      anonymousId: anonymousIdOf(customer),
      traits: traitsOf(customer),
      context: { ip: ipOf(customer), userAgent: USER_AGENTS[customer % USER_AGENTS.length] },
    });

    this.#writer.uint32(TAG_BATCH_EVENTS).fork();
    Event.encode(event, this.#writer);
    this.#writer.join();
    this.#events++;
  }

  get eventCount(): number {
    return this.#events;
  }

  /**
   * Ends the batch and returns its bytes, ready for a serializer that passes buffers through.
   * Without a batchId, a batch of one event is also a valid IngestRequest, whose `event`
   * field has the same number (1) as IngestBatchRequest's `events`.
   */
  finish(batchId?: string): Buffer {
    if (batchId !== undefined) this.#writer.uint32(TAG_BATCH_ID).string(batchId);
    const bytes = this.#writer.finish();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  #newMessageId(): string {
    return `${this.#messageIdPrefix}-${(this.#nextMessage++).toString(36)}`;
  }
}

/** Encodes the fields every event of this variant shares: type, event name, properties and context. */
function encodeTrackTail(name: string, random: () => number): Uint8Array {
  const pick = <T>(values: readonly T[]): T => values[Math.floor(random() * values.length)];
  const event = Event.fromPartial({
    type: 'track',
    event: name,
    properties: {
      product_id: `sku-${String(Math.floor(random() * 100_000)).padStart(5, '0')}`,
      price: Math.round(random() * 50_000) / 100,
      quantity: 1 + Math.floor(random() * 5),
      currency: pick(CURRENCIES),
      category: pick(CATEGORIES),
    },
    context: {
      ip: `198.51.100.${Math.floor(random() * 254) + 1}`,
      userAgent: pick(USER_AGENTS),
      extra: { library: { name: 'analytics.js', version: '4.1.0' }, locale: 'en-US' },
    },
  });
  return Event.encode(event).finish();
}

/**
 * Encodes the fields shared by every event of one variant, without messageId, timestamp,
 * userId and anonymousId, for `BatchEncoder.addWithTail`.
 */
export function encodeEventTail(event: EventFields): Uint8Array {
  return Event.encode(Event.fromPartial({ ...event, messageId: '', timestamp: '', userId: '', anonymousId: '' })).finish();
}

export function traitsOf(customer: number): Record<string, unknown> {
  const first = FIRST_NAMES[customer % FIRST_NAMES.length];
  const last = LAST_NAMES[Math.floor(customer / FIRST_NAMES.length) % LAST_NAMES.length];
  const [city, country, language, timezone] = CITIES[customer % CITIES.length];

  return {
    email: `${userIdOf(customer)}@example.com`,
    name: `${first} ${last}`,
    first_name: first,
    last_name: last,
    plan: PLANS[customer % PLANS.length],
    company: `Company ${customer % 997}`,
    title: 'Engineer',
    industry: INDUSTRIES[customer % INDUSTRIES.length],
    employees: 10 + (customer % 5_000),
    city,
    country,
    language,
    timezone,
    created_at: new Date(Date.UTC(2020, 0, 1) + (customer % 1_500) * 86_400_000).toISOString(),
    age: 18 + (customer % 60),
    lifetime_value: (customer % 10_000) / 10,
    orders: customer % 40,
    newsletter: customer % 2 === 0,
    avatar: `https://example.com/avatars/${customer}.png`,
    website: `https://${userIdOf(customer)}.example.com`,
  };
}

function ipOf(customer: number): string {
  return `198.51.100.${(customer % 254) + 1}`;
}

/**
 * Decodes a built batch with the generated decoder and checks that it contains `expectedEvents`
 * events of the expected shape. Returns the sizes of its first event in bytes, as JSON without
 * empty fields and as protobuf.
 */
export function checkBatchDecodes(bytes: Buffer, expectedEvents: number): { jsonBytes: number; protobufBytes: number } {
  const decoded = IngestBatchRequest.decode(bytes);
  if (decoded.events.length !== expectedEvents) {
    throw new Error(`encoded batch decodes to ${decoded.events.length} events, expected ${expectedEvents}`);
  }

  const first = decoded.events[0];
  if (first.messageId === '' || first.userId === '' || first.timestamp === '' || first.type === '') {
    throw new Error(`encoded event is missing a field after decoding: ${JSON.stringify(first)}`);
  }

  const json = JSON.stringify(first, (_key, value) => (value === '' || (Array.isArray(value) && value.length === 0) ? undefined : value));
  return { jsonBytes: Buffer.byteLength(json), protobufBytes: Event.encode(first).finish().byteLength };
}
