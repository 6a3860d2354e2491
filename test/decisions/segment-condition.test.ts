import t from 'tap';
import { MAX_CONDITION_LENGTH, SegmentConditionCompiler, type CompileResult } from '../../decisions/definitions/segment-condition.js';
import { createProfile, type ProfileSnapshot } from '../../profiles/profile.js';

const COMPUTED = [
  { name: 'orders_30d', kind: 'count' as const },
  { name: 'ltv', kind: 'sum' as const },
  { name: 'avg_order', kind: 'average' as const },
  { name: 'favourite_category', kind: 'most_frequent' as const },
];

const compiler = new SegmentConditionCompiler(COMPUTED);

function errorOf(result: CompileResult) {
  if (result.ok) throw new Error(`expected a compile error, got a condition of type ${result.condition.resultType}`);
  return result.error;
}

function compiled(expression: string) {
  const result = compiler.compile(expression);
  if (!result.ok) throw new Error(`expected ${JSON.stringify(expression)} to compile: ${result.error.rule}`);
  return result.condition;
}

function profile(): ProfileSnapshot {
  const state = createProfile('default', 'user-1');
  state.traits = { plan: 'pro', email: 'ada@example.com', age: 36 };
  state.events = {
    'Order Completed': { count: 3, sums: { revenue: 250.5 }, firstSeenMs: 1_000, lastSeenMs: 9_000 },
    'page:Pricing': { count: 1, sums: {}, firstSeenMs: 5_000, lastSeenMs: 5_000 },
  };
  state.eventCount = 4;
  state.firstSeenMs = 1_000;
  state.lastSeenMs = 9_000;
  return state;
}

const COMPUTED_VALUES = { orders_30d: 2, ltv: 250.5, avg_order: 83.5, favourite_category: 'books' };

t.test('condition - syntax error position', async (t) => {
  const error = errorOf(compiler.compile('eventCount > 3 &&'));
  t.match(error.rule, 'is not a valid CEL expression: Unexpected token: EOF');
  t.match(error.rule, '(at line 1, column 18 of the condition)');
  t.equal(error.line, 1);
  t.equal(error.column, 18);
});

t.test('condition - error on second line', async (t) => {
  const error = errorOf(compiler.compile('traits.plan == "pro" &&\n  eventCount >> 3'));
  t.equal(error.line, 2, 'line of the error');
  t.equal(error.column, 15, 'column of the second >');
  t.match(error.rule, '(at line 2, column 15 of the condition)');
});

t.test('condition - unknown variable', async (t) => {
  const error = errorOf(compiler.compile('eventCount > 1 && plan == "pro"'));
  t.match(error.rule, 'Unknown variable: plan');
  t.equal(error.column, 19);
});

t.test('condition - type errors', async (t) => {
  const mixed = errorOf(compiler.compile('computed.ltv == 100'));
  t.match(mixed.rule, 'no such overload: double == int', 'sum is a double, and CEL does not compare it with an int for equality');

  const field = errorOf(compiler.compile('events["Order Completed"].total > 1'));
  t.match(field.rule, 'No such key: total', 'EventStats fields are checked');
  t.equal(field.column, 27);

  const notBoolean = errorOf(compiler.compile('traits.plan + "x"'));
  t.match(notBoolean.rule, 'must be a boolean expression, but its type is string');
});

t.test('condition - unknown computed trait', async (t) => {
  const error = errorOf(compiler.compile('eventCount > 1 && computed.orders_90d > 2'));
  t.match(error.rule, 'refers to computed trait "orders_90d" (at line 1, column 28 of the condition), which is not defined');
  t.match(error.rule, 'The computed traits after this apply are avg_order, favourite_category, ltv, orders_30d');
  t.equal(error.column, 28);

  const indexed = errorOf(compiler.compile('computed["nope"] == 1'));
  t.match(indexed.rule, 'refers to computed trait "nope"', 'index syntax is checked too');

  const none = errorOf(new SegmentConditionCompiler([]).compile('computed.ltv > 1.0'));
  t.match(none.rule, 'The workspace has no computed traits after this apply');
});

