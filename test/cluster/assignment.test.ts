import t from 'tap';
import {
  applyMoves,
  movesInProgress,
  planMoves,
  balancedAssignment,
  holdersAfterMoves,
  rendezvousWeight,
  type ShardAssignment,
  type ShardMove,
} from '../../cluster/assignment.js';

const SHARD_COUNTS = [16, 64, 256];
const MAX_MEMBERS = 8;
const ID_SETS_PER_SIZE = 25;

/** mulberry32: a small seeded generator, so every run checks the same id sets. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

function randomIds(random: () => number, count: number): string[] {
  const ids = new Set<string>();
  while (ids.size < count) ids.add(`node-${Math.floor(random() * 2 ** 32).toString(36)}`);
  return [...ids];
}

/** Sets of 1 to 8 member ids: the plain node-1 … node-m and random ones. */
function idSets(seed: number): string[][] {
  const random = seededRandom(seed);
  const sets: string[][] = [];
  for (let size = 1; size <= MAX_MEMBERS; size++) {
    sets.push(Array.from({ length: size }, (_, i) => `node-${i + 1}`));
    for (let i = 0; i < ID_SETS_PER_SIZE; i++) sets.push(randomIds(random, size));
  }
  return sets;
}

function loads(assignment: ShardAssignment, ids: string[]): Map<string, number> {
  const counts = new Map(ids.map((id) => [id, 0]));
  for (const owner of assignment.values()) counts.set(owner, (counts.get(owner) ?? 0) + 1);
  return counts;
}

t.test('rendezvousWeight - fixed sha1 prefix', async (t) => {
  // printf '0:node-1' | sha1sum starts with e7f52cae2546ba9d.
  t.equal(rendezvousWeight(0, 'node-1'), 0xe7f52cae2546ba9dn);
});

t.test('balancedAssignment - fixed placement', async (t) => {
  // The coordinator's placement: a change in a release moves shards once a node of that release coordinates.
  const expected = ['node-1', 'node-3', 'node-3', 'node-1', 'node-1', 'node-3', 'node-1', 'node-3', 'node-2', 'node-2', 'node-2', 'node-2'];
  t.same([...balancedAssignment(12, ['node-1', 'node-2', 'node-3']).values()], expected);
  t.same([...balancedAssignment(12, ['node-3', 'node-1', 'node-2']).values()], expected, 'member order does not matter');
});

t.test('balancedAssignment - every shard assigned to a member', async (t) => {
  for (const shardCount of SHARD_COUNTS) {
    for (const ids of idSets(shardCount)) {
      const assignment = balancedAssignment(shardCount, ids);
      const shards = [...assignment.keys()];
      const outsiders = [...assignment.values()].filter((owner) => !ids.includes(owner));
      if (shards.length !== shardCount || shards.some((shard, index) => shard !== index) || outsiders.length > 0) {
        t.fail(`${shardCount} shards over ${ids.join(',')}: shards ${shards.join(',')}, unknown owners ${outsiders.join(',')}`);
      }
    }
  }
  t.pass('checked every shard count and id set');
});

/** Returns holders that give every shard to a random one of `ids`, or leave it free, as after crashes and partial moves. */
function randomHolders(random: () => number, shardCount: number, ids: string[]): Map<number, string | null> {
  const holders = new Map<number, string | null>();
  for (let shard = 0; shard < shardCount; shard++) {
    const pick = Math.floor(random() * (ids.length + 1));
    holders.set(shard, pick === ids.length ? null : ids[pick]);
  }
  return holders;
}

t.test('balancedAssignment - loads differ by at most one', async (t) => {
  const random = seededRandom(3);
  for (const shardCount of SHARD_COUNTS) {
    for (const ids of idSets(shardCount + 1)) {
      for (const holders of [new Map<number, string | null>(), randomHolders(random, shardCount, ids)]) {
        const counts = [...loads(balancedAssignment(shardCount, ids, holders), ids).values()];
        const even = Math.floor(shardCount / ids.length);
        if (counts.some((count) => count < even || count > even + 1)) t.fail(`${shardCount} shards over ${ids.join(',')}: loads ${counts.join(',')}`);
      }
    }
  }
  t.pass('checked every shard count and id set, with and without holders');
});

