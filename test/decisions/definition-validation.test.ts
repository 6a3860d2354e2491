import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { contentHash } from '../../decisions/definitions/canonical.js';
import type { DefinitionVersion } from '../../decisions/definitions/definition-store.js';
import type { SourceFile } from '../../decisions/definitions/document.js';
import { formatIssue, STORED_DEFINITION_FILE } from '../../decisions/definitions/issues.js';
import { validateDefinitionSet } from '../../decisions/definitions/validate.js';

const TRAITS_YAML = `# Computed traits of the shop
apiVersion: rtcdp/v1
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
metadata: { name: ltv, workspace: default }
spec: { kind: sum, event: Order Completed, property: revenue }
`;

const SEGMENTS_JSON = JSON.stringify([
  { apiVersion: 'rtcdp/v1', kind: 'Segment', metadata: { name: 'big_spenders' }, spec: { condition: 'computed.ltv > 100.0 && computed.orders_30d >= 2' } },
  { apiVersion: 'rtcdp/v1', kind: 'Segment', metadata: { name: 'pro_users' }, spec: { condition: 'has(traits.plan) && traits.plan == "pro"' } },
]);

function validate(files: SourceFile[], options: { current?: DefinitionVersion[]; prune?: boolean } = {}) {
  return validateDefinitionSet(files, { workspace: 'default', current: options.current ?? [], prune: options.prune ?? false });
}

/** Renders a Segment document as YAML with the given condition. */
function segmentYaml(name: string, condition: string): string {
  return `apiVersion: rtcdp/v1\nkind: Segment\nmetadata:\n  name: ${name}\nspec:\n  condition: ${JSON.stringify(condition)}\n`;
}

function storedVersion(kind: DefinitionVersion['kind'], name: string, spec: DefinitionVersion['spec'], version = 1): DefinitionVersion {
  return {
    recordVersion: 1,
    workspace: 'default',
    kind,
    name,
    version,
    contentHash: contentHash({ kind, name, description: '', spec }),
    appliedAtMs: 0,
    deleted: false,
    description: '',
    spec,
    source: { file: 'earlier.yaml', path: 'documents[0]' },
  };
}

t.test('validation - valid YAML and JSON set', async (t) => {
  const result = validate([
    { name: 'traits.yaml', content: TRAITS_YAML },
    { name: 'segments.json', content: SEGMENTS_JSON },
  ]);

  t.same(result.issues, [], 'no issues');
  t.same(
    result.definitions.map((definition) => `${definition.kind}/${definition.name}`),
    ['ComputedTrait/orders_30d', 'ComputedTrait/ltv', 'Segment/big_spenders', 'Segment/pro_users'],
  );

  const [orders, ltv, bigSpenders] = result.definitions;
  t.equal(orders.description, 'Orders in the last 30 days');
  t.equal(orders.computedTrait?.windowMs, 30 * 86_400_000, 'computed trait resolved with resolveComputedTrait');
  t.same(orders.source, { file: 'traits.yaml', path: 'documents[0]' });
  t.equal(ltv.computedTrait?.property, 'revenue');
  t.same(bigSpenders.condition?.computedTraits, ['ltv', 'orders_30d'], 'condition lists its computed traits');
  t.equal(bigSpenders.condition?.resultType, 'bool');
  t.match(orders.contentHash, /^[0-9a-f]{64}$/, 'content hash is SHA-256 hex');
});

t.test('validation - hash ignores formatting and key order', async (t) => {
  const yaml = `apiVersion: rtcdp/v1
kind: ComputedTrait
metadata: { name: ltv }
spec: { kind: sum, event: Order Completed, property: revenue }
`;
  const json = '{"spec": {"property": "revenue", "event": "Order Completed", "kind": "sum"}, "metadata": {"name": "ltv"}, "kind": "ComputedTrait", "apiVersion": "rtcdp/v1"}';
  const fromYaml = validate([{ name: 'a.yaml', content: yaml }]).definitions[0];
  const fromJson = validate([{ name: 'b.json', content: json }]).definitions[0];
  t.equal(fromYaml.contentHash, fromJson.contentHash, 'same content, same hash');

  const described = validate([{ name: 'c.yaml', content: yaml.replace('name: ltv', 'name: ltv, description: lifetime value') }]).definitions[0];
  t.not(described.contentHash, fromYaml.contentHash, 'a description changes the hash');
});

