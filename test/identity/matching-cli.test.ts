/**
 * `rtcdp identity match` end to end through bin/rtcdp.js: the report files, their figures
 * against a count made here from the input and pairs.csv, and the errors of bad input.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { RTCDP_BIN, runCli } from '../helpers/node-process.js';

const FEBRL3 = new URL('../../data/febrl/dataset3.csv', import.meta.url).pathname;

interface ReportJson {
  mode: string;
  pairs: { matches: number; reviews: number };
  evaluation: { truePairs: number; truePositives: number; predictedPairs: number; precision: number; recall: number; f1: number };
  model: { fields: Array<{ name: string }>; lambda: number };
  comparisons: number;
}

/** Writes the first `rows` records of FEBRL 3, which include whole and partial duplicate clusters. */
function writeSmallFebrl(dir: string, rows: number): string {
  const lines = readFileSync(FEBRL3, 'utf8').split('\n');
  const file = path.join(dir, 'small.csv');
  writeFileSync(file, `${lines.slice(0, rows + 1).join('\n')}\n`);
  return file;
}

function entityOf(recId: string): string {
  const match = /^rec-(\d+)-/.exec(recId);
  if (match === null) throw new Error(`unexpected rec_id ${recId}`);
  return match[1];
}

function parseCsv(text: string): string[][] {
  return text
    .trim()
    .split('\n')
    .map((line) => line.split(',').map((value) => value.trim()));
}

t.test('identity match - deduplication report agrees with an independent count', async (t) => {
  const dir = t.testdir();
  const file = writeSmallFebrl(dir, 800);
  const report = path.join(dir, 'report');

  const run = await runCli(['identity', 'match', '--file', file, '--preset', 'febrl', '--report', report, '--workers', '2', '--pairs-per-task', '1000']);
  t.equal(run.code, 0, `exit code; stderr: ${run.stderr}`);
  t.match(run.stdout, /^deduplication of small\.csv \(800 records\)/);
  t.match(run.stderr, /comparing candidate pairs: done in/, 'progress on stderr');
  for (const name of ['report.json', 'report.md', 'pairs.csv', 'score-distribution.svg']) t.ok(existsSync(path.join(report, name)), `${name} exists`);

  // The truth, counted from the input: records with the same N in rec-N-... are one person.
  const records = parseCsv(readFileSync(file, 'utf8')).slice(1);
  const clusterSizes = new Map<string, number>();
  for (const [recId] of records) clusterSizes.set(entityOf(recId), (clusterSizes.get(entityOf(recId)) ?? 0) + 1);
  let truePairs = 0;
  for (const size of clusterSizes.values()) truePairs += (size * (size - 1)) / 2;

  const pairRows = parseCsv(readFileSync(path.join(report, 'pairs.csv'), 'utf8'));
  t.same(pairRows[0], ['id_a', 'id_b', 'match_weight', 'match_probability', 'decision', 'true_match']);
  const matches = pairRows.slice(1).filter((row) => row[4] === 'match');
  const reviews = pairRows.slice(1).filter((row) => row[4] === 'review');
  const truePositives = matches.filter(([a, b]) => entityOf(a) === entityOf(b)).length;
  const precision = truePositives / matches.length;
  const recall = truePositives / truePairs;

  const json = JSON.parse(readFileSync(path.join(report, 'report.json'), 'utf8')) as ReportJson;
  t.equal(json.mode, 'deduplication');
  t.equal(json.pairs.matches, matches.length, 'matches in report.json and pairs.csv');
  t.equal(json.pairs.reviews, reviews.length, 'reviews in report.json and pairs.csv');
  t.equal(json.evaluation.truePairs, truePairs, 'true pairs');
  t.equal(json.evaluation.truePositives, truePositives, 'true positives');
  t.ok(Math.abs(json.evaluation.precision - precision) < 1e-12, 'precision');
  t.ok(Math.abs(json.evaluation.recall - recall) < 1e-12, 'recall');
  t.ok(Math.abs(json.evaluation.f1 - (2 * precision * recall) / (precision + recall)) < 1e-12, 'F1');
  t.ok(json.evaluation.f1 > 0.95, `F1 ${json.evaluation.f1}`);
  t.ok(matches.every((row) => Number(row[3]) >= 0.95), 'every match is at or above the match threshold');
  t.ok(reviews.every((row) => Number(row[3]) >= 0.5 && Number(row[3]) < 0.95), 'every review is between the thresholds');
  t.same(json.model.fields.map((field) => field.name), ['givenName', 'surname', 'dateOfBirth', 'streetNumber', 'addressLine1', 'addressLine2', 'city', 'postcode', 'state', 'identifier:soc_sec_id']);

  t.match(readFileSync(path.join(report, 'report.md'), 'utf8'), /\| true pairs \|.*\n.*\n\| [\d,]+ \|/);
  t.match(readFileSync(path.join(report, 'score-distribution.svg'), 'utf8'), /^<svg [^>]*>[\s\S]*true matches[\s\S]*<\/svg>\n$/);

  const reused = await runCli(['identity', 'match', '--file', file, '--preset', 'febrl', '--report', path.join(dir, 'again'), '--model', path.join(report, 'report.json'), '--no-progress']);
  t.equal(reused.code, 0, `--model reads report.json; stderr: ${reused.stderr}`);
  t.equal(reused.stderr, '', 'no progress with --no-progress');
});

