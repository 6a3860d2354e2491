/**
 * The event as rtcdp stores and applies it: Segment's spec, after validation and
 * normalisation. It is what the event log carries (msgpack-encoded) and what a profile
 * applies, so a change to its shape needs a new `EVENT_RECORD_VERSION` and a migration.
 */

import type { Identifier } from './identifiers.js';

export const EVENT_RECORD_VERSION = 1;

export const EVENT_TYPES = ['track', 'identify', 'page', 'screen', 'group', 'alias'] as const;

export type EventType = (typeof EVENT_TYPES)[number];

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;

export interface JsonObject {
  [key: string]: JsonValue;
}

export interface ExternalId {
  type: string;
  id: string;
  collection?: string;
  encoding?: string;
}

export interface EventContext {
  traits?: JsonObject;
  ip?: string;
  userAgent?: string;
  device?: JsonObject;
  externalIds?: ExternalId[];
  /** Every other Segment context field (app, campaign, library, locale, page, os, ...). */
  [field: string]: JsonValue | ExternalId[] | undefined;
}

/**
 * An event as a client sends it, before validation: the JSON of Segment's HTTP API, or
 * the gRPC Event message after conversion. Every field may be missing or of a wrong type.
 */
export type RawEvent = Record<string, unknown>;

/** A validated, normalised event. Optional fields are absent, never empty strings. */
export interface CustomerEvent {
  type: EventType;
  messageId: string;
  /** Event time, normalised to ISO-8601 UTC with milliseconds. */
  timestamp: string;
  /** `timestamp` in milliseconds since the Unix epoch. */
  timestampMs: number;
  sentAt?: string;
  /** Set by the node that accepted the event, ISO-8601 UTC. */
  receivedAt: string;
  /** Set by the node that accepted the event: the profile identity resolution chose for it. */
  profileId?: string;
  /**
   * Set by the node that accepted the event: its identifiers as identity resolution linked
   * them, normalised (an alias's previousId included), highest priority first. A profile
   * lists these; events logged without them list the raw fields.
   */
  identifiers?: Identifier[];
  userId?: string;
  anonymousId?: string;
  previousId?: string;
  groupId?: string;
  event?: string;
  name?: string;
  category?: string;
  properties?: JsonObject;
  traits?: JsonObject;
  context?: EventContext;
  integrations?: JsonObject;
}

/** Why one event was rejected: a stable code, the path of the field at fault, and a message. */
export interface EventRejection {
  code: RejectionCode;
  field: string;
  message: string;
}

export type RejectionCode =
  | 'MISSING_FIELD'
  | 'INVALID_FIELD'
  | 'INVALID_TYPE'
  | 'INVALID_TIMESTAMP'
  | 'TIMESTAMP_TOO_FAR_IN_FUTURE'
  | 'MISSING_IDENTITY'
  | 'MESSAGE_ID_TOO_LONG'
  | 'EVENT_TOO_LARGE'
  | 'BATCH_TOO_LARGE'
  | 'TOO_MANY_KEYS'
  | 'NESTING_TOO_DEEP'
  | 'FORBIDDEN_KEY'
  | 'STRING_TOO_LONG';

export type ValidationResult = { ok: true; event: CustomerEvent; sizeBytes: number } | ({ ok: false } & EventRejection);
