/**
 * The behaviour every DefinitionStore must have, applied through DefinitionRegistry as
 * DefinitionService does. Each implementation's test file calls `definitionStoreContract`.
 */
import type { Test } from 'tap';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import { DefinitionConflictError, DefinitionNotFoundError, type DefinitionStore } from '../../decisions/definitions/definition-store.js';
import type { SourceFile } from '../../decisions/definitions/document.js';

export interface DefinitionStoreFactory {
  /** Opens a fresh, empty store. `settle` waits until watch listeners have seen every stored version. */
  open(t: Test): Promise<{ definitions: DefinitionStore; settle(): Promise<void> }>;
}

export const TRAIT = (name: string, event = 'Order Completed') =>
  `apiVersion: rtcdp/v1\nkind: ComputedTrait\nmetadata: { name: ${name} }\nspec: { kind: count, event: ${JSON.stringify(event)} }\n`;
export const SEGMENT = (name: string, condition: string) => `apiVersion: rtcdp/v1\nkind: Segment\nmetadata: { name: ${name} }\nspec:\n  condition: ${JSON.stringify(condition)}\n`;

export function files(...contents: string[]): SourceFile[] {
  return contents.map((content, i) => ({ name: `file${i}.yaml`, content }));
}

/** Creates a registry whose clock advances 1 s per apply, so versions have distinct appliedAtMs. */
export function registryOn(definitions: DefinitionStore) {
  let now = 1_700_000_000_000;
  return new DefinitionRegistry(definitions, { now: () => (now += 1_000) });
}

export function changes(outcome: { results: Array<{ kind: string; name: string; change: string; version: number }> }): string[] {
  return outcome.results.map((result) => `${result.change} ${result.kind}/${result.name}@${result.version}`);
}

