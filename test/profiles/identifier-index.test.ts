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

  index.claim('default', EMAIL, 'user:ada');
  t.equal(await index.lookup('default', EMAIL), 'user:ada', 'unpersisted claim is found');
  t.equal(await index.lookup('other', EMAIL), undefined, 'claim is per workspace');
});

t.test('identifier index - persisted owner found after settle', async (t) => {
  const { store, index } = await openIndex(t);
  const claims = [{ workspace: 'default', identifier: EMAIL, profileId: 'user:ada' }];

  index.claim('default', EMAIL, 'user:ada');
  await store.write(await index.prepare(claims));
  index.settle(claims);

  t.equal(await index.lookup('default', EMAIL), 'user:ada', 'persisted owner is found');
});

t.test('identifier index - claim settled during lookup', async (t) => {
  const { store, index } = await openIndex(t);
  const claims = [{ workspace: 'default', identifier: EMAIL, profileId: 'user:ada' }];

  index.claim('default', EMAIL, 'user:ada');
  const ops = await index.prepare(claims);

  // The lookup's store read starts before the snapshot write lands, and the claim is settled
  // before that read returns. A snapshot write that races a query produces this order.
  const lookup = index.lookup('default', EMAIL);
  index.settle(claims);
  await store.write(ops);

  t.equal(await lookup, 'user:ada', 'the lookup still finds the profile');
  t.equal(await index.lookup('default', EMAIL), 'user:ada', 'a later lookup finds the persisted owner');
});

t.test('identifier index - first persisted claim wins', async (t) => {
  const { store, index } = await openIndex(t);
  const first = [{ workspace: 'default', identifier: EMAIL, profileId: 'user:ada' }];
  const second = [{ workspace: 'default', identifier: EMAIL, profileId: 'user:grace' }];

  index.claim('default', EMAIL, 'user:ada');
  await store.write(await index.prepare(first));
  index.settle(first);

  index.claim('default', EMAIL, 'user:grace');
  const ops = await index.prepare(second);
  t.same(ops, [], 'no write for an identifier that already has an owner');
  t.equal(await index.lookup('default', EMAIL), 'user:ada', 'the first owner keeps the identifier');
});
