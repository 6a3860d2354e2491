import t from 'tap';
import { resolveIdentitySettings, type IdentitySettingsInput } from '../../identity/identity-settings.js';
import { normalizeIdentifier, type IdentifierErrorCode, type IdentifierInput } from '../../identity/normalize.js';

const BASE_SETTINGS: IdentitySettingsInput = {
  identifiers: { 'external:crm_id': {} },
  defaultRegion: 'GB',
};
const REJECT = resolveIdentitySettings({ ...BASE_SETTINGS, invalidIdentifiers: 'reject' });
const KEEP_UNLINKED = resolveIdentitySettings({ ...BASE_SETTINGS, invalidIdentifiers: 'keep-unlinked' });

const FIELDS: Record<string, string> = {
  user_id: 'userId',
  anonymous_id: 'anonymousId',
  email: 'context.traits.email',
  phone: 'context.traits.phone',
  device_id: 'context.device.id',
  'external:crm_id': 'context.externalIds[0].id',
};

function input(type: string, value: unknown): IdentifierInput {
  return { type, value, field: FIELDS[type] ?? 'context.externalIds[0].id' };
}

t.test('normalize identifier - linkable values', async (t) => {
  const cases: Array<[type: string, value: string, expected: string]> = [
    ['user_id', 'user-17850', 'user-17850'],
    // Opaque ids are keys of the source's systems and part of the profile id, so they are kept as sent.
    ['user_id', ' User-17850 ', ' User-17850 '],
    ['anonymous_id', '507f191e810c19729de860ea', '507f191e810c19729de860ea'],
    ['device_id', 'B5372DB0-C21E-11E4-8DFC-AA07A5B093DB', 'B5372DB0-C21E-11E4-8DFC-AA07A5B093DB'],
    ['external:crm_id', 'CRM-0042', 'CRM-0042'],
    ['email', ' Ada.Lovelace@Example.COM ', 'ada.lovelace@example.com'],
    ['email', 'ada@bücher.de', 'ada@xn--bcher-kva.de'],
    ['phone', '020 7946 0958', '+442079460958'],
    ['phone', '+1 (201) 555-0123', '+12015550123'],
    // Values that only contain a blocked word are not blocked.
    ['user_id', 'nullable', 'nullable'],
    ['email', 'test@test.co', 'test@test.co'],
    ['email', 'null@example.com', 'null@example.com'],
  ];

  for (const settings of [REJECT, KEEP_UNLINKED]) {
    for (const [type, value, expected] of cases) {
      t.same(
        normalizeIdentifier(settings, input(type, value)),
        { ok: true, identifier: { type, value: expected }, linkable: true },
        `${type} ${JSON.stringify(value)} under ${settings.invalidIdentifiers}`,
      );
    }
  }
});

t.test('normalize identifier - failures under reject', async (t) => {
  const cases: Array<[type: string, value: string, code: IdentifierErrorCode]> = [
    ['email', 'ada@@example.com', 'INVALID_EMAIL'],
    ['email', 'ada@example', 'INVALID_EMAIL'],
    ['email', 'Ada Lovelace <ada@example.com>', 'INVALID_EMAIL'],
    ['phone', '12', 'INVALID_PHONE'],
    ['phone', '07700 900123', 'INVALID_PHONE'],
    ['phone', 'ask at reception', 'INVALID_PHONE'],
    ['user_id', 'null', 'BLOCKED_IDENTIFIER'],
    ['user_id', 'NULL', 'BLOCKED_IDENTIFIER'],
    ['user_id', '0', 'BLOCKED_IDENTIFIER'],
    ['user_id', '-1', 'BLOCKED_IDENTIFIER'],
    ['user_id', '', 'BLOCKED_IDENTIFIER'],
    ['user_id', '   ', 'BLOCKED_IDENTIFIER'],
    ['anonymous_id', 'undefined', 'BLOCKED_IDENTIFIER'],
    ['anonymous_id', 'Anonymous', 'BLOCKED_IDENTIFIER'],
    ['device_id', ' None ', 'BLOCKED_IDENTIFIER'],
    ['external:crm_id', 'N/A', 'BLOCKED_IDENTIFIER'],
    // A placeholder in a phone or email field is blocked before it is parsed.
    ['phone', ' n/a ', 'BLOCKED_IDENTIFIER'],
    ['phone', 'null', 'BLOCKED_IDENTIFIER'],
    ['email', 'none', 'BLOCKED_IDENTIFIER'],
    ['email', ' Test@Test.com', 'BLOCKED_IDENTIFIER'],
    ['email', 'TEST@EXAMPLE.COM', 'BLOCKED_IDENTIFIER'],
  ];

  for (const [type, value, code] of cases) {
    const result = normalizeIdentifier(REJECT, input(type, value));
    t.equal(result.ok, false, `${type} ${JSON.stringify(value)} fails`);
    if (result.ok) continue;
    t.equal(result.code, code, `${type} ${JSON.stringify(value)} code`);
    t.equal(result.field, FIELDS[type], `${type} ${JSON.stringify(value)} field`);
  }
});

