/**
 * Computed traits as a workspace declares them, such as
 * `{ name: 'orders_30d', kind: 'count', event: 'Order Completed', window: { days: 30 } }`.
 * `resolveComputedTraits` validates a list once and fills in defaults, so the per-event code
 * in computed-trait.ts can trust what it gets.
 */

import { ConfigError } from '../../common/errors.js';
import { EVENT_TYPES, type CustomerEvent, type EventType, type JsonValue } from '../../profiles/event.js';
import { DEFAULT_EVENT_LIMITS } from '../../profiles/validation.js';

export const COMPUTED_TRAIT_KINDS = [
  'count',
  'sum',
  'min',
  'max',
  'average',
  'first',
  'last',
  'distinct_count',
  'most_frequent',
] as const;

export type ComputedTraitKind = (typeof COMPUTED_TRAIT_KINDS)[number];

/** Kinds that aggregate a numeric property. Events whose property is not a finite number do not count. */
export const NUMERIC_KINDS: ReadonlySet<ComputedTraitKind> = new Set(['sum', 'min', 'max', 'average']);

/** Kinds that need `property`. `first` and `last` take it optionally, and `count` never does. */
const PROPERTY_KINDS: ReadonlySet<ComputedTraitKind> = new Set(['sum', 'min', 'max', 'average', 'distinct_count', 'most_frequent']);

/** Kinds that keep a set of distinct values over the lifetime, bounded by `maxDistinctValues`. */
const DISTINCT_VALUE_KINDS: ReadonlySet<ComputedTraitKind> = new Set(['distinct_count', 'most_frequent']);

export const MS_PER_HOUR = 3_600_000;
export const MS_PER_DAY = 86_400_000;

/**
 * Maximum window length in days, about 10 years. It keeps window arithmetic on event times
 * (about 1.7e12 ms today) within the integers that a double represents exactly.
 */
export const MAX_WINDOW_DAYS = 3_650;

export const DEFAULT_MAX_EVENTS = 1_000;
export const DEFAULT_MAX_DISTINCT_VALUES = 1_000;
/** Maximum of `maxEvents` and `maxDistinctValues`, so that one trait cannot hold megabytes per profile. */
export const MAX_RETAINED_LIMIT = 100_000;

/** A computed trait as configured, before validation. */
export interface ComputedTraitInput {
  /** 1 to 64 letters, digits or underscores, starting with a letter. Unique within the workspace. */
  name: string;
  kind: ComputedTraitKind;
  /** Counts only track events with this `event` name. */
  event?: string;
  /** Counts only page events with this `name`. */
  page?: string;
  /** Counts only screen events with this `name`. */
  screen?: string;
  /** Counts only events of this type. It cannot be combined with `event`, `page` or `screen`, which imply the type. */
  type?: EventType;
  /** Top-level key of the event's `properties` (track, page, screen) or `traits` (identify, group). */
  property?: string;
  /** Sliding window in event time: exactly one of `days` and `hours`. Without it the trait covers the lifetime. */
  window?: { days?: number; hours?: number };
  /** Windowed traits only: how many of the newest matching events the state keeps. Default 1,000. */
  maxEvents?: number;
  /** Lifetime distinct_count and most_frequent only: how many distinct values the state keeps. Default 1,000. */
  maxDistinctValues?: number;
}

/** Options that come from the node rather than from the definition. */
export interface ComputedTraitOptions {
  /**
   * Maximum time in ms by which a query time may precede the latest event time that a
   * windowed state has seen. Set it to the `maxFutureSkewMs` event limit, because validation
   * rejects events dated further ahead of the accepting node's clock. Default: that limit's
   * default, 24 h.
   */
  maxFutureSkewMs?: number;
}

/** Event selection of a trait. Both fields undefined match every event. */
export interface EventFilter {
  readonly type: EventType | undefined;
  /** The track event's `event`, or the page or screen event's `name`. */
  readonly name: string | undefined;
}

/** A validated computed trait, from `resolveComputedTraits`. */
export interface ComputedTraitDefinition {
  readonly name: string;
  readonly kind: ComputedTraitKind;
  readonly filter: EventFilter;
  readonly property: string | undefined;
  /** Window length in ms, or undefined for a lifetime trait. */
  readonly windowMs: number | undefined;
  readonly maxEvents: number;
  readonly maxDistinctValues: number;
  readonly maxFutureSkewMs: number;
}

const TRAIT_KEYS = ['name', 'kind', 'event', 'page', 'screen', 'type', 'property', 'window', 'maxEvents', 'maxDistinctValues'];
const WINDOW_KEYS = ['days', 'hours'];
const TRAIT_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

