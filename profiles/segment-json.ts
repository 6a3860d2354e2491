/**
 * Segment's JSON event format, as its HTTP Tracking API accepts it and its archives store
 * it one event per line (NDJSON). Field names are those of the gRPC Event, so conversion
 * only moves context fields and turns numeric ids into strings.
 */
import type { Context, Event, ExternalId as ProtoExternalId } from '../proto/gen/rtcdp/v1/event.js';
import type { RawEvent } from './event.js';
import { describeValue, isPlainObject } from './validation.js';

export type SegmentLineResult = { ok: true; events: RawEvent[] } | { ok: false; message: string };

/**
 * Parses one non-blank NDJSON line: a single event, or a batch envelope
 * `{"batch": [...], "context": {...}, "integrations": {...}, "sentAt": "..."}`. The
 * envelope's context and integrations apply to every event of the batch, and an event's
 * own keys win over them. Its sentAt applies to events without their own. The events are
 * not validated here, so an element of `batch` that is not an object is returned as it is.
 */
export function parseSegmentLine(line: string, lineNumber: number): SegmentLineResult {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { ok: false, message: `line ${lineNumber}: invalid JSON: ${reason}` };
  }

  if (!isPlainObject(value)) {
    const expected = 'a JSON object with one event or a "batch" array';
    return { ok: false, message: `line ${lineNumber}: expected ${expected}, received ${describeValue(value)}` };
  }
  if (!Object.hasOwn(value, 'batch')) {
    return { ok: true, events: [value] };
  }
  return parseBatchEnvelope(value, lineNumber);
}

function parseBatchEnvelope(envelope: Record<string, unknown>, lineNumber: number): SegmentLineResult {
  const batch = envelope.batch;
  if (!Array.isArray(batch)) {
    return { ok: false, message: `line ${lineNumber}: batch must be an array of events, received ${describeValue(batch)}` };
  }

  const events = batch.map((event: unknown) => (isPlainObject(event) ? applyEnvelope(event, envelope) : event));
  return { ok: true, events: events as RawEvent[] };
}

/**
 * Applies the envelope's context, integrations and sentAt to one event. Object spread
 * copies keys with CreateDataProperty, so a "__proto__" key stays an own key for
 * validation to reject.
 */
function applyEnvelope(event: Record<string, unknown>, envelope: Record<string, unknown>): RawEvent {
  const merged: RawEvent = { ...event };

  for (const field of ['context', 'integrations'] as const) {
    const shared = envelope[field];
    const own = event[field];
    if (isPlainObject(shared) && (own === undefined || own === null || isPlainObject(own))) {
      merged[field] = { ...shared, ...own };
    }
  }

  if (isUnset(event.sentAt) && !isUnset(envelope.sentAt)) {
    merged.sentAt = envelope.sentAt;
  }
  return merged;
}

/**
 * Converts a raw Segment event to the gRPC Event without validating it, so the server
 * receives the values as the client sent them. Missing and null fields become empty strings
 * or absent Structs. A finite number in a string field becomes its string form, as
 * Segment accepts numeric ids. Context fields other than traits, ip, userAgent, device
 * and externalIds go to `context.extra`.
 *
 * Throws TypeError naming the field when a value cannot be carried by its protobuf type:
 * an object, array, boolean or non-finite number in a string field, or a non-object
 * where a Struct goes.
 */
export function rawEventToProto(raw: RawEvent): Event {
  if (!isPlainObject(raw)) {
    throw new TypeError(`the event must be a JSON object, received ${describeValue(raw)}`);
  }

  return {
    type: toProtoString('type', raw.type),
    messageId: toProtoString('messageId', raw.messageId),
    timestamp: toProtoString('timestamp', raw.timestamp),
    sentAt: toProtoString('sentAt', raw.sentAt),
    receivedAt: toProtoString('receivedAt', raw.receivedAt),
    userId: toProtoString('userId', raw.userId),
    anonymousId: toProtoString('anonymousId', raw.anonymousId),
    previousId: toProtoString('previousId', raw.previousId),
    groupId: toProtoString('groupId', raw.groupId),
    event: toProtoString('event', raw.event),
    name: toProtoString('name', raw.name),
    category: toProtoString('category', raw.category),
    properties: toProtoStruct('properties', raw.properties),
    traits: toProtoStruct('traits', raw.traits),
    context: toProtoContext(raw.context),
    integrations: toProtoStruct('integrations', raw.integrations),
  };
}

/** Context keys that have their own field in the gRPC Context. */
export const TYPED_CONTEXT_FIELDS: ReadonlySet<string> = new Set(['traits', 'ip', 'userAgent', 'device', 'externalIds']);

function toProtoContext(value: unknown): Context | undefined {
  if (value === undefined || value === null) {
    return undefined;
  }
  if (!isPlainObject(value)) {
    throw new TypeError(`context must be a JSON object, received ${describeValue(value)}`);
  }

  // A null prototype keeps a "__proto__" key an own key, where assignment would set the prototype.
  const extra: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(value)) {
    if (!TYPED_CONTEXT_FIELDS.has(key) && value[key] !== undefined) {
      extra[key] = value[key];
    }
  }

  return {
    traits: toProtoStruct('context.traits', value.traits),
    ip: toProtoString('context.ip', value.ip),
    userAgent: toProtoString('context.userAgent', value.userAgent),
    device: toProtoStruct('context.device', value.device),
    externalIds: toProtoExternalIds(value.externalIds),
    extra: Object.keys(extra).length > 0 ? extra : undefined,
  };
}

function toProtoExternalIds(value: unknown): ProtoExternalId[] {
  if (value === undefined || value === null) {
    return [];
  }
  if (!Array.isArray(value)) {
    throw new TypeError(`context.externalIds must be an array, received ${describeValue(value)}`);
  }

  return value.map((item: unknown, index) => {
    const field = `context.externalIds[${index}]`;
    if (!isPlainObject(item)) {
      throw new TypeError(`${field} must be an object with a type and an id, received ${describeValue(item)}`);
    }
    return {
      type: toProtoString(`${field}.type`, item.type),
      id: toProtoString(`${field}.id`, item.id),
      collection: toProtoString(`${field}.collection`, item.collection),
      encoding: toProtoString(`${field}.encoding`, item.encoding),
    };
  });
}

function toProtoString(field: string, value: unknown): string {
  if (value === undefined || value === null) {
    return '';
  }
  if (typeof value === 'string') {
    return value;
  }
  if (typeof value === 'number' && Number.isFinite(value)) {
    return String(value);
  }
  throw new TypeError(`${field} must be a string or a finite number, received ${describeValue(value)}`);
}

function toProtoStruct(field: string, value: unknown): Record<string, unknown> | undefined {
  if (value === undefined || value === null) {
    return undefined;
  }
  if (!isPlainObject(value)) {
    throw new TypeError(`${field} must be a JSON object, received ${describeValue(value)}`);
  }
  return value;
}

function isUnset(value: unknown): boolean {
  return value === undefined || value === null || value === '';
}
