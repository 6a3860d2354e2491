/**
 * The page token of ListProfileEvents, which records the position of a listing in each
 * history it interleaves (profiles/history-page.ts).
 *
 * A token is base64url, without padding, of the JSON `{"v":1,"before":{PROFILE_ID:SEQUENCE}}`:
 * for each profile whose history has events left, the sequence below which the next page
 * lists them. A history the token does not name is done: it had no events left, or it
 * joined the listed profile by a merge after the first page. A history that is no longer
 * part of the listed profile (an unmerge split it off) is skipped although the token names it.
 *
 * A token of decimal digits, which nodes wrote before merged histories were listed, is a
 * sequence of the listed profile's own history, and the page lists only that history below
 * it. Tokens are written as JSON even for a single history, because the JSON names the
 * profile: a decimal token of a profile that is merged into another before the next page
 * would be applied to the survivor's history, whose sequences come from another partition.
 */
import { InvalidArgumentError } from './errors.js';
import type { HistoryCursors } from '../profiles/history-page.js';

const TOKEN_VERSION = 1;
/** Characters of a received token that an error message repeats at most. */
const MAX_TOKEN_SHOWN = 120;

/** The start of a page, as its token gives it. */
export type PageStart = { kind: 'first' } | { kind: 'sequence'; before: number } | { kind: 'cursors'; before: ReadonlyMap<string, number> };

/** Parses a page token; throws InvalidArgumentError naming page_token when it is not a next_page_token. */
export function parsePageToken(token: string | undefined): PageStart {
  if (token === undefined || token === '') return { kind: 'first' };
  if (/^[0-9]+$/.test(token)) return { kind: 'sequence', before: parseSequenceToken(token) };
  return { kind: 'cursors', before: parseCursorToken(token) };
}

/**
 * Returns the cursor of every history a page reads: `profileId`'s own and those of the
 * profiles merged into it (`merged`), all from the newest on a first page. A later page
 * reads those its token names, at their cursors.
 */
export function startCursors(start: PageStart, profileId: string, merged: readonly string[]): HistoryCursors {
  if (start.kind === 'first') return new Map([profileId, ...merged].map((id) => [id, Number.POSITIVE_INFINITY]));
  if (start.kind === 'sequence') return new Map([[profileId, start.before]]);

  const cursors: HistoryCursors = new Map();
  for (const id of [profileId, ...merged]) {
    const before = start.before.get(id);
    if (before !== undefined) cursors.set(id, before);
  }
  return cursors;
}

/** Returns the next_page_token for the cursors of a page's next page, or '' when no history has events left. */
export function formatPageToken(next: HistoryCursors): string {
  if (next.size === 0) return '';
  return Buffer.from(JSON.stringify({ v: TOKEN_VERSION, before: Object.fromEntries(next) })).toString('base64url');
}

function parseSequenceToken(token: string): number {
  const sequence = Number(token);
  if (token.startsWith('0') || !Number.isSafeInteger(sequence)) throw invalidToken(token, 'a sequence must be an integer from 1 to 2^53 - 1');
  return sequence;
}

function parseCursorToken(token: string): Map<string, number> {
  if (!/^[A-Za-z0-9_-]+$/.test(token)) throw invalidToken(token, 'it is neither a sequence nor base64url');

  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw invalidToken(token, 'it is neither a sequence from 1 to 2^53 - 1 nor the base64url JSON of a next_page_token');
  }
  return cursorsOf(parsed, token);
}

/** Checks the decoded JSON of a token: version 1 and at least one profile id, each with a sequence of 1 or more. */
function cursorsOf(parsed: unknown, token: string): Map<string, number> {
  if (!isObject(parsed) || parsed.v !== TOKEN_VERSION) throw invalidToken(token, `it is not a version ${TOKEN_VERSION} token`);
  const before = parsed.before;
  if (!isObject(before) || Object.keys(before).length === 0) throw invalidToken(token, 'it names no profile');

  const cursors = new Map<string, number>();
  for (const [profileId, sequence] of Object.entries(before)) {
    if (profileId === '' || typeof sequence !== 'number' || !Number.isSafeInteger(sequence) || sequence < 1) {
      throw invalidToken(token, `the sequence of ${JSON.stringify(profileId)} must be an integer from 1 to 2^53 - 1`);
    }
    cursors.set(profileId, sequence);
  }
  return cursors;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalidToken(token: string, reason: string): InvalidArgumentError {
  const shownToken = token.length > MAX_TOKEN_SHOWN ? `${token.slice(0, MAX_TOKEN_SHOWN)}...` : token;
  return new InvalidArgumentError(`page_token is invalid: ${JSON.stringify(shownToken)} (${reason}); pass next_page_token from the previous page unchanged, or no token for the first page`);
}
