import { Packr } from 'msgpackr';

/**
 * msgpack for everything rtcdp stores. Records are plain objects; every persisted record
 * type carries its own `version` field so a reader can migrate old records.
 */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encode(value: unknown): Buffer {
  return packr.pack(value);
}

export function decode<T>(buffer: Buffer): T {
  return packr.unpack(buffer) as T;
}
