/**
 * Comparators of prepared values. Each returns a comparison level: 0 when either value is
 * missing, 1 for exact agreement, and higher numbers for weaker agreement, down to the last
 * level for disagreement. LEVEL_LABELS names the levels of each kind.
 *
 * String similarity comes from libraries: Jaro-Winkler from talisman 1.1 (prefix scale 0.1
 * over at most 4 characters, boost threshold 0.7, as Winkler defined it) and Levenshtein
 * distance from fastest-levenshtein (Myers' bit-parallel algorithm).
 */
import { distance as levenshtein } from 'fastest-levenshtein';
import jaroWinkler from 'talisman/metrics/jaro-winkler.js';
import type { NameFeatures } from './person.js';

export { jaroWinkler, levenshtein };

export type FieldKind = 'name' | 'text' | 'code' | 'category' | 'date' | 'email' | 'phone';

export const FIELD_KINDS: readonly FieldKind[] = ['name', 'text', 'code', 'category', 'date', 'email', 'phone'];

/** Labels of levels 1 and up of each kind. Level 0 is always "missing". */
export const LEVEL_LABELS: Readonly<Record<FieldKind, readonly string[]>> = {
  name: ['exact', 'Jaro-Winkler >= 0.94', 'Jaro-Winkler >= 0.88', 'Double Metaphone agrees', 'Jaro-Winkler >= 0.7', 'different'],
  text: ['exact', 'Levenshtein similarity >= 0.85', 'Levenshtein similarity >= 0.65', 'different'],
  code: ['exact', 'Levenshtein 1', 'Levenshtein 2', 'different'],
  category: ['exact', 'different'],
  date: ['exact', 'one digit differs', 'day and month swapped or two digits differ', 'within 365 days', 'different'],
  email: ['exact', 'Levenshtein <= 2', 'same local part', 'different'],
  phone: ['exact', 'same last 8 digits', 'Levenshtein 1', 'different'],
};

/** Number of levels of a kind, level 0 (missing) included. */
export function levelCount(kind: FieldKind): number {
  return LEVEL_LABELS[kind].length + 1;
}

/**
 * Compares names by Jaro-Winkler similarity, then by their Double Metaphone codes, which
 * catch spellings that sound alike but differ early (`catherine`, `kathryn`).
 */
export function compareNames(x: NameFeatures, y: NameFeatures): number {
  const a = x.text;
  const b = y.text;
  if (a === '' || b === '') return 0;
  if (a === b) return 1;

  // Most candidate pairs disagree on a name, and bounds from their characters prove most of
  // those below 0.7 without the cost of the full Jaro-Winkler computation.
  const below = maskedJaroBound(a.length, b.length, x.mask, y.mask) < 0.7 || jaroWinklerBound(a, b) < 0.7;
  const similarity = below ? 0 : jaroWinkler(a, b);
  if (similarity >= 0.94) return 2;
  if (similarity >= 0.88) return 3;
  if (phoneticCodesAgree(x, y)) return 4;
  return similarity >= 0.7 ? 5 : 6;
}

/**
 * Compares free text such as address lines by Levenshtein distance relative to the longer
 * value. The masks are the values' characterMask.
 */
export function compareText(a: string, b: string, maskA: number, maskB: number): number {
  if (a === '' || b === '') return 0;
  if (a === b) return 1;

  const longer = Math.max(a.length, b.length);
  // Similarity 0.65 allows at most 0.35 × longer edits, which the character masks or the
  // bag distance, both lower bounds of the Levenshtein distance, may rule out.
  const allowed = 0.35 * longer;
  if (maskedEditBound(maskA, maskB) > allowed || bagDistance(a, b) > allowed) return 4;
  const similarity = 1 - levenshtein(a, b) / longer;
  if (similarity >= 0.85) return 2;
  return similarity >= 0.65 ? 3 : 4;
}

/** Compares codes such as postcodes, street numbers and ids by edit distance: one typo, or two (such as a transposition). */
export function compareCodes(a: string, b: string): number {
  if (a === '' || b === '') return 0;
  if (a === b) return 1;
  if (bagDistance(a, b) > 2) return 4;

  const edits = levenshtein(a, b);
  if (edits === 1) return 2;
  return edits === 2 ? 3 : 4;
}

export function compareCategories(a: string, b: string): number {
  if (a === '' || b === '') return 0;
  return a === b ? 1 : 2;
}

/**
 * Compares dates of birth given as `YYYYMMDD` strings and as days since 1970 (NaN when the
 * date is invalid): a typo in one digit, two typos or swapped day and month, then a gap of
 * at most a year.
 */
export function compareDates(a: string, b: string, daysA: number, daysB: number): number {
  if (a === '' || b === '') return 0;
  if (a === b) return 1;

  const edits = bagDistance(a, b) > 2 ? 3 : levenshtein(a, b);
  if (edits === 1) return 2;
  if (edits === 2 || dayMonthSwapped(a, b)) return 3;
  return Math.abs(daysA - daysB) <= 365 ? 4 : 5;
}

