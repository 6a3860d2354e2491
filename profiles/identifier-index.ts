import { decode, encode } from '../storage/codec.js';
import { keys } from '../storage/keys.js';
import type { Store } from '../storage/store.js';
import type { Identifier } from './identifiers.js';

/**
 * Maps each identifier of a workspace to the first profile that persisted it. Profiles
 * claim identifiers in memory while they apply events, and the claim is written with
 * their next snapshot, only where no profile holds the identifier yet.
 *
 * NOTE: when two profiles carry the same identifier, the first to persist keeps it and
 * the other profile is not linked to it; merging such profiles is identity resolution's work.
 */
export class IdentifierIndex {
  readonly #store: Store;
  /** Claims not yet persisted: workspace, type and value to profile id. */
  readonly #claims = new Map<string, string>();

  constructor(store: Store) {
    this.#store = store;
  }

  /** Records a profile's claim on an identifier until its snapshot is persisted. */
  claim(workspace: string, identifier: Identifier, profileId: string): void {
    const name = claimName(workspace, identifier);
    if (!this.#claims.has(name)) this.#claims.set(name, profileId);
  }

  /** The profile that holds the identifier: the persisted owner, else an unpersisted claim. */
  async lookup(workspace: string, identifier: Identifier): Promise<string | undefined> {
    // The claim is read before the store too, because a snapshot write can land after the
    // store read began and `settle` then removes the claim before the read returns.
    const name = claimName(workspace, identifier);
    const claimedBefore = this.#claims.get(name);
    const stored = await this.#store.get(keys.identifier(workspace, identifier.type, identifier.value));
    if (stored !== null) return decode<{ profileId: string }>(stored).profileId;
    return this.#claims.get(name) ?? claimedBefore;
  }

  /**
   * Returns the write operations that persist the given claims where the identifier has no
   * owner yet. Call `settle` once they are written.
   */
  async prepare(claims: Array<{ workspace: string; identifier: Identifier; profileId: string }>) {
    const claimKeys = claims.map((claim) => keys.identifier(claim.workspace, claim.identifier.type, claim.identifier.value));
    const owners = await this.#store.getMany(claimKeys);
    const written = new Set<string>();

    return claims.flatMap((claim, index) => {
      if (owners[index] !== null || written.has(claimKeys[index])) return [];
      written.add(claimKeys[index]);
      return [{ type: 'put' as const, key: claimKeys[index], value: encode({ version: 1, profileId: claim.profileId }) }];
    });
  }

  /** Forgets in-memory claims that are now persisted (by this profile or an earlier one). */
  settle(claims: Array<{ workspace: string; identifier: Identifier; profileId: string }>): void {
    for (const claim of claims) {
      const name = claimName(claim.workspace, claim.identifier);
      if (this.#claims.get(name) === claim.profileId) this.#claims.delete(name);
    }
  }
}

function claimName(workspace: string, identifier: Identifier): string {
  return `${workspace}\u0000${identifier.type}\u0000${identifier.value}`;
}
