/**
 * `rtcdp definitions test` end to end: `rtcdp dev`, `rtcdp apply`, `rtcdp send` and the test
 * command each run as their own process, over gRPC on loopback.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { runCli, startNodeProcess } from '../helpers/node-process.js';

const rtcdp = runCli;

const DEFINITIONS = `apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: ltv }
spec: { kind: sum, event: Order Completed, property: revenue }
---
apiVersion: rtcdp/v1
kind: Segment
metadata: { name: big_spenders }
spec: { condition: 'computed.ltv > 100.0' }
`;

const LOWER_THRESHOLD = `apiVersion: rtcdp/v1
kind: Segment
metadata: { name: big_spenders }
spec: { condition: 'computed.ltv > 50.0' }
`;

/** A score of lifetime revenue: the logistic function of ltv / 100. */
const VALUE_MODEL = `apiVersion: rtcdp/v1
kind: ScoringModel
metadata: { name: value }
spec: { model: logistic, intercept: 0.0, features: [{ expression: 'computed.ltv', weight: 0.01 }] }
`;

/** Lifetime revenue per user, sent as orders of 40 each. */
const LTV: Record<string, number> = { a1: 40, a2: 80, a3: 120, a4: 160 };

function orderLines(): string {
  return Object.entries(LTV)
    .flatMap(([userId, ltv]) =>
      Array.from({ length: ltv / 40 }, (_, i) => JSON.stringify({ type: 'track', event: 'Order Completed', userId, messageId: `${userId}-${i}`, properties: { revenue: 40 } })),
    )
    .join('\n');
}

t.test('definitions test - table and JSON reports of a lower threshold', async (t) => {
  const dir = t.testdir();
  const node = await startNodeProcess(path.join(dir, 'data'));
  t.teardown(() => node.stop());
  const server = ['--server', node.address];

  const definitions = path.join(dir, 'definitions.yaml');
  const lower = path.join(dir, 'lower.yaml');
  const events = path.join(dir, 'orders.ndjson');
  writeFileSync(definitions, DEFINITIONS);
  writeFileSync(lower, LOWER_THRESHOLD);
  writeFileSync(events, `${orderLines()}\n`);
  t.equal((await rtcdp(['apply', '-f', definitions, ...server])).code, 0);
  const sent = await rtcdp(['send', events, ...server]);
  t.equal(sent.code, 0, `send exits 0; stderr: ${sent.stderr}`);

  const table = await rtcdp(['definitions', 'test', '-f', lower, ...server]);
  t.equal(table.code, 0, `test exits 0; stderr: ${table.stderr}`);
  const lines = table.stdout.split('\n');
  t.match(lines[0], /^tested 4 profiles \(10 events replayed\) at \d{4}-\d\d-\d\dT\S+Z$/);
  t.equal(lines[1], 'definitions: 1 updated');
  t.match(table.stdout, /\nSEGMENT\s+CHANGE\s+VERSION\s+MEMBERS\s+ENTERED\s+EXITED\s+UNCHANGED\s+ERRORS\n/);
  t.match(table.stdout, /\nbig_spenders\s+updated\s+1 -> 2\s+2 -> 3\s+1\s+0\s+3\s+0\n/, 'a2 (ltv 80) enters; a3 and a4 stay');
  t.match(table.stdout, /\nltv\s+unchanged\s+1\s+0\n/);
  t.match(table.stdout, /\nexamples of big_spenders:\n\s+entered\s+user:a2\s+ltv=80\n/);

  const json = await rtcdp(['definitions', 'test', '-f', lower, '--user-id', 'a1', 'a2', '--output', 'json', ...server]);
  t.equal(json.code, 0, `json exits 0; stderr: ${json.stderr}`);
  const report = JSON.parse(json.stdout) as {
    profilesTested: number;
    segments: Array<{ name: string; change: string; entered: number; examples: Array<{ profileId: string; transition: string; computedAfter: object }> }>;
  };
  t.equal(report.profilesTested, 2, 'only the profiles of the userIds given');
  t.equal(report.segments[0].change, 'updated');
  t.same(report.segments[0].examples, [{ profileId: 'user:a2', transition: 'entered', computedBefore: { ltv: 80 }, computedAfter: { ltv: 80 } }]);

  const model = path.join(dir, 'model.yaml');
  writeFileSync(model, VALUE_MODEL);
  const scored = await rtcdp(['definitions', 'test', '-f', model, ...server]);
  t.equal(scored.code, 0, `scored test exits 0; stderr: ${scored.stderr}`);
  const meanAfter = Object.values(LTV).reduce((sum, ltv) => sum + 1 / (1 + Math.exp(-ltv / 100)), 0) / Object.keys(LTV).length;
  t.match(scored.stdout, /\nSCORING MODEL\s+CHANGE\s+VERSION\s+SCORED\s+MEAN\s+VALUES CHANGED\s+ERRORS\n/);
  t.match(scored.stdout, new RegExp(`\\nvalue\\s+created\\s+- -> 1\\s+0 -> 4\\s+- -> ${meanAfter.toPrecision(4).replace('.', '\\.')}\\s+4\\s+0 -> 0\\n`), 'every profile gets a score');

  const broken = path.join(dir, 'broken.yaml');
  writeFileSync(broken, VALUE_MODEL.replace("'computed.ltv'", "'double(traits.plan)'"));
  const failing = await rtcdp(['definitions', 'test', '-f', broken, ...server]);
  t.equal(failing.code, 0, `failing test exits 0; stderr: ${failing.stderr}`);
  t.match(failing.stdout, /\nvalue\s+created\s+- -> 1\s+0 -> 0\s+- -> -\s+0\s+0 -> 4\n/, 'no profile has the trait, so none is scored');
  t.match(failing.stdout, /\nerrors of value, for example: .*plan.*\n/, 'an example error names the missing key');

  const listed = await rtcdp(['definitions', 'get', 'Segment', 'big_spenders', ...server]);
  t.match(listed.stdout, /version\s+1\n/, 'the test stored nothing');
});