t.test('balancedAssignment - keeps a balanced placement as it is', async (t) => {
  const random = seededRandom(5);
  for (const shardCount of SHARD_COUNTS) {
    for (const ids of idSets(shardCount + 2)) {
      const placed = balancedAssignment(shardCount, ids, randomHolders(random, shardCount, ids));
      const again = balancedAssignment(shardCount, ids, placed);
      const moved = [...again].filter(([shard, owner]) => placed.get(shard) !== owner);
      if (moved.length > 0) t.fail(`${shardCount} shards over ${ids.join(',')}: shards ${moved.map(([shard]) => shard).join(',')} moved`);
    }
  }
  t.pass('checked every shard count and id set');
});

t.test('balancedAssignment - adding a member moves shards only to it', async (t) => {
  const random = seededRandom(7);
  for (const shardCount of SHARD_COUNTS) {
    for (const ids of idSets(shardCount * 3).filter((set) => set.length < MAX_MEMBERS)) {
      const [added] = randomIds(random, 1).filter((id) => !ids.includes(id));
      if (added === undefined) continue;
      const before = balancedAssignment(shardCount, ids);
      const after = balancedAssignment(shardCount, [...ids, added], before);

      const wrong = [...after].filter(([shard, owner]) => owner !== before.get(shard) && owner !== added);
      if (wrong.length > 0) t.fail(`adding ${added} to ${ids.join(',')} moved shards ${wrong.map(([shard]) => shard).join(',')} elsewhere`);
    }
  }
  t.pass('checked every shard count and id set');
});

t.test('balancedAssignment - removing a member moves only its shards', async (t) => {
  for (const shardCount of SHARD_COUNTS) {
    for (const ids of idSets(shardCount * 5).filter((set) => set.length > 1)) {
      const removed = ids[ids.length >> 1];
      const before = balancedAssignment(shardCount, ids);
      const after = balancedAssignment(shardCount, ids.filter((id) => id !== removed), before);

      for (const [shard, owner] of before) {
        const moved = after.get(shard) !== owner;
        if (moved !== (owner === removed)) {
          t.fail(`removing ${removed} from ${ids.join(',')}: shard ${shard} went from ${owner} to ${after.get(shard)}`);
        }
      }
    }
  }
  t.pass('checked every shard count and id set');
});

t.test('balancedAssignment - a member over its share keeps its preferred shards', async (t) => {
  const holders = new Map<number, string | null>(Array.from({ length: 6 }, (_, shard): [number, string] => [shard, 'node-2']));
  const assignment = balancedAssignment(12, ['node-1', 'node-2', 'node-3'], holders);
  const keptShards = [...assignment].filter(([, owner]) => owner === 'node-2').map(([shard]) => shard);
  const preferred = [0, 1, 2, 3, 4, 5].sort((a, b) => (rendezvousWeight(b, 'node-2') > rendezvousWeight(a, 'node-2') ? 1 : -1)).slice(0, 4);
  t.same(keptShards, preferred.sort((a, b) => a - b), 'node-2 keeps the 4 of its 6 shards it weighs highest');
});

t.test('balancedAssignment - ignores holders that are not members', async (t) => {
  const holders = new Map<number, string | null>([[0, 'gone'], [1, null], [99, 'node-1']]);
  t.same(balancedAssignment(12, ['node-1', 'node-2', 'node-3'], holders), balancedAssignment(12, ['node-1', 'node-2', 'node-3']));
});