export function definitionStoreContract(t: Test, name: string, factory: DefinitionStoreFactory): void {
  t.test(`${name} - first apply creates version 1`, async (t) => {
    const { definitions } = await factory.open(t);
    const registry = registryOn(definitions);

    const outcome = await registry.apply('default', files(TRAIT('orders'), SEGMENT('buyers', 'computed.orders > 0')));
    t.same(outcome.issues, []);
    t.same(changes(outcome), ['created ComputedTrait/orders@1', 'created Segment/buyers@1']);

    const stored = await definitions.listLatest('default');
    t.same(stored.map((version) => `${version.kind}/${version.name}@${version.version}`), ['ComputedTrait/orders@1', 'Segment/buyers@1']);
    t.equal(stored[0].contentHash, outcome.results[0].contentHash, 'stored hash is the reported one');
    t.same(stored[0].spec, { event: 'Order Completed', kind: 'count' }, 'spec stored with sorted keys');
    t.same(stored[0].source, { file: 'file0.yaml', path: 'documents[0]' });
    t.equal(stored[0].appliedAtMs, 1_700_000_001_000);
  });

  t.test(`${name} - same files again change nothing`, async (t) => {
    const { definitions } = await factory.open(t);
    const registry = registryOn(definitions);
    const set = files(TRAIT('orders'), SEGMENT('buyers', 'computed.orders > 0'));
    await registry.apply('default', set);

    const reformatted = files(
      `# the same trait, reformatted\napiVersion: rtcdp/v1\nkind: ComputedTrait\nmetadata:\n  name: orders\nspec:\n  event: Order Completed\n  kind: count\n`,
      SEGMENT('buyers', 'computed.orders > 0'),
    );
    const again = await registry.apply('default', reformatted);
    t.same(changes(again), ['unchanged ComputedTrait/orders@1', 'unchanged Segment/buyers@1']);
    t.equal((await definitions.listVersions('default', 'ComputedTrait', 'orders')).length, 1, 'no second version');
    t.equal((await definitions.listLatest('default'))[0].appliedAtMs, 1_700_000_001_000, 'appliedAt of the first apply');
  });

  t.test(`${name} - change keeps earlier version`, async (t) => {
    const { definitions } = await factory.open(t);
    const registry = registryOn(definitions);
    await registry.apply('default', files(TRAIT('orders'), SEGMENT('buyers', 'computed.orders > 0')));

    const changed = await registry.apply('default', files(TRAIT('orders', 'Order Placed'), SEGMENT('buyers', 'computed.orders > 0')));
    t.same(changes(changed), ['updated ComputedTrait/orders@2', 'unchanged Segment/buyers@1']);
    t.equal(changed.results[0].previousVersion, 1);

    const versions = await definitions.listVersions('default', 'ComputedTrait', 'orders');
    t.same(versions.map((version) => version.spec.event), ['Order Completed', 'Order Placed'], 'both versions kept, oldest first');
    t.not(versions[0].contentHash, versions[1].contentHash);

    const found = await registry.get('default', 'ComputedTrait', 'orders', 1);
    t.equal(found.definition.spec.event, 'Order Completed', 'get by version');
    t.equal((await registry.get('default', 'ComputedTrait', 'orders')).definition.version, 2, 'get without version returns the latest');
  });

  t.test(`${name} - dry run and invalid set store nothing`, async (t) => {
    const { definitions } = await factory.open(t);
    const registry = registryOn(definitions);

    const dryRun = await registry.apply('default', files(TRAIT('orders')), { dryRun: true });
    t.same(changes(dryRun), ['created ComputedTrait/orders@1'], 'dry run reports the change');
    t.same(await definitions.listLatest('default'), [], 'dry run stores nothing');

    const invalid = await registry.apply('default', files(TRAIT('orders'), SEGMENT('buyers', 'computed.missing > 0')));
    t.equal(invalid.issues.length, 1, 'one issue');
    t.same(invalid.results, [], 'no results');
    t.same(await definitions.listLatest('default'), [], 'the valid trait of an invalid set is not stored');
  });

  t.test(`${name} - prune writes tombstones`, async (t) => {
    const { definitions } = await factory.open(t);
    const registry = registryOn(definitions);
    await registry.apply('default', files(TRAIT('orders'), TRAIT('visits', 'Page Viewed')));

    const withoutPrune = await registry.apply('default', files(TRAIT('orders')));
    t.same(changes(withoutPrune), ['unchanged ComputedTrait/orders@1'], 'without prune the other trait stays');

    const pruned = await registry.apply('default', files(TRAIT('orders')), { prune: true });
    t.same(changes(pruned), ['unchanged ComputedTrait/orders@1', 'deleted ComputedTrait/visits@2']);
    t.same((await definitions.listLatest('default')).map((version) => version.name), ['orders'], 'tombstone left out of the list');
    t.same((await definitions.listLatest('default', { includeDeleted: true })).map((version) => `${version.name}@${version.version}:${version.deleted}`), [
      'orders@1:false',
      'visits@2:true',
    ]);

    const recreated = await registry.apply('default', files(TRAIT('orders'), TRAIT('visits', 'Page Viewed')));
    t.same(changes(recreated), ['unchanged ComputedTrait/orders@1', 'created ComputedTrait/visits@3'], 'recreating continues the version numbers');
    t.equal(recreated.results[1].previousVersion, 0, 'no previous version because the last one was a tombstone');
    t.equal((await definitions.listVersions('default', 'ComputedTrait', 'visits')).length, 3);
  });

  t.test(`${name} - workspaces and kinds are separate`, async (t) => {
    const { definitions } = await factory.open(t);
    const registry = registryOn(definitions);
    await registry.apply('default', files(TRAIT('vip'), SEGMENT('vip', 'computed.vip > 2')));
    await registry.apply('shop-2', files(TRAIT('vip', 'Signed Up')));

    t.same((await definitions.listLatest('default', { kind: 'Segment' })).map((version) => version.name), ['vip'], 'kind filter');
    t.equal((await definitions.listLatest('default')).length, 2, 'same name in two kinds');
    t.same((await definitions.listLatest('shop-2')).map((version) => `${version.kind}/${version.name}@${version.version}`), ['ComputedTrait/vip@1']);
    t.equal((await definitions.getVersion('shop-2', 'ComputedTrait', 'vip'))?.spec.event, 'Signed Up');
  });

  t.test(`${name} - not found`, async (t) => {
    const { definitions } = await factory.open(t);
    const registry = registryOn(definitions);
    await registry.apply('default', files(TRAIT('orders')));

    await t.rejects(registry.get('default', 'Segment', 'orders'), DefinitionNotFoundError);
    await t.rejects(registry.get('default', 'ComputedTrait', 'orders', 2), { message: 'ComputedTrait "orders" has no version 2. Its versions are 1 to 1' });
    t.equal(await definitions.getVersion('default', 'ComputedTrait', 'nope'), undefined);
  });

  t.test(`${name} - concurrent applies conflict`, async (t) => {
    const { definitions } = await factory.open(t);
    const registry = registryOn(definitions);
    await registry.apply('default', files(TRAIT('orders')));

    const outcomes = await Promise.allSettled([
      registry.apply('default', files(TRAIT('orders', 'A'))),
      registry.apply('default', files(TRAIT('orders', 'B'))),
    ]);
    const fulfilled = outcomes.filter((outcome) => outcome.status === 'fulfilled');
    const rejected = outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? [outcome.reason] : []));
    t.equal(fulfilled.length, 1, 'one apply wins');
    t.equal(rejected.length, 1, 'the other is rejected');
    t.type(rejected[0], DefinitionConflictError);
    t.match(rejected[0]?.message, 'is at version 2');
    t.same((await definitions.listVersions('default', 'ComputedTrait', 'orders')).map((version) => version.version), [1, 2], 'exactly one version 2');
  });

  t.test(`${name} - watch reports stored versions`, async (t) => {
    const { definitions, settle } = await factory.open(t);
    const registry = registryOn(definitions);
    const seen: string[] = [];
    const stop = definitions.watch((version) => seen.push(`${version.name}@${version.version}`));
    await settle();

    await registry.apply('default', files(TRAIT('orders'), TRAIT('visits', 'Page Viewed')));
    await registry.apply('default', files(TRAIT('orders')), { dryRun: true, prune: true });
    await registry.apply('default', files(TRAIT('orders', 'Order Placed')));
    await settle();
    stop();
    await registry.apply('default', files(TRAIT('orders', 'Order Refunded')));
    await settle();

    t.same([...seen].sort(), ['orders@1', 'orders@2', 'visits@1'], 'every stored version once, none for a dry run or after stop');
    t.ok(seen.indexOf('orders@1') < seen.indexOf('orders@2'), 'one definition\'s versions in order');
  });

  t.test(`${name} - diff against stored`, async (t) => {
    const { definitions } = await factory.open(t);
    const registry = registryOn(definitions);
    await registry.apply('default', files(TRAIT('orders'), TRAIT('visits', 'Page Viewed')));

    const outcome = await registry.diff('default', files(TRAIT('orders', 'Order Placed'), SEGMENT('buyers', 'computed.orders > 0')), { prune: true });
    t.same(changes({ results: outcome.diffs }), ['updated ComputedTrait/orders@2', 'created Segment/buyers@1', 'deleted ComputedTrait/visits@2']);

    const [updated, created, deleted] = outcome.diffs;
    t.match(updated.diff, '--- a/ComputedTrait/orders\tversion 1');
    t.match(updated.diff, '+++ b/ComputedTrait/orders\tproposed');
    t.match(updated.diff, '-  event: Order Completed\n+  event: Order Placed');
    t.match(created.diff, '--- a/Segment/buyers\tnot stored');
    t.match(created.diff, '+  condition: computed.orders > 0');
    t.match(deleted.diff, '+++ b/ComputedTrait/visits\tdeleted');
    t.match(deleted.diff, '-  event: Page Viewed');
    t.equal((await definitions.listVersions('default', 'ComputedTrait', 'orders')).length, 1, 'diff stores nothing');

    const same = await registry.diff('default', files(TRAIT('orders')));
    t.equal(same.diffs[0].diff, '', 'no diff when unchanged');
  });
}
