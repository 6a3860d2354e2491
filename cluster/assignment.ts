/**
 * Shard placement as pure functions: which node should own each shard, and which shards
 * to move toward that now. Every node computes the same result from the same input.
 */
import { createHash } from 'node:crypto';
import { compareNodeIds } from './coordination-options.js';

/** Holder of each shard lease by shard number. Null or a missing entry means the shard is free. */
export type ShardHolders = ReadonlyMap<number, string | null>;

/** Owner of each shard by shard number. */
export type ShardAssignment = ReadonlyMap<number, string>;

export interface ShardMove {
  shard: number;
  /** Holder of the shard lease when the move was planned, or null for a free shard. */
  from: string | null;
  to: string;
}

/**
 * Returns the weight of `memberId` for `shard`: the first 8 bytes of
 * sha1(`<shard>:<memberId>`) as an unsigned big-endian integer. It must stay the same
 * in every release, because nodes of different releases must agree on the placement.
 */
export function rendezvousWeight(shard: number, memberId: string): bigint {
  return createHash('sha1').update(`${shard}:${memberId}`).digest().readBigUInt64BE(0);
}

/**
 * Assigns each shard from 0 to shardCount - 1 so that every member gets
 * floor(shardCount / members) shards or one more, moving as few shards from their
 * `holders` as that allows:
 * 1. The `shardCount % members` members that hold the most shards (the smaller id on a
 *    tie) may take one shard more than the others.
 * 2. Each member keeps the shards it holds, those with its highest rendezvousWeight first,
 *    up to what it may take.
 * 3. Every other shard (free, held by a non-member, or over its holder's share) goes, in
 *    shard order, to the member with the highest rendezvousWeight that has room left.
 *
 * Without holders this is rendezvous hashing with bounded loads. Plain rendezvous hashing
 * places each shard independently, so loads vary binomially: 12 shards over 3 members
 * gave one member 7. From a balanced placement, adding a member moves only the shards it
 * takes, and removing one moves only the shards it held.
 *
 * Throws RangeError when shardCount is not a positive integer, or when memberIds is empty
 * or contains an id twice.
 */
export function balancedAssignment(shardCount: number, memberIds: readonly string[], holders: ShardHolders = new Map()): Map<number, string> {
  if (!Number.isInteger(shardCount) || shardCount < 1) throw new RangeError(`shardCount must be a positive integer, received ${shardCount}`);
  if (memberIds.length === 0) throw new RangeError('memberIds must contain at least one member');
  if (new Set(memberIds).size !== memberIds.length) throw new RangeError(`memberIds must not repeat an id, received ${memberIds.join(', ')}`);

  const heldByMember = heldShards(shardCount, memberIds, holders);
  const shares = sharesOf(shardCount, memberIds, heldByMember);
  const loads = new Map(memberIds.map((memberId) => [memberId, 0]));
  const assignment = new Map<number, string>();

  for (const [memberId, shards] of heldByMember) {
    const weights = new Map(shards.map((shard) => [shard, rendezvousWeight(shard, memberId)]));
    const keptShards = shards.sort((a, b) => compareWeights(weights.get(b)!, weights.get(a)!)).slice(0, shares.get(memberId));
    for (const shard of keptShards) assignment.set(shard, memberId);
    loads.set(memberId, keptShards.length);
  }

  for (let shard = 0; shard < shardCount; shard++) {
    if (assignment.has(shard)) continue;
    const owner = heaviest(shard, memberIds.filter((memberId) => loads.get(memberId)! < shares.get(memberId)!));
    assignment.set(shard, owner);
    loads.set(owner, loads.get(owner)! + 1);
  }
  return new Map([...assignment].sort(([a], [b]) => a - b));
}

/** Returns the shards below shardCount that each member holds. */
function heldShards(shardCount: number, memberIds: readonly string[], holders: ShardHolders): Map<string, number[]> {
  const heldByMember = new Map(memberIds.map((memberId): [string, number[]] => [memberId, []]));
  for (const [shard, holder] of holders) {
    if (holder !== null && Number.isInteger(shard) && shard >= 0 && shard < shardCount) heldByMember.get(holder)?.push(shard);
  }
  return heldByMember;
}

/** Returns the number of shards each member may take: an even share, and one more for the members holding the most. */
function sharesOf(shardCount: number, memberIds: readonly string[], heldByMember: ReadonlyMap<string, number[]>): Map<string, number> {
  const even = Math.floor(shardCount / memberIds.length);
  const extra = shardCount % memberIds.length;
  const byHeld = [...memberIds].sort((a, b) => heldByMember.get(b)!.length - heldByMember.get(a)!.length || compareNodeIds(a, b));
  return new Map(byHeld.map((memberId, index) => [memberId, index < extra ? even + 1 : even]));
}

