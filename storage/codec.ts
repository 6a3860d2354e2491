import { Packr } from 'msgpackr';

/**
 * msgpack for everything rtcdp stores. Records are plain objects; every persisted record
 * type carries its own `version` field so a reader can migrate old records.
 */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** msgpack's nil. */
const NIL = 0xc0;

export function encode(value: unknown): Buffer {
  return packr.pack(value);
}

export function decode<T>(buffer: Buffer): T {
  return packr.unpack(buffer) as T;
}

/**
 * Encodes `record` with one more field, `field`, whose value is given already encoded as
 * msgpack in `encodedValue`: the bytes are copied in, not decoded and encoded again. Decoding the result
 * gives `record` with the decoded value in `field`, as if it had been encoded whole.
 */
export function encodeWithEncodedField<F extends string>(record: Record<string, unknown> & { [K in F]?: never }, field: F, encodedValue: Uint8Array): Buffer {
  // msgpack is self-delimiting and a map keeps its fields in the order written, so the
  // record with the field set to nil ends with that nil's one byte, which the value replaces.
  const head = packr.pack({ ...record, [field]: null });
  if (head[head.length - 1] !== NIL) throw new Error(`encoding the field ${field} last did not end with msgpack nil`);
  return Buffer.concat([head.subarray(0, head.length - 1), encodedValue]);
}
