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
 * Assigns each shard from 0 to shardCount - 1 to the member with the highest
 * rendezvousWeight, the smaller id on a tie (rendezvous hashing). Adding a member moves
 * only shards to the new member, and removing one moves only the shards it owned.
 *
 * Each shard lands on each member with equal probability, independently of the other
 * shards, so the loads are binomially distributed and not equal: with 16 shards over 8
 * members, a member can get none or 5.
 *
 * Throws RangeError when shardCount is not a positive integer, or when memberIds is empty
 * or contains an id twice.
 */
export function rendezvousAssignment(shardCount: number, memberIds: readonly string[]): Map<number, string> {
  if (!Number.isInteger(shardCount) || shardCount < 1) throw new RangeError(`shardCount must be a positive integer, received ${shardCount}`);
  if (memberIds.length === 0) throw new RangeError('memberIds must contain at least one member');
  if (new Set(memberIds).size !== memberIds.length) throw new RangeError(`memberIds must not repeat an id, received ${memberIds.join(', ')}`);

  const assignment = new Map<number, string>();
  for (let shard = 0; shard < shardCount; shard++) {
    let owner = memberIds[0];
    let ownerWeight = rendezvousWeight(shard, owner);
    for (const memberId of memberIds.slice(1)) {
      const weight = rendezvousWeight(shard, memberId);
      if (weight > ownerWeight || (weight === ownerWeight && compareNodeIds(memberId, owner) < 0)) {
        owner = memberId;
        ownerWeight = weight;
      }
    }
    assignment.set(shard, owner);
  }
  return assignment;
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
