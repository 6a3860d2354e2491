/**
 * Conversion between the gRPC Event and rtcdp's events. Protobuf strings cannot be unset,
 * so an empty string in an Event means that the field is missing.
 */
import type { Context, Event, ExternalId as ProtoExternalId } from '../proto/gen/rtcdp/v1/event.js';
import type { CustomerEvent, RawEvent } from '../profiles/event.js';
import { rawEventToProto } from '../profiles/segment-json.js';

const STRING_FIELDS = [
  'type',
  'messageId',
  'timestamp',
  'sentAt',
  'receivedAt',
  'userId',
  'anonymousId',
  'previousId',
  'groupId',
  'event',
  'name',
  'category',
] as const;

const STRUCT_FIELDS = ['properties', 'traits', 'integrations'] as const;

/**
 * Converts a received gRPC Event to a raw event for validation. Empty strings and unset
 * Structs are left out. `context.extra` is flattened into the context next to its typed
 * fields, and a typed field that is set wins over an extra key of the same name.
 */
export function eventFromProto(message: Event): RawEvent {
  const raw: RawEvent = {};

  for (const field of STRING_FIELDS) {
    const value = message[field];
    if (typeof value === 'string' && value !== '') {
      raw[field] = value;
    }
  }
  for (const field of STRUCT_FIELDS) {
    if (message[field] !== undefined) {
      raw[field] = message[field];
    }
  }

  const context = message.context === undefined ? undefined : contextFromProto(message.context);
  if (context !== undefined) {
    raw.context = context;
  }
  return raw;
}

function contextFromProto(message: Context): Record<string, unknown> | undefined {
  // A null prototype keeps an extra key named "__proto__" an own key for validation to reject.
  const context: Record<string, unknown> = Object.create(null);
  const extra = message.extra ?? {};
  for (const key of Object.keys(extra)) {
    context[key] = extra[key];
  }

  if (message.traits !== undefined) {
    context.traits = message.traits;
  }
  if (message.ip !== '') {
    context.ip = message.ip;
  }
  if (message.userAgent !== '') {
    context.userAgent = message.userAgent;
  }
  if (message.device !== undefined) {
    context.device = message.device;
  }
  if (message.externalIds.length > 0) {
    context.externalIds = message.externalIds.map(externalIdFromProto);
  }

  return Object.keys(context).length > 0 ? context : undefined;
}

/** Keeps an empty type or id, so that validation names the empty value instead of a missing one. */
function externalIdFromProto(message: ProtoExternalId): Record<string, string> {
  const id: Record<string, string> = { type: message.type, id: message.id };
  if (message.collection !== '') {
    id.collection = message.collection;
  }
  if (message.encoding !== '') {
    id.encoding = message.encoding;
  }
  return id;
}

/**
 * Converts a validated event to the gRPC Event. Context keys other than the typed ones
 * (traits, ip, userAgent, device, externalIds) go to `context.extra`. `timestampMs` has
 * no field because it is derived from `timestamp`.
 */
export function eventToProto(event: CustomerEvent): Event {
  // A validated event contains only strings, JSON objects and an array of external ids,
  // so the raw conversion cannot throw for it.
  return rawEventToProto(event as unknown as RawEvent);
}
