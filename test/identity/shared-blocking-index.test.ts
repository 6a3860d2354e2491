import t from 'tap';
import { silentLogger } from '../../common/logger.js';
import { SharedBlockingIndex } from '../../identity/shared-blocking-index.js';
import { localKvStores } from '../helpers/kv-stores.js';

const robert = { givenName: 'Robert', surname: 'Allen', dateOfBirth: '1971-05-24' };

const stores = localKvStores;

for (const [name, open] of stores) {
  t.test(`shared blocking index on ${name} - profiles sharing a key find each other through any index on the store`, async (t) => {
    const kv = await open(t);
    const one = new SharedBlockingIndex({ kv, maxBlockSize: 10, logger: silentLogger() });
    const other = new SharedBlockingIndex({ kv, maxBlockSize: 10, logger: silentLogger() });

    t.same(await one.add('w', 'p1', robert, ['0:allen', '1:1971']), [], 'the first profile has no candidates');
    const found = await other.add('w', 'p2', { ...robert, surname: 'Alan' }, ['0:alan', '1:1971']);
    t.match(found, [{ profileId: 'p1', person: robert }], 'the second finds the first under the shared key, with its fields');
    t.same(await other.add('x', 'p3', robert, ['0:allen']), [], 'workspaces are apart');

    const again = await one.add('w', 'p1', { ...robert, city: 'London' }, ['0:allen', '1:1971']);
    t.same(again.map((person) => person.profileId), ['p2'], 'adding a profile again updates it without listing it as its own candidate');
    t.match((await other.add('w', 'p2', robert, ['1:1971']))[0], { profileId: 'p1', person: { city: 'London' } }, 'the latest fields are read');
  });

  t.test(`shared blocking index on ${name} - concurrent additions to one block each see the others that came first`, async (t) => {
    const kv = await open(t);
    const indexes = Array.from({ length: 4 }, () => new SharedBlockingIndex({ kv, maxBlockSize: 100, logger: silentLogger() }));
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => indexes[i % 4].add('w', `p${i}`, robert, ['0:allen'])));

    const sizes = results.map((found) => found.length).sort((a, b) => a - b);
    t.same(sizes, Array.from({ length: 12 }, (_, i) => i), 'the n-th to join the block finds the n before it');
  });

  t.test(`shared blocking index on ${name} - a block over the size limit selects nothing`, async (t) => {
    const kv = await open(t);
    const index = new SharedBlockingIndex({ kv, maxBlockSize: 3, logger: silentLogger() });
    for (let i = 0; i < 3; i++) await index.add('w', `p${i}`, robert, ['1:1900-01-01']);
    t.same(await index.add('w', 'p3', robert, ['1:1900-01-01']), [], 'the fourth profile overflows the block');
    t.same(await index.add('w', 'p4', robert, ['1:1900-01-01', '0:allen']), [], 'and later ones find nobody under it');
    t.equal(index.oversizedBlockHits, 1);
  });
}