/**
 * Validates a workspace's list of computed traits and fills in defaults. Throws ConfigError
 * naming the path and the rule it breaks, such as `computedTraits[2].window.days`.
 */
export function resolveComputedTraits(input: unknown, options: ComputedTraitOptions = {}): readonly ComputedTraitDefinition[] {
  if (!Array.isArray(input)) throw configError('computedTraits', `must be a list of computed traits, got ${describe(input)}`);

  const definitions: ComputedTraitDefinition[] = [];
  const indexByName = new Map<string, number>();
  for (const [index, item] of input.entries()) {
    const path = `computedTraits[${index}]`;
    const definition = resolveComputedTrait(item, options, path);

    const earlier = indexByName.get(definition.name);
    if (earlier !== undefined) {
      throw configError(`${path}.name`, `repeats ${JSON.stringify(definition.name)} of computedTraits[${earlier}]. Give each computed trait its own name`);
    }
    indexByName.set(definition.name, index);
    definitions.push(definition);
  }
  return Object.freeze(definitions);
}

/** Validates one computed trait. `path` prefixes the path in error messages. */
export function resolveComputedTrait(
  input: unknown,
  options: ComputedTraitOptions = {},
  path = 'computedTrait',
): ComputedTraitDefinition {
  const trait = expectObject(input, path, TRAIT_KEYS);

  const name = resolveName(trait.name, `${path}.name`);
  const kind = resolveKind(trait.kind, `${path}.kind`);
  const filter = resolveEventFilter(trait, path);
  const property = resolveProperty(trait.property, kind, `${path}.property`);
  const windowMs = resolveWindow(trait.window, `${path}.window`);

  let maxEvents = DEFAULT_MAX_EVENTS;
  if (trait.maxEvents !== undefined) {
    if (windowMs === undefined) throw configError(`${path}.maxEvents`, 'applies only to a trait with a window. Remove it or add a window');
    maxEvents = resolveLimit(trait.maxEvents, `${path}.maxEvents`);
  }

  let maxDistinctValues = DEFAULT_MAX_DISTINCT_VALUES;
  if (trait.maxDistinctValues !== undefined) {
    if (windowMs !== undefined || !DISTINCT_VALUE_KINDS.has(kind)) {
      throw configError(`${path}.maxDistinctValues`, 'applies only to distinct_count and most_frequent without a window. Remove it, or use maxEvents with a window');
    }
    maxDistinctValues = resolveLimit(trait.maxDistinctValues, `${path}.maxDistinctValues`);
  }

  const maxFutureSkewMs = resolveMaxFutureSkew(options.maxFutureSkewMs);
  return Object.freeze({ name, kind, filter, property, windowMs, maxEvents, maxDistinctValues, maxFutureSkewMs });
}

/**
 * Validates the filter fields `event`, `page`, `screen` and `type` of a definition object.
 * Exported for other definitions that select events the same way, such as the RFM summary.
 */
export function resolveEventFilter(definition: Record<string, unknown>, path: string): EventFilter {
  const named: Array<[field: string, type: EventType]> = [
    ['event', 'track'],
    ['page', 'page'],
    ['screen', 'screen'],
  ];
  const selectors = named.filter(([field]) => definition[field] !== undefined);

  if (selectors.length > 1) {
    throw configError(`${path}.${selectors[1][0]}`, `cannot be combined with ${selectors[0][0]}. Give only one of event, page and screen`);
  }

  if (definition.type !== undefined) {
    if (selectors.length === 1) {
      throw configError(`${path}.type`, `cannot be combined with ${selectors[0][0]}, which already selects ${selectors[0][1]} events. Remove type`);
    }
    const type = definition.type;
    if (typeof type !== 'string' || !(EVENT_TYPES as readonly string[]).includes(type)) {
      throw configError(`${path}.type`, `must be one of ${EVENT_TYPES.join(', ')}, got ${describe(type)}`);
    }
    return Object.freeze({ type: type as EventType, name: undefined });
  }

  if (selectors.length === 0) return Object.freeze({ type: undefined, name: undefined });

  const [field, type] = selectors[0];
  const name = definition[field];
  if (typeof name !== 'string' || name === '') {
    throw configError(`${path}.${field}`, `must be a non-empty string, got ${describe(name)}`);
  }
  return Object.freeze({ type, name });
}

