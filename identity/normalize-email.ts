/**
 * Email address normalisation for identity resolution: one canonical string per mailbox, so
 * that `Ada@Example.com ` and `ada@example.com` link the same profile.
 *
 * The accepted shape is stricter than RFC 5322 and is checked here rather than by a library:
 * - exactly one `@`, no whitespace or control characters anywhere;
 * - the local part is an RFC 5322 dot-atom of ASCII characters, at most 64 octets (RFC 5321).
 *   Quoted local parts (`"a b"@example.com`) and non-ASCII local parts (RFC 6531) are rejected;
 * - the domain has at least two labels, and its last label is not all digits, so IP addresses
 *   and bare hosts such as `localhost` are rejected. The domain is converted to its ASCII
 *   (punycode) form with Node's `url.domainToASCII` (UTS #46), so `ada@bücher.de` and
 *   `ada@xn--bcher-kva.de` are one identifier;
 * - each ASCII label is 1 to 63 letters, digits or hyphens, not starting or ending with a
 *   hyphen, and the whole address is at most 254 octets (RFC 5321 path limit).
 *
 * The whole address is lowercased. RFC 5321 lets a server treat local parts as case-sensitive,
 * but mailbox providers in practice do not, and case variants of one address are far more
 * common in customer data than two mailboxes that differ only in case.
 */

import { domainToASCII } from 'node:url';

/** Provider-specific rewrites, each off unless configured for the workspace. */
export interface EmailRules {
  /**
   * Removes dots from the local part of gmail.com addresses and rewrites googlemail.com to
   * gmail.com, because Gmail delivers `a.da@googlemail.com` to `ada@gmail.com`.
   */
  readonly gmailDots: boolean;
  /**
   * Strips a `+tag` suffix from the local part: `true` on every domain, a list on those
   * domains only, `false` never. List entries are lowercase ASCII domains and are matched
   * after the googlemail.com rewrite of `gmailDots`.
   */
  readonly plusAddressing: boolean | readonly string[];
}

export const NO_EMAIL_RULES: EmailRules = Object.freeze({ gmailDots: false, plusAddressing: false });

export type EmailNormalization = { ok: true; value: string } | { ok: false; reason: string };

const MAX_ADDRESS_OCTETS = 254;
const MAX_LOCAL_PART_OCTETS = 64;
const MAX_LABEL_OCTETS = 63;

/** RFC 5322 dot-atom: atext runs separated by single dots, ASCII only. */
const DOT_ATOM = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const DOMAIN_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
const NUMERIC_LABEL = /^[0-9]+$/;
const WHITESPACE_OR_CONTROL = /[\s\p{Cc}]/u;
const NON_ASCII = /[^\x00-\x7f]/;

const GMAIL_DOMAIN = 'gmail.com';
const GOOGLEMAIL_DOMAIN = 'googlemail.com';

/**
 * Normalises an email address: trims it, validates its shape (see the file header), lowercases
 * it, converts an internationalised domain to ASCII and applies the configured provider rules.
 * Returns the reason in words when the address is invalid.
 */
export function normalizeEmail(raw: string, rules: EmailRules = NO_EMAIL_RULES): EmailNormalization {
  const address = raw.trim();
  if (address === '') return { ok: false, reason: 'it is empty' };
  if (WHITESPACE_OR_CONTROL.test(address)) return { ok: false, reason: 'it contains whitespace or a control character' };

  const at = address.indexOf('@');
  if (at === -1) return { ok: false, reason: 'it has no @' };
  if (address.indexOf('@', at + 1) !== -1) return { ok: false, reason: 'it has more than one @' };

  const localPart = address.slice(0, at);
  if (localPart === '') return { ok: false, reason: 'the part before the @ is empty' };
  if (NON_ASCII.test(localPart)) return { ok: false, reason: 'the part before the @ has non-ASCII characters, which are not supported' };
  if (!DOT_ATOM.test(localPart)) {
    return { ok: false, reason: 'the part before the @ must be letters, digits and !#$%&\'*+/=?^_`{|}~- separated by single dots' };
  }
  if (localPart.length > MAX_LOCAL_PART_OCTETS) return { ok: false, reason: `the part before the @ is longer than ${MAX_LOCAL_PART_OCTETS} characters` };

  const domain = normalizeEmailDomain(address.slice(at + 1));
  if (!domain.ok) return domain;

  if (localPart.length + 1 + domain.value.length > MAX_ADDRESS_OCTETS) {
    return { ok: false, reason: `it is longer than ${MAX_ADDRESS_OCTETS} characters` };
  }

  return { ok: true, value: applyEmailRules(localPart.toLowerCase(), domain.value, rules) };
}

/**
 * Validates an email domain and returns it lowercased in ASCII form. Also used for the domain
 * list of `plusAddressing`, so that a configured domain matches what addresses normalise to.
 */
export function normalizeEmailDomain(raw: string): EmailNormalization {
  if (raw === '') return { ok: false, reason: 'the domain after the @ is empty' };

  // domainToASCII decodes percent escapes, so `%` is rejected before it can turn into a letter.
  if (raw.includes('%')) return { ok: false, reason: `the domain "${raw}" contains %` };

  // domainToASCII lowercases, converts Unicode labels to punycode and returns '' for a
  // malformed punycode label such as `xn--zz`. It reads a domain that ends in a number as an
  // IPv4 address, which the numeric last label check below rejects in either form.
  const ascii = domainToASCII(raw);
  if (ascii === '') return { ok: false, reason: `the domain "${raw}" is not a valid domain name` };

  const labels = ascii.split('.');
  if (labels.length < 2) return { ok: false, reason: `the domain "${raw}" has no dot` };
  for (const label of labels) {
    if (label.length > MAX_LABEL_OCTETS) return { ok: false, reason: `the domain "${raw}" has a label longer than ${MAX_LABEL_OCTETS} characters` };
    if (!DOMAIN_LABEL.test(label)) {
      return { ok: false, reason: `the domain "${raw}" must be labels of letters, digits and inner hyphens separated by single dots` };
    }
  }
  if (NUMERIC_LABEL.test(labels[labels.length - 1])) return { ok: false, reason: `the domain "${raw}" ends in a numeric label, so it is not a domain name` };

  return { ok: true, value: ascii };
}

function applyEmailRules(localPart: string, domain: string, rules: EmailRules): string {
  let canonicalDomain = domain;
  if (rules.gmailDots && canonicalDomain === GOOGLEMAIL_DOMAIN) canonicalDomain = GMAIL_DOMAIN;

  let canonicalLocal = localPart;
  if (stripsPlusTag(rules, canonicalDomain)) {
    const plus = canonicalLocal.indexOf('+');
    // A local part that starts with `+` has no mailbox name before the tag, so it stays whole.
    if (plus > 0) canonicalLocal = canonicalLocal.slice(0, plus);
  }
  if (rules.gmailDots && canonicalDomain === GMAIL_DOMAIN) {
    // A dot-atom always has a character other than a dot, so the result is never empty.
    canonicalLocal = canonicalLocal.replaceAll('.', '');
  }

  return `${canonicalLocal}@${canonicalDomain}`;
}

function stripsPlusTag(rules: EmailRules, domain: string): boolean {
  if (typeof rules.plusAddressing === 'boolean') return rules.plusAddressing;
  return rules.plusAddressing.includes(domain);
}
