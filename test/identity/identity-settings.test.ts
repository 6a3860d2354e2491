import t from 'tap';
import { ConfigError } from '../../common/errors.js';
import {
  DEFAULT_BLOCKED_VALUES,
  resolveIdentitySettings,
  type IdentitySettings,
  type IdentifierTypeSettings,
} from '../../identity/identity-settings.js';

function typeSettings(settings: IdentitySettings, type: string): IdentifierTypeSettings {
  const found = settings.types.get(type);
  if (found === undefined) throw new Error(`expected identifier type ${type} in the settings`);
  return found;
}

function configErrorOf(resolve: () => unknown): ConfigError | undefined {
  try {
    resolve();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  return undefined;
}

t.test('identity settings - defaults', async (t) => {
  const settings = resolveIdentitySettings({});

  t.same(settings.priority, ['user_id', 'email', 'phone', 'device_id', 'anonymous_id'], 'default priority');
  t.same([...settings.types.keys()], settings.priority, 'types are in priority order');
  t.same(settings.emailRules, { gmailDots: false, plusAddressing: false }, 'no email rules');
  t.equal(settings.defaultRegion, undefined, 'no default region');
  t.equal(settings.invalidIdentifiers, 'reject', 'invalid identifiers are rejected');

  const expected: Array<[type: string, kind: string, maxPerProfile: number, mergeProtected: boolean]> = [
    ['user_id', 'opaque', 1, true],
    ['email', 'email', 5, false],
    ['phone', 'phone', 5, false],
    ['device_id', 'opaque', 10, false],
    ['anonymous_id', 'opaque', 100, false],
  ];
  for (const [rank, [type, kind, maxPerProfile, mergeProtected]] of expected.entries()) {
    const resolved = typeSettings(settings, type);
    t.equal(resolved.type, type, `${type} type`);
    t.equal(resolved.kind, kind, `${type} kind`);
    t.equal(resolved.rank, rank, `${type} rank`);
    t.equal(resolved.maxPerProfile, maxPerProfile, `${type} maxPerProfile`);
    t.equal(resolved.mergeProtected, mergeProtected, `${type} mergeProtected`);
    for (const blocked of DEFAULT_BLOCKED_VALUES) t.ok(resolved.blockedValues.has(blocked), `${type} blocks ${JSON.stringify(blocked)}`);
  }
});

t.test('identity settings - no input', async (t) => {
  t.same(resolveIdentitySettings().priority, resolveIdentitySettings({}).priority, 'undefined means all defaults');
});

t.test('identity settings - frozen result', async (t) => {
  const settings = resolveIdentitySettings({ emailRules: { plusAddressing: ['fastmail.com'] } });

  t.ok(Object.isFrozen(settings), 'settings are frozen');
  t.ok(Object.isFrozen(settings.priority), 'priority is frozen');
  t.ok(Object.isFrozen(settings.emailRules), 'email rules are frozen');
  t.ok(Object.isFrozen(settings.emailRules.plusAddressing), 'plus addressing domains are frozen');
  t.ok(Object.isFrozen(typeSettings(settings, 'email')), 'type settings are frozen');
});

t.test('identity settings - external id types', async (t) => {
  const settings = resolveIdentitySettings({
    identifiers: {
      'external:crm_id': {},
      'external:ga.client_id': { maxPerProfile: 20, mergeProtected: false, blockedValues: ['GA1.1.0.0'] },
      'external:shopify-id': { mergeProtected: true },
    },
  });

  t.same(
    settings.priority,
    ['user_id', 'email', 'phone', 'external:crm_id', 'external:ga.client_id', 'external:shopify-id', 'device_id', 'anonymous_id'],
    'external types rank after phone, in configured order',
  );

  const crm = typeSettings(settings, 'external:crm_id');
  t.equal(crm.kind, 'opaque', 'external id is kept as sent');
  t.equal(crm.maxPerProfile, 1, 'external default maxPerProfile');
  t.equal(crm.mergeProtected, false, 'external default mergeProtected');
  t.ok(crm.blockedValues.has('null'), 'external type blocks the defaults');

  const ga = typeSettings(settings, 'external:ga.client_id');
  t.equal(ga.maxPerProfile, 20, 'configured maxPerProfile');
  t.same([...ga.blockedValues], ['ga1.1.0.0'], 'configured blocked values replace the defaults, lowercased');

  t.equal(typeSettings(settings, 'external:shopify-id').mergeProtected, true, 'configured mergeProtected');
});

t.test('identity settings - built-in overrides', async (t) => {
  const settings = resolveIdentitySettings({
    identifiers: {
      user_id: { maxPerProfile: 2, mergeProtected: false },
      email: { maxPerProfile: 1, mergeProtected: true },
      anonymous_id: { blockedValues: [] },
    },
  });

  t.equal(typeSettings(settings, 'user_id').maxPerProfile, 2, 'user_id maxPerProfile');
  t.equal(typeSettings(settings, 'user_id').mergeProtected, false, 'user_id mergeProtected');
  t.equal(typeSettings(settings, 'email').maxPerProfile, 1, 'email maxPerProfile');
  t.equal(typeSettings(settings, 'email').mergeProtected, true, 'email mergeProtected');
  t.equal(typeSettings(settings, 'anonymous_id').blockedValues.size, 0, 'empty list blocks nothing');
  t.equal(typeSettings(settings, 'phone').maxPerProfile, 5, 'unconfigured type keeps its default');
});

t.test('identity settings - custom priority', async (t) => {
  const priority = ['external:crm_id', 'user_id', 'anonymous_id', 'email', 'device_id', 'phone'];
  const settings = resolveIdentitySettings({ identifiers: { 'external:crm_id': {} }, priority });

  t.same(settings.priority, priority, 'priority as configured');
  t.same([...settings.types.keys()], priority, 'types in configured priority order');
  t.equal(typeSettings(settings, 'external:crm_id').rank, 0, 'first type has rank 0');
  t.equal(typeSettings(settings, 'phone').rank, 5, 'last type has the highest rank');
});

t.test('identity settings - normalised blocked values', async (t) => {
  const settings = resolveIdentitySettings({
    identifiers: {
      email: { blockedValues: [' QA+Build@Example.com ', 'not an email'] },
      phone: { blockedValues: ['020 7946 0000', '+1 (201) 555-0100', 'N/A'] },
    },
    emailRules: { plusAddressing: true },
    defaultRegion: 'GB',
  });

  t.same(
    [...typeSettings(settings, 'email').blockedValues].sort(),
    ['not an email', 'qa+build@example.com', 'qa@example.com'],
    'email entries are stored as written and normalised with the email rules',
  );
  t.same(
    [...typeSettings(settings, 'phone').blockedValues].sort(),
    ['+12015550100', '+1 (201) 555-0100', '+442079460000', '020 7946 0000', 'n/a'].sort(),
    'phone entries are stored as written and in E.164, read in the default region',
  );
});

t.test('identity settings - email rules and region', async (t) => {
  const settings = resolveIdentitySettings({
    emailRules: { gmailDots: true, plusAddressing: [' FastMail.com', 'bücher.de', 'fastmail.com'] },
    defaultRegion: 'de',
    invalidIdentifiers: 'keep-unlinked',
  });

  t.equal(settings.emailRules.gmailDots, true, 'gmailDots');
  t.same(settings.emailRules.plusAddressing, ['fastmail.com', 'xn--bcher-kva.de'], 'domains are normalised and deduplicated');
  t.equal(settings.defaultRegion, 'DE', 'region is uppercased');
  t.equal(settings.invalidIdentifiers, 'keep-unlinked', 'policy');
  t.equal(resolveIdentitySettings({ emailRules: { plusAddressing: true } }).emailRules.plusAddressing, true, 'plus addressing everywhere');
});

t.test('identity settings - validation errors', async (t) => {
  const cases: Array<[input: unknown, message: string]> = [
    [null, 'invalid identity settings: the settings must be an object, got null'],
    [[], 'invalid identity settings: the settings must be an object, got a list'],
    ['reject', 'invalid identity settings: the settings must be an object, got "reject"'],
    [
      { emailrules: {} },
      'invalid identity settings: emailrules is not a setting. The settings here are identifiers, priority, emailRules, defaultRegion, invalidIdentifiers',
    ],
    [{ identifiers: [] }, 'invalid identity settings: identifiers must be an object, got a list'],
    [{ identifiers: { email: 5 } }, 'invalid identity settings: identifiers.email must be an object, got 5'],
    [
      { identifiers: { crm_id: {} } },
      'invalid identity settings: identifiers.crm_id is not an identifier type. Use one of user_id, anonymous_id, email, phone, device_id or external:NAME',
    ],
    [
      { identifiers: { 'external:': {} } },
      'invalid identity settings: identifiers["external:"] must name the external id type with 1 to 64 letters, digits, underscores, dots or hyphens after external:',
    ],
    [
      { identifiers: { 'external:crm id': {} } },
      'invalid identity settings: identifiers["external:crm id"] must name the external id type with 1 to 64 letters, digits, underscores, dots or hyphens after external:',
    ],
    [
      { identifiers: { email: { limit: 5 } } },
      'invalid identity settings: identifiers.email.limit is not a setting. The settings here are maxPerProfile, mergeProtected, blockedValues',
    ],
    [{ identifiers: { email: { maxPerProfile: 0 } } }, 'invalid identity settings: identifiers.email.maxPerProfile must be a positive integer, got 0'],
    [{ identifiers: { email: { maxPerProfile: 2.5 } } }, 'invalid identity settings: identifiers.email.maxPerProfile must be a positive integer, got 2.5'],
    [{ identifiers: { email: { maxPerProfile: '5' } } }, 'invalid identity settings: identifiers.email.maxPerProfile must be a positive integer, got "5"'],
    [{ identifiers: { email: { maxPerProfile: Number.NaN } } }, 'invalid identity settings: identifiers.email.maxPerProfile must be a positive integer, got NaN'],
    [
      { identifiers: { 'external:crm_id': { maxPerProfile: -1 } } },
      'invalid identity settings: identifiers["external:crm_id"].maxPerProfile must be a positive integer, got -1',
    ],
    [{ identifiers: { user_id: { mergeProtected: 'yes' } } }, 'invalid identity settings: identifiers.user_id.mergeProtected must be true or false, got "yes"'],
    [{ identifiers: { phone: { blockedValues: 'n/a' } } }, 'invalid identity settings: identifiers.phone.blockedValues must be a list of strings, got "n/a"'],
    [{ identifiers: { phone: { blockedValues: ['n/a', 0] } } }, 'invalid identity settings: identifiers.phone.blockedValues[1] must be a string, got 0'],
    [{ priority: 'user_id' }, 'invalid identity settings: priority must be a list of strings, got "user_id"'],
    [
      { priority: ['user_id', 'email', 'phone', 'device_id', 'anonymous_id', 'external:crm_id'] },
      'invalid identity settings: priority[5] is "external:crm_id", which is not a configured identifier type. Add it to identifiers or remove it from priority',
    ],
    [
      { priority: ['user_id', 'email', 'email', 'phone', 'device_id', 'anonymous_id'] },
      'invalid identity settings: priority[2] repeats "email". List each type once',
    ],
    [
      { identifiers: { 'external:crm_id': {} }, priority: ['user_id', 'email', 'phone'] },
      'invalid identity settings: priority is missing anonymous_id, device_id, external:crm_id. List every identifier type once',
    ],
    [{ emailRules: true }, 'invalid identity settings: emailRules must be an object, got true'],
    [
      { emailRules: { gmail: true } },
      'invalid identity settings: emailRules.gmail is not a setting. The settings here are gmailDots, plusAddressing',
    ],
    [{ emailRules: { gmailDots: 1 } }, 'invalid identity settings: emailRules.gmailDots must be true or false, got 1'],
    [
      { emailRules: { plusAddressing: 'all' } },
      'invalid identity settings: emailRules.plusAddressing must be true, false or a list of domains, got "all"',
    ],
    [
      { emailRules: { plusAddressing: [] } },
      'invalid identity settings: emailRules.plusAddressing is an empty list. Use false to keep +tags on every domain',
    ],
    [
      { emailRules: { plusAddressing: ['fastmail.com', 'fastmail'] } },
      'invalid identity settings: emailRules.plusAddressing[1] is not a valid domain: the domain "fastmail" has no dot',
    ],
    [
      { emailRules: { plusAddressing: ['fastmail.com', '@fastmail.com'] } },
      'invalid identity settings: emailRules.plusAddressing[1] is not a valid domain: the domain "@fastmail.com" is not a valid domain name',
    ],
    [{ defaultRegion: 44 }, 'invalid identity settings: defaultRegion must be an ISO 3166-1 alpha-2 code such as "GB", got 44'],
    [
      { defaultRegion: 'UK' },
      'invalid identity settings: defaultRegion is "UK", which is not an ISO 3166-1 alpha-2 region that libphonenumber-js supports. The code of the United Kingdom is "GB"',
    ],
    [
      { defaultRegion: 'GBR' },
      'invalid identity settings: defaultRegion is "GBR", which is not an ISO 3166-1 alpha-2 region that libphonenumber-js supports',
    ],
    [
      { defaultRegion: 'AQ' },
      'invalid identity settings: defaultRegion is "AQ", which is not an ISO 3166-1 alpha-2 region that libphonenumber-js supports',
    ],
    [{ invalidIdentifiers: 'drop' }, 'invalid identity settings: invalidIdentifiers must be "reject" or "keep-unlinked", got "drop"'],
  ];

  for (const [input, message] of cases) {
    const label = JSON.stringify(input, (_key, value) => (Number.isNaN(value) ? 'NaN' : value));
    const error = configErrorOf(() => resolveIdentitySettings(input));
    t.ok(error instanceof ConfigError, `${label} throws ConfigError`);
    t.equal(error?.message, message, `${label} message`);
  }
});

t.test('identity settings - every problem in one error', async (t) => {
  const error = configErrorOf(() =>
    resolveIdentitySettings({
      priority: ['user_id', 'emial', 'phone', 'device_id', 'anonymous_id'],
      defaultRegion: 'UK',
      invalidIdentifiers: 'drop',
      identifiers: { email: { maxPerProfile: 0 } },
    }),
  );

  t.ok(error instanceof ConfigError, 'one ConfigError');
  t.equal(
    error?.message,
    [
      'invalid identity settings: 3 problems:',
      '  defaultRegion is "UK", which is not an ISO 3166-1 alpha-2 region that libphonenumber-js supports. The code of the United Kingdom is "GB"',
      '  invalidIdentifiers must be "reject" or "keep-unlinked", got "drop"',
      '  priority[1] is "emial", which is not a configured identifier type. Add it to identifiers or remove it from priority. Did you mean "email"?',
    ].join('\n'),
    'lists the problems of independent settings, and suggests the nearest type',
  );

  const types = configErrorOf(() => resolveIdentitySettings({ identifiers: { email: { maxPerProfile: 0 }, phone: { mergeProtected: 'yes' } } }));
  t.equal(
    types?.message,
    [
      'invalid identity settings: 2 problems:',
      '  identifiers.email.maxPerProfile must be a positive integer, got 0',
      '  identifiers.phone.mergeProtected must be true or false, got "yes"',
    ].join('\n'),
    'and the problems of several identifier types',
  );
});

t.test('identity settings - error code', async (t) => {
  const error = configErrorOf(() => resolveIdentitySettings({ defaultRegion: 'UK' }));

  t.ok(error instanceof ConfigError, 'error is a ConfigError');
  t.equal(error?.code, 'INVALID_CONFIG', 'error code');
  t.equal(error?.retryable, false, 'error is not retryable');
});
