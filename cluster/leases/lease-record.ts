/**
 * The value stored under a shard's lease key, as JSON so that `nats kv get` shows it as is.
 * Every field is checked when a record is decoded, because other nodes, possibly of
 * another version, write it.
 */
import { RtcdpError } from '../../common/errors.js';

/** The version of the record format. Decoding rejects any other. */
export const LEASE_RECORD_VERSION = 1;

/** A finished tenure, as its successor found it. */
export interface PreviousHolder {
  holder: string;
  incarnation: string;
  epoch: number;
  /** True when the holder released the lease after flushing its state, and false when the lease expired or was lost. */
  released: boolean;
}

export interface LeaseRecord {
  /** Node id of the holder. After a release, the node that released it. */
  holder: string;
  /** Process run of the holder node. */
  incarnation: string;
  /**
   * Fencing epoch of the tenure: the revision of the write that acquired the lease. That
   * write cannot know its own revision, so it stores 0. Use `leaseEpoch` to read it.
   */
  epoch: number;
  /** The holder's lease ttl in milliseconds. A taker waits at least this long. */
  ttlMs: number;
  /** True once the holder has flushed its state and given the lease up. */
  released: boolean;
  /** The tenure before this one, or null when the key did not exist. */
  previousHolder: PreviousHolder | null;
}

/** A stored lease value is not valid JSON of the expected shape. */
export class InvalidLeaseRecordError extends RtcdpError {
  readonly code = 'INVALID_LEASE_RECORD';
}

/** Returns the fencing epoch of a record read at `revision`. */
export function leaseEpoch(record: LeaseRecord, revision: number): number {
  return record.epoch === 0 ? revision : record.epoch;
}

export function encodeLeaseRecord(record: LeaseRecord): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ version: LEASE_RECORD_VERSION, ...record }));
}

/** Parses and validates a stored record. Throws InvalidLeaseRecordError naming the key, revision and field. */
export function decodeLeaseRecord(value: Uint8Array, key: string, revision: number): LeaseRecord {
  const fail = (reason: string): never => {
    throw new InvalidLeaseRecordError(`lease record of key ${key} at revision ${revision} is invalid: ${reason}`);
  };

  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(value));
  } catch (error) {
    return fail(`not UTF-8 JSON (${(error as Error).message})`);
  }
  if (!isObject(parsed)) return fail('not a JSON object');
  if (parsed.version !== LEASE_RECORD_VERSION) return fail(`version must be ${LEASE_RECORD_VERSION}, found ${JSON.stringify(parsed.version)}`);

  const record: LeaseRecord = {
    holder: nonEmptyString(parsed, 'holder', fail),
    incarnation: nonEmptyString(parsed, 'incarnation', fail),
    epoch: integerAtLeast(parsed, 'epoch', 0, fail),
    ttlMs: integerAtLeast(parsed, 'ttlMs', 1, fail),
    released: boolean(parsed, 'released', fail),
    previousHolder: null,
  };

  const previous = parsed.previousHolder;
  if (previous !== null) {
    if (!isObject(previous)) return fail('previousHolder must be an object or null');
    record.previousHolder = {
      holder: nonEmptyString(previous, 'holder', fail, 'previousHolder.'),
      incarnation: nonEmptyString(previous, 'incarnation', fail, 'previousHolder.'),
      epoch: integerAtLeast(previous, 'epoch', 1, fail, 'previousHolder.'),
      released: boolean(previous, 'released', fail, 'previousHolder.'),
    };
  }
  return record;
}

type Fail = (reason: string) => never;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function nonEmptyString(object: Record<string, unknown>, field: string, fail: Fail, path = ''): string {
  const value = object[field];
  return typeof value === 'string' && value !== '' ? value : fail(`${path}${field} must be a non-empty string, found ${JSON.stringify(value)}`);
}

function integerAtLeast(object: Record<string, unknown>, field: string, minimum: number, fail: Fail, path = ''): number {
  const value = object[field];
  return Number.isSafeInteger(value) && (value as number) >= minimum
    ? (value as number)
    : fail(`${path}${field} must be an integer of at least ${minimum}, found ${JSON.stringify(value)}`);
}

function boolean(object: Record<string, unknown>, field: string, fail: Fail, path = ''): boolean {
  const value = object[field];
  return typeof value === 'boolean' ? value : fail(`${path}${field} must be true or false, found ${JSON.stringify(value)}`);
}
