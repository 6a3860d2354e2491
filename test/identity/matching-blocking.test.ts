import t from 'tap';
import { BlockingIndex } from '../../identity/matching/blocking-index.js';
import { blockingKey, DEFAULT_BLOCKING_RULES, expandRules, parseBlockingRule } from '../../identity/matching/blocking-rules.js';
import { agreeingRules, CandidatePairs, numberKeys } from '../../identity/matching/candidate-pairs.js';
import type { PersonRecord } from '../../identity/matching/person.js';
import { preparePerson } from '../../identity/matching/prepare.js';

function pairsOf(candidates: CandidatePairs, chunkPairs = 2): Array<[number, number]> {
  const pairs: Array<[number, number]> = [];
  for (const chunk of candidates.chunks(chunkPairs)) for (let i = 0; i < chunk.length; i += 2) pairs.push([chunk[i], chunk[i + 1]]);
  return pairs;
}

t.test('blocking rules - parsing', async (t) => {
  const rule = parseBlockingRule('surname:phonetic+dateOfBirth:year');
  t.same(rule.parts, [
    { field: 'surname', transform: 'phonetic' },
    { field: 'dateOfBirth', transform: 'year' },
  ]);
  t.same(parseBlockingRule('identifier:ssn').parts, [{ field: 'identifier:ssn', transform: 'exact' }]);
  t.same(parseBlockingRule('identifier:ssn:initial').parts, [{ field: 'identifier:ssn', transform: 'initial' }]);

  t.throws(() => parseBlockingRule('nickname'), /blocking rule "nickname": "nickname" is not a field/);
  t.throws(() => parseBlockingRule('surname:soundex'), /"soundex" is not a key transform. Use one of exact, phonetic, initial, year/);
  t.throws(() => parseBlockingRule('city:phonetic'), /the phonetic transform applies only to givenName and surname, not city/);
  t.throws(() => parseBlockingRule('surname:year'), /the year transform applies only to dateOfBirth, not surname/);
});

t.test('blocking rules - expansion to the mapped fields', async (t) => {
  const rules = expandRules(DEFAULT_BLOCKING_RULES, ['givenName', 'surname', 'dateOfBirth', 'identifier:ssn', 'identifier:crm']);
  const texts = rules.map((rule) => rule.text);
  t.ok(texts.includes('givenName:phonetic+surname:phonetic'));
  t.ok(texts.includes('identifier:ssn'), 'identifier:* becomes one rule per identifier');
  t.ok(texts.includes('identifier:crm'));
  t.notOk(texts.includes('postcode+streetNumber'), 'rules on unmapped fields are dropped');
});

t.test('blocking rules - keys', async (t) => {
  const person = preparePerson({ givenName: 'Catherine', surname: 'Smith', dateOfBirth: '1915-11-11', identifiers: { ssn: '0123' } }, ['ssn']);
  t.equal(blockingKey(parseBlockingRule('surname:phonetic+dateOfBirth:year'), person, ['ssn']), 'SM0|1915');
  t.equal(blockingKey(parseBlockingRule('givenName:initial'), person, ['ssn']), 'c');
  t.equal(blockingKey(parseBlockingRule('identifier:ssn'), person, ['ssn']), '0123');
  t.equal(blockingKey(parseBlockingRule('postcode+surname'), person, ['ssn']), '', 'no key when a part is missing');
  t.equal(blockingKey(parseBlockingRule('dateOfBirth:year'), preparePerson({ dateOfBirth: '1915' }), []), '', 'no year of a partial date');
});

t.test('blocking index - candidates of incremental adds', async (t) => {
  const rules = expandRules(['surname', 'dateOfBirth'], ['surname', 'dateOfBirth']);
  const index = new BlockingIndex({ rules, identifierNames: [], maxBlockSize: 4 });
  const add = (id: string, person: PersonRecord) => index.add(id, preparePerson(person));

  t.same(add('a', { surname: 'smith', dateOfBirth: '19000101' }), []);
  t.same(add('b', { surname: 'smith', dateOfBirth: '19990101' }), ['a']);
  t.same(add('c', { surname: 'jones', dateOfBirth: '19000101' }), ['a']);
  t.same(add('d', { surname: 'smith', dateOfBirth: '19000101' }), ['a', 'b', 'c'], 'each candidate once, in rule order');
  t.same(add('e', { surname: 'smith' }), ['a', 'b', 'd']);
  t.same(add('f', { surname: 'smith' }), [], 'the smith block has 4 profiles, the maximum, so it selects nothing');
  t.equal(index.oversizedBlockHits, 1);

  t.same(add('b', { surname: 'brown', dateOfBirth: '19000101' }), ['a', 'c', 'd'], 'adding an id again replaces its keys');
  t.ok(index.remove('a'));
  t.notOk(index.remove('a'), 'a second removal finds nothing');
  t.notOk(index.has('a'));
  t.same(add('g', { surname: 'jones', dateOfBirth: '19000101' }), ['c', 'd', 'b']);
  t.equal(index.size, 6);
  t.throws(() => new BlockingIndex({ rules, identifierNames: [], maxBlockSize: 1 }), /maxBlockSize must be an integer of at least 2/);
});

t.test('candidate pairs - deduplication', async (t) => {
  // Records 0, 1 and 2 share key x under rule 0. Records 1 and 2 also share y under rule 1, but their pair is produced once.
  const keys = [numberKeys(['x', 'x', 'x', '', 'z']), numberKeys(['', 'y', 'y', 'y', 'z'])];
  const candidates = await CandidatePairs.create({ keys, maxBlockSize: 10 });
  const pairs = pairsOf(candidates);
  t.same(pairs, [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]);
  t.equal(candidates.summary.pairsBeforeDeduplication, 6, 'pair 1-2 counted under both rules');
  t.equal(agreeingRules(keys, 1, 2), 0b11);
  t.equal(agreeingRules(keys, 0, 3), 0);
});

t.test('candidate pairs - linkage pairs left with right only', async (t) => {
  // Records 0-2 are the left file, 3-5 the right file.
  const keys = [numberKeys(['a', 'a', 'b', 'a', 'b', 'c'])];
  const pairs = pairsOf(await CandidatePairs.create({ keys, leftCount: 3, maxBlockSize: 10 }), 100);
  t.same(pairs, [[0, 3], [1, 3], [2, 4]]);
});

t.test('candidate pairs - oversized blocks produce nothing', async (t) => {
  const keys = [numberKeys(['a', 'a', 'a', 'b', 'b']), numberKeys(['p', 'p', '', '', ''])];
  const candidates = await CandidatePairs.create({ keys, maxBlockSize: 2 });
  t.same(pairsOf(candidates), [[3, 4], [0, 1]], 'block a is skipped, so rule 1 still produces 0-1');
  t.same(candidates.summary.oversizedBlocks, [1, 0]);
  t.same(candidates.summary.recordsInOversizedBlocks, [3, 0]);
});
