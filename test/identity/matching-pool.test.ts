import t from 'tap';
import { ConfigError, InvalidStateError } from '../../common/errors.js';
import { silentLogger } from '../../common/logger.js';
import { expandRules } from '../../identity/matching/blocking-rules.js';
import { createSchema } from '../../identity/matching/comparison-schema.js';
import { MatchingTaskError } from '../../identity/matching/errors.js';
import { buildModel } from '../../identity/matching/fellegi-sunter.js';
import { resolvePoolOptions, resolveThresholds } from '../../identity/matching/matching-options.js';
import { MatchingPool } from '../../identity/matching/matching-pool.js';
import { PersonMatcher } from '../../identity/matching/person-matcher.js';
import type { PersonRecord } from '../../identity/matching/person.js';
import { readRecordFile } from '../../identity/matching/record-files.js';
import { SharedRecordStore } from '../../identity/matching/shared-record-store.js';
import { splitIntoTasks } from '../../identity/matching/task-split.js';
import { runCompareTask } from '../../identity/matching/worker-tasks.js';

const FEBRL3 = new URL('../../data/febrl/dataset3.csv', import.meta.url).pathname;

t.test('task split - at least pairsPerTask pairs per task', async (t) => {
  t.same(splitIntoTasks(0, 4_096), []);
  t.same(splitIntoTasks(500, 4_096), [500], 'a request smaller than a task is one task');
  t.same(splitIntoTasks(4_096, 4_096), [4_096]);
  t.same(splitIntoTasks(8_191, 4_096), [8_191], 'no remainder task');
  t.same(splitIntoTasks(10_000, 4_096), [5_000, 5_000]);
  t.same(splitIntoTasks(2_500, 1_000), [1_250, 1_250]);

  const sizes = splitIntoTasks(1_000_003, 4_096);
  t.equal(sizes.reduce((sum, size) => sum + size, 0), 1_000_003, 'every pair is in a task');
  t.ok(sizes.every((size) => size >= 4_096 && size < 8_192), 'each task from pairsPerTask to twice that');
  t.throws(() => splitIntoTasks(10_000, 999), /pairsPerTask must be at least 1000, received 999/);
});

t.test('matching options - validation', async (t) => {
  const defaults = resolvePoolOptions({ workers: 2 });
  t.same({ ...defaults }, { workers: 2, pairsPerTask: 4_096, recordsPerTask: 1_000, maxTasksInFlight: 8, closeTimeoutMs: 10_000, workerNiceIncrement: 10 });
  t.throws(() => resolvePoolOptions({ workers: 0 }), new ConfigError('workers must be an integer from 1 to 64, received 0'));
  t.throws(() => resolvePoolOptions({ pairsPerTask: 999 }), new ConfigError('pairsPerTask must be an integer from 1000 to 1000000, received 999'));
  t.throws(() => resolvePoolOptions({ workerNiceIncrement: 20 }), new ConfigError('workerNiceIncrement must be an integer from 0 to 19, received 20'));

  t.same({ ...resolveThresholds({}) }, { minMatchProbability: 0.95, minReviewProbability: 0.5 });
  t.same({ ...resolveThresholds({ minMatchProbability: 0.4 }) }, { minMatchProbability: 0.4, minReviewProbability: 0.4 }, 'the review default follows a lower match threshold');
  t.throws(() => resolveThresholds({ minMatchProbability: 1 }), new ConfigError('minMatchProbability must be a probability greater than 0 and less than 1, received 1'));
  t.throws(() => resolveThresholds({ minMatchProbability: 0.8, minReviewProbability: 0.9 }), new ConfigError('minReviewProbability must not be above minMatchProbability (0.8), received 0.9'));
});

t.test('matching pool - prepares and compares in tasks of at least 1,000 pairs', async (t) => {
  const records = await readRecordFile(FEBRL3, { preset: 'febrl' });
  const persons = records.persons.slice(0, 1_500);
  const fields = ['givenName', 'surname', 'dateOfBirth', 'postcode', 'identifier:soc_sec_id'];
  const schema = createSchema(fields);
  const rules = expandRules(['surname:phonetic'], fields);

  const pool = new MatchingPool({ logger: silentLogger(), workers: 2, pairsPerTask: 1_000, recordsPerTask: 1_000 });
  t.teardown(() => pool.close({ force: true }));
  await t.rejects(pool.prepare(persons, schema.identifierNames, rules), InvalidStateError, 'prepare before start');
  await pool.start();
  t.equal(pool.state, 'running');

  const prepared = await pool.prepare(persons, schema.identifierNames, rules);
  t.equal(prepared.encoded.length, persons.length);
  t.equal(prepared.keys.length, persons.length * rules.length);
  const store = new SharedRecordStore();
  for (const encoded of prepared.encoded) store.append(encoded);

  const pairs = new Int32Array(25_500 * 2);
  for (let i = 0; i < pairs.length; i++) pairs[i] = (i * 7_919) % persons.length;
  const result = await pool.compare({ store, pairs, schema });
  const inProcess = runCompareTask({ kind: 'compare', schema, store: store.view(), pairs });
  t.equal(result.patterns.length, 25_500);
  t.same(Array.from(result.patterns), Array.from(inProcess.patterns), 'the workers compute what the task function computes in-process');

  const stats = pool.stats();
  t.equal(stats.prepareTasks, 2, '1,500 records in tasks of 1,000');
  t.equal(stats.compareTasks, 25, '25,500 pairs in 25 tasks');
  t.ok(stats.smallestCompareTask >= 1_000, `smallest task ${stats.smallestCompareTask} pairs`);
  t.equal(stats.pairsCompared, 25_500);

  const broken = Int32Array.from([0, 1_000_000, 1, 2]);
  await t.rejects(pool.compare({ store, pairs: broken, schema }), MatchingTaskError, 'a slot outside the store fails the task');

  await pool.close();
  t.equal(pool.state, 'stopped');
  await t.rejects(pool.compare({ store, pairs, schema }), InvalidStateError, 'compare after close');
});

