import t from 'tap';
import { compileSchema, createSchema, type CompiledSchema } from '../../identity/matching/comparison-schema.js';
import { estimateByEm } from '../../identity/matching/expectation-maximisation.js';
import { buildModel, probabilityOf, weightOf, weightsOf } from '../../identity/matching/fellegi-sunter.js';
import { mulberry32 } from '../../identity/matching/random-pairs.js';

// Four fields of different kinds, with the parameters that the synthetic pairs are drawn from.
// Level 0 (missing) has no parameters. Each field's m and u sum to 1 over levels 1 and up.
const FIELDS = ['surname', 'dateOfBirth', 'postcode', 'state'];
const TRUE_M = [
  [0, 0.7, 0.1, 0.08, 0.05, 0.04, 0.03],
  [0, 0.85, 0.06, 0.04, 0.02, 0.03],
  [0, 0.8, 0.1, 0.05, 0.05],
  [0, 0.95, 0.05],
];
const TRUE_U = [
  [0, 0.01, 0.01, 0.02, 0.02, 0.14, 0.8],
  [0, 0.002, 0.01, 0.03, 0.05, 0.908],
  [0, 0.02, 0.08, 0.2, 0.7],
  [0, 0.3, 0.7],
];
const TRUE_LAMBDA = 0.2;
const MISSING_SHARE = 0.1;

/** Draws pairs from the model and returns the count of each pattern. */
function syntheticPatterns(compiled: CompiledSchema, pairs: number, seed: number): Map<number, number> {
  const random = mulberry32(seed);
  const counts = new Map<number, number>();
  for (let pair = 0; pair < pairs; pair++) {
    const isMatch = random() < TRUE_LAMBDA;
    let pattern = 0;
    for (let f = 0; f < FIELDS.length; f++) {
      const level = random() < MISSING_SHARE ? 0 : drawLevel(isMatch ? TRUE_M[f] : TRUE_U[f], random());
      pattern = pattern * compiled.radices[f] + level;
    }
    counts.set(pattern, (counts.get(pattern) ?? 0) + 1);
  }
  return counts;
}

function drawLevel(probabilities: readonly number[], draw: number): number {
  let cumulative = 0;
  for (let level = 1; level < probabilities.length; level++) {
    cumulative += probabilities[level];
    if (draw < cumulative) return level;
  }
  return probabilities.length - 1;
}

function largestError(estimated: readonly (readonly number[])[], truth: readonly (readonly number[])[]): number {
  let largest = 0;
  truth.forEach((field, f) => field.forEach((value, level) => (largest = Math.max(largest, Math.abs(estimated[f][level] - value)))));
  return largest;
}

const compiled = compileSchema(createSchema(FIELDS));

t.test('EM - recovers m, u and lambda of synthetic pairs', async (t) => {
  const result = await estimateByEm(syntheticPatterns(compiled, 200_000, 7), compiled);

  t.ok(result.converged, `converged after ${result.iterations} iterations`);
  t.ok(Math.abs(result.lambda - TRUE_LAMBDA) < 0.01, `lambda ${result.lambda} is within 0.01 of ${TRUE_LAMBDA}`);
  t.ok(largestError(result.m, TRUE_M) < 0.02, `every m is within 0.02 (largest error ${largestError(result.m, TRUE_M)})`);
  t.ok(largestError(result.u, TRUE_U) < 0.01, `every u is within 0.01 (largest error ${largestError(result.u, TRUE_U)})`);
});

t.test('EM - with u fixed, estimates m and lambda', async (t) => {
  const result = await estimateByEm(syntheticPatterns(compiled, 100_000, 11), compiled, { fixedU: TRUE_U });

  t.ok(result.converged);
  t.same(result.u, TRUE_U, 'u is unchanged');
  t.ok(Math.abs(result.lambda - TRUE_LAMBDA) < 0.01, `lambda ${result.lambda}`);
  t.ok(largestError(result.m, TRUE_M) < 0.02, `largest m error ${largestError(result.m, TRUE_M)}`);
});

t.test('EM - ignored fields keep their starting m', async (t) => {
  const uniformM = TRUE_M.map((field) => field.map((_, level) => (level === 0 ? 0 : 1 / (field.length - 1))));
  const result = await estimateByEm(syntheticPatterns(compiled, 50_000, 13), compiled, { fixedU: TRUE_U, initialM: uniformM, ignoredFields: new Set([0]) });

  t.same(result.m[0], uniformM[0], 'field 0 keeps its starting m');
  t.ok(largestError(result.m.slice(1), TRUE_M.slice(1)) < 0.02, `the other fields are estimated (largest error ${largestError(result.m.slice(1), TRUE_M.slice(1))})`);
});

t.test('EM - with m and u fixed, estimates lambda only', async (t) => {
  const result = await estimateByEm(syntheticPatterns(compiled, 50_000, 17), compiled, { fixedU: TRUE_U, fixedM: TRUE_M });
  t.same(result.m, TRUE_M);
  t.ok(Math.abs(result.lambda - TRUE_LAMBDA) < 0.01, `lambda ${result.lambda}`);
});

t.test('Fellegi-Sunter - weights and probabilities', async (t) => {
  const model = buildModel(compiled.schema, TRUE_M, TRUE_U, TRUE_LAMBDA);
  const weights = weightsOf(model);
  t.equal(weights.fields[0][0], 0, 'missing contributes nothing');
  t.equal(weights.fields[0][1], Math.log2(0.7 / 0.01));
  t.equal(weights.prior, Math.log2(0.2 / 0.8));
  t.equal(probabilityOf(0), 0.5);
  t.equal(weightOf(0.5), 0);
  t.ok(Math.abs(probabilityOf(weightOf(0.95)) - 0.95) < 1e-12, 'weightOf inverts probabilityOf');
  t.same(model.fields[3].levels.map((level) => level.label), ['exact', 'different']);
});
