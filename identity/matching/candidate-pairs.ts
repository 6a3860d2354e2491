/**
 * Candidate pairs of a batch run: every pair of records that share a blocking key, each
 * pair once. Deduplication compares records of one file with each other, linkage compares
 * each record of the left file with each record of the right file.
 */
import { yieldToEventLoop } from './yield.js';

export interface CandidatePairOptions {
  /** keys[rule][record]: the number of the record's key under the rule, or -1 when it has none. */
  keys: readonly Int32Array[];
  /** Records 0 to leftCount - 1 are the left file. Without it, the run is a deduplication. */
  leftCount?: number;
  /** Blocks with more records than this produce no pairs. */
  maxBlockSize: number;
}

export interface BlockingSummary {
  /** Pairs of all blocks under all rules, a pair found by several rules counted by each. */
  pairsBeforeDeduplication: number;
  /** Blocks passed over because they have more records than maxBlockSize, per rule. */
  oversizedBlocks: number[];
  /** Records of the passed-over blocks, per rule. */
  recordsInOversizedBlocks: number[];
}

/**
 * Groups records into blocks and generates their pairs in chunks. A pair that an earlier
 * rule already produced is skipped by comparing the two records' keys under the earlier
 * rules, so no set of seen pairs is kept.
 */
export class CandidatePairs {
  readonly summary: BlockingSummary;
  readonly #keys: readonly Int32Array[];
  readonly #leftCount: number | undefined;
  readonly #maxBlockSize: number;
  /** blocks[rule][key]: the records that have the key, ascending. */
  readonly #blocks: number[][][];

  private constructor(options: CandidatePairOptions, blocks: number[][][], summary: BlockingSummary) {
    this.#keys = options.keys;
    this.#leftCount = options.leftCount;
    this.#maxBlockSize = options.maxBlockSize;
    this.#blocks = blocks;
    this.summary = summary;
  }

  /** Groups the records into blocks, one rule at a time, yielding to the event loop between rules. */
  static async create(options: CandidatePairOptions): Promise<CandidatePairs> {
    const blocks: number[][][] = [];
    const summary: BlockingSummary = { pairsBeforeDeduplication: 0, oversizedBlocks: [], recordsInOversizedBlocks: [] };
    for (const ruleKeys of options.keys) {
      const ruleBlocks = groupByKey(ruleKeys);
      blocks.push(ruleBlocks);
      await yieldToEventLoop();
      summariseRule(ruleBlocks, options, summary);
      await yieldToEventLoop();
    }
    return new CandidatePairs(options, blocks, summary);
  }

  /**
   * Yields the pairs as flat arrays `[a0, b0, a1, b1, ...]` of at most `chunkPairs` pairs,
   * with `a < b`. A chunk may be shorter than `chunkPairs`, so that skipping many repeated
   * pairs does not hold the event loop. The last chunk may be empty.
   */
  *chunks(chunkPairs: number): Generator<Int32Array> {
    const leftCount = this.#leftCount;
    let chunk = new Int32Array(chunkPairs * 2);
    let filled = 0;
    let examined = 0;
    for (let rule = 0; rule < this.#blocks.length; rule++) {
      for (const members of this.#blocks[rule]) {
        if (members.length > this.#maxBlockSize) continue;

        // Members are ascending, so in a linkage the left file's records come first.
        const firstRight = leftCount === undefined ? 0 : firstAtLeast(members, leftCount);
        const leftEnd = leftCount === undefined ? members.length : firstRight;
        for (let i = 0; i < leftEnd; i++) {
          for (let j = leftCount === undefined ? i + 1 : firstRight; j < members.length; j++) {
            const a = members[i];
            const b = members[j];
            examined++;
            if (this.#foundByEarlierRule(rule, a, b)) {
              if (examined % (chunkPairs * 4) === 0) {
                yield chunk.slice(0, filled * 2);
                filled = 0;
              }
              continue;
            }

            chunk[filled * 2] = a;
            chunk[filled * 2 + 1] = b;
            filled++;
            if (filled === chunkPairs) {
              yield chunk;
              chunk = new Int32Array(chunkPairs * 2);
              filled = 0;
            }
          }
        }
      }
    }
    yield chunk.slice(0, filled * 2);
  }

  #foundByEarlierRule(rule: number, a: number, b: number): boolean {
    for (let earlier = 0; earlier < rule; earlier++) {
      const key = this.#keys[earlier][a];
      if (key === -1 || key !== this.#keys[earlier][b]) continue;
      if (this.#blocks[earlier][key].length <= this.#maxBlockSize) return true;
    }
    return false;
  }
}

/** Adds the pair count and the oversized blocks of one rule's blocks to the summary. */
function summariseRule(blocks: readonly (readonly number[])[], options: CandidatePairOptions, summary: BlockingSummary): void {
  let oversized = 0;
  let oversizedRecords = 0;
  for (const members of blocks) {
    if (members.length > options.maxBlockSize) {
      oversized++;
      oversizedRecords += members.length;
    } else {
      summary.pairsBeforeDeduplication += pairCount(members, options.leftCount);
    }
  }
  summary.oversizedBlocks.push(oversized);
  summary.recordsInOversizedBlocks.push(oversizedRecords);
}

function pairCount(members: readonly number[], leftCount: number | undefined): number {
  if (leftCount === undefined) return (members.length * (members.length - 1)) / 2;
  let left = 0;
  for (const record of members) if (record < leftCount) left++;
  return left * (members.length - left);
}

/** Index of the first member at least `value`, or the length when there is none. */
function firstAtLeast(members: readonly number[], value: number): number {
  const index = members.findIndex((record) => record >= value);
  return index === -1 ? members.length : index;
}

/** Adds a key to a numbering and returns its number. */
export function numberOf(numbers: Map<string, number>, key: string): number {
  let id = numbers.get(key);
  if (id === undefined) {
    id = numbers.size;
    numbers.set(key, id);
  }
  return id;
}

function groupByKey(keys: Int32Array): number[][] {
  const blocks: number[][] = [];
  keys.forEach((key, record) => {
    if (key === -1) return;
    while (blocks.length <= key) blocks.push([]);
    blocks[key].push(record);
  });
  return blocks;
}

/**
 * Numbers the keys of one rule in order of first appearance, so that blocks are arrays and
 * key comparisons are integer comparisons. A record without a key gets -1.
 */
export function numberKeys(keys: readonly string[]): Int32Array {
  const numbers = new Map<string, number>();
  const keyIds = new Int32Array(keys.length);
  keys.forEach((key, record) => {
    keyIds[record] = key === '' ? -1 : numberOf(numbers, key);
  });
  return keyIds;
}

/** Returns a bit mask of the rules under which records a and b have the same key, for at most 31 rules. */
export function agreeingRules(keys: readonly Int32Array[], a: number, b: number): number {
  let mask = 0;
  for (let rule = 0; rule < keys.length && rule < 31; rule++) {
    const key = keys[rule][a];
    if (key !== -1 && key === keys[rule][b]) mask |= 1 << rule;
  }
  return mask;
}