t.test('definitions test - bad input', async (t) => {
  const dir = t.testdir();
  const node = await startNodeProcess(path.join(dir, 'data'));
  t.teardown(() => node.stop());
  const server = ['--server', node.address];

  const definitions = path.join(dir, 'definitions.yaml');
  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(definitions, DEFINITIONS);
  writeFileSync(bad, `apiVersion: rtcdp/v1\nkind: Segment\nmetadata: { name: lapsed }\nspec:\n  condition: computed.orders_90d == 0\n`);

  // These commands read nothing that another one writes, so they run at the same time.
  const [zero, tooMany, both, invalid, noProfile] = await Promise.all([
    rtcdp(['definitions', 'test', '-f', definitions, '--profiles', '0', ...server]),
    rtcdp(['definitions', 'test', '-f', definitions, '--profiles', '10001', ...server]),
    rtcdp(['definitions', 'test', '-f', definitions, '--profiles', '5', '--user-id', 'a1', ...server]),
    rtcdp(['definitions', 'test', '-f', bad, ...server]),
    rtcdp(['definitions', 'test', '-f', definitions, '--user-id', 'nobody', ...server]),
  ]);

  t.equal(zero.code, 2, '--profiles 0 is a usage error');
  t.equal(zero.stderr, 'rtcdp: invalid --profiles "0": expected an integer from 1 to 10000\n');
  t.equal(tooMany.code, 2);
  t.equal(tooMany.stderr, 'rtcdp: invalid --profiles "10001": expected an integer from 1 to 10000\n');
  t.equal(both.code, 2);
  t.match(both.stderr, 'rtcdp: --profiles and --user-id are exclusive');

  t.equal(invalid.code, 1, 'an invalid set exits 1');
  t.equal(invalid.stdout, '');
  const lines = invalid.stderr.trimEnd().split('\n');
  t.equal(lines[0], 'rtcdp: 1 validation error, nothing was tested:');
  t.match(lines[1], `rtcdp: ${bad}:5:14: documents[0].spec.condition: refers to computed trait "orders_90d"`);

  t.equal(noProfile.code, 1);
  t.equal(noProfile.stderr, 'rtcdp: no profile found for user_id "nobody" in this workspace\n');
});
