/**
 * Accuracy of batch matching end to end, blocking included, on the data sets in data/.
 * Parameters are estimated on each data set itself, and nothing is trained on labels. The
 * floors sit below the figures measured when they were set (docs/benchmarks.md), so that
 * the tests fail when matching breaks, not when a change moves F1 in the fourth decimal.
 */
import t from 'tap';
import { silentLogger } from '../../common/logger.js';
import { runBatchMatch } from '../../identity/matching/batch-match.js';
import { MatchingPool } from '../../identity/matching/matching-pool.js';
import { readRecordFile } from '../../identity/matching/record-files.js';

const DATA = new URL('../../data/', import.meta.url).pathname;

const pool = new MatchingPool({ logger: silentLogger(), workers: 2 });
t.before(() => pool.start());
t.teardown(() => pool.close({ force: true }));

t.test('FEBRL 4 linkage - F1 above 0.99', async (t) => {
  // Measured: precision 0.9998, recall 1.0000, F1 0.9999.
  const files = await Promise.all(['febrl/dataset4a.csv', 'febrl/dataset4b.csv'].map((file) => readRecordFile(DATA + file, { preset: 'febrl' })));
  const result = await runBatchMatch({ pool, files });
  const evaluation = result.evaluation;
  if (evaluation === undefined) throw new Error('expected an evaluation against rec_id');

  t.equal(result.mode, 'linkage');
  t.equal(evaluation.truePairs, 5_000, 'FEBRL 4 has 5,000 true links');
  t.ok(evaluation.blockingRecall >= 0.999, `blocking keeps ${evaluation.truePairsInCandidates} of 5,000 true links`);
  t.ok(evaluation.precision >= 0.99, `precision ${evaluation.precision}`);
  t.ok(evaluation.recall >= 0.99, `recall ${evaluation.recall}`);
  t.ok(evaluation.f1 >= 0.99, `F1 ${evaluation.f1}`);
  t.ok(result.estimation?.runs.every((run) => run.converged), 'every EM run converged');
});

t.test('FEBRL 3 deduplication - F1 above 0.99', async (t) => {
  // Measured: precision 0.9998, recall 0.9986, F1 0.9992.
  const files = [await readRecordFile(`${DATA}febrl/dataset3.csv`, { preset: 'febrl' })];
  const evaluation = (await runBatchMatch({ pool, files })).evaluation;
  t.equal(evaluation?.truePairs, 6_538);
  t.ok((evaluation?.f1 ?? 0) >= 0.99, `F1 ${evaluation?.f1}`);
});

t.test('Splink fake_1000 deduplication - F1 above 0.8', async (t) => {
  // Measured: precision 0.877, recall 0.803, F1 0.838. 18% of the true pairs share no
  // blocking key: their records differ in name, date of birth, city and email at once.
  const files = [await readRecordFile(`${DATA}splink-fake-1000/fake_1000.csv`, { preset: 'splink' })];
  const evaluation = (await runBatchMatch({ pool, files })).evaluation;
  t.equal(evaluation?.truePairs, 2_031);
  t.ok((evaluation?.f1 ?? 0) >= 0.8, `F1 ${evaluation?.f1}`);
});

t.test('FEBRL 4 linkage - parameters from FEBRL 3', async (t) => {
  const febrl3 = [await readRecordFile(`${DATA}febrl/dataset3.csv`, { preset: 'febrl' })];
  const { model } = await runBatchMatch({ pool, files: febrl3 });
  const febrl4 = await Promise.all(['febrl/dataset4a.csv', 'febrl/dataset4b.csv'].map((file) => readRecordFile(DATA + file, { preset: 'febrl' })));
  const result = await runBatchMatch({ pool, files: febrl4, model });

  t.equal(result.estimation, undefined, 'nothing is estimated on FEBRL 4');
  t.ok((result.evaluation?.f1 ?? 0) >= 0.99, `F1 ${result.evaluation?.f1}`);
});