interface BadCase {
  name: string;
  files: SourceFile[];
  /** Expected issues in order: file, path, a fragment of the rule, and the line (0 to skip the check). */
  issues: Array<{ file: string; path: string; rule: string | RegExp; line?: number }>;
}

const BAD_CASES: BadCase[] = [
  {
    name: 'YAML syntax error',
    files: [{ name: 'broken.yaml', content: 'apiVersion: rtcdp/v1\nkind: [Segment\n' }],
    issues: [{ file: 'broken.yaml', path: '', rule: /is not valid YAML or JSON: .*at line \d+, column \d+/, line: 3 }],
  },
  {
    name: 'JSON syntax error',
    files: [{ name: 'broken.json', content: '{"apiVersion": "rtcdp/v1",' }],
    issues: [{ file: 'broken.json', path: '', rule: 'is not valid YAML or JSON', line: 1 }],
  },
  {
    name: 'YAML aliases that expand too far',
    files: [
      {
        name: 'laughs.yaml',
        content: [
          'apiVersion: rtcdp/v1',
          'kind: Segment',
          'metadata: { name: laughs }',
          'spec:',
          "  condition: 'true'",
          '  a: &a [x, x, x, x, x, x, x, x, x, x]',
          '  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]',
          '  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
          '  d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]',
          '',
        ].join('\n'),
      },
    ],
    issues: [{ file: 'laughs.yaml', path: '', rule: 'is not valid YAML or JSON: Excessive alias count indicates a resource exhaustion attack (at line 1, column 1)', line: 1 }],
  },
  {
    name: 'repeated YAML key',
    files: [{ name: 'dup.yaml', content: 'apiVersion: rtcdp/v1\nkind: Segment\nkind: Segment\n' }],
    issues: [{ file: 'dup.yaml', path: '', rule: 'Map keys must be unique', line: 3 }],
  },
  {
    name: 'empty file',
    files: [{ name: 'empty.yaml', content: '# nothing yet\n' }],
    issues: [{ file: 'empty.yaml', path: '', rule: 'contains no definitions' }],
  },
  {
    name: 'document is a string',
    files: [{ name: 'a.yaml', content: 'hello\n' }],
    issues: [{ file: 'a.yaml', path: 'documents[0]', rule: 'must be an object with apiVersion, kind, metadata and spec, got "hello"', line: 1 }],
  },
  {
    name: 'envelope fields wrong',
    files: [{ name: 'a.yaml', content: 'apiVersion: rtcdp/v2\nkind: Segment\nmetadata: { name: 1st-segment }\nspec: []\nstatus: {}\n' }],
    issues: [
      { file: 'a.yaml', path: 'documents[0].apiVersion', rule: 'must be rtcdp/v1, got "rtcdp/v2"', line: 1 },
      { file: 'a.yaml', path: 'documents[0].metadata.name', rule: 'must be 1 to 64 letters, digits or underscores starting with a letter, got "1st-segment"', line: 3 },
      { file: 'a.yaml', path: 'documents[0].spec', rule: 'must be an object, got a list', line: 4 },
      { file: 'a.yaml', path: 'documents[0].status', rule: 'is not a field. The fields are apiVersion, kind, metadata, spec', line: 5 },
    ],
  },
  {
    name: 'missing envelope fields',
    files: [{ name: 'a.json', content: '{"metadata": {}}' }],
    issues: [
      { file: 'a.json', path: 'documents[0].apiVersion', rule: 'is missing' },
      { file: 'a.json', path: 'documents[0].kind', rule: 'is missing. Use one of ComputedTrait, Segment, DecisionRule, ContactPolicy, ScoringModel, Journey' },
      { file: 'a.json', path: 'documents[0].metadata.name', rule: 'is missing' },
      { file: 'a.json', path: 'documents[0].spec', rule: 'is missing' },
    ],
  },
  {
    name: 'unknown kind',
    files: [{ name: 'a.yaml', content: 'apiVersion: rtcdp/v1\nkind: Audience\nmetadata: { name: a }\nspec: {}\n' }],
    issues: [{ file: 'a.yaml', path: 'documents[0].kind', rule: 'must be one of ComputedTrait, Segment, DecisionRule, ContactPolicy, ScoringModel, Journey, got "Audience"', line: 2 }],
  },
  {
    name: 'workspace of another write key',
    files: [{ name: 'a.yaml', content: 'apiVersion: rtcdp/v1\nkind: Segment\nmetadata: { name: a, workspace: prod }\nspec: { condition: "true" }\n' }],
    issues: [{ file: 'a.yaml', path: 'documents[0].metadata.workspace', rule: 'is "prod", but the write key is for workspace "default"', line: 3 }],
  },
  {
    name: 'metadata field and description',
    files: [{ name: 'a.yaml', content: 'apiVersion: rtcdp/v1\nkind: Segment\nmetadata:\n  name: a\n  labels: {}\n  description: 42\nspec: { condition: "true" }\n' }],
    issues: [
      { file: 'a.yaml', path: 'documents[0].metadata.labels', rule: 'is not a field. The fields are name, workspace, description', line: 5 },
      { file: 'a.yaml', path: 'documents[0].metadata.description', rule: 'must be a string of at most 1000 characters, got 42', line: 6 },
    ],
  },
  {
    name: 'computed trait spec rules',
    files: [
      {
        name: 'traits.yaml',
        content: [
          'apiVersion: rtcdp/v1\nkind: ComputedTrait\nmetadata: { name: a }\nspec:\n  kind: count\n  window:\n    days: 0\n',
          'apiVersion: rtcdp/v1\nkind: ComputedTrait\nmetadata: { name: b }\nspec: { kind: sum, event: Order Completed }\n',
          'apiVersion: rtcdp/v1\nkind: ComputedTrait\nmetadata: { name: c }\nspec: { kind: count, name: c }\n',
          'apiVersion: rtcdp/v1\nkind: ComputedTrait\nmetadata: { name: d }\nspec: { kind: median, "odd key": 1 }\n',
        ].join('---\n'),
      },
    ],
    issues: [
      { file: 'traits.yaml', path: 'documents[0].spec.window.days', rule: 'must be an integer from 1 to 3650, got 0', line: 7 },
      { file: 'traits.yaml', path: 'documents[1].spec.property', rule: 'is missing. A sum trait aggregates the values of one property', line: 12 },
      { file: 'traits.yaml', path: 'documents[2].spec.name', rule: 'its name is metadata.name', line: 17 },
      { file: 'traits.yaml', path: 'documents[3].spec["odd key"]', rule: 'is not a setting', line: 22 },
    ],
  },
  {
    name: 'segment spec rules',
    files: [
      {
        name: 'segments.yaml',
        content: [
          'apiVersion: rtcdp/v1\nkind: Segment\nmetadata: { name: a }\nspec: { condition: 1, audience: x }\n',
          'apiVersion: rtcdp/v1\nkind: Segment\nmetadata: { name: b }\nspec: {}\n',
          'apiVersion: rtcdp/v1\nkind: Segment\nmetadata: { name: c }\nspec: { condition: "  " }\n',
          'apiVersion: rtcdp/v1\nkind: Segment\nmetadata: { name: d }\nspec:\n  condition: eventCount + 1\n',
        ].join('---\n'),
      },
    ],
    issues: [
      { file: 'segments.yaml', path: 'documents[0].spec.audience', rule: 'is not a setting of a Segment. The settings are condition', line: 4 },
      { file: 'segments.yaml', path: 'documents[0].spec.condition', rule: 'must be a CEL expression as a string, got 1', line: 4 },
      { file: 'segments.yaml', path: 'documents[1].spec.condition', rule: 'is missing', line: 9 },
      { file: 'segments.yaml', path: 'documents[2].spec.condition', rule: 'must be a non-empty CEL expression', line: 14 },
      { file: 'segments.yaml', path: 'documents[3].spec.condition', rule: 'must be a boolean expression, but its type is int', line: 20 },
    ],
  },
  {
    name: 'segment refers to unknown computed trait',
    files: [
      { name: 'traits.yaml', content: TRAITS_YAML },
      { name: 'segments.yaml', content: segmentYaml('churn_risk', 'computed.ltv > 10.0 && computed.orders_90d == 0') },
    ],
    issues: [
      {
        file: 'segments.yaml',
        path: 'documents[0].spec.condition',
        rule: 'refers to computed trait "orders_90d" (at line 1, column 33 of the condition), which is not defined. The computed traits after this apply are ltv, orders_30d',
        line: 6,
      },
    ],
  },
  {
    name: 'repeated name within a kind',
    files: [
      { name: 'a.yaml', content: segmentYaml('vip', 'eventCount > 10') },
      { name: 'b.yaml', content: `${segmentYaml('vip', 'eventCount > 20')}---\napiVersion: rtcdp/v1\nkind: ComputedTrait\nmetadata: { name: vip }\nspec: { kind: count }\n` },
    ],
    issues: [{ file: 'b.yaml', path: 'documents[0].metadata.name', rule: 'repeats Segment "vip" of a.yaml documents[0]. Give each Segment of a workspace its own name', line: 4 }],
  },
];