t.test('holdersAfterMoves - a moving shard counts as held by its destination', async (t) => {
  const holders = new Map<number, string | null>([[0, 'a'], [1, null], [2, 'gone'], [3, 'b']]);
  const inProgress = new Map([[0, 'b'], [1, 'c'], [2, 'a'], [3, 'gone']]);
  t.same(
    holdersAfterMoves(holders, inProgress, ['a', 'b', 'c']),
    new Map([[0, 'b'], [1, 'c'], [2, 'a'], [3, 'b']]),
    'moves to members count, a move to a departed node does not',
  );
  t.same(holders.get(1), null, 'the holders passed in are left as they are');
});

t.test('balancedAssignment - ignores shard numbers that are not integers', async (t) => {
  const holders = new Map<number, string | null>([[1.5, 'node-1']]);
  const assignment = balancedAssignment(3, ['node-1', 'node-2', 'node-3'], holders);
  t.same([...assignment.values()].sort(), ['node-1', 'node-2', 'node-3'], 'every shard has an owner');
});

t.test('balancedAssignment - rejects invalid input', async (t) => {
  t.throws(() => balancedAssignment(0, ['a']), RangeError);
  t.throws(() => balancedAssignment(1.5, ['a']), RangeError);
  t.throws(() => balancedAssignment(4, []), { message: /at least one member/ });
  t.throws(() => balancedAssignment(4, ['a', 'b', 'a']), { message: /must not repeat an id/ });
});

function holdersOf(entries: Array<[number, string | null]>): Map<number, string | null> {
  return new Map(entries);
}

function targetOf(owners: string[]): Map<number, string> {
  return new Map(owners.map((owner, shard) => [shard, owner]));
}

function shardsOf(moves: ShardMove[]): number[] {
  return moves.map((move) => move.shard);
}

t.test('planMoves - free shards move at once, beyond the limit', async (t) => {
  const moves = planMoves(new Map(), targetOf(['a', 'b', 'a', 'b', 'c']), 1, new Map());
  t.same(moves, [
    { shard: 0, from: null, to: 'a' },
    { shard: 1, from: null, to: 'b' },
    { shard: 2, from: null, to: 'a' },
    { shard: 3, from: null, to: 'b' },
    { shard: 4, from: null, to: 'c' },
  ]);
});

t.test('planMoves - held shards wait for a slot', async (t) => {
  const holders = holdersOf([[0, 'a'], [1, 'a'], [2, 'a'], [3, 'a'], [4, 'b']]);
  const target = targetOf(['b', 'b', 'b', 'b', 'b']);
  // Node a is alive but owns nothing in the target.
  const live = new Set(['a', 'b']);

  t.same(planMoves(holders, target, 2, new Map(), live), [
    { shard: 0, from: 'a', to: 'b' },
    { shard: 1, from: 'a', to: 'b' },
  ], 'two slots, lowest shards first');

  t.same(shardsOf(planMoves(holders, target, 2, new Map([[0, 'b']]), live)), [1], 'a move still draining takes a slot');
  t.same(shardsOf(planMoves(holders, target, 2, new Map([[0, 'b'], [1, 'b']]), live)), [], 'no slot left');
  t.same(shardsOf(planMoves(holders, target, 2, new Map([[4, 'b']]), live)), [0, 1], 'a finished move takes no slot');

  const released = holdersOf([[0, null], [1, 'a'], [2, 'a'], [3, 'a'], [4, 'b']]);
  t.same(shardsOf(planMoves(released, target, 2, new Map([[0, 'b']]), live)), [1, 2], 'a released shard takes no slot');
});

t.test('planMoves - redirects a move whose destination left', async (t) => {
  const holders = holdersOf([[0, 'a'], [1, 'a'], [2, null]]);
  const target = targetOf(['c', 'c', 'c']);
  const live = new Set(['a', 'c']);
  const inProgress = new Map([[0, 'b'], [2, 'b']]);

  t.same(planMoves(holders, target, 1, inProgress, live), [
    { shard: 0, from: 'a', to: 'c' },
    { shard: 2, from: null, to: 'c' },
  ], 'shard 0 keeps its slot and shard 1 waits for it');
});

