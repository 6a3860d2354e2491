import t from 'tap';
import { Metadata } from '@grpc/grpc-js';
import { workspaceOf } from '../../api/auth.js';

function withKey(key: string): Metadata {
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${key}`);
  return metadata;
}

t.test('auth - a dev node without write keys says why a key fails', async (t) => {
  const dev = { devMode: true, writeKeys: new Map<string, string>() };
  t.equal(workspaceOf(new Metadata(), dev), 'default', 'a call without a key goes to the default workspace');
  t.throws(() => workspaceOf(withKey('wk_live_0000deadbeef'), dev), {
    code: 'UNAUTHENTICATED',
    message: 'unknown write key ending in "beef": this node has no write keys, and in dev mode it takes calls without one',
  });
});

t.test('auth - a node with write keys names only the unknown key', async (t) => {
  const keyed = { devMode: true, writeKeys: new Map([['wk_live_4f9c2a7e1b3d', 'shop-a']]) };
  t.equal(workspaceOf(withKey('wk_live_4f9c2a7e1b3d'), keyed), 'shop-a');
  t.throws(() => workspaceOf(withKey('wk_live_0000deadbeef'), keyed), { message: /^unknown write key ending in "beef"$/ });
});
