/**
 * Normalisation of one identifier value from an event under a workspace's identity settings:
 * the canonical value that links profiles, or why the value cannot link them.
 */

import type { Identifier } from '../profiles/identifiers.js';
import type { IdentitySettings, IdentifierTypeSettings } from './identity-settings.js';
import { normalizeEmail } from './normalize-email.js';
import { normalizePhone } from './normalize-phone.js';

/** Stable codes of the ways an identifier value can fail, which callers and tests match on. */
export type IdentifierErrorCode =
  /** The type is neither built in nor a configured `external:NAME`. */
  | 'UNKNOWN_IDENTIFIER_TYPE'
  /** The value is a number, boolean, object or null rather than a string. */
  | 'NON_STRING_IDENTIFIER'
  /** A user_id, anonymous_id, device_id or external id that is empty or only whitespace. */
  | 'INVALID_IDENTIFIER'
  | 'INVALID_EMAIL'
  | 'INVALID_PHONE'
  /** The value, as sent or normalised, is in the type's blocked values. */
  | 'BLOCKED_IDENTIFIER'
  /** Every identifier of the event is invalid or blocked (under keep-unlinked), so no profile can be chosen for it. */
  | 'NO_USABLE_IDENTIFIER';

/** Why a value cannot link profiles: a stable code, the path of the event field, and a message. */
export interface IdentifierIssue {
  code: IdentifierErrorCode;
  field: string;
  message: string;
}

export interface IdentifierInput {
  /** `user_id`, `anonymous_id`, `email`, `phone`, `device_id` or `external:NAME`. */
  type: string;
  /** The value as the event carries it. */
  value: unknown;
  /** Path of the value in the event, such as `context.traits.phone`, for messages. */
  field: string;
}

/**
 * The outcome for one identifier. `linkable: false` appears only under the `keep-unlinked`
 * policy, with the value as sent and the issue that stops it from linking profiles.
 */
export type IdentifierNormalization =
  | { ok: true; identifier: Identifier; linkable: true }
  | { ok: true; identifier: Identifier; linkable: false; issue: IdentifierIssue }
  | ({ ok: false } & IdentifierIssue);

/** Maximum length of a value that a message quotes in full. Event strings can be 8,192 characters long. */
const MAX_QUOTED_LENGTH = 64;

/**
 * Normalises one identifier value: emails and phone numbers to their canonical form, other
 * ids kept exactly as sent, because they are keys in the source's systems and userId and
 * anonymousId also form the profile id. An invalid or blocked value fails under the `reject`
 * policy and comes back unlinkable under `keep-unlinked`. An unknown type or a non-string
 * value fails under either policy, because there are no type settings or no string to keep.
 */
export function normalizeIdentifier(settings: IdentitySettings, input: IdentifierInput): IdentifierNormalization {
  const { type, value, field } = input;

  const typeSettings = settings.types.get(type);
  if (typeSettings === undefined) {
    return {
      ok: false,
      code: 'UNKNOWN_IDENTIFIER_TYPE',
      field,
      message: `${field} has identifier type ${JSON.stringify(type)}, which is not configured. Add it to the identifiers of the workspace's identity settings`,
    };
  }
  if (typeof value !== 'string') {
    return {
      ok: false,
      code: 'NON_STRING_IDENTIFIER',
      field,
      message: `${field} must be a string to be used as ${type}, got ${value === null ? 'null' : typeof value}`,
    };
  }

  const checked = checkValue(settings, typeSettings, value, field);
  if (checked.ok) return { ok: true, identifier: { type, value: checked.value }, linkable: true };
  if (settings.invalidIdentifiers === 'reject') return { ok: false, ...checked.issue };
  return { ok: true, identifier: { type, value }, linkable: false, issue: checked.issue };
}

/** Returns the normalised value, or the issue that stops the value from linking profiles. */
function checkValue(
  settings: IdentitySettings,
  typeSettings: IdentifierTypeSettings,
  value: string,
  field: string,
): { ok: true; value: string } | { ok: false; issue: IdentifierIssue } {
  // Checking the value as sent first reports a placeholder such as "n/a" in a phone field as
  // blocked, not as an invalid phone number.
  if (isBlocked(typeSettings, value)) return { ok: false, issue: blockedIssue(typeSettings, value, field) };

  const normalized = normalizeByKind(settings, typeSettings, value);
  if (!normalized.ok) {
    return { ok: false, issue: { code: normalized.code, field, message: `${field} ${quote(value)} ${normalized.reason}` } };
  }

  // A value can normalise into a blocked one, such as " Test+qa@Test.com" with plus addressing.
  if (isBlocked(typeSettings, normalized.value)) return { ok: false, issue: blockedIssue(typeSettings, value, field) };
  return { ok: true, value: normalized.value };
}

function normalizeByKind(
  settings: IdentitySettings,
  typeSettings: IdentifierTypeSettings,
  value: string,
): { ok: true; value: string } | { ok: false; code: IdentifierErrorCode; reason: string } {
  if (typeSettings.kind === 'email') {
    const email = normalizeEmail(value, settings.emailRules);
    return email.ok ? email : { ok: false, code: 'INVALID_EMAIL', reason: `is not a valid email address: ${email.reason}` };
  }
  if (typeSettings.kind === 'phone') {
    const phone = normalizePhone(value, settings.defaultRegion);
    return phone.ok ? phone : { ok: false, code: 'INVALID_PHONE', reason: `is not a valid phone number: ${phone.reason}` };
  }

  if (value.trim() === '') return { ok: false, code: 'INVALID_IDENTIFIER', reason: `is not a valid ${typeSettings.type}: it is empty or only whitespace` };
  return { ok: true, value };
}

function isBlocked(typeSettings: IdentifierTypeSettings, value: string): boolean {
  return typeSettings.blockedValues.has(value.trim().toLowerCase());
}

function blockedIssue(typeSettings: IdentifierTypeSettings, value: string, field: string): IdentifierIssue {
  return {
    code: 'BLOCKED_IDENTIFIER',
    field,
    message:
      `${field} ${quote(value)} is a blocked ${typeSettings.type} value, so it cannot identify a profile. ` +
      `Leave the field out, or remove the value from the blockedValues of ${typeSettings.type}`,
  };
}

function quote(value: string): string {
  if (value.length <= MAX_QUOTED_LENGTH) return JSON.stringify(value);
  return `${JSON.stringify(value.slice(0, MAX_QUOTED_LENGTH))}...`;
}
