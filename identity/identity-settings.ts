/**
 * Per-workspace identity settings: which identifier types exist, how they rank, how many
 * values of each a profile may hold, which values never link profiles, and how email
 * addresses and phone numbers are normalised. `resolveIdentitySettings` validates a plain
 * object once and fills in defaults, so the per-event code can trust what it gets.
 */

import { closest, distance } from 'fastest-levenshtein';
import { ConfigError } from '../common/errors.js';
import { IDENTIFIER_TYPES } from '../profiles/identifiers.js';
import { normalizeEmail, normalizeEmailDomain, type EmailRules } from './normalize-email.js';
import { normalizePhone, toSupportedRegion, type CountryCode } from './normalize-phone.js';

export type BuiltInIdentifierType = (typeof IDENTIFIER_TYPES)[number];

/** Normalisation rule of an identifier type: email address, phone number, or the value as sent. */
export type IdentifierKind = 'email' | 'phone' | 'opaque';

/**
 * Handling of an identifier value that is invalid or blocked. `reject` fails the event with
 * an error naming the field, and `keep-unlinked` keeps the value as sent but marks it
 * unusable for linking profiles.
 */
export type InvalidIdentifierPolicy = 'reject' | 'keep-unlinked';

export const INVALID_IDENTIFIER_POLICIES: readonly InvalidIdentifierPolicy[] = ['reject', 'keep-unlinked'];

/** Prefix of external id types, as `identifiersOf` in profiles/identifiers.ts builds them. */
export const EXTERNAL_TYPE_PREFIX = 'external:';

/** Names an external id type may have after `external:`, such as `crm_id` or `ga.client_id`. */
const EXTERNAL_TYPE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Default maximum number of values of each type that one profile holds. Segment Unify
 * defaults to 1 for user_id and 5 for every other identifier, and recommends a time window
 * for short-lived ids (such as 5 anonymous_ids weekly). rtcdp has no time window, so a limit
 * counts every value a profile has ever held, and the limits of short-lived ids are higher.
 */
export const DEFAULT_MAX_PER_PROFILE: Readonly<Record<BuiltInIdentifierType, number>> = Object.freeze({
  user_id: 1,
  // NOTE: 100 and 10 are estimates of what one person accumulates over years (cleared
  // cookies, new browsers, replaced phones), not measured on customer data.
  anonymous_id: 100,
  email: 5,
  phone: 5,
  device_id: 10,
});

/** Default maximum per profile of each external id type, which is usually a system's primary key. */
export const DEFAULT_EXTERNAL_MAX_PER_PROFILE = 1;

/**
 * Values that never link profiles unless a type's `blockedValues` replaces the list: the
 * placeholders that sources send when a field is unset, and test addresses. Segment Unify
 * suggests blocking -1, null and anonymous on every identifier. Values are compared trimmed
 * and case-insensitively, both as sent and after normalisation.
 */
export const DEFAULT_BLOCKED_VALUES: readonly string[] = Object.freeze([
  '',
  '0',
  '-1',
  'null',
  'undefined',
  'none',
  'n/a',
  'anonymous',
  'test@test.com',
  'test@example.com',
]);

/** Identity settings of one workspace as configured. Every field is optional. */
export interface IdentitySettingsInput {
  /** Settings per identifier type. A key `external:NAME` adds that external id type. */
  identifiers?: Record<string, IdentifierTypeInput>;
  /**
   * Every identifier type, highest priority first. Default: user_id, email, phone, the
   * external types in the order of `identifiers`, device_id, anonymous_id.
   */
  priority?: string[];
  emailRules?: {
    /** Default false. */
    gmailDots?: boolean;
    /** `true` strips `+tag` on every domain, a list of domains only on those. Default false. */
    plusAddressing?: boolean | string[];
  };
  /** ISO 3166-1 alpha-2 region whose national format is used for numbers without `+`. Default none. */
  defaultRegion?: string;
  /** Default `reject`. */
  invalidIdentifiers?: InvalidIdentifierPolicy;
}