const MATCHER_FIELDS = ['givenName', 'surname', 'dateOfBirth'];

/** Builds a model by hand, in which exact agreement is strong evidence and disagreement strong counter-evidence. */
function handModel() {
  const schema = createSchema(MATCHER_FIELDS);
  const m = [
    [0, 0.8, 0.08, 0.05, 0.03, 0.02, 0.02],
    [0, 0.8, 0.08, 0.05, 0.03, 0.02, 0.02],
    [0, 0.9, 0.04, 0.03, 0.01, 0.02],
  ];
  const u = [
    [0, 0.005, 0.005, 0.01, 0.01, 0.07, 0.9],
    [0, 0.005, 0.005, 0.01, 0.01, 0.07, 0.9],
    [0, 0.0005, 0.005, 0.01, 0.05, 0.9345],
  ];
  return buildModel(schema, m, u, 0.01);
}

t.test('person matcher - add, score and close', async (t) => {
  const matcher = new PersonMatcher({ model: handModel(), logger: silentLogger(), workers: 1, maxBatchDelayMs: 20 });
  t.teardown(() => matcher.close({ force: true }));
  t.throws(() => matcher.add('p1', {}), InvalidStateError, 'add before start');
  await matcher.start();
  t.same(matcher.fields, MATCHER_FIELDS);

  const ada: PersonRecord = { givenName: 'Ada', surname: 'Lovelace', dateOfBirth: '1815-12-10' };
  t.same(matcher.add('p1', ada), []);
  t.same(matcher.add('p2', { givenName: 'Ada', surname: 'Lovelace', dateOfBirth: '18151210' }), ['p1']);
  t.same(matcher.add('p3', { givenName: 'Adah', surname: 'Lovelace', dateOfBirth: '1815-12-11' }), ['p1', 'p2']);
  matcher.add('p4', { givenName: 'Charles', surname: 'Babbage', dateOfBirth: '1791-12-26' });

  // Three calls within the batch delay share one task.
  const tasksBefore = matcher.stats().pool.compareTasks;
  const [first, second, third] = await Promise.all([matcher.score([['p1', 'p2']]), matcher.score([['p1', 'p3']]), matcher.score([['p1', 'p4'], ['p2', 'p4']])]);
  t.equal(matcher.stats().pool.compareTasks - tasksBefore, 1, 'one task for four pairs of three calls');

  t.equal(first[0].decision, 'match');
  t.same(first[0].levels, [1, 1, 1]);
  t.ok(first[0].probability > 0.95);
  t.equal(second[0].a, 'p1');
  t.equal(second[0].b, 'p3');
  t.same(second[0].levels, [2, 1, 2], 'Jaro-Winkler >= 0.94 on the given name, one digit of the date');
  t.same(third.map((pair) => pair.decision), ['non-match', 'non-match']);
  t.ok(third[0].weight < 0);

  const matched = await matcher.match('p5', { givenName: 'Charles', surname: 'Babbage', dateOfBirth: '1791-12-26' });
  t.same(matched.map((pair) => [pair.b, pair.decision]), [['p4', 'match']]);

  t.throws(() => matcher.score([['p1', 'nobody']]), new RangeError('profile "nobody" was not added to the matcher, or was removed'));
  t.ok(matcher.remove('p5'));
  t.throws(() => matcher.score([['p5', 'p4']]), RangeError, 'a removed profile cannot be scored');
  t.same(await matcher.score([]), []);

  await matcher.close();
  t.equal(matcher.state, 'stopped');
  t.throws(() => matcher.add('p6', ada), InvalidStateError, 'add after close');
});

t.test('person matcher - a large score call is split into tasks', async (t) => {
  const matcher = new PersonMatcher({ model: handModel(), logger: silentLogger(), workers: 2, pairsPerTask: 1_000 });
  t.teardown(() => matcher.close({ force: true }));
  await matcher.start();
  for (let i = 0; i < 100; i++) matcher.add(`p${i}`, { givenName: `name${i % 7}`, surname: `family${i % 5}`, dateOfBirth: `19${String(10 + (i % 80))}0101` });

  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < 100; i++) for (let j = i + 1; j < 100; j++) pairs.push([`p${i}`, `p${j}`]);
  const scored = await matcher.score(pairs);
  t.equal(scored.length, 4_950);
  t.ok(scored.every((pair, index) => pair.a === pairs[index][0] && pair.b === pairs[index][1]), 'results are in the order of the pairs');
  const stats = matcher.stats().pool;
  t.ok(stats.compareTasks >= 4, `${stats.compareTasks} tasks`);
  t.ok(stats.smallestCompareTask >= 950, `smallest task ${stats.smallestCompareTask} pairs`);
});
