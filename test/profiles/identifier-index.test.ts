import t, { type Test } from 'tap';
import { IdentifierIndex } from '../../profiles/identifier-index.js';
import { Store } from '../../storage/store.js';

const EMAIL = { type: 'email', value: 'ada@example.com' };

async function openIndex(t: Test): Promise<{ store: Store; index: IdentifierIndex }> {
  const store = await Store.open({ path: t.testdir() });
  t.teardown(() => store.close());
  return { store, index: new IdentifierIndex(store) };
}

t.test('identifier index - claim found before persist', async (t) => {
  const { index } = await openIndex(t);

  index.claim('default', EMAIL, 'user:ada', 1_000);
  t.equal(await index.lookup('default', EMAIL), 'user:ada', 'unpersisted claim is found');
  t.equal(await index.lookup('other', EMAIL), undefined, 'claim is per workspace');
});

t.test('identifier index - persisted owner found after settle', async (t) => {
  const { store, index } = await openIndex(t);
  const claims = [{ workspace: 'default', identifier: EMAIL, profileId: 'user:ada' }];

  index.claim('default', EMAIL, 'user:ada', 1_000);
  await store.write(await index.prepare(claims));
  index.settle(claims);

  t.equal(await index.lookup('default', EMAIL), 'user:ada', 'persisted owner is found');
});

t.test('identifier index - claim settled during lookup', async (t) => {
  const { store, index } = await openIndex(t);
  const claims = [{ workspace: 'default', identifier: EMAIL, profileId: 'user:ada' }];

  index.claim('default', EMAIL, 'user:ada', 1_000);
  const ops = await index.prepare(claims);

  // The lookup's store read starts before the snapshot write lands, and the claim is settled
  // before that read returns. A snapshot write that races a query produces this order.
  const lookup = index.lookup('default', EMAIL);
  index.settle(claims);
  await store.write(ops);

  t.equal(await lookup, 'user:ada', 'the lookup still finds the profile');
  t.equal(await index.lookup('default', EMAIL), 'user:ada', 'a later lookup finds the persisted owner');
});

t.test('identifier index - earliest event time wins', async (t) => {
  const { store, index } = await openIndex(t);
  const ada = [{ workspace: 'default', identifier: EMAIL, profileId: 'user:ada' }];
  const grace = [{ workspace: 'default', identifier: EMAIL, profileId: 'user:grace' }];

  index.claim('default', EMAIL, 'user:ada', 1_000);
  index.claim('default', EMAIL, 'user:grace', 2_000);
  t.equal(await index.lookup('default', EMAIL), 'user:ada', 'the earlier claim wins in memory');

  t.same(await index.prepare(grace), [], 'the later carrier writes nothing, even when it persists first');
  await store.write(await index.prepare(ada));
  index.settle(ada);
  t.equal(await index.lookup('default', EMAIL), 'user:ada', 'the earlier carrier is the persisted owner');

  index.claim('default', EMAIL, 'user:grace', 500);
  t.equal(await index.lookup('default', EMAIL), 'user:grace', 'a claim earlier than the persisted owner wins');
  await store.write(await index.prepare(grace));
  index.settle(grace);
  t.equal(await index.lookup('default', EMAIL), 'user:grace', 'and replaces it when persisted');
});

t.test('identifier index - ties go to the smaller profile id', async (t) => {
  const { index } = await openIndex(t);

  index.claim('default', EMAIL, 'user:grace', 1_000);
  index.claim('default', EMAIL, 'user:ada', 1_000);
  t.equal(await index.lookup('default', EMAIL), 'user:ada');
});