/** Returns the candidate with the highest rendezvousWeight for `shard`, the smaller id on a tie. */
function heaviest(shard: number, candidates: readonly string[]): string {
  let owner = candidates[0];
  let ownerWeight = rendezvousWeight(shard, owner);
  for (const memberId of candidates.slice(1)) {
    const weight = rendezvousWeight(shard, memberId);
    if (weight > ownerWeight || (weight === ownerWeight && compareNodeIds(memberId, owner) < 0)) {
      owner = memberId;
      ownerWeight = weight;
    }
  }
  return owner;
}

function compareWeights(a: bigint, b: bigint): number {
  if (a === b) return 0;
  return a < b ? -1 : 1;
}

/**
 * Returns `holders` as they will be once the moves in progress finish: each shard moving
 * to a member counts as held by it. A target computed from these keeps those moves, where
 * a target computed from the holders alone could send a shard the old holder already
 * released somewhere else, or back to a holder that is draining it.
 */
export function holdersAfterMoves(holders: ShardHolders, inProgress: ReadonlyMap<number, string>, memberIds: readonly string[]): Map<number, string | null> {
  const after = new Map(holders);
  for (const [shard, destination] of inProgress) {
    if (memberIds.includes(destination)) after.set(shard, destination);
  }
  return after;
}

/**
 * Returns the moves that a published assignment has started and that have not finished:
 * each shard whose assigned owner does not hold its lease yet, mapped to that owner.
 */
export function movesInProgress(published: ShardAssignment, holders: ShardHolders): Map<number, string> {
  const inProgress = new Map<number, string>();
  for (const [shard, owner] of published) {
    if ((holders.get(shard) ?? null) !== owner) inProgress.set(shard, owner);
  }
  return inProgress;
}

/**
 * Chooses the shards to move now toward `target`, sorted by shard.
 *
 * A move takes one of the maxConcurrentMoves slots while a live node still holds the
 * shard, which is the time that node needs to drain it. So:
 * - a free shard is moved at once and takes no slot, because nothing has to be drained;
 * - so is a shard whose holder is not in `liveMembers` (it crashed or left), because it
 *   cannot drain, and the new owner waits for its lease to expire in any case;
 * - a move in `inProgress` (shard → destination) whose destination is no longer the
 *   target is redirected at once, in the slot it already has;
 * - any other shard whose holder is not its target is moved while a slot is free, lower
 *   shard numbers first.
 *
 * Between the release by the old holder and the acquisition by the new one a shard is
 * free and takes no slot, so another move can start in that gap. `liveMembers` defaults
 * to the owners in `target`.
 */
export function planMoves(
  holders: ShardHolders,
  target: ShardAssignment,
  maxConcurrentMoves: number,
  inProgress: ReadonlyMap<number, string>,
  liveMembers: ReadonlySet<string> = new Set(target.values()),
): ShardMove[] {
  if (!Number.isInteger(maxConcurrentMoves) || maxConcurrentMoves < 1) {
    throw new RangeError(`maxConcurrentMoves must be a positive integer, received ${maxConcurrentMoves}`);
  }
  const drainsFrom = (holder: string | null): holder is string => holder !== null && liveMembers.has(holder);

  let slotsTaken = 0;
  for (const [shard, destination] of inProgress) {
    const holder = holders.get(shard) ?? null;
    if (target.has(shard) && drainsFrom(holder) && holder !== destination && holder !== target.get(shard)) slotsTaken += 1;
  }

  const moves: ShardMove[] = [];
  const waiting: ShardMove[] = [];
  for (const shard of [...target.keys()].sort((a, b) => a - b)) {
    const owner = target.get(shard)!;
    const holder = holders.get(shard) ?? null;
    const destination = inProgress.get(shard);
    const moving = destination !== undefined && destination !== holder;

    if (holder === owner || (moving && destination === owner)) continue;
    if (!drainsFrom(holder) || moving) {
      moves.push({ shard, from: holder, to: owner });
    } else {
      waiting.push({ shard, from: holder, to: owner });
    }
  }

  moves.push(...waiting.slice(0, Math.max(0, maxConcurrentMoves - slotsTaken)));
  return moves.sort((a, b) => a.shard - b.shard);
}

/**
 * Returns the assignment to publish after `moves`: the destination of each move, the
 * target of each shard whose holder already is its target, and for every other shard
 * its entry in `published`, else its current holder.
 */
export function applyMoves(published: ShardAssignment, holders: ShardHolders, target: ShardAssignment, moves: readonly ShardMove[]): Map<number, string> {
  const next = new Map<number, string>();
  for (const [shard, owner] of target) {
    const holder = holders.get(shard) ?? null;
    const kept = holder === owner ? owner : (published.get(shard) ?? holder);
    if (kept !== null) next.set(shard, kept);
  }
  for (const move of moves) next.set(move.shard, move.to);
  return next;
}