export interface IdentifierTypeInput {
  /** A positive integer. Defaults in DEFAULT_MAX_PER_PROFILE and DEFAULT_EXTERNAL_MAX_PER_PROFILE. */
  maxPerProfile?: number;
  /** Default true for user_id, false for every other type. */
  mergeProtected?: boolean;
  /** Replaces DEFAULT_BLOCKED_VALUES for this type. `[...DEFAULT_BLOCKED_VALUES, 'void']` extends it. */
  blockedValues?: string[];
}

/** Validated settings of one identifier type, as the identity graph applies them. */
export interface IdentifierTypeSettings {
  readonly type: string;
  readonly kind: IdentifierKind;
  /** Position in `IdentitySettings.priority`, 0 for the highest priority. */
  readonly rank: number;
  readonly maxPerProfile: number;
  /** Whether two profiles that hold different values of this type must never be merged. */
  readonly mergeProtected: boolean;
  /** Blocked values trimmed and lowercased, plus their normalised forms for email and phone. */
  readonly blockedValues: ReadonlySet<string>;
}

/** Validated identity settings of one workspace, from `resolveIdentitySettings`. */
export interface IdentitySettings {
  /** Every identifier type, in priority order. */
  readonly types: ReadonlyMap<string, IdentifierTypeSettings>;
  readonly priority: readonly string[];
  readonly emailRules: EmailRules;
  readonly defaultRegion: CountryCode | undefined;
  readonly invalidIdentifiers: InvalidIdentifierPolicy;
}

const SETTINGS_KEYS = ['identifiers', 'priority', 'emailRules', 'defaultRegion', 'invalidIdentifiers'];
const TYPE_KEYS = ['maxPerProfile', 'mergeProtected', 'blockedValues'];
const EMAIL_RULE_KEYS = ['gmailDots', 'plusAddressing'];

/**
 * Validates a workspace's identity settings and fills in defaults. Throws ConfigError naming
 * the setting path and the rule it breaks, such as `identifiers.email.maxPerProfile`, for
 * every setting that breaks one. A setting that others depend on (the identifier types, for
 * the priority and the type settings) hides their problems until it is fixed.
 */
export function resolveIdentitySettings(input: unknown = {}): IdentitySettings {
  const settings = expectObject(input, '', SETTINGS_KEYS);
  const problems: ConfigError[] = [];
  const check = <T>(resolve: () => T, fallback: T): T => {
    try {
      return resolve();
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(error);
      return fallback;
    }
  };

  const emailRules = check(() => resolveEmailRules(settings.emailRules), resolveEmailRules(undefined));
  const defaultRegion = check(() => resolveDefaultRegion(settings.defaultRegion), undefined);
  const invalidIdentifiers = check(() => resolvePolicy(settings.invalidIdentifiers), resolvePolicy(undefined));

  const typeInputs = check(() => resolveTypeInputs(settings.identifiers), undefined);
  const priority = typeInputs === undefined ? undefined : check(() => resolvePriority(settings.priority, [...typeInputs.keys()]), undefined);

  const types = new Map<string, IdentifierTypeSettings>();
  for (const [rank, type] of (priority ?? []).entries()) {
    const typeInput = typeInputs?.get(type) ?? {};
    const path = memberPath('identifiers', type);
    const kind = kindOf(type);
    types.set(
      type,
      Object.freeze({
        type,
        kind,
        rank,
        maxPerProfile: check(() => resolveMaxPerProfile(typeInput.maxPerProfile, type, `${path}.maxPerProfile`), 1),
        mergeProtected: check(() => resolveBoolean(typeInput.mergeProtected, type === 'user_id', `${path}.mergeProtected`), false),
        blockedValues: check(() => resolveBlockedValues(typeInput.blockedValues, kind, emailRules, defaultRegion, `${path}.blockedValues`), new Set<string>()),
      }),
    );
  }

  if (problems.length === 1) throw problems[0];
  if (problems.length > 1) {
    const lines = problems.map((problem) => `  ${problem.message.slice(CONFIG_ERROR_PREFIX.length)}`);
    throw new ConfigError(`${CONFIG_ERROR_PREFIX}${problems.length} problems:\n${lines.join('\n')}`);
  }
  return Object.freeze({ types, priority: priority ?? [], emailRules, defaultRegion, invalidIdentifiers });
}

/** Returns how values of a type are normalised. */
export function kindOf(type: string): IdentifierKind {
  if (type === 'email') return 'email';
  if (type === 'phone') return 'phone';
  return 'opaque';
}

