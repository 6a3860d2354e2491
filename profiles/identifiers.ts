import type { CustomerEvent } from './event.js';

/** Identifier types a profile can be found by. External ids are `external:TYPE`. */
export const IDENTIFIER_TYPES = ['user_id', 'anonymous_id', 'email', 'phone', 'device_id'] as const;

export interface Identifier {
  type: string;
  value: string;
}

/**
 * Returns the id of the profile an event belongs to: its userId when it has one, else its
 * anonymousId. The prefix keeps a userId and an anonymousId with the same text apart.
 */
export function profileIdOf(event: Pick<CustomerEvent, 'userId' | 'anonymousId'>): string {
  if (event.userId !== undefined) return `user:${event.userId}`;
  return `anon:${event.anonymousId}`;
}

/** Returns the profile id a user_id or anonymous_id maps to without the identifier index. */
export function profileIdForIdentifier(identifier: Identifier): string | undefined {
  if (identifier.type === 'user_id') return `user:${identifier.value}`;
  if (identifier.type === 'anonymous_id') return `anon:${identifier.value}`;
  return undefined;
}

/** Lists every identifier an event carries, in a fixed order, without duplicates. */
export function identifiersOf(event: CustomerEvent): Identifier[] {
  const found: Identifier[] = [];
  forEachIdentifier(event, (type, value) => {
    if (!found.some((known) => known.type === type && known.value === value)) found.push({ type, value });
  });
  return found;
}

/** Calls `visit` for each identifier an event carries, in a fixed order, without allocating. */
export function forEachIdentifier(event: CustomerEvent, visit: (type: string, value: string) => void): void {
  const visitString = (type: string, value: unknown) => {
    if (typeof value === 'string' && value !== '') visit(type, value);
  };

  visitString('user_id', event.userId);
  visitString('anonymous_id', event.anonymousId);
  visitString('email', event.traits?.email);
  visitString('email', event.context?.traits?.email);
  visitString('phone', event.traits?.phone);
  visitString('phone', event.context?.traits?.phone);
  visitString('device_id', event.context?.device?.id);
  const externalIds = event.context?.externalIds;
  if (externalIds !== undefined) for (const external of externalIds) visitString(`external:${external.type}`, external.id);
}

/** Returns whether two identifiers have the same type and value. */
export function sameIdentifier(a: Identifier, b: Identifier): boolean {
  return a.type === b.type && a.value === b.value;
}
