/**
 * The blocking index of online matching, kept in the identity graph's store so that every
 * node of a cluster finds the profiles every other node indexed, and a restarted node finds
 * the profiles indexed before. Two kinds of records, under keys valid in NATS KV:
 *
 * - `m.<workspace>.<hash>`: a profile's person fields, as its latest event described them;
 * - `b.<workspace>.<hash>`: the profiles filed under one blocking key.
 *
 * A profile joins a block by compare-and-set, so of two profiles joining the same block at
 * the same time on different nodes, the second to write finds the first among its candidates.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../common/logger.js';
import { decode, encode } from '../storage/codec.js';
import { KvConflictError, type KvStore } from '../storage/kv-store.js';
import type { PersonRecord } from './matching/person.js';

const RECORD_VERSION = 1;

/** Attempts to join one block while other writers keep changing it. */
const MAX_ATTEMPTS = 16;

interface PersonEntry {
  version: number;
  profileId: string;
  person: PersonRecord;
}

interface BlockEntry {
  version: number;
  key: string;
  profileIds: string[];
  /** Set once the block reached the size limit: it takes no more members and selects no candidates. */
  oversized?: boolean;
}

/** A profile found in a shared block, with its person fields and the revision they were read at. */
export interface IndexedPerson {
  profileId: string;
  person: PersonRecord;
  revision: number;
}

export interface SharedBlockingIndexOptions {
  kv: KvStore;
  /** The largest block whose members are candidates. */
  maxBlockSize: number;
  logger: Logger;
}

export class SharedBlockingIndex {
  readonly #kv: KvStore;
  readonly #maxBlockSize: number;
  readonly #logger: Logger;
  #oversizedBlockHits = 0;

  constructor(options: SharedBlockingIndexOptions) {
    this.#kv = options.kv;
    this.#maxBlockSize = options.maxBlockSize;
    this.#logger = options.logger;
  }

  /** Times a block was passed over because it had reached the size limit. */
  get oversizedBlockHits(): number {
    return this.#oversizedBlockHits;
  }

  /**
   * Records a profile's person fields and files it under `keys`. Returns the other profiles
   * filed under any of those keys, each once, with their person fields. Profiles whose
   * fields are missing (a writer stopped between its two writes) are left out.
   */
  async add(workspace: string, profileId: string, person: PersonRecord, keys: readonly string[]): Promise<IndexedPerson[]> {
    const entry: PersonEntry = { version: RECORD_VERSION, profileId, person };
    await this.#kv.put(personKey(workspace, profileId), encode(entry));

    const members = await Promise.all(keys.map((key) => this.#join(workspace, key, profileId)));
    const others = [...new Set(members.flat())].filter((other) => other !== profileId);
    const found = await Promise.all(others.map((other) => this.#person(workspace, other)));
    return found.filter((indexed): indexed is IndexedPerson => indexed !== undefined);
  }

  /** Adds `profileId` to a block and returns the block's other members, none when it is oversized. */
  async #join(workspace: string, key: string, profileId: string): Promise<string[]> {
    const storeKey = blockKey(workspace, key);
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const stored = await this.#kv.get(storeKey);
      const block = stored === null ? undefined : decode<BlockEntry>(Buffer.from(stored.value));
      if (block?.oversized === true) {
        this.#oversizedBlockHits += 1;
        return [];
      }
      if (block?.profileIds.includes(profileId)) return block.profileIds;

      const members = [...(block?.profileIds ?? []), profileId];
      const next: BlockEntry = { version: RECORD_VERSION, key, profileIds: members.length > this.#maxBlockSize ? [] : members, ...(members.length > this.#maxBlockSize ? { oversized: true } : {}) };
      try {
        if (stored === null) await this.#kv.create(storeKey, encode(next));
        else await this.#kv.update(storeKey, encode(next), stored.revision);
        return next.oversized === true ? [] : (block?.profileIds ?? []);
      } catch (error) {
        if (!(error instanceof KvConflictError)) throw error;
      }
    }
    this.#logger.warn({ workspace, profileId, blockingKey: key }, 'a shared blocking key kept changing; the profile was not filed under it');
    return [];
  }

  async #person(workspace: string, profileId: string): Promise<IndexedPerson | undefined> {
    const stored = await this.#kv.get(personKey(workspace, profileId));
    if (stored === null) return undefined;
    const entry = decode<PersonEntry>(Buffer.from(stored.value));
    return { profileId: entry.profileId, person: entry.person, revision: stored.revision };
  }
}

function personKey(workspace: string, profileId: string): string {
  return `m.${workspace}.${digest(profileId)}`;
}

function blockKey(workspace: string, key: string): string {
  return `b.${workspace}.${digest(key)}`;
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url');
}