for (const badCase of BAD_CASES) {
  t.test(`validation - ${badCase.name}`, async (t) => {
    const { issues } = validate(badCase.files);
    t.equal(issues.length, badCase.issues.length, `${badCase.issues.length} issues, got: ${issues.map(formatIssue).join(' | ')}`);

    badCase.issues.forEach((expected, i) => {
      const issue = issues[i];
      t.equal(issue?.file, expected.file, `issue ${i} file`);
      t.equal(issue?.path, expected.path, `issue ${i} path`);
      t.match(issue?.rule, expected.rule, `issue ${i} rule`);
      if (expected.line !== undefined) t.equal(issue?.line, expected.line, `issue ${i} line`);
    });
  });
}

t.test('validation - several files report every issue', async (t) => {
  const { issues, definitions } = validate([
    { name: 'a.yaml', content: 'apiVersion: rtcdp/v1\nkind: Campaign\nmetadata: { name: j }\nspec: {}\n' },
    { name: 'b.yaml', content: segmentYaml('s', 'eventCount >') },
    { name: 'c.yaml', content: segmentYaml('ok', 'eventCount > 1') },
  ]);
  t.same(
    issues.map((issue) => `${issue.file}: ${issue.path}`),
    ['a.yaml: documents[0].kind', 'b.yaml: documents[0].spec.condition'],
    'one issue per bad file, in file order',
  );
  t.equal(formatIssue(issues[0]), 'a.yaml: documents[0].kind: must be one of ComputedTrait, Segment, DecisionRule, ContactPolicy, ScoringModel, Journey, got "Campaign"');
  t.same(definitions.map((definition) => definition.name), ['ok'], 'the valid document is still resolved');
});