t.test('planMoves - shards of a departed holder move at once', async (t) => {
  const holders = holdersOf([[0, 'a'], [1, 'a'], [2, 'gone'], [3, 'gone']]);
  const target = targetOf(['b', 'b', 'a', 'b']);
  t.same(shardsOf(planMoves(holders, target, 1, new Map())), [0, 2, 3], "'gone' owns nothing in the target, so it cannot drain and takes no slot");
  t.same(shardsOf(planMoves(holders, target, 1, new Map(), new Set(['a', 'b', 'gone']))), [0], "when 'gone' is alive, its shards wait for the one slot");
  t.same(shardsOf(planMoves(holders, target, 1, new Map([[0, 'b']]))), [2, 3], 'moves from departed holders start while the slot is taken');
});

t.test('planMoves - settled shards are not moved', async (t) => {
  const holders = holdersOf([[0, 'a'], [1, 'b']]);
  t.same(planMoves(holders, targetOf(['a', 'b']), 2, new Map([[0, 'x']])), [], 'a shard at its target needs no move whatever was in progress');
});

t.test('planMoves - rejects a limit below 1', async (t) => {
  t.throws(() => planMoves(new Map(), new Map(), 0, new Map()), RangeError);
});

t.test('planMoves - simulated handovers stay within the limit and converge', async (t) => {
  const random = seededRandom(42);
  for (let round = 0; round < 200; round++) {
    const shardCount = SHARD_COUNTS[round % SHARD_COUNTS.length];
    const maxConcurrentMoves = 1 + (round % 3);
    const before = randomIds(random, 1 + Math.floor(random() * MAX_MEMBERS));
    const after = [...before.slice(Math.floor(random() * 2)), ...randomIds(random, Math.floor(random() * 3))];
    const live = new Set(after.length > 0 ? after : before);

    // Start from the old placement with a few shards free, and let the lease layer finish
    // a random subset of the published moves in each step, through a free step half of the time.
    const holders = new Map<number, string | null>(balancedAssignment(shardCount, before));
    for (let shard = 0; shard < shardCount; shard += 5) holders.set(shard, null);
    const target = balancedAssignment(shardCount, [...live], holders);
    let published: Map<number, string> = new Map();
    let steps = 0;

    for (; steps < 10_000; steps++) {
      const inProgress = movesInProgress(published, holders);
      const moves = planMoves(holders, target, maxConcurrentMoves, inProgress, live);
      published = applyMoves(published, holders, target, moves);

      const draining = [...movesInProgress(published, holders)].filter(([shard]) => live.has(holders.get(shard) ?? ''));
      if (draining.length > maxConcurrentMoves) {
        t.fail(`round ${round} step ${steps}: ${draining.length} shards held by live members are moving, more than ${maxConcurrentMoves}`);
        break;
      }
      if ([...target].every(([shard, owner]) => holders.get(shard) === owner && published.get(shard) === owner)) break;

      for (const [shard, owner] of movesInProgress(published, holders)) {
        if (random() < 0.5) continue;
        holders.set(shard, holders.get(shard) !== null && random() < 0.5 ? null : owner);
      }
    }
    if (steps === 10_000) t.fail(`round ${round} did not converge`);
  }
  t.pass('checked 200 rounds');
});

t.test('applyMoves - keeps pending entries and records settled shards', async (t) => {
  const holders = holdersOf([[0, 'a'], [1, 'a'], [2, 'b'], [3, null]]);
  const target = targetOf(['a', 'b', 'b', 'c']);
  const published = new Map([[1, 'a']]);
  const next = applyMoves(published, holders, target, [{ shard: 3, from: null, to: 'c' }]);
  t.same([...next], [[0, 'a'], [1, 'a'], [2, 'b'], [3, 'c']], 'shard 1 waits at its holder, the others are at their target or moved');
});
