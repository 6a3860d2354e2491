/** JSON values in KV entries, as UTF-8 bytes. */
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function encodeJsonValue(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** Parses a KV value as JSON. Returns undefined when it is not valid UTF-8 JSON. */
export function decodeJsonValue(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch {
    return undefined;
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
