import { decode, encode } from '../storage/codec.js';
import { keys } from '../storage/keys.js';
import type { Store } from '../storage/store.js';
import type { Identifier } from './identifiers.js';

/** A profile's hold on an identifier: the profile and the event time it first carried it at. */
export interface Owner {
  profileId: string;
  atMs: number;
}

interface StoredOwner extends Owner {
  version: number;
}

export interface Claim {
  workspace: string;
  identifier: Identifier;
  profileId: string;
}

/**
 * Maps each identifier of a workspace to one profile: the one whose event carried it at the
 * earliest event time, the smaller profile id on a tie. The rule depends only on the events,
 * not on the order partitions apply them in, so a replay after a restart picks the same
 * owner. Profiles claim identifiers in memory while they apply events, and a claim is
 * written with its profile's next snapshot.
 *
 * NOTE: profiles that share an identifier are not merged; the other profile keeps the
 * identifier in its own list but cannot be found by it. Merging is identity resolution's work.
 */
export class IdentifierIndex {
  readonly #store: Store;
  /** The earliest claim per identifier that is not yet persisted: workspace, type and value to owner. */
  readonly #claims = new Map<string, Owner>();

  constructor(store: Store) {
    this.#store = store;
  }

  /** Records a profile's claim on an identifier it carried at `atMs`, until its snapshot is persisted. */
  claim(workspace: string, identifier: Identifier, profileId: string, atMs: number): void {
    const name = claimName(workspace, identifier);
    const current = this.#claims.get(name);
    if (current === undefined || precedes({ profileId, atMs }, current)) this.#claims.set(name, { profileId, atMs });
  }

  /** Returns the identifier's profile: the earlier of the persisted owner and an unpersisted claim. */
  async lookup(workspace: string, identifier: Identifier): Promise<string | undefined> {
    // The claim is read before the store too, because a snapshot write can land after the
    // store read began and `settle` then removes the claim before the read returns.
    const name = claimName(workspace, identifier);
    const claimedBefore = this.#claims.get(name);
    const stored = await this.#readOwner(workspace, identifier);
    const claimed = this.#claims.get(name) ?? claimedBefore;
    return earlier(stored, claimed)?.profileId;
  }

  /** Returns the earliest claim on the identifier that is not yet persisted, if any. */
  pendingOwner(workspace: string, identifier: Identifier): Owner | undefined {
    return this.#claims.get(claimName(workspace, identifier));
  }

  /**
   * Returns the write operations that persist the given claims, each only where the claim is
   * the identifier's earliest known one. Call `settle` once they are written.
   */
  async prepare(claims: Claim[]) {
    const claimKeys = claims.map((claim) => keys.identifier(claim.workspace, claim.identifier.type, claim.identifier.value));
    const stored = await this.#store.getMany(claimKeys);

    return claims.flatMap((claim, index) => {
      const pending = this.#claims.get(claimName(claim.workspace, claim.identifier));
      if (pending === undefined || pending.profileId !== claim.profileId) return [];

      const owner = stored[index] === null ? undefined : decode<StoredOwner>(stored[index]!);
      if (owner !== undefined && !precedes(pending, owner)) return [];
      const value: StoredOwner = { version: 1, profileId: pending.profileId, atMs: pending.atMs };
      return [{ type: 'put' as const, key: claimKeys[index], value: encode(value) }];
    });
  }

  /** Forgets in-memory claims that are now persisted. */
  settle(claims: Claim[]): void {
    for (const claim of claims) {
      const name = claimName(claim.workspace, claim.identifier);
      if (this.#claims.get(name)?.profileId === claim.profileId) this.#claims.delete(name);
    }
  }

  async #readOwner(workspace: string, identifier: Identifier): Promise<Owner | undefined> {
    const stored = await this.#store.get(keys.identifier(workspace, identifier.type, identifier.value));
    return stored === null ? undefined : decode<StoredOwner>(stored);
  }
}

/** Returns whether claim `a` wins over claim `b`: the earlier event time, then the smaller profile id. */
export function precedes(a: Owner, b: Owner): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.profileId < b.profileId);
}

/** Returns the winning claim of two, either of which may be missing. */
export function earlier(a: Owner | undefined, b: Owner | undefined): Owner | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return precedes(b, a) ? b : a;
}

function claimName(workspace: string, identifier: Identifier): string {
  return `${workspace}\u0000${identifier.type}\u0000${identifier.value}`;
}