/**
 * Returns the identifier types configured in `identifiers`, with their raw settings: the
 * built-in types always, and each `external:NAME` key.
 */
function resolveTypeInputs(value: unknown): Map<string, Record<string, unknown>> {
  const typeInputs = new Map<string, Record<string, unknown>>();
  for (const type of IDENTIFIER_TYPES) typeInputs.set(type, {});
  if (value === undefined) return typeInputs;

  const identifiers = expectObject(value, 'identifiers');
  for (const [type, typeValue] of Object.entries(identifiers)) {
    const path = memberPath('identifiers', type);
    if (!isBuiltInType(type)) validateExternalType(type, path);
    typeInputs.set(type, expectObject(typeValue, path, TYPE_KEYS));
  }
  return typeInputs;
}

function validateExternalType(type: string, path: string): void {
  if (!type.startsWith(EXTERNAL_TYPE_PREFIX)) {
    throw configError(path, `is not an identifier type. Use one of ${IDENTIFIER_TYPES.join(', ')} or external:NAME`);
  }
  const name = type.slice(EXTERNAL_TYPE_PREFIX.length);
  if (!EXTERNAL_TYPE_NAME.test(name)) {
    throw configError(path, 'must name the external id type with 1 to 64 letters, digits, underscores, dots or hyphens after external:');
  }
}

function resolvePriority(value: unknown, configuredTypes: string[]): readonly string[] {
  if (value === undefined) return Object.freeze(defaultPriority(configuredTypes));

  const priority = expectStringArray(value, 'priority');
  const seen = new Set<string>();
  for (const [index, type] of priority.entries()) {
    if (!configuredTypes.includes(type)) {
      const nearest = closest(type, configuredTypes);
      const hint = distance(type, nearest) <= 2 ? `. Did you mean ${JSON.stringify(nearest)}?` : '';
      throw configError(`priority[${index}]`, `is ${JSON.stringify(type)}, which is not a configured identifier type. Add it to identifiers or remove it from priority${hint}`);
    }
    if (seen.has(type)) throw configError(`priority[${index}]`, `repeats ${JSON.stringify(type)}. List each type once`);
    seen.add(type);
  }

  const missing = configuredTypes.filter((type) => !seen.has(type));
  if (missing.length > 0) throw configError('priority', `is missing ${missing.join(', ')}. List every identifier type once`);
  return Object.freeze([...priority]);
}

function defaultPriority(configuredTypes: string[]): string[] {
  const externalTypes = configuredTypes.filter((type) => !isBuiltInType(type));
  return ['user_id', 'email', 'phone', ...externalTypes, 'device_id', 'anonymous_id'];
}

function resolveMaxPerProfile(value: unknown, type: string, path: string): number {
  if (value === undefined) return isBuiltInType(type) ? DEFAULT_MAX_PER_PROFILE[type] : DEFAULT_EXTERNAL_MAX_PER_PROFILE;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw configError(path, `must be a positive integer, got ${describe(value)}`);
  }
  return value;
}

function resolveBlockedValues(
  value: unknown,
  kind: IdentifierKind,
  emailRules: EmailRules,
  defaultRegion: CountryCode | undefined,
  path: string,
): ReadonlySet<string> {
  const configured = value === undefined ? DEFAULT_BLOCKED_VALUES : expectStringArray(value, path);

  const blocked = new Set<string>();
  for (const entry of configured) {
    blocked.add(entry.trim().toLowerCase());

    // The normalised form blocks every spelling of the entry, such as `+1 (555) 555-5555`
    // for a configured `+15555555555`. An entry that does not normalise is kept as written.
    const normalized = normalizeBlockedValue(entry, kind, emailRules, defaultRegion);
    if (normalized !== undefined) blocked.add(normalized.toLowerCase());
  }
  return blocked;
}

function normalizeBlockedValue(
  entry: string,
  kind: IdentifierKind,
  emailRules: EmailRules,
  defaultRegion: CountryCode | undefined,
): string | undefined {
  let normalized;
  if (kind === 'email') normalized = normalizeEmail(entry, emailRules);
  else if (kind === 'phone') normalized = normalizePhone(entry, defaultRegion);
  else return undefined;

  return normalized.ok ? normalized.value : undefined;
}

