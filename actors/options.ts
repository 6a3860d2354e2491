import { inspect } from 'node:util';
import type { ActorSystemOptions } from './types.js';

/** The largest delay that Node.js timers accept. Node.js runs a longer delay after 1 ms instead (setTimeout docs). */
export const MAX_TIMER_DELAY_MS = 2_147_483_647;

/** ActorSystemOptions with every default filled in and every value validated. */
export type ResolvedOptions = Required<ActorSystemOptions>;

const DEFAULTS = {
  mailboxCapacity: 1_000,
  maxResidentActors: 100_000,
  idleTimeoutMs: 300_000,
  snapshotEveryMessages: 100,
  snapshotIntervalMs: 1_000,
  maxPersistBatch: 500,
  maxAttempts: 3,
} as const;

/** Default journal limit, raised to snapshotEveryMessages when that is larger. */
const DEFAULT_MAX_JOURNAL_MESSAGES = 10_000;

const COUNT_OPTIONS = [
  'mailboxCapacity',
  'maxResidentActors',
  'snapshotEveryMessages',
  'maxPersistBatch',
  'maxAttempts',
  'maxJournalMessages',
] as const;

const DURATION_OPTIONS = ['idleTimeoutMs', 'snapshotIntervalMs'] as const;

/**
 * Fills in defaults and validates every option.
 * Throws RangeError naming the option, the rule and the value received.
 */
export function resolveOptions(options: ActorSystemOptions = {}): ResolvedOptions {
  const snapshotEveryMessages = options.snapshotEveryMessages ?? DEFAULTS.snapshotEveryMessages;
  const resolved: ResolvedOptions = {
    ...DEFAULTS,
    maxJournalMessages: Math.max(DEFAULT_MAX_JOURNAL_MESSAGES, snapshotEveryMessages),
    ...withoutUndefined(options),
  };

  for (const name of COUNT_OPTIONS) {
    requirePositiveInteger(name, resolved[name]);
  }

  for (const name of DURATION_OPTIONS) {
    requirePositiveInteger(name, resolved[name]);
    requireTimerDelay(name, resolved[name]);
  }

  if (resolved.maxJournalMessages < resolved.snapshotEveryMessages) {
    throw new RangeError(
      `maxJournalMessages must be at least snapshotEveryMessages (${resolved.snapshotEveryMessages}), ` +
        `received ${describe(resolved.maxJournalMessages)}`,
    );
  }

  return resolved;
}

/** Validates one of drain's timeouts (`timeoutMs`, `flushTimeoutMs`), which may be 0 to skip that wait. */
export function validateDrainTimeout(name: string, timeoutMs: number | undefined): number | undefined {
  if (timeoutMs === undefined) {
    return undefined;
  }

  if (!Number.isInteger(timeoutMs) || timeoutMs < 0) {
    throw new RangeError(`${name} must be a non-negative integer, received ${describe(timeoutMs)}`);
  }

  requireTimerDelay(name, timeoutMs);
  return timeoutMs;
}

function requirePositiveInteger(name: string, value: unknown): void {
  if (!Number.isInteger(value) || (value as number) <= 0) {
    throw new RangeError(`${name} must be a positive integer, received ${describe(value)}`);
  }
}

function requireTimerDelay(name: string, value: number): void {
  if (value > MAX_TIMER_DELAY_MS) {
    throw new RangeError(`${name} must be at most ${MAX_TIMER_DELAY_MS} ms, received ${describe(value)}`);
  }
}

/** Drops keys set to undefined, so that an explicit `undefined` still gets the default. */
function withoutUndefined(options: ActorSystemOptions): ActorSystemOptions {
  const entries = Object.entries(options).filter(([, value]) => value !== undefined);
  return Object.fromEntries(entries) as ActorSystemOptions;
}

function describe(value: unknown): string {
  return inspect(value);
}
