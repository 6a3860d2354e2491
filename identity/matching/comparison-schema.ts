/**
 * The comparison schema: which fields two person records are compared on, with which
 * comparator, and how a pair's levels pack into one pattern number.
 */
import {
  compareCategories,
  compareCodes,
  compareDates,
  compareEmails,
  compareNames,
  comparePhones,
  compareText,
  levelCount,
  type FieldKind,
} from './comparators.js';
import { PERSON_TEXT_FIELDS, type PersonTextField, type PreparedPerson } from './person.js';

/** Prefix of the comparison field of an identifier column: `identifier:soc_sec_id`. */
export const IDENTIFIER_FIELD_PREFIX = 'identifier:';

export const FIELD_KIND_OF: Readonly<Record<PersonTextField, FieldKind>> = {
  givenName: 'name',
  surname: 'name',
  dateOfBirth: 'date',
  streetNumber: 'code',
  addressLine1: 'text',
  addressLine2: 'text',
  city: 'text',
  postcode: 'code',
  state: 'category',
  phone: 'phone',
  email: 'email',
};

export interface ComparisonField {
  /** A PersonRecord field such as `surname`, or `identifier:NAME` for an identifier column. */
  readonly name: string;
  readonly kind: FieldKind;
  /** Number of levels, level 0 (missing) included. */
  readonly levels: number;
}

/** The fields compared, in order. Workers receive it with every comparison task. */
export interface ComparisonSchema {
  readonly fields: readonly ComparisonField[];
  /** Identifier column names in the order of PreparedPerson.identifiers. */
  readonly identifierNames: readonly string[];
}

/**
 * Builds the schema of the given field names, in the order given. Throws RangeError for a
 * name that is neither a PersonRecord field nor `identifier:NAME`.
 */
export function createSchema(fieldNames: readonly string[]): ComparisonSchema {
  const identifierNames: string[] = [];
  const fields = fieldNames.map((name): ComparisonField => {
    if (name.startsWith(IDENTIFIER_FIELD_PREFIX)) {
      identifierNames.push(name.slice(IDENTIFIER_FIELD_PREFIX.length));
      return { name, kind: 'code', levels: levelCount('code') };
    }
    if (!(PERSON_TEXT_FIELDS as readonly string[]).includes(name)) {
      throw new RangeError(`${JSON.stringify(name)} is not a comparison field. Use one of ${PERSON_TEXT_FIELDS.join(', ')} or ${IDENTIFIER_FIELD_PREFIX}NAME`);
    }
    const kind = FIELD_KIND_OF[name as PersonTextField];
    return { name, kind, levels: levelCount(kind) };
  });

  // A pattern number contains one digit per field in mixed radix, exact up to 2^53.
  const patterns = fields.reduce((product, field) => product * field.levels, 1);
  if (patterns > Number.MAX_SAFE_INTEGER) throw new RangeError(`${fields.length} comparison fields are too many to number their level patterns`);
  return { fields, identifierNames };
}

/** A schema prepared for the comparison loop: one comparator number per field. */
export interface CompiledSchema {
  readonly schema: ComparisonSchema;
  readonly comparators: Int32Array;
  readonly radices: Int32Array;
}

const IDENTIFIER_COMPARATOR_BASE = 100;
const COMPARATOR_OF: Readonly<Record<PersonTextField, number>> = Object.fromEntries(PERSON_TEXT_FIELDS.map((field, index) => [field, index])) as Record<PersonTextField, number>;

export function compileSchema(schema: ComparisonSchema): CompiledSchema {
  const comparators = new Int32Array(schema.fields.length);
  let identifierIndex = 0;
  schema.fields.forEach((field, index) => {
    comparators[index] = field.name.startsWith(IDENTIFIER_FIELD_PREFIX) ? IDENTIFIER_COMPARATOR_BASE + identifierIndex++ : COMPARATOR_OF[field.name as PersonTextField];
  });
  return { schema, comparators, radices: Int32Array.from(schema.fields, (field) => field.levels) };
}

/**
 * Compares two records on every field of the schema and returns their pattern: the levels
 * as digits of a mixed-radix number, the first field most significant.
 */
export function comparePattern(compiled: CompiledSchema, a: PreparedPerson, b: PreparedPerson): number {
  const { comparators, radices } = compiled;
  let pattern = 0;
  for (let i = 0; i < comparators.length; i++) {
    pattern = pattern * radices[i] + compareField(comparators[i], a, b);
  }
  return pattern;
}

/** Writes the level of each field of `pattern` into `levels`. */
export function decodePattern(compiled: CompiledSchema, pattern: number, levels: Uint8Array | number[]): void {
  let rest = pattern;
  for (let i = compiled.radices.length - 1; i >= 0; i--) {
    const radix = compiled.radices[i];
    levels[i] = rest % radix;
    rest = (rest - levels[i]) / radix;
  }
}

function compareField(comparator: number, a: PreparedPerson, b: PreparedPerson): number {
  switch (comparator) {
    case COMPARATOR_OF.givenName:
      return compareNames(a.givenNameFeatures, b.givenNameFeatures);
    case COMPARATOR_OF.surname:
      return compareNames(a.surnameFeatures, b.surnameFeatures);
    case COMPARATOR_OF.dateOfBirth:
      return compareDates(a.dateOfBirth, b.dateOfBirth, a.dateOfBirthDays, b.dateOfBirthDays);
    case COMPARATOR_OF.streetNumber:
      return compareCodes(a.streetNumber, b.streetNumber);
    case COMPARATOR_OF.addressLine1:
      return compareText(a.addressLine1, b.addressLine1, a.addressLine1Mask, b.addressLine1Mask);
    case COMPARATOR_OF.addressLine2:
      return compareText(a.addressLine2, b.addressLine2, a.addressLine2Mask, b.addressLine2Mask);
    case COMPARATOR_OF.city:
      return compareText(a.city, b.city, a.cityMask, b.cityMask);
    case COMPARATOR_OF.postcode:
      return compareCodes(a.postcode, b.postcode);
    case COMPARATOR_OF.state:
      return compareCategories(a.state, b.state);
    case COMPARATOR_OF.phone:
      return comparePhones(a.phone, b.phone);
    case COMPARATOR_OF.email:
      return compareEmails(a.email, b.email);
    default: {
      const index = comparator - IDENTIFIER_COMPARATOR_BASE;
      return compareCodes(a.identifiers[index], b.identifiers[index]);
    }
  }
}