/** Compares email addresses: a typo or two anywhere, then the same mailbox name at another domain. */
export function compareEmails(a: string, b: string): number {
  if (a === '' || b === '') return 0;
  if (a === b) return 1;
  if (levenshtein(a, b) <= 2) return 2;

  const at = a.lastIndexOf('@');
  return at > 0 && b.startsWith(a.slice(0, at + 1)) ? 3 : 4;
}

/** Compares phone numbers as digits. The last 8 digits agree when one number has a country or trunk prefix that the other lacks. */
export function comparePhones(a: string, b: string): number {
  if (a === '' || b === '') return 0;
  if (a === b) return 1;
  if (a.length >= 8 && b.length >= 8 && a.slice(-8) === b.slice(-8)) return 2;
  return levenshtein(a, b) === 1 ? 3 : 4;
}

/** Returns whether any Double Metaphone code of one name equals a code of the other. */
export function phoneticCodesAgree(x: NameFeatures, y: NameFeatures): boolean {
  if (x.primaryCode === '' || y.primaryCode === '') return false;
  return x.primaryCode === y.primaryCode || x.primaryCode === y.secondaryCode || x.secondaryCode === y.primaryCode || x.secondaryCode === y.secondaryCode;
}

function dayMonthSwapped(a: string, b: string): boolean {
  if (a.length !== 8 || b.length !== 8) return false;
  return a.slice(0, 4) === b.slice(0, 4) && a.slice(4, 6) === b.slice(6, 8) && a.slice(6, 8) === b.slice(4, 6);
}

/**
 * Returns a bit mask of the characters of a prepared value: bits 0 to 25 for the letters,
 * bits 26 to 31 for the digits (0 and 6 share a bit, and so on), nothing for others.
 */
export function characterMask(value: string): number {
  let mask = 0;
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code >= 97 && code <= 122) mask |= 1 << (code - 97);
    else if (code >= 48 && code <= 57) mask |= 1 << (26 + ((code - 48) % 6));
  }
  return mask;
}

/**
 * Returns a lower bound of the Levenshtein distance from two character masks. Each kind of
 * character that one value has and the other lacks needs at least one edit, and a kind
 * whose bit the other value lacks is one of those. Shared bits only weaken the bound.
 */
export function maskedEditBound(maskA: number, maskB: number): number {
  return Math.max(bitCount(maskA & ~maskB), bitCount(maskB & ~maskA));
}

/**
 * Returns an upper bound of the Jaro similarity (and so of Jaro-Winkler below 0.7) from the
 * lengths and character masks: a character whose kind the other value lacks cannot match.
 */
function maskedJaroBound(lengthA: number, lengthB: number, maskA: number, maskB: number): number {
  const matches = Math.min(lengthA - bitCount(maskA & ~maskB), lengthB - bitCount(maskB & ~maskA));
  if (matches <= 0) return 0;
  return (matches / lengthA + matches / lengthB + 1) / 3;
}

function bitCount(value: number): number {
  let bits = value - ((value >>> 1) & 0x55555555);
  bits = (bits & 0x33333333) + ((bits >>> 2) & 0x33333333);
  return (((bits + (bits >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** Character counts of the two strings being compared, by code unit modulo 128. */
const characterCounts = new Int32Array(128);

/**
 * Returns the bag distance of two strings, the larger of the numbers of characters each has
 * beyond the multiset it shares with the other. It is a lower bound of the Levenshtein
 * distance (Bartolini et al. 2002) that costs one pass over each string. Code units are
 * counted modulo 128, which can only lower the bound: prepared values are ASCII anyway.
 */
export function bagDistance(a: string, b: string): number {
  const shared = sharedCharacters(a, b);
  return Math.max(a.length, b.length) - shared;
}

/**
 * Returns an upper bound of the Jaro-Winkler similarity: Jaro's matching characters are at
 * most the characters the strings share, transpositions are at least 0, and the prefix
 * bonus applies in full.
 */
export function jaroWinklerBound(a: string, b: string): number {
  const matches = sharedCharacters(a, b);
  if (matches === 0) return 0;
  const jaro = (matches / a.length + matches / b.length + 1) / 3;
  if (jaro < 0.7) return jaro;

  let prefix = 0;
  const prefixLimit = Math.min(4, a.length, b.length);
  while (prefix < prefixLimit && a.charCodeAt(prefix) === b.charCodeAt(prefix)) prefix++;
  return jaro + prefix * 0.1 * (1 - jaro);
}

/** Size of the multiset intersection of the characters of a and b, by code unit modulo 128. */
function sharedCharacters(a: string, b: string): number {
  const counts = characterCounts;
  for (let i = 0; i < a.length; i++) counts[a.charCodeAt(i) & 127]++;

  let shared = 0;
  for (let i = 0; i < b.length; i++) {
    const code = b.charCodeAt(i) & 127;
    if (counts[code] > 0) {
      counts[code]--;
      shared++;
    }
  }

  for (let i = 0; i < a.length; i++) counts[a.charCodeAt(i) & 127] = 0;
  return shared;
}
