/**
 * The string form of a prepared person that travels to the workers. One string per record
 * is cheap to clone into a worker (a copy of its characters), where an object would be
 * cloned field by field.
 */
import { withDerivedFields } from './prepare.js';
import type { PreparedPerson } from './person.js';

/** Unit separator, which normalisation removes from every value. */
const SEPARATOR = '\u001f';
const FIXED_FIELDS = 13;

export function encodePerson(person: PreparedPerson): string {
  return [
    person.givenName,
    person.givenNameCodes,
    person.surname,
    person.surnameCodes,
    person.dateOfBirth,
    person.streetNumber,
    person.addressLine1,
    person.addressLine2,
    person.city,
    person.postcode,
    person.state,
    person.phone,
    person.email,
    ...person.identifiers,
  ].join(SEPARATOR);
}

export function decodePerson(encoded: string): PreparedPerson {
  const values = encoded.split(SEPARATOR);
  if (values.length < FIXED_FIELDS) throw new RangeError(`an encoded person must have at least ${FIXED_FIELDS} fields, received ${values.length}`);
  return withDerivedFields({
    givenName: values[0],
    givenNameCodes: values[1],
    surname: values[2],
    surnameCodes: values[3],
    dateOfBirth: values[4],
    streetNumber: values[5],
    addressLine1: values[6],
    addressLine2: values[7],
    city: values[8],
    postcode: values[9],
    state: values[10],
    phone: values[11],
    email: values[12],
    identifiers: values.slice(FIXED_FIELDS),
  });
}