t.test('validation - stored computed traits', async (t) => {
  const ltv = storedVersion('ComputedTrait', 'ltv', { kind: 'sum', event: 'Order Completed', property: 'revenue' });
  const segment = [{ name: 'segments.yaml', content: segmentYaml('rich', 'computed.ltv > 1000.0') }];

  t.same(validate(segment, { current: [ltv] }).issues, [], 'a stored computed trait is defined');

  const pruned = validate(segment, { current: [ltv], prune: true }).issues;
  t.equal(pruned.length, 1, 'with prune the stored trait is gone');
  t.match(pruned[0]?.rule, 'refers to computed trait "ltv"');
  t.match(pruned[0]?.rule, 'The workspace has no computed traits after this apply');
});

t.test('validation - stored segment broken by a kind change', async (t) => {
  const orders = storedVersion('ComputedTrait', 'orders', { kind: 'count', event: 'Order Completed' });
  const segment = storedVersion('Segment', 'repeat_buyers', { condition: 'computed.orders == 2' }, 3);
  const changedTrait = [{ name: 'traits.yaml', content: 'apiVersion: rtcdp/v1\nkind: ComputedTrait\nmetadata: { name: orders }\nspec: { kind: sum, event: Order Completed, property: revenue }\n' }];

  const { issues } = validate(changedTrait, { current: [orders, segment] });
  t.equal(issues.length, 1, 'one issue for the stored segment');
  t.equal(issues[0]?.file, STORED_DEFINITION_FILE);
  t.equal(issues[0]?.path, 'Segment repeat_buyers (version 3) spec.condition');
  t.match(issues[0]?.rule, 'no such overload: double == int');

  const fixed = [...changedTrait, { name: 'segments.yaml', content: segmentYaml('repeat_buyers', 'computed.orders == 2.0') }];
  t.same(validate(fixed, { current: [orders, segment] }).issues, [], 'applying the segment with the trait fixes it');
});

