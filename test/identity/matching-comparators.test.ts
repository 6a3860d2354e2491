import { readFileSync } from 'node:fs';
import t from 'tap';
import {
  bagDistance,
  characterMask,
  compareCategories,
  compareCodes,
  compareDates,
  compareEmails,
  compareNames,
  comparePhones,
  compareText,
  jaroWinkler,
  jaroWinklerBound,
  levelCount,
  levenshtein,
  LEVEL_LABELS,
  maskedEditBound,
  phoneticCodesAgree,
} from '../../identity/matching/comparators.js';
import { comparePattern, compileSchema, createSchema, decodePattern } from '../../identity/matching/comparison-schema.js';
import { daysOf, normalizeCode, normalizeDate, normalizeText, preparePerson } from '../../identity/matching/prepare.js';
import type { NameFeatures } from '../../identity/matching/person.js';
import { decodePerson, encodePerson } from '../../identity/matching/record-codec.js';

const FEBRL3 = new URL('../../data/febrl/dataset3.csv', import.meta.url);

/** Surnames and address lines of FEBRL 3, which has typos of every kind. */
function febrlValues(column: number): string[] {
  const lines = readFileSync(FEBRL3, 'utf8').trim().split('\n').slice(1);
  return lines.map((line) => normalizeText(line.split(', ')[column]));
}

t.test('comparators - Jaro-Winkler of known pairs', async (t) => {
  // Values worked out by hand from Winkler's definition.
  t.equal(jaroWinkler('martha', 'marhta').toFixed(4), '0.9611');
  t.equal(jaroWinkler('dwayne', 'duane').toFixed(4), '0.8400');
  t.equal(jaroWinkler('dixon', 'dicksonx').toFixed(4), '0.8133');
  t.equal(jaroWinkler('abcdx', 'abcdy').toFixed(4), '0.9200', 'the prefix bonus counts at most 4 characters');
  t.equal(levenshtein('kitten', 'sitting'), 3);
});

/** Returns the name level of two raw names, prepared as the workers prepare them. */
function nameLevel(a: string, b: string): number {
  const x = preparePerson({ surname: a });
  const y = preparePerson({ surname: b });
  return compareNames(x.surnameFeatures, y.surnameFeatures);
}

function textLevel(a: string, b: string): number {
  return compareText(a, b, characterMask(a), characterMask(b));
}

t.test('comparators - name levels', async (t) => {
  t.equal(nameLevel('', 'smith'), 0, 'missing');
  t.equal(nameLevel('Smith', 'smith'), 1, 'exact after normalisation');
  t.equal(nameLevel('martha', 'marhta'), 2, 'Jaro-Winkler 0.96');
  t.equal(nameLevel('dwayne', 'duane'), 4, 'Jaro-Winkler 0.84 but the same Double Metaphone code');
  t.equal(nameLevel('dixon', 'dicksonx'), 5, 'Jaro-Winkler 0.81, codes differ');
  t.equal(nameLevel('neumann', 'painter'), 6, 'different');
  t.equal(levelCount('name'), LEVEL_LABELS.name.length + 1);
});

t.test('comparators - other kinds', async (t) => {
  t.equal(textLevel('stanley street', 'stanley street'), 1);
  t.equal(textLevel('stanley street', 'stanly street'), 2, 'one edit in 14 characters');
  t.equal(textLevel('stanley street', 'stanley st'), 3, 'four edits in 14 characters');
  t.equal(textLevel('stanley street', 'pinkerton circuit'), 4);
  t.equal(compareCodes('4223', '4223'), 1);
  t.equal(compareCodes('4223', '4233'), 2);
  t.equal(compareCodes('4223', '2423'), 3, 'a transposition is two edits');
  t.equal(compareCodes('4223', '9871'), 4);
  t.equal(compareCategories('nsw', 'nsw'), 1);
  t.equal(compareCategories('nsw', 'vic'), 2);
  t.equal(compareCategories('', 'vic'), 0);
  t.equal(compareEmails('ada@example.com', 'ada@example.com'), 1);
  t.equal(compareEmails('robert255@smith.net', 'roberta25@smith.net'), 2);
  t.equal(compareEmails('ada@example.com', 'ada@another.org'), 3);
  t.equal(compareEmails('ada@example.com', 'bob@another.org'), 4);
  t.equal(comparePhones('0412345678', '0412345678'), 1);
  t.equal(comparePhones('61412345678', '0412345678'), 2, 'country code against trunk prefix');
  t.equal(comparePhones('0412345678', '0412345679'), 3);
  t.equal(comparePhones('0412345678', '0298765432'), 4);
});

t.test('comparators - date levels', async (t) => {
  const level = (a: string, b: string) => compareDates(a, b, daysOf(a), daysOf(b));
  t.equal(level('19151111', '19151111'), 1);
  t.equal(level('19151111', '19151112'), 2, 'one digit');
  t.equal(level('19150311', '19151103'), 3, 'day and month swapped');
  t.equal(level('19151111', '19511111'), 3, 'two digits transposed');
  t.equal(level('19150101', '19151230'), 4, 'within a year');
  t.equal(level('19150101', '19870716'), 5);
  t.equal(level('', '19870716'), 0);
});

