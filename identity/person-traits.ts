/**
 * The person an event describes, for fuzzy matching: names, date of birth, address, phone
 * and email from its traits, as Segment's reserved traits name them (`firstName`,
 * `lastName`, `birthday`, `address.street`, `address.city`, `address.postalCode`,
 * `address.state`, `phone`, `email`), snake_case spellings included.
 */
import type { CustomerEvent, JsonObject, JsonValue } from '../profiles/event.js';
import type { PersonRecord } from './matching/person.js';

/**
 * Returns the person of an identify event, or of any event's `context.traits`, when it has
 * a given name, a surname and at least one of date of birth, postcode, phone or email.
 * Names alone match too many people to be worth scoring.
 */
export function personOf(event: CustomerEvent): PersonRecord | undefined {
  const traits = { ...(event.context?.traits ?? {}), ...(event.type === 'identify' ? (event.traits ?? {}) : {}) };
  const address = asObject(traits.address);

  const person: PersonRecord = {
    givenName: text(traits.firstName ?? traits.first_name),
    surname: text(traits.lastName ?? traits.last_name),
    dateOfBirth: dateOf(traits.birthday ?? traits.date_of_birth),
    addressLine1: text(address?.street),
    city: text(address?.city),
    postcode: text(address?.postalCode ?? address?.postal_code),
    state: text(address?.state),
    phone: text(traits.phone),
    email: text(traits.email),
  };
  for (const key of Object.keys(person) as Array<keyof PersonRecord>) if (person[key] === undefined) delete person[key];

  const distinguishing = person.dateOfBirth ?? person.postcode ?? person.phone ?? person.email;
  if (person.givenName === undefined || person.surname === undefined || distinguishing === undefined) return undefined;
  return person;
}

function text(value: JsonValue | undefined): string | undefined {
  if (typeof value === 'number') return String(value);
  if (typeof value !== 'string') return undefined;
  const trimmed = value.trim();
  return trimmed === '' ? undefined : trimmed;
}

/** Returns the date part of an ISO date or date-time, or the text as it is. */
function dateOf(value: JsonValue | undefined): string | undefined {
  const date = text(value);
  if (date === undefined) return undefined;
  const match = /^(\d{4}-\d{2}-\d{2})(?:T|$)/.exec(date);
  return match === null ? date : match[1];
}

function asObject(value: JsonValue | undefined): JsonObject | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : undefined;
}
