/**
 * An incremental blocking index for the online path: profiles are added one at a time, and
 * each addition returns the profiles that share a blocking key with it.
 */
import { blockingKey, type BlockingRule } from './blocking-rules.js';
import type { PreparedPerson } from './person.js';

export interface BlockingIndexOptions {
  rules: readonly BlockingRule[];
  /** Identifier names in the order of PreparedPerson.identifiers. */
  identifierNames: readonly string[];
  /**
   * Maximum number of records in a block whose members are returned as candidates. A key
   * shared by more records, such as a placeholder date of birth, selects nothing.
   */
  maxBlockSize: number;
}

export class BlockingIndex {
  readonly #rules: readonly BlockingRule[];
  readonly #identifierNames: readonly string[];
  readonly #maxBlockSize: number;
  /** One map per rule, from key to the ids that have it. */
  readonly #blocks: Map<string, Set<string>>[];
  /** The keys of each id, one per rule ('' for none), so that `remove` finds its blocks. */
  readonly #keysById = new Map<string, string[]>();
  #oversizedBlockHits = 0;

  constructor(options: BlockingIndexOptions) {
    if (!Number.isSafeInteger(options.maxBlockSize) || options.maxBlockSize < 2) {
      throw new RangeError(`maxBlockSize must be an integer of at least 2, received ${options.maxBlockSize}`);
    }
    this.#rules = options.rules;
    this.#identifierNames = options.identifierNames;
    this.#maxBlockSize = options.maxBlockSize;
    this.#blocks = options.rules.map(() => new Map());
  }

  /** The largest block whose members are candidates. */
  get maxBlockSize(): number {
    return this.#maxBlockSize;
  }

  /** Returns a person's key under each rule, '' where a rule does not apply. */
  keysOf(person: PreparedPerson): string[] {
    return this.#rules.map((rule) => blockingKey(rule, person, this.#identifierNames));
  }

  get size(): number {
    return this.#keysById.size;
  }

  /** Number of times a block was passed over because it was larger than maxBlockSize. */
  get oversizedBlockHits(): number {
    return this.#oversizedBlockHits;
  }

  /**
   * Adds or replaces a record and returns the ids of the other records that share a key
   * with it, each once, in the order of the rules that found them.
   */
  add(id: string, person: PreparedPerson): string[] {
    this.remove(id);

    const keys = this.keysOf(person);
    const candidates = new Set<string>();
    keys.forEach((key, ruleIndex) => {
      if (key === '') return;
      const blocks = this.#blocks[ruleIndex];
      let block = blocks.get(key);
      if (block === undefined) {
        block = new Set();
        blocks.set(key, block);
      }

      if (block.size >= this.#maxBlockSize) this.#oversizedBlockHits++;
      else for (const other of block) candidates.add(other);
      block.add(id);
    });

    this.#keysById.set(id, keys);
    return [...candidates];
  }

  /** Removes a record. Returns false when the id is not in the index. */
  remove(id: string): boolean {
    const keys = this.#keysById.get(id);
    if (keys === undefined) return false;

    keys.forEach((key, ruleIndex) => {
      if (key === '') return;
      const block = this.#blocks[ruleIndex].get(key);
      block?.delete(id);
      if (block?.size === 0) this.#blocks[ruleIndex].delete(key);
    });
    this.#keysById.delete(id);
    return true;
  }

  has(id: string): boolean {
    return this.#keysById.has(id);
  }
}
