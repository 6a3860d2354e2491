/** Checks of request arguments and of the data directory, shared by the node's operations. */
import type { RawEvent } from '../profiles/event.js';
import type { Identifier } from '../profiles/identifiers.js';
import { DEFAULT_TEST_PROFILES, MAX_TEST_PROFILES } from '../decisions/evaluation/definition-test.js';
import { keys } from '../storage/keys.js';
import type { Store } from '../storage/store.js';
import { DataDirectoryMismatchError, InvalidArgumentError, ProfileNotFoundError } from './errors.js';

export const WORKSPACE_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** Throws InvalidArgumentError unless `workspace` is 1-64 of a-z, 0-9, "_" and "-", starting with a letter or digit. */
export function assertWorkspaceName(workspace: string): void {
  if (!WORKSPACE_PATTERN.test(workspace)) {
    throw new InvalidArgumentError(`workspace must be 1-64 characters of a-z, 0-9, "_" or "-", received ${JSON.stringify(workspace)}`);
  }
}

export async function checkShardCount(store: Store, shards: number): Promise<void> {
  const stored = await store.get(keys.meta('shards'));
  if (stored === null) {
    await store.write([{ type: 'put', key: keys.meta('shards'), value: String(shards) }], { sync: true });
    return;
  }
  if (Number(stored.toString()) !== shards) {
    throw new DataDirectoryMismatchError(
      `data directory ${store.path} was created with ${stored} shards, but shards is ${shards}, and the shard count cannot change. ` +
        `Use shards ${stored} (--shards ${stored} on the command line) with this directory, or a new data directory for ${shards} shards`,
    );
  }
}

/** Checks an identifier argument; `field` names it in the error (default `identifier`). */
export function assertIdentifier(identifier: Identifier, field = 'identifier'): void {
  const known = ['user_id', 'anonymous_id', 'email', 'phone', 'device_id'];
  if (!known.includes(identifier.type) && !/^external:.+/.test(identifier.type)) {
    throw new InvalidArgumentError(`${field}.type must be one of ${known.join(', ')} or external:TYPE, received ${JSON.stringify(identifier.type)}`);
  }
  if (typeof identifier.value !== 'string' || identifier.value === '') {
    throw new InvalidArgumentError(`${field}.value must be a non-empty string`);
  }
}

/** Returns the page size of a ListProfileEvents call: 100 when unset, else an integer from 1 to 1000. */
export function parsePageSize(pageSize: number | undefined): number {
  const size = pageSize || 100;
  if (!Number.isInteger(size) || size < 1 || size > 1_000) {
    throw new InvalidArgumentError(`page_size must be an integer from 1 to 1000, received ${size}`);
  }
  return size;
}

/** The profiles a definition test replays: the first `count` of the workspace, or those of the identifiers. */
export type TestSample = { count: number } | { identifiers: Identifier[] };

/**
 * Checks the sample of a definition test: `profiles` from 1 to MAX_TEST_PROFILES
 * (DEFAULT_TEST_PROFILES when unset), or up to MAX_TEST_PROFILES identifiers, not both.
 */
export function parseTestSample(profiles: number | undefined, identifiers: readonly Identifier[] = []): TestSample {
  if (profiles !== undefined && identifiers.length > 0) {
    throw new InvalidArgumentError('profiles and identifiers are exclusive: set profiles to test the first profiles of the workspace, or identifiers to test those profiles');
  }
  if (identifiers.length > 0) {
    if (identifiers.length > MAX_TEST_PROFILES) throw new InvalidArgumentError(`identifiers must name at most ${MAX_TEST_PROFILES} profiles, received ${identifiers.length}`);
    identifiers.forEach((identifier, index) => assertIdentifier(identifier, `identifiers[${index}]`));
    return { identifiers: [...identifiers] };
  }

  const count = profiles ?? DEFAULT_TEST_PROFILES;
  if (!Number.isInteger(count) || count < 1 || count > MAX_TEST_PROFILES) {
    throw new InvalidArgumentError(`profiles must be an integer from 1 to ${MAX_TEST_PROFILES}, received ${count}`);
  }
  return { count };
}

export function notFound(identifier: Identifier): ProfileNotFoundError {
  return new ProfileNotFoundError(`no profile found for ${identifier.type} ${JSON.stringify(identifier.value)} in this workspace`);
}

/** Returns the not-found error for an identifier whose type the workspace's identity settings do not list, so no profile is linked by it. */
export function notFoundUnconfigured(identifier: Identifier): ProfileNotFoundError {
  return new ProfileNotFoundError(
    `no profile found for ${identifier.type} ${JSON.stringify(identifier.value)} in this workspace: identifier type ${identifier.type} is not in the workspace's identity settings, so it links no profile. Add it to the identifiers of the settings (rtcdp dev --identity FILE)`,
  );
}

export function messageIdOf(raw: RawEvent): string {
  const id = raw !== null && typeof raw === 'object' ? raw.messageId : undefined;
  return typeof id === 'string' ? id : '';
}
