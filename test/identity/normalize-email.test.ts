import t from 'tap';
import { normalizeEmail, normalizeEmailDomain, type EmailRules } from '../../identity/normalize-email.js';

const GMAIL_DOTS: EmailRules = { gmailDots: true, plusAddressing: false };
const PLUS_EVERYWHERE: EmailRules = { gmailDots: false, plusAddressing: true };
const PLUS_ON_FASTMAIL: EmailRules = { gmailDots: false, plusAddressing: ['fastmail.com'] };
const ALL_RULES: EmailRules = { gmailDots: true, plusAddressing: true };

t.test('normalize email - valid addresses', async (t) => {
  const cases: Array<[input: string, expected: string]> = [
    ['ada@example.com', 'ada@example.com'],
    ['Ada.Lovelace@Example.COM', 'ada.lovelace@example.com'],
    ['  ada@example.com  ', 'ada@example.com'],
    ['\tada@example.com\r\n', 'ada@example.com'],
    ['\u00a0ada@example.com\u00a0', 'ada@example.com'],
    ["o'brien@example.ie", "o'brien@example.ie"],
    ['ada+newsletter@example.com', 'ada+newsletter@example.com'],
    ['first_last-1@mail.example.co.uk', 'first_last-1@mail.example.co.uk'],
    ['a.d.a@gmail.com', 'a.d.a@gmail.com'],
    ['ada@googlemail.com', 'ada@googlemail.com'],
    ['x@example.museum', 'x@example.museum'],
    ['1234@123.example', '1234@123.example'],
    ['!#$%&*/=?^_`{|}~@example.com', '!#$%&*/=?^_`{|}~@example.com'],
    // Internationalised domains are accepted and stored in punycode (UTS #46).
    ['juergen@Bücher.de', 'juergen@xn--bcher-kva.de'],
    ['juergen@xn--bcher-kva.de', 'juergen@xn--bcher-kva.de'],
    ['user@例え.テスト', 'user@xn--r8jz45g.xn--zckzah'],
    ['ada@ｅｘａｍｐｌｅ.com', 'ada@example.com'],
  ];

  for (const [input, expected] of cases) {
    t.same(normalizeEmail(input), { ok: true, value: expected }, `${JSON.stringify(input)} normalises to ${expected}`);
  }
});

t.test('normalize email - invalid addresses', async (t) => {
  const cases: Array<[input: string, reason: string]> = [
    ['', 'it is empty'],
    ['   ', 'it is empty'],
    ['ada', 'it has no @'],
    ['ada.example.com', 'it has no @'],
    ['ada@@example.com', 'it has more than one @'],
    ['ada@home@example.com', 'it has more than one @'],
    ['@example.com', 'the part before the @ is empty'],
    ['ada@', 'the domain after the @ is empty'],
    ['ada lovelace@example.com', 'it contains whitespace or a control character'],
    ['ada@exa mple.com', 'it contains whitespace or a control character'],
    ['ada\u0000@example.com', 'it contains whitespace or a control character'],
    ['.ada@example.com', 'separated by single dots'],
    ['ada.@example.com', 'separated by single dots'],
    ['a..da@example.com', 'separated by single dots'],
    ['"ada lovelace"@example.com', 'it contains whitespace or a control character'],
    ['"ada"@example.com', 'separated by single dots'],
    ['ada(comment)@example.com', 'separated by single dots'],
    ['Ada Lovelace <ada@example.com>', 'it contains whitespace or a control character'],
    // Internationalised local parts (RFC 6531) are not supported, even on an IDN domain.
    ['jürgen@example.de', 'non-ASCII characters'],
    ['jürgen@bücher.de', 'non-ASCII characters'],
    ['ada@example', 'has no dot'],
    ['ada@localhost', 'has no dot'],
    ['ada@example.com.', 'must be labels of letters, digits and inner hyphens'],
    ['ada@example..com', 'must be labels of letters, digits and inner hyphens'],
    ['ada@.example.com', 'must be labels of letters, digits and inner hyphens'],
    ['ada@-example.com', 'must be labels of letters, digits and inner hyphens'],
    ['ada@example-.com', 'must be labels of letters, digits and inner hyphens'],
    ['ada@exa_mple.com', 'must be labels of letters, digits and inner hyphens'],
    ['ada@127.0.0.1', 'ends in a numeric label'],
    ['ada@[127.0.0.1]', 'is not a valid domain name'],
    ['ada@xn--zz.com', 'is not a valid domain name'],
    ['ada@ex%41mple.com', 'contains %'],
    [`${'a'.repeat(65)}@example.com`, 'longer than 64 characters'],
    [`ada@${'a'.repeat(64)}.com`, 'label longer than 63 characters'],
    [`${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(60)}.com`, 'longer than 254 characters'],
  ];

  for (const [input, reason] of cases) {
    const result = normalizeEmail(input);
    t.equal(result.ok, false, `${JSON.stringify(input)} is rejected`);
    if (!result.ok) t.match(result.reason, reason, `${JSON.stringify(input)} reason`);
  }
});