t.test('identity match - linkage with a column mapping and a truth column', async (t) => {
  const dir = t.testdir({
    'left.csv': ['key,first,last,born,person', 'l1,Ada,Lovelace,1815-12-10,1', 'l2,Charles,Babbage,1791-12-26,2', 'l3,Alan,Turing,1912-06-23,3', ''].join('\n'),
    'right.csv': ['key,first,last,born,person', 'r1,Adah,Lovelace,1815-12-10,1', 'r2,Charles,Babage,1791-12-26,2', 'r3,Grace,Hopper,1906-12-09,4', ''].join('\n'),
  });
  const mapping = ['--column', 'givenName=first', '--column', 'surname=last', '--column', 'dateOfBirth=born', '--id-column', 'key', '--truth', 'person'];
  const run = await runCli(['identity', 'match', '--file', path.join(dir, 'left.csv'), '--file', path.join(dir, 'right.csv'), ...mapping, '--report', path.join(dir, 'report'), '--random-pairs', '1000', '--no-progress']);
  t.equal(run.code, 0, `exit code; stderr: ${run.stderr}`);

  const json = JSON.parse(readFileSync(path.join(dir, 'report', 'report.json'), 'utf8')) as ReportJson;
  t.equal(json.mode, 'linkage');
  t.equal(json.evaluation.truePairs, 2, 'l1-r1 and l2-r2');
  t.same(json.model.fields.map((field) => field.name), ['givenName', 'surname', 'dateOfBirth']);
  const pairs = parseCsv(readFileSync(path.join(dir, 'report', 'pairs.csv'), 'utf8')).slice(1);
  t.ok(pairs.every(([a, b]) => a.startsWith('l') && b.startsWith('r')), 'pairs link the left file to the right file');

  // npm start and the shebang of bin/rtcdp.js pass V8 flags, which worker threads must not be given.
  const withV8Flag = await new Promise<{ code: number; stderr: string }>((resolve) => {
    const args = ['--max-semi-space-size=64', RTCDP_BIN, 'identity', 'match', '--file', path.join(dir, 'left.csv'), '--file', path.join(dir, 'right.csv'), ...mapping, '--report', path.join(dir, 'again'), '--random-pairs', '1000', '--no-progress'];
    execFile(process.execPath, args, { timeout: 60_000 }, (error, _stdout, stderr) => resolve({ code: error === null ? 0 : Number(error.code), stderr }));
  });
  t.equal(withV8Flag.code, 0, `runs under --max-semi-space-size; stderr: ${withV8Flag.stderr}`);
});

t.test('identity match - bad input names the option and the rule', async (t) => {
  const dir = t.testdir({ 'people.csv': 'id,first,last\n1,Ada,Lovelace\n2,Ada,Lovelace\n' });
  const file = path.join(dir, 'people.csv');
  const report = path.join(dir, 'report');
  const cases: Array<[name: string, args: string[], message: RegExp]> = [
    ['missing file', ['--file', path.join(dir, 'nope.csv')], /rtcdp: --file \S+nope\.csv cannot be read: no such file or directory/],
    ['missing truth column', ['--file', file, '--column', 'givenName=first', '--truth', 'cluster'], /rtcdp: --truth: --file \S+people\.csv has no column "cluster"\. Its columns are id, first, last/],
    ['unknown column', ['--file', file, '--column', 'givenName=given'], /rtcdp: --column givenName=given: --file \S+people\.csv has no column "given"/],
    ['unknown field', ['--file', file, '--column', 'nickname=first'], /rtcdp: invalid --column "nickname=first": nickname is not a person field/],
    ['no mapped field', ['--file', file], /rtcdp: --file \S+people\.csv has no column that the preset maps to a person field/],
    ['threshold above 1', ['--file', file, '--match-threshold', '1.5'], /rtcdp: invalid --match-threshold "1\.5": expected a probability greater than 0 and less than 1/],
    ['threshold not a number', ['--file', file, '--review-threshold', 'high'], /rtcdp: invalid --review-threshold "high": expected a probability/],
    ['review above match', ['--file', file, '--column', 'givenName=first', '--match-threshold', '0.6', '--review-threshold', '0.7'], /rtcdp: invalid --review-threshold 0\.7: it must not be above --match-threshold 0\.6/],
    ['three files', ['--file', file, '--file', file, '--file', file], /rtcdp: --file is given 3 times: give one file to deduplicate or two to link/],
    ['bad blocking rule', ['--file', file, '--block-on', 'surname:soundex'], /rtcdp: invalid --block-on "surname:soundex": .*"soundex" is not a key transform/],
    ['bad truth expression', ['--file', file, '--column', 'givenName=first', '--truth-from-id', '(unclosed'], /rtcdp: --truth-from-id "\(unclosed" is not a valid regular expression/],
    ['id without entity', ['--file', file, '--column', 'givenName=first', '--truth-from-id', '^x(\\d+)$'], /rtcdp: --truth-from-id \^x\(\\d\+\)\$: id "1" on line 2 of --file \S+ does not match/],
    ['missing model', ['--file', file, '--column', 'givenName=first', '--model', path.join(dir, 'none.json')], /rtcdp: --model \S+none\.json cannot be read: no such file or directory/],
  ];

  for (const [name, args, message] of cases) {
    const run = await runCli(['identity', 'match', ...args, '--report', report, '--no-progress']);
    t.equal(run.code, 2, `${name}: exit code 2`);
    t.match(run.stderr, message, `${name}: message`);
  }
  t.notOk(existsSync(report), 'no report is written for bad input');
});

t.test('identity match - help documents every option', async (t) => {
  const run = await runCli(['identity', 'match', '--help']);
  t.equal(run.code, 0);
  for (const option of ['--file', '--report', '--preset', '--column', '--id-column', '--truth', '--truth-from-id', '--no-ground-truth', '--match-threshold', '--review-threshold', '--block-on', '--max-block-size', '--u-from', '--random-pairs', '--max-em-iterations', '--seed', '--model', '--one-to-one', '--workers', '--pairs-per-task', '--no-progress', '--log-level']) {
    t.match(run.stdout, new RegExp(`${option}\\b`), option);
  }
});
