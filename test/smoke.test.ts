import t from 'tap';
import { Store } from '../storage/store.js';

t.test('store - put then get', async (t) => {
  const dir = t.testdir();
  const store = await Store.open({ path: dir });
  await store.write([{ type: 'put', key: 'a', value: 'b' }]);
  t.equal(String(await store.get('a')), 'b');
  await store.close();
});