t.test('normalize email - longest valid address', async (t) => {
  const address = `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.com`;

  t.equal(address.length, 254, 'address is at the RFC 5321 limit');
  t.same(normalizeEmail(address), { ok: true, value: address }, 'address is accepted');
});

t.test('normalize email - provider rules', async (t) => {
  const cases: Array<[input: string, rules: EmailRules, expected: string]> = [
    // Gmail ignores dots, and googlemail.com is the same mailbox as gmail.com.
    ['Ada.Lovelace@gmail.com', GMAIL_DOTS, 'adalovelace@gmail.com'],
    ['a.d.a@googlemail.com', GMAIL_DOTS, 'ada@gmail.com'],
    ['ada.lovelace@example.com', GMAIL_DOTS, 'ada.lovelace@example.com'],
    ['ada.lovelace+news@gmail.com', GMAIL_DOTS, 'adalovelace+news@gmail.com'],
    // Plus addressing on every domain.
    ['ada+newsletter@example.com', PLUS_EVERYWHERE, 'ada@example.com'],
    ['ada+a+b@example.com', PLUS_EVERYWHERE, 'ada@example.com'],
    ['ada+@example.com', PLUS_EVERYWHERE, 'ada@example.com'],
    ['+ada@example.com', PLUS_EVERYWHERE, '+ada@example.com'],
    ['a.da+news@gmail.com', PLUS_EVERYWHERE, 'a.da@gmail.com'],
    // Plus addressing on listed domains only.
    ['ada+news@fastmail.com', PLUS_ON_FASTMAIL, 'ada@fastmail.com'],
    ['ada+news@FastMail.com', PLUS_ON_FASTMAIL, 'ada@fastmail.com'],
    ['ada+news@example.com', PLUS_ON_FASTMAIL, 'ada+news@example.com'],
    ['ada+news@mail.fastmail.com', PLUS_ON_FASTMAIL, 'ada+news@mail.fastmail.com'],
    // Both rules together.
    [' A.D.A+Shop@GoogleMail.com ', ALL_RULES, 'ada@gmail.com'],
    ['a.d.a+shop@example.com', ALL_RULES, 'a.d.a@example.com'],
  ];

  for (const [input, rules, expected] of cases) {
    t.same(normalizeEmail(input, rules), { ok: true, value: expected }, `${JSON.stringify(input)} with ${JSON.stringify(rules)}`);
  }
});

t.test('normalize email - rules off by default', async (t) => {
  t.same(normalizeEmail('A.D.A+news@GoogleMail.com'), { ok: true, value: 'a.d.a+news@googlemail.com' }, 'no rule applies');
});

t.test('normalize email domain - plus list entries', async (t) => {
  t.same(normalizeEmailDomain('FastMail.com'), { ok: true, value: 'fastmail.com' }, 'domain is lowercased');
  t.same(normalizeEmailDomain('bücher.de'), { ok: true, value: 'xn--bcher-kva.de' }, 'domain is converted to punycode');
  t.equal(normalizeEmailDomain('fastmail').ok, false, 'domain without a dot is rejected');
});
