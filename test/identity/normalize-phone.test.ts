import t from 'tap';
import { normalizePhone, toSupportedRegion, type CountryCode } from '../../identity/normalize-phone.js';

// Each number that should be accepted is in a range that libphonenumber-js's max metadata
// treats as assigned. The formats are those customers type into forms and CRMs.

t.test('normalize phone - United Kingdom', async (t) => {
  const cases: Array<[input: string, region: CountryCode | undefined, expected: string]> = [
    ['020 7946 0958', 'GB', '+442079460958'],
    ['(020) 7946 0958', 'GB', '+442079460958'],
    ['020-7946-0958', 'GB', '+442079460958'],
    ['02079460958', 'GB', '+442079460958'],
    ['+44 20 7946 0958', undefined, '+442079460958'],
    ['+44 (0)20 7946 0958', undefined, '+442079460958'],
    ['+44 020 7946 0958', undefined, '+442079460958'],
    ['+442079460958', 'DE', '+442079460958'],
    ['442079460958', 'GB', '+442079460958'],
    ['0044 20 7946 0958', 'GB', '+442079460958'],
    ['00 44 20 7946 0958', undefined, '+442079460958'],
    ['07911 123456', 'GB', '+447911123456'],
    ['+44 7911 123 456', undefined, '+447911123456'],
    ['  07911 123456 ', 'GB', '+447911123456'],
    ['０２０ ７９４６ ０９５８', 'GB', '+442079460958'],
    // A US number without +1 is read in the default region, where it is a valid London number.
    ['(201) 555-0123', 'GB', '+442015550123'],
  ];

  for (const [input, region, expected] of cases) {
    t.same(normalizePhone(input, region), { ok: true, value: expected }, `${JSON.stringify(input)} in ${region ?? 'no region'}`);
  }
});

t.test('normalize phone - United States', async (t) => {
  const cases: Array<[input: string, region: CountryCode | undefined, expected: string]> = [
    ['(201) 555-0123', 'US', '+12015550123'],
    ['201-555-0123', 'US', '+12015550123'],
    ['201.555.0123', 'US', '+12015550123'],
    ['2015550123', 'US', '+12015550123'],
    ['1 (201) 555-0123', 'US', '+12015550123'],
    ['1-201-555-0123', 'US', '+12015550123'],
    ['+1 201-555-0123', undefined, '+12015550123'],
    ['+1 (201) 555-0123', 'GB', '+12015550123'],
    ['011 44 20 7946 0958', 'US', '+442079460958'],
    ['0044 20 7946 0958', 'US', '+442079460958'],
    ['1 (800) 356-9377', 'US', '+18003569377'],
  ];

  for (const [input, region, expected] of cases) {
    t.same(normalizePhone(input, region), { ok: true, value: expected }, `${JSON.stringify(input)} in ${region ?? 'no region'}`);
  }
});

t.test('normalize phone - Germany', async (t) => {
  const cases: Array<[input: string, region: CountryCode | undefined, expected: string]> = [
    ['030 901820', 'DE', '+4930901820'],
    ['(030) 901820', 'DE', '+4930901820'],
    ['030/901820', 'DE', '+4930901820'],
    ['+49 30 901820', undefined, '+4930901820'],
    ['+49 (0)30 901820', undefined, '+4930901820'],
    ['+49-30-901820', undefined, '+4930901820'],
    ['0049 30 901820', 'DE', '+4930901820'],
    ['0049 30 901820', 'GB', '+4930901820'],
    ['0151 23456789', 'DE', '+4915123456789'],
    ['+49 1512 3456789', undefined, '+4915123456789'],
  ];

  for (const [input, region, expected] of cases) {
    t.same(normalizePhone(input, region), { ok: true, value: expected }, `${JSON.stringify(input)} in ${region ?? 'no region'}`);
  }
});