/** Returns whether an event passes a filter. */
export function matchesFilter(filter: EventFilter, event: CustomerEvent): boolean {
  if (filter.type !== undefined && event.type !== filter.type) return false;
  if (filter.name === undefined) return true;
  const name = event.type === 'track' ? event.event : event.name;
  return name === filter.name;
}

/**
 * Returns the value of a top-level property: from `properties` for track, page and screen
 * events, from `traits` for identify and group events. Returns undefined when it is absent.
 */
export function readProperty(event: CustomerEvent, property: string): JsonValue | undefined {
  const source = event.type === 'identify' || event.type === 'group' ? event.traits : event.properties;
  if (source === undefined || !Object.hasOwn(source, property)) return undefined;
  return source[property];
}

function resolveName(value: unknown, path: string): string {
  if (typeof value !== 'string' || !TRAIT_NAME.test(value)) {
    throw configError(path, `must be 1 to 64 letters, digits or underscores starting with a letter, got ${describe(value)}`);
  }
  return value;
}

function resolveKind(value: unknown, path: string): ComputedTraitKind {
  if (value === undefined) throw configError(path, `is missing. Use one of ${COMPUTED_TRAIT_KINDS.join(', ')}`);
  if (typeof value !== 'string' || !(COMPUTED_TRAIT_KINDS as readonly string[]).includes(value)) {
    throw configError(path, `must be one of ${COMPUTED_TRAIT_KINDS.join(', ')}, got ${describe(value)}`);
  }
  return value as ComputedTraitKind;
}

function resolveProperty(value: unknown, kind: ComputedTraitKind, path: string): string | undefined {
  if (value === undefined) {
    if (PROPERTY_KINDS.has(kind)) throw configError(path, `is missing. A ${kind} trait aggregates the values of one property`);
    return undefined;
  }
  if (kind === 'count') throw configError(path, 'is not allowed for count, which counts events. Remove it, or use sum to add up a property');
  if (typeof value !== 'string' || value === '') throw configError(path, `must be a non-empty string, got ${describe(value)}`);
  return value;
}

/** Returns the window length in ms, or undefined without a window. */
function resolveWindow(value: unknown, path: string): number | undefined {
  if (value === undefined) return undefined;

  const window = expectObject(value, path, WINDOW_KEYS);
  const hasDays = window.days !== undefined;
  const hasHours = window.hours !== undefined;
  if (hasDays === hasHours) throw configError(path, 'must set exactly one of days and hours, such as { days: 30 }');

  if (hasDays) return resolveWindowLength(window.days, MAX_WINDOW_DAYS, `${path}.days`) * MS_PER_DAY;
  return resolveWindowLength(window.hours, MAX_WINDOW_DAYS * 24, `${path}.hours`) * MS_PER_HOUR;
}

function resolveWindowLength(value: unknown, max: number, path: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw configError(path, `must be an integer from 1 to ${max}, got ${describe(value)}`);
  }
  return value;
}

function resolveLimit(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_RETAINED_LIMIT) {
    throw configError(path, `must be an integer from 1 to ${MAX_RETAINED_LIMIT}, got ${describe(value)}`);
  }
  return value;
}

function resolveMaxFutureSkew(value: number | undefined): number {
  if (value === undefined) return DEFAULT_EVENT_LIMITS.maxFutureSkewMs;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw configError('maxFutureSkewMs', `must be an integer number of ms of at least 0, got ${describe(value)}`);
  }
  return value;
}

/** Checks that a value is a plain object without keys other than `allowedKeys`. */
export function expectObject(value: unknown, path: string, allowedKeys: readonly string[]): Record<string, unknown> {
  const isPlainObject =
    typeof value === 'object' && value !== null && [Object.prototype, null].includes(Object.getPrototypeOf(value));
  if (!isPlainObject) throw configError(path, `must be an object, got ${describe(value)}`);

  const object = value as Record<string, unknown>;
  for (const key of Object.keys(object)) {
    if (!allowedKeys.includes(key)) {
      throw configError(memberPath(path, key), `is not a setting. The settings here are ${allowedKeys.join(', ')}`);
    }
  }
  return object;
}

function memberPath(parent: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return typeof value;
}

/** A setting of a computed trait breaks a rule. `path` and `rule` are the two parts of the message. */
export class ComputedTraitConfigError extends ConfigError {
  constructor(
    readonly path: string,
    readonly rule: string,
  ) {
    super(`invalid computed trait: ${path} ${rule}`);
  }
}

/** Builds the error for one setting, such as `computedTraits[2].window.days must be ...`. */
export function configError(path: string, rule: string): ComputedTraitConfigError {
  return new ComputedTraitConfigError(path, rule);
}