t.test('condition - every missing name reported', async (t) => {
  const defined = { segments: new Set(['buyers']), scores: new Set<string>() };
  const checked = new SegmentConditionCompiler(COMPUTED, { decisionVariables: true, defined });
  const error = errorOf(checked.compile('computed.a > 1.0 && segments.vip && "gold" in segments && segments.vip && scores.churn > 0.5 && computed.b > 1.0'));

  t.match(error.rule, /^refers to computed traits "a" \(at line 1, column 10 of the condition\) and "b" \(at line 1, column \d+ of the condition\), which are not defined\. The computed traits after this apply are /);
  t.match(error.rule, '. It also refers to segments "vip" (at line 1, column 30 of the condition) and "gold" (at line 1, column 37 of the condition), which are not defined. The segments after this apply are buyers');
  t.match(error.rule, '. It also refers to scoring model "churn"', 'the scoring model is named too');
  t.match(error.rule, 'The workspace has no scoring models after this apply');
  t.equal(error.rule.match(/"vip"/g)?.length, 1, 'a name used twice is reported once');
  t.equal(error.column, 10, 'the position is that of the first missing name');
});

t.test('condition - names in macros over segments', async (t) => {
  const defined = { segments: new Set(['buyers', 'vip']), scores: new Set(['churn']) };
  const checked = new SegmentConditionCompiler(COMPUTED, { decisionVariables: true, defined });
  const missingOf = (expression: string) => {
    const result = checked.compile(expression);
    return result.ok ? [] : [...result.error.rule.matchAll(/"([^"]+)" \(at line 1, column (\d+)/g)].map((match) => `${match[1]} at ${match[2]}`);
  };
  const named = (expression: string, name: string) => [`${name} at ${expression.indexOf(`"${name}"`) + 1}`];

  for (const expression of ['segments.exists(s, s == "gold")', 'segments.all(s, "gold" != s)', 'segments.exists_one(s, s in ["vip", "gold"])', 'segments.filter(s, s == "gold").size() > 0']) {
    t.same(missingOf(expression), named(expression, 'gold'), expression);
  }
  const overScores = 'scores.exists(m, m == "ltv_model")';
  t.same(missingOf(overScores), named(overScores, 'ltv_model'), 'macros over scores too');
  const nested = 'segments.exists(a, segments.exists(b, b == "gold" && a == "vip"))';
  t.same(missingOf(nested), named(nested, 'gold'), 'nested macros over segments');

  t.same(missingOf('segments.exists(s, s == "vip" || s.startsWith("buy"))'), [], 'defined names and patterns pass');
  t.same(missingOf('segments.exists(s, ["gold"].exists(s, s == "gold"))'), [], 'a nested macro with the same variable hides the key');
});

t.test('condition - macro variable named like a map', async (t) => {
  const defined = { segments: new Set(['buyers', 'vip']), scores: new Set(['churn']) };
  const checked = new SegmentConditionCompiler(COMPUTED, { decisionVariables: true, defined });
  const missingOf = (expression: string) => {
    const result = checked.compile(expression);
    return result.ok ? [] : [...result.error.rule.matchAll(/"([^"]+)" \(at line 1, column (\d+)/g)].map((match) => `${match[1]} at ${match[2]}`);
  };
  // A name is reported at the first column of `text`: the quoted string, or the field after the dot.
  const gold = (expression: string, text: string) => [`gold at ${expression.indexOf(text) + 1}`];

  // In each, segments, scores or computed is the macro's own variable, which names nothing.
  const valid = [
    'traits.groups.exists(segments, "gold" in segments)',
    'traits.groups.exists(segments, segments.exists(s, s == "gold"))',
    'traits.plans.exists(scores, scores.x == 1.0)',
    'traits.plans.exists(computed, computed.tier == "gold")',
    'cel.bind(segments, ["gold"], "gold" in segments)',
    'segments.exists(s, cel.bind(s, "x", s == "gold"))',
  ];
  for (const expression of valid) {
    t.same(missingOf(expression), [], expression);
  }

  const outsideBody = 'traits.groups.exists(segments, "vip" in segments) || segments.gold';
  t.same(missingOf(outsideBody), gold(outsideBody, 'gold'), 'the variable outside the macro is still checked');
  const bindInitial = 'cel.bind(x, segments.gold, x)';
  t.same(missingOf(bindInitial), gold(bindInitial, 'gold'), 'the initial value of cel.bind is outside its variable');
  const keyInInitial = 'segments.exists(s, cel.bind(s, s == "gold", s))';
  t.same(missingOf(keyInInitial), gold(keyInInitial, '"gold"'), 'the key compared in the initial value of cel.bind');
  const keyOfSameName = 'segments.exists(segments, segments == "gold")';
  t.same(missingOf(keyOfSameName), gold(keyOfSameName, '"gold"'), 'a key named segments is compared like any key');
});