t.test('validation - sample definitions are valid', async (t) => {
  const directory = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'data', 'definitions');
  const files = readdirSync(directory)
    .sort()
    .map((name) => ({ name, content: readFileSync(path.join(directory, name), 'utf8') }));

  const { issues, definitions } = validate(files);
  t.same(issues.map(formatIssue), [], 'no issues');
  t.same(definitions.map((definition) => `${definition.kind}/${definition.name}`), [
    'ComputedTrait/revenue_total',
    'ComputedTrait/invoices',
    'ComputedTrait/lines_7d',
    'DecisionRule/vip_offer',
    'DecisionRule/repeat_buyer_bundle',
    'DecisionRule/newsletter_signup',
    'ContactPolicy/default',
    'ScoringModel/engagement',
    'Journey/vip_welcome',
    'Segment/big_spenders',
    'Segment/repeat_buyers',
    'Segment/cancellers',
  ]);
});

t.test('validation - named segments and scoring models', async (t) => {
  const document = (kind: string, name: string, spec: string) => `apiVersion: rtcdp/v1\nkind: ${kind}\nmetadata: { name: ${name} }\nspec: ${spec}\n`;
  const base = [
    document('ComputedTrait', 'orders', '{ kind: count, event: Order Completed }'),
    document('Segment', 'buyers', "{ condition: 'computed.orders >= 1' }"),
    document('ScoringModel', 'engaged', '{ model: logistic, intercept: -2.0, features: [{ expression: "double(eventCount)", weight: 0.5 }] }'),
  ];
  const issuesOf = (extra: string, current: Parameters<typeof validateDefinitionSet>[1]['current'] = []) =>
    validateDefinitionSet([{ name: 'set.yaml', content: [...base, extra].join('---\n') }], { workspace: 'w', current, prune: false }).issues.map((issue) => `${issue.path}: ${issue.rule}`);
  const rule = (eligibility: string) => document('DecisionRule', 'offer', `{ eligibility: '${eligibility}' }`);

  t.same(issuesOf(rule('"buyers" in segments && scores.engaged > 0.5 && context.page == "/"')), [], 'a rule that names a segment and a model of the set');
  t.same(issuesOf(rule('has(segments.buyers) && segments["buyers"] && "engaged" in scores')), [], 'every way to name them');

  t.same(issuesOf(rule('"vip" in segments')), [
    'documents[3].spec.eligibility: refers to segment "vip" (at line 1, column 1 of the condition), which is not defined. The segments after this apply are buyers',
  ]);
  t.match(issuesOf(rule('segments.vip')), [/^documents\[3\]\.spec\.eligibility: refers to segment "vip" \(at line 1, column 10/]);
  t.same(issuesOf(rule('scores["churn"] > 0.5')), [
    'documents[3].spec.eligibility: refers to scoring model "churn" (at line 1, column 8 of the condition), which is not defined. The scoring models after this apply are engaged',
  ]);
  t.match(issuesOf(document('Segment', 'at_risk', "{ condition: 'scores.churn > 0.5' }")), [/^documents\[3\]\.spec\.condition: refers to scoring model "churn"/], 'segment conditions too');
  t.match(
    issuesOf(document('Journey', 'winback', "{ entry: { segment: buyers }, steps: [{ name: check, branch: [{ when: 'segments.vip', goto: mail }, { goto: mail }] }, { name: mail, action: send_mail, channel: email }] }")),
    [/refers to segment "vip"/],
    'journey conditions too',
  );

  t.same(issuesOf(document('Journey', 'welcome', '{ entry: { segment: nowhere }, steps: [{ name: mail, action: send_mail, channel: email }] }')), [
    'documents[3].spec.entry.segment: names segment "nowhere", which the workspace will not have after this apply. The segments after this apply are buyers',
  ]);
  t.same(issuesOf(document('ScoringModel', 'boosted', '{ model: logistic, intercept: 0.0, features: [{ expression: "scores.engaged", weight: 1.0 }] }')), [
    'documents[3].spec.features[0].expression: reads scoring model "engaged" (at line 1, column 8 of the condition), but a scoring model\'s features cannot read scores: every model is computed from the same profile state, before any of them has its new score',
  ]);

  const stored = [{ kind: 'Segment', name: 'vip', version: 1, spec: { condition: 'computed.orders >= 5' } }] as unknown as Parameters<typeof validateDefinitionSet>[1]['current'];
  t.same(issuesOf(rule('"vip" in segments'), stored), [], 'a segment the workspace keeps from an earlier apply counts');
});

t.test('validation - decision rules and contact policies', async (t) => {
  const rule = (spec: string) => ({
    name: 'rules.yaml',
    content: `apiVersion: rtcdp/v1\nkind: ComputedTrait\nmetadata: { name: orders }\nspec: { kind: count, event: Order Completed }\n---\napiVersion: rtcdp/v1\nkind: DecisionRule\nmetadata: { name: offer }\nspec: ${spec}\n`,
  });
  const rules = (spec: string) => validateDefinitionSet([rule(spec)], { workspace: 'w', current: [], prune: false }).issues.map((issue) => `${issue.path}: ${issue.rule}`);

  t.same(rules("{ eligibility: 'computed.orders >= 2', priority: 'double(computed.orders)', caps: [{ max: 1, window: { days: 7 } }], cooldown: { hours: 24 } }"), [], 'a valid rule');
  t.same(rules('{ caps: [{ max: 0, window: { days: 7 } }] }'), ['documents[1].spec.caps[0].max: must be an integer from 1 to 1000, got 0']);
  t.same(rules('{ caps: [{ max: 1 }] }'), ['documents[1].spec.caps[0].window: is missing. Give the window the cap counts over, such as { days: 7 }']);
  t.same(rules('{ cooldown: { days: 1, hours: 2 } }'), ['documents[1].spec.cooldown: must set exactly one of days, hours and minutes, such as { hours: 24 }']);
  t.same(rules('{ controlGroupPercent: 60 }'), ['documents[1].spec.controlGroupPercent: must be a number from 0 to 50, got 60']);
  t.same(rules('{ channels: [web, web] }'), ['documents[1].spec.channels[1]: repeats channel "web"']);
  t.same(rules('{ trigger: { condition: "true" } }'), ['documents[1].spec.trigger: must select events with one of event, page, screen or type, such as { event: Order Completed }']);
  t.same(rules('{ budget: 3 }'), ['documents[1].spec.budget: is not a setting. The settings here are action, channels, trigger, eligibility, priority, caps, cooldown, controlGroupPercent']);
  t.match(rules("{ priority: 'traits.plan == \"pro\"' }"), ['documents[1].spec.priority: must be a numeric expression, but its type is bool']);
  t.match(rules("{ eligibility: 'computed.nothing > 1' }"), [/^documents\[1\]\.spec\.eligibility: refers to computed trait "nothing"/]);
  t.match(rules("{ eligibility: '\"vip\" in segments && context.page == \"/\"' }"), [/^documents\[1\]\.spec\.eligibility: refers to segment "vip"/], 'segments is a variable of rules');

  const policy = validateDefinitionSet(
    [{ name: 'policy.yaml', content: 'apiVersion: rtcdp/v1\nkind: ContactPolicy\nmetadata: { name: default }\nspec: { caps: [{ max: 3, window: { days: 1 }, channel: sms }] }\n' }],
    { workspace: 'w', current: [], prune: false },
  );
  t.same(policy.issues, []);
  t.same(policy.definitions[0].contactPolicy, { caps: [{ max: 3, windowMs: 86_400_000, channel: 'sms' }] });
});