t.test('normalize phone - Australia', async (t) => {
  const cases: Array<[input: string, region: CountryCode | undefined, expected: string]> = [
    ['0491 570 006', 'AU', '+61491570006'],
    ['0491570006', 'AU', '+61491570006'],
    ['+61 491 570 006', undefined, '+61491570006'],
    ['+61 (0)491 570 006', undefined, '+61491570006'],
    ['(02) 5550 1234', 'AU', '+61255501234'],
    ['02 5550 1234', 'AU', '+61255501234'],
    ['+61 2 5550 1234', undefined, '+61255501234'],
    ['61 2 5550 1234', 'AU', '+61255501234'],
    ['0011 61 2 5550 1234', 'AU', '+61255501234'],
    ['0061 2 5550 1234', 'GB', '+61255501234'],
  ];

  for (const [input, region, expected] of cases) {
    t.same(normalizePhone(input, region), { ok: true, value: expected }, `${JSON.stringify(input)} in ${region ?? 'no region'}`);
  }
});

t.test('normalize phone - extensions', async (t) => {
  const cases: Array<[input: string, region: CountryCode | undefined, expected: string]> = [
    ['+1 (201) 555-0123 ext. 123', undefined, '+12015550123;ext=123'],
    ['(201) 555-0123 x 42', 'US', '+12015550123;ext=42'],
    ['201-555-0123 extension 9', 'US', '+12015550123;ext=9'],
    ['+44 20 7946 0958 x123', undefined, '+442079460958;ext=123'],
    ['020 7946 0958;ext=12', 'GB', '+442079460958;ext=12'],
  ];

  for (const [input, region, expected] of cases) {
    t.same(normalizePhone(input, region), { ok: true, value: expected }, `${JSON.stringify(input)} in ${region ?? 'no region'}`);
  }
});

t.test('normalize phone - invalid numbers', async (t) => {
  const cases: Array<[input: string, region: CountryCode | undefined, reason: string]> = [
    ['', 'GB', 'it is empty'],
    ['   ', 'GB', 'it is empty'],
    ['n/a', 'GB', 'it is not a phone number'],
    ['call 020 7946 0958 after 6', 'GB', 'it is not a phone number'],
    ['+1 800 FLOWERS', undefined, 'it is not a phone number'],
    ['++44 20 7946 0958', undefined, 'it is not a phone number'],
    ['tel:+442079460958', undefined, 'it is not a phone number'],
    ['020 7946 0958', undefined, 'no defaultRegion is configured'],
    ['(201) 555-0123', undefined, 'no defaultRegion is configured'],
    ['+999 123456', undefined, 'its country calling code does not exist'],
    ['12', 'GB', 'it is too short for GB'],
    ['+44 20 7946', undefined, 'it is too short for +44'],
    ['020 7946 0958', 'US', 'it is too long for US'],
    ['+4420794609581234567', undefined, 'it is too long'],
    // 07700 900xxx has a possible length but is outside the UK mobile ranges of the max metadata.
    ['07700 900123', 'GB', 'it is not in a number range that GB assigns'],
    ['+1 555 555 5555', undefined, 'it is not in a number range that +1 assigns'],
    ['0000000000', 'US', 'it is not in a number range that US assigns'],
    ['0044 12', 'GB', 'it is too short for +44'],
    ['0044 12', undefined, 'it is too short for +44'],
  ];

  for (const [input, region, reason] of cases) {
    const result = normalizePhone(input, region);
    t.equal(result.ok, false, `${JSON.stringify(input)} in ${region ?? 'no region'} is rejected`);
    if (!result.ok) t.match(result.reason, reason, `${JSON.stringify(input)} reason`);
  }
});

t.test('supported region - codes', async (t) => {
  t.equal(toSupportedRegion('GB'), 'GB', 'GB is supported');
  t.equal(toSupportedRegion('gb'), 'GB', 'lowercase code is uppercased');
  t.equal(toSupportedRegion('XK'), 'XK', 'Kosovo has a numbering plan');
  t.equal(toSupportedRegion('UK'), undefined, 'UK is not an ISO 3166-1 code');
  t.equal(toSupportedRegion('GBR'), undefined, 'alpha-3 code is not supported');
  t.equal(toSupportedRegion('AQ'), undefined, 'Antarctica has no numbering plan');
  t.equal(toSupportedRegion(''), undefined, 'empty code is not supported');
});
