/**
 * Makes decoded google.protobuf.Struct values keep every key as data. The generated code
 * assigns `fields[key] = value`, so a key named "__proto__" replaces the object's prototype
 * instead of becoming a field, and validation never sees it. With this decoder such a key
 * stays an own property, and validation rejects it as FORBIDDEN_KEY like any other input.
 * Installed once, on import, for every message that embeds a Struct.
 */
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { Struct, Struct_FieldsEntry } from '../proto/gen/google/protobuf/struct.js';

/** The generated decoders stop at this depth of nested messages; kept the same here. */
const MAX_DECODE_DEPTH = 100;

type DepthTrackingReader = BinaryReader & { __tsProtoDecodeDepth?: number };

function decodeStruct(input: BinaryReader | Uint8Array, length?: number): Struct {
  const reader = (input instanceof BinaryReader ? input : new BinaryReader(input)) as DepthTrackingReader;
  const depth = reader.__tsProtoDecodeDepth ?? 0;
  if (depth >= MAX_DECODE_DEPTH) throw new Error('protobuf decode recursion limit exceeded');
  reader.__tsProtoDecodeDepth = depth + 1;

  try {
    const end = length === undefined ? reader.len : reader.pos + length;
    const fields: Record<string, unknown> = {};
    while (reader.pos < end) {
      const tag = reader.uint32();
      if (tag === 10) {
        const entry = Struct_FieldsEntry.decode(reader, reader.uint32());
        if (entry.value !== undefined) setField(fields, entry.key, entry.value);
        continue;
      }
      if ((tag & 7) === 4 || tag === 0) break;
      reader.skip(tag & 7);
    }
    return { fields };
  } finally {
    reader.__tsProtoDecodeDepth = depth;
  }
}

/**
 * Sets a field as an own data property. Only "__proto__" needs defineProperty, which costs
 * about ten times an assignment per field.
 */
function setField(fields: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(fields, key, { value, enumerable: true, writable: true, configurable: true });
  else fields[key] = value;
}

Struct.decode = decodeStruct;
// The decoded fields object is fresh for each message, so it can be returned as it is
// instead of being copied key by key, which would drop a "__proto__" key again.
Struct.unwrap = (message: Struct) => message.fields;
