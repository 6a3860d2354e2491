/** Builders of validated events for the computed trait tests. */
import type { CustomerEvent, EventType, JsonObject } from '../../profiles/event.js';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

let nextMessage = 1;

/** Builds an event of any type at `timeMs`. Track events get `name` as `event`, page and screen events as `name`. */
export function eventAt(type: EventType, name: string | undefined, timeMs: number, fields: Partial<CustomerEvent> = {}): CustomerEvent {
  const timestamp = new Date(timeMs).toISOString();
  const event: CustomerEvent = {
    type,
    messageId: `m${nextMessage++}`,
    timestamp,
    timestampMs: timeMs,
    receivedAt: timestamp,
    userId: 'u1',
    ...fields,
  };
  if (name !== undefined) {
    if (type === 'track') event.event = name;
    else event.name = name;
  }
  return event;
}

export function trackAt(name: string, timeMs: number, properties?: JsonObject): CustomerEvent {
  return eventAt('track', name, timeMs, properties === undefined ? {} : { properties });
}
