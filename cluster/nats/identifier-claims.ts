/**
 * The cluster-wide identifier index: for each identifier of a workspace, the profile whose
 * event carried it at the earliest event time (the smaller profile id on a tie), in a
 * replicated KV bucket. Shard owners publish their profiles' claims before they persist
 * them locally. A write replaces only a claim it wins over, by compare-and-set, so owners
 * on different nodes converge on the same winner in any order.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { createHash } from 'node:crypto';
import { precedes, type Owner } from '../../profiles/identifier-index.js';
import type { Identifier } from '../../profiles/identifiers.js';
import { decode, encode } from '../../storage/codec.js';
import { KvConflictError, type KvStore } from '../../storage/kv-store.js';
import { NatsKvStore } from '../kv/nats-kv-store.js';

export const IDENTIFIER_BUCKET = 'rtcdp-identifiers';
const CLAIM_VERSION = 1;

export interface PublishedClaim {
  workspace: string;
  identifier: Identifier;
  owner: Owner;
}

interface StoredClaim extends Owner {
  version: number;
}

export class IdentifierClaims {
  readonly #kv: KvStore;

  /** `kv` must return the latest write on every read. */
  constructor(kv: KvStore) {
    this.#kv = kv;
  }

  static async open(connection: NatsConnection, options: { replicas: number }): Promise<IdentifierClaims> {
    return new IdentifierClaims(await NatsKvStore.open(connection, { bucket: IDENTIFIER_BUCKET, replicas: options.replicas, allowDirect: false }));
  }

  /** Returns the identifier's winning published claim, if any. */
  async read(workspace: string, identifier: Identifier): Promise<Owner | undefined> {
    const entry = await this.#kv.get(claimKey(workspace, identifier));
    if (entry === null) return undefined;
    const stored = decode<StoredClaim>(Buffer.from(entry.value));
    return { profileId: stored.profileId, atMs: stored.atMs };
  }

  /** Publishes each claim where it wins over the stored one. */
  async publish(claims: PublishedClaim[]): Promise<void> {
    await Promise.all(claims.map((claim) => this.#publish(claim)));
  }

  async #publish(claim: PublishedClaim): Promise<void> {
    const key = claimKey(claim.workspace, claim.identifier);
    const value = encode({ version: CLAIM_VERSION, ...claim.owner } satisfies StoredClaim);

    for (;;) {
      const entry = await this.#kv.get(key);
      const stored = entry === null ? undefined : decode<StoredClaim>(Buffer.from(entry.value));
      if (stored !== undefined && !precedes(claim.owner, stored)) return;

      try {
        if (entry === null) await this.#kv.create(key, value);
        else await this.#kv.update(key, value, entry.revision);
        return;
      } catch (error) {
        if (!(error instanceof KvConflictError)) throw error;
      }
    }
  }
}

/** Longest encoded value kept in a key as it is; longer ones are hashed, because NATS limits subject length. */
const MAX_KEY_PART_LENGTH = 128;

/** Identifier types and values may contain any character, so the key carries them in base64url. */
function claimKey(workspace: string, identifier: Identifier): string {
  return `${workspace}.${keyPart(identifier.type)}.${keyPart(identifier.value)}`;
}

function keyPart(text: string): string {
  const encoded = Buffer.from(text).toString('base64url');
  if (encoded === '') return '=';
  if (encoded.length <= MAX_KEY_PART_LENGTH) return encoded;
  return `=sha256=${createHash('sha256').update(text).digest('base64url')}`;
}
