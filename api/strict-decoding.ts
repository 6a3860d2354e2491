/**
 * Request decoding that rejects what the generated code would silently repair: invalid
 * UTF-8 in string fields (the default decoder replaces it with U+FFFD). A request that
 * fails to decode is passed to the handler as a MalformedRequest instead of throwing,
 * because grpc-js answers a throwing deserializer with INTERNAL and no reason.
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
      const reason = error instanceof TypeError && /encoded data|decode/i.test(error.message) ? 'a string field is not valid UTF-8' : (error as Error).message;
      return { [MALFORMED]: new MalformedRequestError(`request is not a valid ${typeName}: ${reason}`, { cause: error }) };
    }
  };
}

/** Throws the decoding error if `request` could not be decoded. */
export function assertWellFormed<T>(request: T | MalformedRequest): T {
  if (request !== null && typeof request === 'object' && MALFORMED in request) throw (request as MalformedRequest)[MALFORMED];
  return request as T;
}
