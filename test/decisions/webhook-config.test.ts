/**
 * The webhook destinations file: defaults, every rule with its exact message, YAML and
 * JSON parsing, and `rtcdp dev --webhooks` failing with a usage error before it starts.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { loadWebhookConfig, parseWebhookConfig, validateWebhookConfig, WebhookConfigError } from '../../decisions/activation-delivery/webhook-config.js';
import { runCli } from '../helpers/node-process.js';

const ENV = { HOOK_SECRET: 'a-secret-of-24-characters', SHORT_SECRET: 'short' };

function issuesOf(document: unknown, env: NodeJS.ProcessEnv = ENV): readonly string[] {
  try {
    validateWebhookConfig(document, 'hooks.yaml', env);
  } catch (error) {
    if (error instanceof WebhookConfigError) return error.issues;
    throw error;
  }
  return [];
}

const valid = { name: 'crm', workspace: 'default', url: 'https://hooks.example.com/rtcdp?tenant=1', secretEnv: 'HOOK_SECRET' };

t.test('webhook config - YAML with defaults filled in', async (t) => {
  const text = `
- name: crm
  workspace: default
  url: https://hooks.example.com/rtcdp
  secretEnv: HOOK_SECRET
- name: journeys-only
  workspace: shop
  url: http://127.0.0.1:8080/in
  secretEnv: HOOK_SECRET
  types: [journey.action, journey.completed]
  maxAttempts: 3
  timeoutMs: 2000
  maxBatchActivations: 10
  maxRequestsPerSecond: 0.5
`;
  const [first, second] = parseWebhookConfig(text, 'hooks.yaml', ENV);
  t.equal(first.url.href, 'https://hooks.example.com/rtcdp');
  t.equal(first.secret, ENV.HOOK_SECRET, 'the secret is read from the named variable');
  t.same(first.types, [], 'every type by default');
  t.equal(first.maxAttempts, 8);
  t.equal(first.timeoutMs, 10_000);
  t.equal(first.maxBatchActivations, 100);
  t.equal(first.maxRequestsPerSecond, 10);
  t.same(second.types, ['journey.action', 'journey.completed']);
  t.equal(second.maxAttempts, 3);
  t.equal(second.timeoutMs, 2_000);
  t.equal(second.maxBatchActivations, 10);
  t.equal(second.maxRequestsPerSecond, 0.5);
});

t.test('webhook config - JSON files are parsed as JSON', async (t) => {
  const [destination] = parseWebhookConfig(JSON.stringify([valid]), 'hooks.json', ENV);
  t.equal(destination.name, 'crm');

  t.throws(() => parseWebhookConfig('[{', 'hooks.json', ENV), { code: 'INVALID_WEBHOOK_CONFIG', message: /^invalid webhook destinations in hooks\.json: the file is not valid JSON: / });
  t.throws(() => parseWebhookConfig('- [', 'hooks.yaml', ENV), { message: /the file is not valid YAML: / });
});

t.test('webhook config - the top level must be a list', async (t) => {
  t.same(issuesOf({ destinations: [valid] }), ['the file must contain a list of destinations, received an object']);
  t.same(issuesOf(null), ['the file must contain a list of destinations, received null']);
  t.same(validateWebhookConfig([], 'hooks.yaml', ENV), [], 'an empty list configures nothing');
});

t.test('webhook config - each rule names the field', async (t) => {
  const cases: Array<[string, unknown, string]> = [
    ['entry', 'crm', 'webhooks[0] must be an object, received "crm"'],
    ['unknown field', { ...valid, retries: 3 }, 'webhooks[0].retries is not a known field; expected one of name, workspace, url, secretEnv, types, maxAttempts, timeoutMs, maxBatchActivations, maxRequestsPerSecond'],
    ['name missing', { ...valid, name: undefined }, 'webhooks[0].name is missing'],
    ['name', { ...valid, name: 'crm hooks' }, 'webhooks[0].name must be 1-64 of A-Z, a-z, 0-9, "_" and "-", received "crm hooks"'],
    ['workspace', { ...valid, workspace: 'Shop' }, 'webhooks[0].workspace must be 1-64 of a-z, 0-9, "_" and "-", starting with a letter or digit, received "Shop"'],
    ['url missing', { ...valid, url: undefined }, 'webhooks[0].url is missing'],
    ['url scheme', { ...valid, url: 'ftp://hooks.example.com/in' }, 'webhooks[0].url must be an absolute http:// or https:// URL, received "ftp://hooks.example.com/in"'],
    ['url relative', { ...valid, url: '/in' }, 'webhooks[0].url must be an absolute http:// or https:// URL, received "/in"'],
    ['url scheme with credentials', { ...valid, url: 'ftp://user:pw@hooks.example.com/in' }, 'webhooks[0].url must be an absolute http:// or https:// URL, received a URL of scheme ftp: with a user name or password'],
    ['url credentials', { ...valid, url: 'https://user:pass@hooks.example.com/in' }, 'webhooks[0].url must not contain a user name or password; the receiver authenticates requests by their signature'],
    ['secretEnv name', { ...valid, secretEnv: 'HOOK-SECRET' }, 'webhooks[0].secretEnv must be the name of an environment variable, received "HOOK-SECRET"'],
    ['secret unset', { ...valid, secretEnv: 'MISSING_SECRET' }, "webhooks[0].secretEnv names MISSING_SECRET, which is not set in the environment; set it to the destination's secret"],
    ['secret short', { ...valid, secretEnv: 'SHORT_SECRET' }, 'webhooks[0].secretEnv names SHORT_SECRET, whose value must be at least 16 characters, received 5'],
    ['types empty', { ...valid, types: [] }, 'webhooks[0].types must be a non-empty list of activation types, received an empty list'],
    ['types member', { ...valid, types: ['segment.entered', 'segment.left'] }, 'webhooks[0].types[1] must be one of segment.entered, segment.exited, decision.made, journey.entered, journey.action, journey.exited, journey.completed, profile.merged, profile.unmerged, received "segment.left"'],
    ['maxAttempts', { ...valid, maxAttempts: 0 }, 'webhooks[0].maxAttempts must be an integer from 1 to 100, received 0'],
    ['timeoutMs', { ...valid, timeoutMs: '5s' }, 'webhooks[0].timeoutMs must be an integer from 100 to 300000, received "5s"'],
    ['maxBatchActivations', { ...valid, maxBatchActivations: 1.5 }, 'webhooks[0].maxBatchActivations must be an integer from 1 to 1000, received 1.5'],
    ['maxRequestsPerSecond', { ...valid, maxRequestsPerSecond: 0 }, 'webhooks[0].maxRequestsPerSecond must be a number greater than 0 and at most 10000, received 0'],
  ];
  for (const [rule, entry, message] of cases) t.same(issuesOf([entry]), [message], rule);
});

t.test('webhook config - every issue is reported at once', async (t) => {
  const issues = issuesOf([valid, { ...valid, url: 'mailto:ops@example.com', maxAttempts: 500 }, { ...valid, workspace: 'shop' }]);
  t.same(issues, [
    'webhooks[1].url must be an absolute http:// or https:// URL, received "mailto:ops@example.com"',
    'webhooks[1].maxAttempts must be an integer from 1 to 100, received 500',
    'webhooks[1].name "crm" is already used by webhooks[0], and names must be unique',
    'webhooks[2].name "crm" is already used by webhooks[0], and names must be unique',
  ], 'a repeated name is reported beside the other issues of its destination');
});

t.test('webhook config - the secret never appears in a message', async (t) => {
  const issues = issuesOf([{ ...valid, secretEnv: 'SHORT_SECRET' }]);
  t.notOk(issues.join(' ').includes(ENV.SHORT_SECRET));
});

t.test('webhook config - an unreadable file', async (t) => {
  const file = path.join(t.testdir(), 'missing.yaml');
  await t.rejects(loadWebhookConfig(file, ENV), { code: 'INVALID_WEBHOOK_CONFIG', message: new RegExp(`^invalid webhook destinations in ${file}: failed to read the file: ENOENT`) });
});

t.test('webhook config - rtcdp dev rejects an invalid file with exit code 2', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'hooks.yaml');
  writeFileSync(file, '- name: crm\n  workspace: default\n  url: ftp://hooks.example.com/in\n  secretEnv: RTCDP_TEST_UNSET_SECRET\n');

  const run = await runCli(['dev', '--data', path.join(dir, 'data'), '--port', '0', '--webhooks', file]);
  t.equal(run.code, 2);
  t.equal(
    run.stderr,
    `rtcdp: --webhooks ${file}: webhooks[0].url must be an absolute http:// or https:// URL, received "ftp://hooks.example.com/in"\n` +
      `rtcdp: --webhooks ${file}: webhooks[0].secretEnv names RTCDP_TEST_UNSET_SECRET, which is not set in the environment; set it to the destination's secret\n`,
  );
});
