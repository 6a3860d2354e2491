/**
 * Option checks shared by membership, the coordinator and the assignment watcher. Each
 * throws ConfigError naming the option, the rule and the value received.
 */
import { inspect } from 'node:util';
import { ConfigError } from '../common/errors.js';

/** The largest delay that Node.js timers accept; a longer one fires after 1 ms instead (setTimeout docs). */
export const MAX_TIMER_DELAY_MS = 2_147_483_647;

/** Node ids are used in KV keys, which NATS limits to `[-/_=.a-zA-Z0-9]`, and in log fields. */
export const NODE_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Returns `value` when it is an integer number of milliseconds that a timer accepts (1 to 2,147,483,647). */
export function requireDurationMs(name: string, value: unknown): number {
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > MAX_TIMER_DELAY_MS) {
    throw new ConfigError(`${name} must be an integer number of milliseconds from 1 to ${MAX_TIMER_DELAY_MS}, received ${describeValue(value)}`);
  }
  return value as number;
}

export function requirePositiveInteger(name: string, value: unknown, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > max) {
    throw new ConfigError(`${name} must be an integer from 1 to ${max}, received ${describeValue(value)}`);
  }
  return value as number;
}

export function requireNodeId(name: string, value: unknown): string {
  if (typeof value !== 'string' || !NODE_ID_PATTERN.test(value)) {
    throw new ConfigError(`${name} must be 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-', received ${describeValue(value)}`);
  }
  return value;
}

/** Orders node ids by UTF-16 code units, the same on every node whatever its locale. */
export function compareNodeIds(a: string, b: string): number {
  if (a < b) return -1;
  return a > b ? 1 : 0;
}

export function requireNonEmptyString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    throw new ConfigError(`${name} must be a non-empty string, received ${describeValue(value)}`);
  }
  return value;
}

export function describeValue(value: unknown): string {
  return inspect(value, { breakLength: Infinity });
}
