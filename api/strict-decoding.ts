/**
 * Request decoding that rejects what the generated code would silently repair: invalid
 * UTF-8 in string fields (the default decoder replaces it with U+FFFD). A request that
 * fails to decode is passed to the handler as a MalformedRequest instead of throwing,
 * because grpc-js fails a call whose deserializer throws with INTERNAL and no reason.
 */
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { RtcdpError } from '../common/errors.js';
import './struct-decoding.js';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The request bytes are not a valid message of the call's type. */
export class MalformedRequestError extends RtcdpError {
  readonly code = 'MALFORMED_REQUEST';
}

const MALFORMED = Symbol('malformed');

export interface MalformedRequest {
  [MALFORMED]: MalformedRequestError;
}

interface Decoder<T> {
  decode(input: BinaryReader | Uint8Array, length?: number): T;
}

export function strictDeserializer<T>(type: Decoder<T>, typeName: string): (bytes: Buffer) => T | MalformedRequest {
  return (bytes) => {
    try {
      return type.decode(new BinaryReader(bytes, (data: Uint8Array) => strictUtf8.decode(data)));
    } catch (error) {
      const reason = isUtf8Error(error) ? describeInvalidUtf8(type, bytes) : (error as Error).message;
      return { [MALFORMED]: new MalformedRequestError(`request is not a valid ${typeName}: ${reason}`, { cause: error }) };
    }
  };
}

function isUtf8Error(error: unknown): boolean {
  return error instanceof TypeError && /encoded data|decode/i.test(error.message);
}

/**
 * Names the field with invalid UTF-8. The strict decoder cannot tell which field it was
 * reading, so the request is decoded again leniently and the first string that contains a
 * U+FFFD replacement character is reported. A field that held U+FFFD as real text before
 * the broken one would be named instead. The request's own fields go by their proto names
 * (`page_token`), and the fields of an event by their Segment names (`events[0].userId`).
 */
function describeInvalidUtf8<T>(type: Decoder<T>, bytes: Buffer): string {
  try {
    const path = findReplacementCharacter(type.decode(new BinaryReader(bytes)), '');
    if (path !== undefined) return `${path} is not valid UTF-8`;
  } catch {
    // The lenient decode fails too; the generic reason below is all there is.
  }
  return 'a string field is not valid UTF-8';
}

function findReplacementCharacter(value: unknown, path: string): string | undefined {
  if (typeof value === 'string') return value.includes('\uFFFD') ? path : undefined;
  if (value === null || typeof value !== 'object') return undefined;

  for (const [key, child] of Object.entries(value)) {
    const childPath = joinPath(path, path === '' ? protoName(key) : key, Array.isArray(value));
    if (key.includes('\uFFFD')) return childPath;

    const found = findReplacementCharacter(child, childPath);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * Returns the proto name of a request's own field, which ts-proto names in camelCase
 * (pageToken is page_token). Deeper names stay: an event's fields are Segment's camelCase
 * names, and a Struct's keys are the caller's.
 */
function protoName(key: string): string {
  return key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

function joinPath(path: string, key: string, isIndex: boolean): string {
  if (isIndex) return `${path}[${key}]`;
  if (path === '') return key;
  return `${path}.${key}`;
}

/** Throws the decoding error if `request` could not be decoded. */
export function assertWellFormed<T>(request: T | MalformedRequest): T {
  if (request !== null && typeof request === 'object' && MALFORMED in request) throw (request as MalformedRequest)[MALFORMED];
  return request as T;
}