t.test('normalize identifier - failures kept unlinked', async (t) => {
  const cases: Array<[type: string, value: string, code: IdentifierErrorCode]> = [
    ['email', ' Ada@@Example.com ', 'INVALID_EMAIL'],
    ['phone', '555-0123', 'INVALID_PHONE'],
    ['user_id', 'undefined', 'BLOCKED_IDENTIFIER'],
    ['email', 'Test@Test.com', 'BLOCKED_IDENTIFIER'],
    ['phone', 'N/A', 'BLOCKED_IDENTIFIER'],
  ];

  for (const [type, value, code] of cases) {
    const result = normalizeIdentifier(KEEP_UNLINKED, input(type, value));
    t.equal(result.ok, true, `${type} ${JSON.stringify(value)} is kept`);
    if (!result.ok) continue;
    t.same(result.identifier, { type, value }, `${type} ${JSON.stringify(value)} keeps the value as sent`);
    t.equal(result.linkable, false, `${type} ${JSON.stringify(value)} is not linkable`);
    if (result.linkable) continue;
    t.equal(result.issue.code, code, `${type} ${JSON.stringify(value)} issue code`);
    t.equal(result.issue.field, FIELDS[type], `${type} ${JSON.stringify(value)} issue field`);
  }
});

t.test('normalize identifier - failure messages', async (t) => {
  t.same(
    normalizeIdentifier(REJECT, input('phone', '12')),
    {
      ok: false,
      code: 'INVALID_PHONE',
      field: 'context.traits.phone',
      message: 'context.traits.phone "12" is not a valid phone number: it is too short for GB',
    },
    'invalid phone number',
  );
  t.same(
    normalizeIdentifier(REJECT, input('email', 'ada@@example.com')),
    {
      ok: false,
      code: 'INVALID_EMAIL',
      field: 'context.traits.email',
      message: 'context.traits.email "ada@@example.com" is not a valid email address: it has more than one @',
    },
    'invalid email address',
  );
  t.same(
    normalizeIdentifier(REJECT, input('user_id', 'null')),
    {
      ok: false,
      code: 'BLOCKED_IDENTIFIER',
      field: 'userId',
      message:
        'userId "null" is a blocked user_id value, so it cannot identify a profile. ' +
        'Leave the field out, or remove the value from the blockedValues of user_id',
    },
    'blocked value',
  );

  const long = `${'a'.repeat(100)}@example`;
  const result = normalizeIdentifier(REJECT, input('email', long));
  t.equal(result.ok, false, 'long invalid email fails');
  if (!result.ok) t.equal(result.message, `context.traits.email "${'a'.repeat(64)}"... is not a valid email address: the part before the @ is longer than 64 characters`, 'long value is cut in the message');
});

t.test('normalize identifier - unknown type', async (t) => {
  for (const settings of [REJECT, KEEP_UNLINKED]) {
    t.same(
      normalizeIdentifier(settings, { type: 'external:zendesk_id', value: '42', field: 'context.externalIds[1].id' }),
      {
        ok: false,
        code: 'UNKNOWN_IDENTIFIER_TYPE',
        field: 'context.externalIds[1].id',
        message:
          'context.externalIds[1].id has identifier type "external:zendesk_id", which is not configured. ' +
          "Add it to the identifiers of the workspace's identity settings",
      },
      `unconfigured external type fails under ${settings.invalidIdentifiers}`,
    );
  }
});

t.test('normalize identifier - non-string values', async (t) => {
  const cases: Array<[type: string, value: unknown, described: string]> = [
    ['phone', 2015550123, 'number'],
    ['email', null, 'null'],
    ['user_id', true, 'boolean'],
    ['external:crm_id', { id: 'CRM-0042' }, 'object'],
  ];

  for (const settings of [REJECT, KEEP_UNLINKED]) {
    for (const [type, value, described] of cases) {
      t.same(
        normalizeIdentifier(settings, input(type, value)),
        { ok: false, code: 'NON_STRING_IDENTIFIER', field: FIELDS[type], message: `${FIELDS[type]} must be a string to be used as ${type}, got ${described}` },
        `${type} ${described} fails under ${settings.invalidIdentifiers}`,
      );
    }
  }
});

t.test('normalize identifier - empty opaque id', async (t) => {
  const settings = resolveIdentitySettings({ identifiers: { user_id: { blockedValues: ['null'] } } });

  t.same(
    normalizeIdentifier(settings, input('user_id', '  ')),
    {
      ok: false,
      code: 'INVALID_IDENTIFIER',
      field: 'userId',
      message: 'userId "  " is not a valid user_id: it is empty or only whitespace',
    },
    'whitespace-only user_id is invalid once "" is not blocked',
  );
});

t.test('normalize identifier - blocked after normalisation', async (t) => {
  const settings = resolveIdentitySettings({
    identifiers: {
      phone: { blockedValues: ['+1 201 555 0100'] },
      email: { blockedValues: ['qa@example.com'] },
    },
    emailRules: { gmailDots: true, plusAddressing: true },
  });

  const cases: Array<[type: string, value: string]> = [
    ['phone', '+1 (201) 555-0100'],
    ['phone', '+12015550100'],
    ['phone', '001 201 555 0100'],
    ['email', 'QA+build-17@Example.com'],
    ['email', ' qa@example.com '],
  ];
  for (const [type, value] of cases) {
    const result = normalizeIdentifier(settings, input(type, value));
    t.equal(result.ok ? 'linkable' : result.code, 'BLOCKED_IDENTIFIER', `${type} ${JSON.stringify(value)} is blocked`);
  }

  const gmail = normalizeIdentifier(settings, input('email', 'Q.A+x@googlemail.com'));
  t.same(gmail, { ok: true, identifier: { type: 'email', value: 'qa@gmail.com' }, linkable: true }, 'other domain is not blocked');
});

t.test('normalize identifier - default blocked test emails', async (t) => {
  const settings = resolveIdentitySettings({ emailRules: { plusAddressing: true } });

  const result = normalizeIdentifier(settings, input('email', ' Test+signup@Example.com '));
  t.equal(result.ok ? 'linkable' : result.code, 'BLOCKED_IDENTIFIER', 'plus-tagged test address is blocked');
});
