/**
 * `rtcdp apply`, `rtcdp definitions get` and `rtcdp definitions diff` end to end: each
 * command runs as its own process against an `rtcdp dev` node process on loopback.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { runCli, startNodeProcess } from '../helpers/node-process.js';

const rtcdp = runCli;

const TRAITS = `apiVersion: rtcdp/v1
kind: ComputedTrait
metadata:
  name: orders_30d
  description: Orders in the last 30 days
spec:
  kind: count
  event: Order Completed
  window: { days: 30 }
---
apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: ltv }
spec: { kind: sum, event: Order Completed, property: revenue }
`;

const SEGMENTS = [{ apiVersion: 'rtcdp/v1', kind: 'Segment', metadata: { name: 'big_spenders' }, spec: { condition: 'computed.ltv > 100.0 && computed.orders_30d >= 2' } }];

t.test('definition commands - apply, get and diff', async (t) => {
  const dir = t.testdir();
  const node = await startNodeProcess(path.join(dir, 'data'), ['--write-key', 'key-shop-0001=shop']);
  t.teardown(() => node.stop());
  const server = ['--server', node.address];

  const definitions = path.join(dir, 'definitions');
  mkdirSync(definitions);
  writeFileSync(path.join(definitions, '20-segments.json'), JSON.stringify(SEGMENTS));
  writeFileSync(path.join(definitions, '10-traits.yaml'), TRAITS);
  writeFileSync(path.join(definitions, 'README.md'), 'not a definition file');

  const dryRun = await rtcdp(['apply', '-f', definitions, '--dry-run', ...server]);
  t.equal(dryRun.code, 0, `dry run exits 0; stderr: ${dryRun.stderr}`);
  t.match(dryRun.stdout, 'dry run, nothing was stored: 3 definitions (3 created)');
  t.equal((await rtcdp(['definitions', 'get', ...server])).stdout, 'no definitions\n', 'dry run stored nothing');

  const applied = await rtcdp(['apply', '-f', definitions, ...server]);
  t.equal(applied.code, 0, `apply exits 0; stderr: ${applied.stderr}`);
  const rows = applied.stdout.split('\n').slice(1, 4).map((line) => line.split(/\s+/).slice(0, 5));
  t.same(
    rows,
    [
      ['created', 'ComputedTrait', 'orders_30d', '1', path.join(definitions, '10-traits.yaml')],
      ['created', 'ComputedTrait', 'ltv', '1', path.join(definitions, '10-traits.yaml')],
      ['created', 'Segment', 'big_spenders', '1', path.join(definitions, '20-segments.json')],
    ],
    'files of the directory applied in name order; README.md skipped',
  );
  t.match(applied.stdout, 'applied: 3 definitions (3 created)');

  const again = await rtcdp(['apply', '-f', definitions, ...server]);
  t.match(again.stdout, 'applied: 3 definitions (3 unchanged)', 'applying again changes nothing');

  const changedFile = path.join(dir, 'segments-v2.yaml');
  writeFileSync(changedFile, `apiVersion: rtcdp/v1\nkind: Segment\nmetadata: { name: big_spenders }\nspec:\n  condition: computed.ltv > 500.0\n`);
  // Reads only, so they run at the same time.
  const [table, diff] = await Promise.all([rtcdp(['definitions', 'get', ...server]), rtcdp(['definitions', 'diff', '-f', changedFile, ...server])]);

  t.match(table.stdout, /^KIND\s+NAME\s+VERSION\s+HASH\s+APPLIED AT\s+DESCRIPTION\n/, 'table header');
  t.match(table.stdout, /ComputedTrait\s+orders_30d\s+1\s+[0-9a-f]{12}\s+\S+Z\s+Orders in the last 30 days/);

  t.equal(diff.code, 0, `diff exits 0; stderr: ${diff.stderr}`);
  t.match(diff.stdout, '--- a/Segment/big_spenders\tversion 1\n+++ b/Segment/big_spenders\tproposed\n');
  t.match(diff.stdout, '-  condition: computed.ltv > 100.0 && computed.orders_30d >= 2\n+  condition: computed.ltv > 500.0\n');
  t.match(diff.stdout, '0 to create, 1 to update, 0 unchanged\n');

  const updated = await rtcdp(['apply', '-f', changedFile, ...server]);
  t.match(updated.stdout, /updated\s+Segment\s+big_spenders\s+1 -> 2/, 'apply reports the new version');

  const [one, first, yaml] = await Promise.all([
    rtcdp(['definitions', 'get', 'segments', 'big_spenders', ...server]),
    rtcdp(['definitions', 'get', 'Segment', 'big_spenders', '--definition-version', '1', '--output', 'json', ...server]),
    rtcdp(['definitions', 'get', '--output', 'yaml', ...server]),
  ]);
  t.match(one.stdout, /version\s+2\n/);
  t.match(one.stdout, 'spec:\n  condition: computed.ltv > 500.0\n');
  t.match(one.stdout, /versions:\n\s+VERSION\s+HASH\s+APPLIED AT\n\s+1\s+[0-9a-f]{12}.*\n\s+2\s+[0-9a-f]{12}/, 'both versions listed');

  t.same(JSON.parse(first.stdout), [{ ...SEGMENTS[0], metadata: { name: 'big_spenders', workspace: 'default' } }], 'version 1 as a JSON document');

  const documents = parseAllDocuments(yaml.stdout).map((document) => document.toJS() as { kind: string; metadata: { name: string } });
  t.same(documents.map((document) => `${document.kind}/${document.metadata.name}`), ['ComputedTrait/ltv', 'ComputedTrait/orders_30d', 'Segment/big_spenders']);
  const exported = path.join(dir, 'exported.yaml');
  writeFileSync(exported, yaml.stdout);
  const reapplied = await rtcdp(['apply', '-f', exported, ...server]);
  t.match(reapplied.stdout, 'applied: 3 definitions (3 unchanged)', 'get --output yaml applies back unchanged');

  const keyed = await rtcdp(['apply', '-f', path.join(definitions, '10-traits.yaml'), '--write-key', 'key-shop-0001', ...server]);
  t.match(keyed.stdout, '(2 created)', 'a write key applies into its own workspace');
  const keyedList = await rtcdp(['definitions', 'get', 'ComputedTrait', '--output', 'yaml', '--write-key', 'key-shop-0001', ...server]);
  t.same(parseAllDocuments(keyedList.stdout).map((document) => (document.toJS() as { metadata: { workspace: string } }).metadata.workspace), ['shop', 'shop']);
});

t.test('definition commands - errors', async (t) => {
  const dir = t.testdir();
  const node = await startNodeProcess(path.join(dir, 'data'));
  t.teardown(() => node.stop());
  const server = ['--server', node.address];

  const traits = path.join(dir, 'traits.yaml');
  writeFileSync(traits, TRAITS);
  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(
    bad,
    [
      'apiVersion: rtcdp/v1\nkind: Campaign\nmetadata: { name: welcome }\nspec: {}\n',
      'apiVersion: rtcdp/v1\nkind: Segment\nmetadata: { name: lapsed }\nspec:\n  condition: computed.orders_90d == 0\n',
      'apiVersion: rtcdp/v1\nkind: ComputedTrait\nmetadata: { name: spend }\nspec: { kind: sum, event: Order Completed }\n',
    ].join('---\n'),
  );

  const invalid = await rtcdp(['apply', '-f', traits, '-f', bad, ...server]);
  t.equal(invalid.code, 1, 'invalid set exits 1');
  t.equal(invalid.stdout, '', 'nothing on stdout');
  const lines = invalid.stderr.trimEnd().split('\n');
  t.equal(lines[0], 'rtcdp: 3 validation errors, nothing was applied:');
  t.equal(lines[1], `rtcdp: ${bad}:2:7: documents[0].kind: must be one of ComputedTrait, Segment, DecisionRule, ContactPolicy, ScoringModel, Journey, got "Campaign"`);
  t.match(lines[2], `rtcdp: ${bad}:10:14: documents[1].spec.condition: refers to computed trait "orders_90d" (at line 1, column 10 of the condition), which is not defined`);
  t.equal(lines[3], `rtcdp: ${bad}:15:7: documents[2].spec.property: is missing. A sum trait aggregates the values of one property`);
  t.equal(lines.length, 4, 'one line per error');
  t.equal((await rtcdp(['definitions', 'get', ...server])).stdout, 'no definitions\n', 'nothing stored');

  const emptyDir = path.join(dir, 'empty');
  mkdirSync(emptyDir);
  // These commands read nothing that another one writes, so they run at the same time.
  const [missing, empty, badKind, notFound, unreachable] = await Promise.all([
    rtcdp(['apply', '-f', path.join(dir, 'nope.yaml'), ...server]),
    rtcdp(['apply', '-f', emptyDir, ...server]),
    rtcdp(['definitions', 'get', 'campaigns', ...server]),
    rtcdp(['definitions', 'get', 'Segment', 'lapsed', ...server]),
    rtcdp(['definitions', 'get', '--server', '127.0.0.1:1']),
  ]);

  t.equal(missing.code, 2, 'a missing file is a usage error');
  t.match(missing.stderr, `rtcdp: cannot read -f ${path.join(dir, 'nope.yaml')}: no such file or directory`);

  t.equal(empty.code, 2);
  t.match(empty.stderr, `directory ${emptyDir} has no .yaml, .yml, .json files`);

  t.equal(badKind.code, 2);
  t.match(badKind.stderr, 'rtcdp: invalid kind "campaigns": expected one of ComputedTrait, Segment, DecisionRule, ContactPolicy, ScoringModel, Journey');

  t.equal(notFound.code, 1);
  t.equal(notFound.stderr, 'rtcdp: no Segment named "lapsed" in workspace "default"\n');

  t.equal(unreachable.code, 1);
  t.match(unreachable.stderr, 'rtcdp: cannot reach rtcdp at 127.0.0.1:1');

  const diffInvalid = await rtcdp(['definitions', 'diff', '-f', bad, ...server]);
  t.equal(diffInvalid.code, 1);
  t.match(diffInvalid.stderr, 'validation errors, nothing was compared:');
});