t.test('condition - segments outside decision rules', async (t) => {
  const defined = { segments: new Set(['buyers']), scores: new Set<string>() };
  const checked = new SegmentConditionCompiler(COMPUTED, { defined });
  const error = errorOf(checked.compile('segments.vip'));

  t.match(error.rule, 'Unknown variable: segments', 'a segment condition cannot read segments');
  t.notMatch(error.rule, 'The segments after this apply are', 'the defined segments are not offered');
});

t.test('condition - scores in scoring features', async (t) => {
  const defined = { segments: new Set<string>(), scores: new Set(['churn']), scoresReadable: false };
  const checked = new SegmentConditionCompiler(COMPUTED, { defined });
  const error = errorOf(checked.compileNumber('scores.missing * 2.0'));

  t.match(error.rule, 'reads scoring model "missing"', 'the read is named');
  t.match(error.rule, "a scoring model's features cannot read scores", 'with the reason it is rejected');
});

t.test('condition - scores read without a name', async (t) => {
  const defined = { segments: new Set<string>(), scores: new Set(['churn']), scoresReadable: false };
  const checked = new SegmentConditionCompiler(COMPUTED, { defined });

  const unnamed = ['double(scores.size())', 'scores.exists(m, scores[m] > 0.5) ? 1.0 : 0.0', 'cel.bind(s, scores, double(s.size()))'];
  for (const expression of unnamed) {
    const error = errorOf(checked.compileNumber(expression));
    t.match(error.rule, `reads scores (at line 1, column ${expression.indexOf('scores') + 1} of the condition)`, `${expression}: the first read is reported`);
    t.match(error.rule, "a scoring model's features cannot read scores", `${expression}: with the reason it is rejected`);
  }

  const shadowed = 'traits.levels.exists(scores, scores > 1) ? 1.0 : 0.0';
  t.ok(checked.compileNumber(shadowed).ok, 'a macro variable named scores reads no score');
});

t.test('condition - empty and too long', async (t) => {
  t.match(errorOf(compiler.compile('')).rule, 'must be a non-empty CEL expression');
  t.match(errorOf(compiler.compile('true || '.repeat(1_000) + 'true')).rule, `must be at most ${MAX_CONDITION_LENGTH} characters, got 8004`);
});

t.test('condition - result types and references', async (t) => {
  t.equal(compiled('eventCount > 3').resultType, 'bool');
  t.equal(compiled('traits.vip').resultType, 'dyn', 'a trait alone is dyn');
  t.same(compiled('computed.ltv > 10.0 || computed["orders_30d"] > 1 || computed.ltv < 0.0').computedTraits, ['ltv', 'orders_30d'], 'names sorted, once each');
});

const EVALUATIONS: Array<[expression: string, expected: boolean]> = [
  ['traits.plan == "pro"', true],
  ['traits.age >= 30', true],
  ['traits.email.endsWith("@example.com")', true],
  ['has(traits.country)', false],
  ['events["Order Completed"].count >= 3', true],
  ['events["Order Completed"].sums["revenue"] > 200.0', true],
  ['"page:Pricing" in events && events["page:Pricing"].lastSeenMs > firstSeenMs', true],
  ['"Cart Abandoned" in events', false],
  ['eventCount == 4 && lastSeenMs - firstSeenMs == 8000', true],
  ['nowMs - lastSeenMs < 86400000', true],
  ['computed.orders_30d >= 2 && computed.ltv > 100.0', true],
  ['computed.avg_order > 100', false],
  ['computed.favourite_category == "books"', true],
  ['[1, 2, 3].exists(n, n == computed.orders_30d)', true],
];

t.test('condition - evaluation on a profile', async (t) => {
  const activation = compiler.activation(profile(), COMPUTED_VALUES, 10_000);
  for (const [expression, expected] of EVALUATIONS) {
    t.equal(compiled(expression).evaluate(activation), expected, expression);
  }
});

t.test('condition - whole sum stays double', async (t) => {
  const activation = compiler.activation(profile(), { ...COMPUTED_VALUES, ltv: 300, avg_order: 100 }, 10_000);
  t.equal(compiled('computed.ltv > 100.0').evaluate(activation), true, 'a sum of 300 is the double 300.0');
  t.equal(compiled('computed.ltv == 300.0').evaluate(activation), true);
  t.equal(compiled('computed.avg_order == 100').evaluate(activation), true, 'a dyn average compares with an int literal');
  t.equal(compiled('computed.orders_30d == 2').evaluate(activation), true, 'a count is an int');
});

t.test('condition - missing trait fails evaluation', async (t) => {
  const activation = compiler.activation(profile(), COMPUTED_VALUES, 10_000);
  t.throws(() => compiled('traits.country == "NL"').evaluate(activation), /No such key: country/, 'CEL has no implicit null for a missing key');
});
