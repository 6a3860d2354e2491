/**
 * Phone number normalisation to E.164 (`+442079460958`) with libphonenumber-js, so that
 * `020 7946 0958` sent from a UK shop and `+44 20 7946 0958` link the same profile.
 *
 * It uses the library's `max` metadata, whose `isValid()` checks the digits against each
 * country's number ranges, where the default `min` metadata checks only the length.
 */

import { isSupportedCountry, parsePhoneNumberWithError, ParseError, validatePhoneNumberLength, type CountryCode } from 'libphonenumber-js/max';

export type { CountryCode } from 'libphonenumber-js/max';

export type PhoneNormalization = { ok: true; value: string } | { ok: false; reason: string };

/**
 * Returns the region as libphonenumber-js's CountryCode, uppercased, or undefined when the
 * library has no numbering plan for it. Besides ISO 3166-1 alpha-2 codes the library
 * accepts AC, TA and XK, which have their own numbering plans.
 */
export function toSupportedRegion(region: string): CountryCode | undefined {
  const upper = region.toUpperCase();
  return isSupportedCountry(upper) ? upper : undefined;
}

/**
 * Normalises a phone number to E.164. A number without a `+` and country calling code is read
 * in the national format of `defaultRegion`, and is invalid when no region is given. A
 * leading `00` is read as the international prefix when the number is not valid as written,
 * because most countries dial abroad with 00 (the US dials 011, which libphonenumber-js reads
 * from the region). An extension is kept in RFC 3966 form (`+442079460958;ext=123`), so two
 * extensions of one switchboard number stay two identifiers.
 */
export function normalizePhone(raw: string, defaultRegion?: CountryCode): PhoneNormalization {
  const text = raw.trim();
  if (text === '') return { ok: false, reason: 'it is empty' };

  const asWritten = parsePhone(text, defaultRegion);
  if (asWritten.ok || !text.startsWith('00')) return asWritten;

  // When both readings fail, the reason of the national reading is the useful one, unless
  // there is no region to read a national number in.
  const international = parsePhone(`+${text.slice(2)}`, defaultRegion);
  if (international.ok || defaultRegion === undefined) return international;
  return asWritten;
}

function parsePhone(text: string, defaultRegion: CountryCode | undefined): PhoneNormalization {
  let parsed;
  try {
    // extract: false parses the whole text as one number, where the default would pick a
    // number out of text such as "call 020 7946 0958 after 6".
    parsed = parsePhoneNumberWithError(text, { defaultCountry: defaultRegion, extract: false });
  } catch (error) {
    if (error instanceof ParseError) return { ok: false, reason: describeParseError(error.message, text, defaultRegion) };
    throw error;
  }

  if (!parsed.isValid()) {
    const where = parsed.country ?? `+${parsed.countryCallingCode}`;
    if (!parsed.isPossible()) {
      const lengthError = validatePhoneNumberLength(parsed.number) ?? 'INVALID_LENGTH';
      return { ok: false, reason: `${describeParseError(lengthError, text, defaultRegion)} for ${where}` };
    }
    return { ok: false, reason: `it is not in a number range that ${where} assigns` };
  }

  const value = parsed.ext === undefined ? parsed.number : `${parsed.number};ext=${parsed.ext}`;
  return { ok: true, value };
}

function describeParseError(code: string, text: string, defaultRegion: CountryCode | undefined): string {
  switch (code) {
    case 'NOT_A_NUMBER':
      return 'it is not a phone number (only digits, a leading +, spaces, dashes, dots, parentheses and an extension are allowed)';
    case 'INVALID_COUNTRY':
      if (!text.startsWith('+') && defaultRegion === undefined) {
        return 'it has no +country calling code and no defaultRegion is configured to read national numbers';
      }
      return 'its country calling code does not exist';
    case 'TOO_SHORT':
      return 'it is too short';
    case 'TOO_LONG':
      return 'it is too long';
    case 'INVALID_LENGTH':
      return 'its length is not one that numbers have';
    default:
      return `libphonenumber-js failed to parse it (${code})`;
  }
}
