/**
 * The parts of a webhook request: the JSON body of a batch, its HMAC signature and its
 * idempotency key. A receiver verifies a request with `verifyWebhookSignature`, or with the
 * same three steps in its own language (README.md in this folder).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { ActivationCause } from '../../profiles/activation.js';
import type { StoredActivation } from '../../profiles/activation-log.js';

export const SIGNATURE_HEADER = 'X-Rtcdp-Signature';
export const TIMESTAMP_HEADER = 'X-Rtcdp-Timestamp';
export const IDEMPOTENCY_HEADER = 'Idempotency-Key';
const SIGNATURE_PREFIX = 'sha256=';

/** One activation in a request body. `action`, `channel` and `step` appear only when the activation has them. */
export interface WebhookActivation {
  sequence: number;
  id: string;
  type: string;
  profileId: string;
  name: string;
  definitionVersion: number;
  /** Evaluation time, ISO-8601 in UTC. */
  at: string;
  cause: WebhookCause;
  action?: string;
  channel?: string;
  step?: string;
}

export type WebhookCause =
  | { kind: 'event'; shard: number; sequence: number; messageId: string }
  | { kind: 'timer'; due: string }
  | { kind: 'definition'; version: number }
  | { kind: 'decide'; requestId: string }
  | { kind: 'merge'; messageId: string; rule: string };

export interface WebhookBody {
  activations: WebhookActivation[];
}

export function toWebhookActivation(activation: StoredActivation): WebhookActivation {
  const body: WebhookActivation = {
    sequence: activation.sequence,
    id: activation.id,
    type: activation.type,
    profileId: activation.profileId,
    name: activation.name,
    definitionVersion: activation.definitionVersion,
    at: new Date(activation.atMs).toISOString(),
    cause: toWebhookCause(activation.cause),
  };
  if (activation.action !== undefined) body.action = activation.action;
  if (activation.channel !== undefined) body.channel = activation.channel;
  if (activation.step !== undefined) body.step = activation.step;
  return body;
}

function toWebhookCause(cause: ActivationCause): WebhookCause {
  if (cause.kind === 'timer') return { kind: 'timer', due: new Date(cause.dueMs).toISOString() };
  return { ...cause };
}

/** Returns the `X-Rtcdp-Signature` value of a body: "sha256=" and the hex HMAC-SHA256 of its bytes under `secret`. */
export function signWebhookBody(secret: string, body: string | Buffer): string {
  return SIGNATURE_PREFIX + createHmac('sha256', secret).update(body).digest('hex');
}

/**
 * Checks an `X-Rtcdp-Signature` value against the raw body bytes as received, in constant
 * time. Returns false for a missing or malformed header.
 */
export function verifyWebhookSignature(secret: string, body: string | Buffer, header: string | null | undefined): boolean {
  if (typeof header !== 'string' || !header.startsWith(SIGNATURE_PREFIX)) return false;

  const expected = Buffer.from(signWebhookBody(secret, body), 'latin1');
  const received = Buffer.from(header, 'latin1');
  return received.length === expected.length && timingSafeEqual(received, expected);
}

/**
 * Returns the `Idempotency-Key` of a batch: its first and last activation ids, separated by
 * a space. Bytes outside printable ASCII, spaces and "%" in an id are percent-encoded, so
 * the value is a valid header and the separator is unambiguous.
 */
export function idempotencyKey(activations: readonly { id: string }[]): string {
  const first = activations[0];
  const last = activations[activations.length - 1];
  if (first === undefined) throw new RangeError('idempotencyKey needs at least one activation');
  return `${encodeHeaderText(first.id)} ${encodeHeaderText(last.id)}`;
}

function encodeHeaderText(text: string): string {
  let encoded = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const printable = byte > 0x20 && byte < 0x7f && byte !== 0x25;
    encoded += printable ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return encoded;
}
