/**
 * Blocking rules: which records are compared at all. A rule is a list of key parts such as
 * `surname:phonetic+dateOfBirth:year`. Two records are a candidate pair when they have the
 * same key under at least one rule. A record lacking any part of a rule has no key under it.
 */
import { IDENTIFIER_FIELD_PREFIX } from './comparison-schema.js';
import { PERSON_TEXT_FIELDS, type PreparedPerson } from './person.js';

/**
 * Derivation of a key part from its field: the whole value, the primary Double Metaphone
 * code (names only), the first character, or the year (dates only).
 */
export type KeyTransform = 'exact' | 'phonetic' | 'initial' | 'year';

export const KEY_TRANSFORMS: readonly KeyTransform[] = ['exact', 'phonetic', 'initial', 'year'];

export interface KeyPart {
  /** A PersonRecord field such as `surname`, or `identifier:NAME`. */
  readonly field: string;
  readonly transform: KeyTransform;
}

export interface BlockingRule {
  /** The rule as text, such as `surname:phonetic+dateOfBirth:year`. */
  readonly text: string;
  readonly parts: readonly KeyPart[];
}

/**
 * Rules used when none are configured, before dropping those whose fields the data lacks.
 * They keep 99.89% of the true pairs of FEBRL 3 and all 5,000 of FEBRL 4 (docs/benchmarks.md).
 */
export const DEFAULT_BLOCKING_RULES: readonly string[] = [
  'givenName:phonetic+surname:phonetic',
  'surname:phonetic+dateOfBirth:year',
  'givenName:phonetic+dateOfBirth:year',
  'dateOfBirth',
  'postcode+streetNumber',
  'postcode+surname:initial',
  'addressLine1+givenName:initial',
  'city+surname:phonetic',
  'city+givenName:phonetic',
  'email',
  'phone',
  'identifier:*',
  'surname:phonetic',
  'postcode',
];

const NAME_FIELDS = ['givenName', 'surname'];

/**
 * Parses `FIELD[:TRANSFORM]+...`. Throws RangeError naming the rule and the part at fault.
 * `identifier:*` is not parsed here: `expandRules` replaces it with one rule per identifier.
 */
export function parseBlockingRule(text: string): BlockingRule {
  const parts = text.split('+').map((part) => parseKeyPart(part.trim(), text));
  return { text, parts };
}

function parseKeyPart(part: string, rule: string): KeyPart {
  let field = part;
  let transform: string = 'exact';
  const colon = part.lastIndexOf(':');
  if (colon > 0 && !(part.startsWith(IDENTIFIER_FIELD_PREFIX) && colon === IDENTIFIER_FIELD_PREFIX.length - 1)) {
    field = part.slice(0, colon);
    transform = part.slice(colon + 1);
  }

  const isIdentifier = field.startsWith(IDENTIFIER_FIELD_PREFIX) && field.length > IDENTIFIER_FIELD_PREFIX.length;
  if (!isIdentifier && !(PERSON_TEXT_FIELDS as readonly string[]).includes(field)) {
    throw new RangeError(`blocking rule ${JSON.stringify(rule)}: ${JSON.stringify(field)} is not a field. Use one of ${PERSON_TEXT_FIELDS.join(', ')} or ${IDENTIFIER_FIELD_PREFIX}NAME`);
  }
  if (!(KEY_TRANSFORMS as readonly string[]).includes(transform)) {
    throw new RangeError(`blocking rule ${JSON.stringify(rule)}: ${JSON.stringify(transform)} is not a key transform. Use one of ${KEY_TRANSFORMS.join(', ')}`);
  }
  if (transform === 'phonetic' && !NAME_FIELDS.includes(field)) {
    throw new RangeError(`blocking rule ${JSON.stringify(rule)}: the phonetic transform applies only to givenName and surname, not ${field}`);
  }
  if (transform === 'year' && field !== 'dateOfBirth') {
    throw new RangeError(`blocking rule ${JSON.stringify(rule)}: the year transform applies only to dateOfBirth, not ${field}`);
  }
  return { field, transform: transform as KeyTransform };
}

/**
 * Returns the rules whose fields are all among `fields`, with `identifier:*` expanded to one
 * rule per identifier field. Rules are parsed, so an invalid rule throws RangeError.
 */
export function expandRules(rules: readonly string[], fields: readonly string[]): BlockingRule[] {
  const available = new Set(fields);
  const expanded: BlockingRule[] = [];
  for (const text of rules) {
    if (text.trim() === `${IDENTIFIER_FIELD_PREFIX}*`) {
      for (const field of fields) if (field.startsWith(IDENTIFIER_FIELD_PREFIX)) expanded.push(parseBlockingRule(field));
      continue;
    }
    const rule = parseBlockingRule(text);
    if (rule.parts.every((part) => available.has(part.field))) expanded.push(rule);
  }
  return expanded;
}

/**
 * Returns the key of a record under a rule, or '' when the record lacks a part. The rule's
 * position is not in the key, so callers keep one key space per rule.
 */
export function blockingKey(rule: BlockingRule, person: PreparedPerson, identifierNames: readonly string[]): string {
  let key = '';
  for (let i = 0; i < rule.parts.length; i++) {
    const value = keyPartOf(rule.parts[i], person, identifierNames);
    if (value === '') return '';
    key = i === 0 ? value : `${key}|${value}`;
  }
  return key;
}

function keyPartOf(part: KeyPart, person: PreparedPerson, identifierNames: readonly string[]): string {
  const value = fieldValue(part.field, person, identifierNames);
  if (value === '') return '';
  switch (part.transform) {
    case 'exact':
      return value;
    case 'initial':
      return value[0];
    case 'year':
      return value.length >= 8 ? value.slice(0, 4) : '';
    case 'phonetic': {
      const codes = part.field === 'givenName' ? person.givenNameCodes : person.surnameCodes;
      return codes.slice(0, codes.indexOf(' '));
    }
  }
}

function fieldValue(field: string, person: PreparedPerson, identifierNames: readonly string[]): string {
  if (field.startsWith(IDENTIFIER_FIELD_PREFIX)) {
    const index = identifierNames.indexOf(field.slice(IDENTIFIER_FIELD_PREFIX.length));
    return index === -1 ? '' : person.identifiers[index];
  }
  return person[field as (typeof PERSON_TEXT_FIELDS)[number]];
}
