/**
 * The behaviour every KvStore implementation must have. Each implementation's test calls
 * `kvStoreContract` with a factory that opens a fresh, empty store. Reads here are never
 * stale, so a MemoryKvStore factory must leave `staleReads` at 0.
 */
import type { Test } from 'tap';
import { KvConflictError, type KvStore } from '../../storage/kv-store.js';

export interface KvStoreFactory {
  /** Opens a fresh, empty store and registers any cleanup with `t.teardown`. */
  open(t: Test): Promise<KvStore>;
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined): string | undefined => (value === undefined ? undefined : new TextDecoder().decode(value));
const conflict = { name: 'KvConflictError', code: 'KV_CONFLICT' };

export function kvStoreContract(t: Test, name: string, factory: KvStoreFactory): void {
  t.test(`${name} - create then get`, async (t) => {
    const kv = await factory.open(t);
    t.equal(await kv.get('shard.1'), null, 'a missing key reads as null');

    const revision = await kv.create('shard.1', bytes('a'));
    t.ok(revision > 0, 'create returns a positive revision');

    const entry = await kv.get('shard.1');
    t.equal(entry?.key, 'shard.1');
    t.equal(text(entry?.value), 'a');
    t.equal(entry?.revision, revision);
  });

  t.test(`${name} - create of existing key conflicts`, async (t) => {
    const kv = await factory.open(t);
    const revision = await kv.create('shard.1', bytes('a'));

    await t.rejects(kv.create('shard.1', bytes('b')), conflict);
    const entry = await kv.get('shard.1');
    t.equal(text(entry?.value), 'a', 'the value is unchanged');
    t.equal(entry?.revision, revision, 'the revision is unchanged');
  });

  t.test(`${name} - update at current revision`, async (t) => {
    const kv = await factory.open(t);
    const first = await kv.create('shard.1', bytes('a'));
    const second = await kv.update('shard.1', bytes('b'), first);
    const third = await kv.update('shard.1', bytes('c'), second);

    t.ok(second > first, 'the first update has a higher revision');
    t.ok(third > second, 'the second update has a higher revision');
    const entry = await kv.get('shard.1');
    t.equal(text(entry?.value), 'c');
    t.equal(entry?.revision, third);
  });

  t.test(`${name} - update conflicts`, async (t) => {
    const kv = await factory.open(t);
    const first = await kv.create('shard.1', bytes('a'));
    const second = await kv.update('shard.1', bytes('b'), first);

    await t.rejects(kv.update('shard.1', bytes('stale'), first), conflict, 'an update at an older revision conflicts');
    await t.rejects(kv.update('shard.1', bytes('future'), second + 100), conflict, 'an update at a later revision conflicts');
    await t.rejects(kv.update('shard.1', bytes('zero'), 0), conflict, 'an update at revision 0 conflicts');
    await t.rejects(kv.update('shard.2', bytes('missing'), first), conflict, 'an update of a missing key conflicts');
    t.equal(await kv.get('shard.2'), null, 'the failed update created nothing');

    const entry = await kv.get('shard.1');
    t.equal(text(entry?.value), 'b', 'the value is unchanged');
    t.equal(entry?.revision, second, 'the revision is unchanged');
  });

  t.test(`${name} - revisions grow across keys`, async (t) => {
    const kv = await factory.open(t);
    const revisions = [
      await kv.create('a', bytes('1')),
      await kv.put('b', bytes('2')),
      await kv.put('a', bytes('3')),
      await kv.create('c.d', bytes('4')),
    ];

    for (let i = 1; i < revisions.length; i++) {
      t.ok(revisions[i] > revisions[i - 1], `write ${i} has a higher revision than write ${i - 1} (${revisions.join(', ')})`);
    }
  });

  t.test(`${name} - put writes unconditionally`, async (t) => {
    const kv = await factory.open(t);
    const first = await kv.put('shard.1', bytes('a'));
    const second = await kv.put('shard.1', bytes('b'));

    t.ok(second > first);
    t.equal(text((await kv.get('shard.1'))?.value), 'b');
  });

  t.test(`${name} - delete then create again`, async (t) => {
    const kv = await factory.open(t);
    const first = await kv.create('shard.1', bytes('a'));
    await kv.delete('shard.1');
    t.equal(await kv.get('shard.1'), null, 'a deleted key reads as null');

    await t.rejects(kv.update('shard.1', bytes('b'), first), conflict, 'an update at the revision before the delete conflicts');

    const again = await kv.create('shard.1', bytes('c'));
    t.ok(again > first, 'create after delete has a higher revision');
    const entry = await kv.get('shard.1');
    t.equal(text(entry?.value), 'c');
    t.equal(entry?.revision, again);
  });

  t.test(`${name} - delete at expected revision`, async (t) => {
    const kv = await factory.open(t);
    const first = await kv.create('shard.1', bytes('a'));
    const second = await kv.update('shard.1', bytes('b'), first);

    await t.rejects(kv.delete('shard.1', first), conflict, 'a delete at an older revision conflicts');
    await t.rejects(kv.delete('shard.1', 0), conflict, 'a delete at revision 0 conflicts');
    t.equal((await kv.get('shard.1'))?.revision, second, 'the key survives the failed deletes');

    await kv.delete('shard.1', second);
    t.equal(await kv.get('shard.1'), null, 'a delete at the current revision removes the key');
    await t.rejects(kv.delete('shard.1', second), conflict, 'a second delete at the same revision conflicts');
  });

  t.test(`${name} - delete of missing key`, async (t) => {
    const kv = await factory.open(t);
    await kv.delete('shard.9');
    t.equal(await kv.get('shard.9'), null);
    t.ok((await kv.create('shard.9', bytes('a'))) > 0, 'the key can be created afterwards');
  });

  t.test(`${name} - list by prefix`, async (t) => {
    const kv = await factory.open(t);
    const revisions = new Map<string, number>();
    for (const key of ['shard.2', 'shard.10', 'shard.1', 'other.1', 'shard.3', 'shardx']) {
      revisions.set(key, await kv.put(key, bytes(`value of ${key}`)));
    }
    await kv.delete('shard.3');

    const shards = await kv.list('shard.');
    t.same(
      shards.map((entry) => entry.key),
      ['shard.1', 'shard.10', 'shard.2'],
      'deleted keys and keys under other prefixes are left out, and keys are sorted',
    );
    for (const entry of shards) {
      t.equal(text(entry.value), `value of ${entry.key}`, `value of ${entry.key}`);
      t.equal(entry.revision, revisions.get(entry.key), `revision of ${entry.key}`);
    }

    t.same((await kv.list('shard.1')).map((entry) => entry.key), ['shard.1', 'shard.10'], 'a prefix may end inside a token');
    t.same((await kv.list('shard')).map((entry) => entry.key), ['shard.1', 'shard.10', 'shard.2', 'shardx'], 'a prefix may end inside the first token');
    t.same((await kv.list()).map((entry) => entry.key), ['other.1', 'shard.1', 'shard.10', 'shard.2', 'shardx'], 'no prefix lists every key');
    t.same(await kv.list('missing.'), [], 'a prefix without keys lists nothing');
  });

  t.test(`${name} - list shows the last value`, async (t) => {
    const kv = await factory.open(t);
    const first = await kv.create('shard.1', bytes('a'));
    const second = await kv.update('shard.1', bytes('b'), first);

    const entries = await kv.list('shard.');
    t.equal(entries.length, 1);
    t.equal(text(entries[0]?.value), 'b');
    t.equal(entries[0]?.revision, second);
  });

  t.test(`${name} - concurrent creates, one wins`, async (t) => {
    const kv = await factory.open(t);
    const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => kv.create('shard.1', bytes(`writer ${i}`))));

    const won = outcomes.filter((outcome) => outcome.status === 'fulfilled');
    const lost = outcomes.filter((outcome) => outcome.status === 'rejected');
    t.equal(won.length, 1, 'exactly one create succeeds');
    t.ok(
      lost.every((outcome) => outcome.reason instanceof KvConflictError),
      'every other create fails with KvConflictError',
    );
  });

  t.test(`${name} - concurrent updates, one wins`, async (t) => {
    const kv = await factory.open(t);
    const revision = await kv.create('shard.1', bytes('a'));
    const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => kv.update('shard.1', bytes(`writer ${i}`), revision)));

    const won = outcomes.filter((outcome): outcome is PromiseFulfilledResult<number> => outcome.status === 'fulfilled');
    const lost = outcomes.filter((outcome) => outcome.status === 'rejected');
    t.equal(won.length, 1, 'exactly one update succeeds');
    t.ok(
      lost.every((outcome) => outcome.reason instanceof KvConflictError),
      'every other update fails with KvConflictError',
    );
    t.equal((await kv.get('shard.1'))?.revision, won[0]?.value, 'the winner wrote the current revision');
  });
}