function resolveEmailRules(value: unknown): EmailRules {
  if (value === undefined) return Object.freeze({ gmailDots: false, plusAddressing: false });

  const rules = expectObject(value, 'emailRules', EMAIL_RULE_KEYS);
  const gmailDots = resolveBoolean(rules.gmailDots, false, 'emailRules.gmailDots');
  const plusAddressing = resolvePlusAddressing(rules.plusAddressing);
  return Object.freeze({ gmailDots, plusAddressing });
}

function resolvePlusAddressing(value: unknown): boolean | readonly string[] {
  if (value === undefined) return false;
  if (typeof value === 'boolean') return value;
  if (!Array.isArray(value)) {
    throw configError('emailRules.plusAddressing', `must be true, false or a list of domains, got ${describe(value)}`);
  }

  const domains = expectStringArray(value, 'emailRules.plusAddressing');
  if (domains.length === 0) throw configError('emailRules.plusAddressing', 'is an empty list. Use false to keep +tags on every domain');

  const normalized = new Set<string>();
  for (const [index, domain] of domains.entries()) {
    const result = normalizeEmailDomain(domain.trim());
    if (!result.ok) throw configError(`emailRules.plusAddressing[${index}]`, `is not a valid domain: ${result.reason}`);
    normalized.add(result.value);
  }
  return Object.freeze([...normalized]);
}

function resolveDefaultRegion(value: unknown): CountryCode | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw configError('defaultRegion', `must be an ISO 3166-1 alpha-2 code such as "GB", got ${describe(value)}`);

  const region = toSupportedRegion(value);
  if (region !== undefined) return region;
  const hint = value.toUpperCase() === 'UK' ? '. The code of the United Kingdom is "GB"' : '';
  throw configError('defaultRegion', `is ${JSON.stringify(value)}, which is not an ISO 3166-1 alpha-2 region that libphonenumber-js supports${hint}`);
}

function resolvePolicy(value: unknown): InvalidIdentifierPolicy {
  if (value === undefined) return 'reject';
  if (INVALID_IDENTIFIER_POLICIES.includes(value as InvalidIdentifierPolicy)) return value as InvalidIdentifierPolicy;
  throw configError('invalidIdentifiers', `must be "reject" or "keep-unlinked", got ${describe(value)}`);
}

function resolveBoolean(value: unknown, fallback: boolean, path: string): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw configError(path, `must be true or false, got ${describe(value)}`);
  return value;
}

function isBuiltInType(type: string): type is BuiltInIdentifierType {
  return (IDENTIFIER_TYPES as readonly string[]).includes(type);
}

/** Checks that a value is a plain object and, when `allowedKeys` is given, has no other keys. */
function expectObject(value: unknown, path: string, allowedKeys?: string[]): Record<string, unknown> {
  const isPlainObject =
    typeof value === 'object' && value !== null && [Object.prototype, null].includes(Object.getPrototypeOf(value));
  if (!isPlainObject) throw configError(path, `must be an object, got ${describe(value)}`);

  const object = value as Record<string, unknown>;
  if (allowedKeys !== undefined) {
    for (const key of Object.keys(object)) {
      if (!allowedKeys.includes(key)) {
        throw configError(memberPath(path, key), `is not a setting. The settings here are ${allowedKeys.join(', ')}`);
      }
    }
  }
  return object;
}

function expectStringArray(value: unknown, path: string): string[] {
  if (!Array.isArray(value)) throw configError(path, `must be a list of strings, got ${describe(value)}`);
  for (const [index, item] of value.entries()) {
    if (typeof item !== 'string') throw configError(`${path}[${index}]`, `must be a string, got ${describe(item)}`);
  }
  return value as string[];
}

function memberPath(parent: string, key: string): string {
  if (parent === '') return key;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return typeof value;
}

const CONFIG_ERROR_PREFIX = 'invalid identity settings: ';

/** Builds the error for one setting; an empty path stands for the settings object itself. */
function configError(path: string, rule: string): ConfigError {
  if (path === '') return new ConfigError(`${CONFIG_ERROR_PREFIX}the settings ${rule}`);
  return new ConfigError(`${CONFIG_ERROR_PREFIX}${path} ${rule}`);
}