t.test('comparators - bounds agree with the libraries', async (t) => {
  const surnames = febrlValues(2).filter((value) => value !== '');
  const addresses = febrlValues(4).filter((value) => value !== '');
  let boundViolations = 0;
  let bagViolations = 0;
  let maskViolations = 0;
  for (let i = 0; i < 20_000; i++) {
    const a = surnames[(i * 7919) % surnames.length];
    const b = surnames[(i * 104_729 + 1) % surnames.length];
    if (jaroWinklerBound(a, b) + 1e-12 < jaroWinkler(a, b)) boundViolations++;
    const x = addresses[(i * 31) % addresses.length];
    const y = addresses[(i * 977 + 3) % addresses.length];
    if (bagDistance(x, y) > levenshtein(x, y)) bagViolations++;
    if (maskedEditBound(characterMask(x), characterMask(y)) > levenshtein(x, y)) maskViolations++;
  }
  t.equal(boundViolations, 0, 'jaroWinklerBound is never below the Jaro-Winkler similarity');
  t.equal(bagViolations, 0, 'bagDistance is never above the Levenshtein distance');
  t.equal(maskViolations, 0, 'maskedEditBound is never above the Levenshtein distance');
});

t.test('comparators - shortcuts keep the levels', async (t) => {
  // The levels computed directly from the library functions, without the bounds.
  const directName = (x: NameFeatures, y: NameFeatures) => {
    if (x.text === y.text) return 1;
    const similarity = jaroWinkler(x.text, y.text);
    if (similarity >= 0.94) return 2;
    if (similarity >= 0.88) return 3;
    if (phoneticCodesAgree(x, y)) return 4;
    return similarity >= 0.7 ? 5 : 6;
  };
  const directText = (a: string, b: string) => {
    if (a === b) return 1;
    const similarity = 1 - levenshtein(a, b) / Math.max(a.length, b.length);
    if (similarity >= 0.85) return 2;
    return similarity >= 0.65 ? 3 : 4;
  };

  const surnames = febrlValues(2).filter((value) => value !== '');
  const addresses = febrlValues(4).filter((value) => value !== '');
  let nameMismatches = 0;
  let textMismatches = 0;
  for (let i = 0; i < 20_000; i++) {
    const a = preparePerson({ surname: surnames[(i * 7919) % surnames.length] });
    const b = preparePerson({ surname: surnames[(i * 13 + 5) % surnames.length] });
    if (compareNames(a.surnameFeatures, b.surnameFeatures) !== directName(a.surnameFeatures, b.surnameFeatures)) nameMismatches++;
    const x = addresses[(i * 31) % addresses.length];
    const y = addresses[(i * 17 + 3) % addresses.length];
    if (textLevel(x, y) !== directText(x, y)) textMismatches++;
  }
  t.equal(nameMismatches, 0, 'name levels');
  t.equal(textMismatches, 0, 'text levels');
});

t.test('prepare - normalisation', async (t) => {
  t.equal(normalizeText("  O'Brien-Smith "), 'obriensmith');
  t.equal(normalizeText('José  María'), 'jose maria');
  t.equal(normalizeCode(' 0 42-3 '), '0423', 'leading zeros stay');
  t.equal(normalizeDate('1915-3-7'), '19150307');
  t.equal(normalizeDate('19151111'), '19151111');
  t.equal(normalizeDate('07/03/1915'), '07031915', 'other forms keep their digits');
  t.ok(Number.isNaN(daysOf('19150231')), '31 February is invalid');
  t.equal(daysOf('19700102'), 1);

  const prepared = preparePerson({ givenName: 'Catherine', surname: 'Smith', phone: '+61 (4) 1234-5678', email: ' Ada@Example.COM ', identifiers: { ssn: '0123' } }, ['ssn']);
  t.equal(prepared.givenName, 'catherine');
  t.match(prepared.givenNameCodes, /^K0RN /);
  t.equal(prepared.phone, '61412345678');
  t.equal(prepared.email, 'ada@example.com');
  t.same(prepared.identifiers, ['0123']);
  t.same(decodePerson(encodePerson(prepared)), prepared, 'the record codec round-trips');
});

t.test('comparison schema - patterns round-trip', async (t) => {
  const schema = createSchema(['givenName', 'surname', 'dateOfBirth', 'state', 'identifier:ssn']);
  t.same(schema.identifierNames, ['ssn']);
  const compiled = compileSchema(schema);
  const a = preparePerson({ givenName: 'martha', surname: 'smith', dateOfBirth: '19151111', state: 'nsw', identifiers: { ssn: '123' } }, ['ssn']);
  const b = preparePerson({ givenName: 'marhta', surname: 'smith', dateOfBirth: '19151112', identifiers: { ssn: '124' } }, ['ssn']);
  const levels: number[] = [];
  decodePattern(compiled, comparePattern(compiled, a, b), levels);
  t.same(levels, [2, 1, 2, 0, 2]);
  t.throws(() => createSchema(['nickname']), /"nickname" is not a comparison field/);
});
