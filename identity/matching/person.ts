/**
 * Person records as matching reads them: the raw fields of one person, and the prepared
 * form that the comparators and blocking keys use.
 */

/**
 * One person as a source has it. Every field is optional, and an empty or whitespace-only
 * value counts as missing. Values are compared after `preparePerson` has normalised them.
 */
export interface PersonRecord {
  givenName?: string;
  surname?: string;
  /** `YYYYMMDD` or ISO `YYYY-MM-DD`. Any other form is kept as its digits and compared by edit distance only. */
  dateOfBirth?: string;
  streetNumber?: string;
  addressLine1?: string;
  addressLine2?: string;
  /** Suburb, town or city. */
  city?: string;
  postcode?: string;
  state?: string;
  phone?: string;
  email?: string;
  /** Id columns of the sources, such as a national id number, by column name. Compared as codes. */
  identifiers?: Readonly<Record<string, string>>;
}

/** A prepared name with its Double Metaphone codes apart and its characterMask, for compareNames. */
export interface NameFeatures {
  readonly text: string;
  readonly primaryCode: string;
  readonly secondaryCode: string;
  readonly mask: number;
}

/** Fields of PersonRecord that hold one string, in the order that the record codec writes them. */
export const PERSON_TEXT_FIELDS = [
  'givenName',
  'surname',
  'dateOfBirth',
  'streetNumber',
  'addressLine1',
  'addressLine2',
  'city',
  'postcode',
  'state',
  'phone',
  'email',
] as const;

export type PersonTextField = (typeof PERSON_TEXT_FIELDS)[number];

/**
 * A person after normalisation. Missing values are empty strings, so a prepared record has
 * one fixed shape, which keeps the comparison loop in the workers monomorphic.
 */
export interface PreparedPerson {
  givenName: string;
  /** Double Metaphone primary and secondary codes of the given name, separated by a space. */
  givenNameCodes: string;
  surname: string;
  surnameCodes: string;
  /** Eight digits `YYYYMMDD`, or the digits of a value in another form. */
  dateOfBirth: string;
  /** Days since 1970-01-01 of a valid `dateOfBirth`, or NaN. Derived, not encoded. */
  dateOfBirthDays: number;
  streetNumber: string;
  addressLine1: string;
  addressLine2: string;
  city: string;
  postcode: string;
  state: string;
  /** Digits only. */
  phone: string;
  email: string;
  /** Values of the identifier columns, in the order of the schema's `identifierNames`. */
  identifiers: string[];
  /** The names in the form that compareNames reads. Derived, not encoded. */
  givenNameFeatures: NameFeatures;
  surnameFeatures: NameFeatures;
  /** comparators.ts `characterMask` of the address lines and city. Derived, not encoded. */
  addressLine1Mask: number;
  addressLine2Mask: number;
  cityMask: number;
}
