/**
 * The identifiers of one event as identity resolution uses them: every identifier field of
 * the event, normalised under the workspace's identity settings, highest priority first.
 */
import type { CustomerEvent } from '../profiles/event.js';
import type { Identifier } from '../profiles/identifiers.js';
import { EXTERNAL_TYPE_PREFIX, type IdentitySettings } from './identity-settings.js';
import { normalizeIdentifier, type IdentifierIssue } from './normalize.js';

export interface EventIdentifiers {
  /** Identifiers that link profiles, normalised, without duplicates, in priority order. */
  linkable: Identifier[];
  /** Values kept on the profile but not used for linking, with the reason for each. */
  unlinked: IdentifierIssue[];
}

export type EventIdentifiersResult = ({ ok: true } & EventIdentifiers) | ({ ok: false } & IdentifierIssue);

/**
 * Normalises every identifier an event carries. Under the `reject` policy an invalid or
 * blocked value fails the event with the issue naming its field. An external id of a type
 * the settings do not configure never fails the event: it is kept on the profile but does
 * not link profiles, because sources often send ids of systems the workspace does not resolve.
 */
export function eventIdentifiers(settings: IdentitySettings, event: CustomerEvent): EventIdentifiersResult {
  const linkable: Identifier[] = [];
  const unlinked: IdentifierIssue[] = [];

  for (const { type, value, field } of identifierFields(event)) {
    const normalized = normalizeIdentifier(settings, { type, value, field });
    if (!normalized.ok) {
      if (normalized.code !== 'UNKNOWN_IDENTIFIER_TYPE') return normalized;
      unlinked.push({ code: normalized.code, field: normalized.field, message: normalized.message });
      continue;
    }
    if (!normalized.linkable) {
      unlinked.push(normalized.issue);
      continue;
    }
    const { identifier } = normalized;
    if (!linkable.some((known) => known.type === identifier.type && known.value === identifier.value)) linkable.push(identifier);
  }

  linkable.sort((a, b) => settings.types.get(a.type)!.rank - settings.types.get(b.type)!.rank);
  return { ok: true, linkable, unlinked };
}

interface IdentifierField {
  type: string;
  value: unknown;
  field: string;
}

/** Lists the identifier fields an event carries, with their paths, skipping absent ones. */
function identifierFields(event: CustomerEvent): IdentifierField[] {
  const fields: IdentifierField[] = [];
  const add = (type: string, value: unknown, field: string) => {
    if (value !== undefined && value !== '') fields.push({ type, value, field });
  };

  add('user_id', event.userId, 'userId');
  add('anonymous_id', event.anonymousId, 'anonymousId');
  add('email', event.traits?.email, 'traits.email');
  add('email', event.context?.traits?.email, 'context.traits.email');
  add('phone', event.traits?.phone, 'traits.phone');
  add('phone', event.context?.traits?.phone, 'context.traits.phone');
  add('device_id', event.context?.device?.id, 'context.device.id');
  event.context?.externalIds?.forEach((external, index) => add(`${EXTERNAL_TYPE_PREFIX}${external.type}`, external.id, `context.externalIds[${index}].id`));
  return fields;
}
