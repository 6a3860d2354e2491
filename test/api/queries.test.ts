import { status } from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import type { RawEvent } from '../../profiles/event.js';
import {
  errorCodeOf,
  expectServiceError,
  getProfile,
  ingestBatch,
  listProfileEvents,
  startTestNode,
  type TestNode,
} from '../helpers/grpc-node.js';

/** Returns a plain-object copy, so that comparisons ignore null prototypes. */
function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value ?? null));
}

/** Reads every page of a profile's events and returns their messageIds in order, with the size of each page. */
async function readAllPages(t: Test, node: TestNode, userId: string, pageSize: number) {
  const messageIds: string[] = [];
  const pageSizes: number[] = [];
  let token = '';

  // Bounded so that a token that never ends fails the test instead of hanging it.
  for (let page = 0; page < 100; page++) {
    const response = await listProfileEvents(node, { type: 'user_id', value: userId }, pageSize, token);
    messageIds.push(...response.events.map((event) => event.messageId));
    pageSizes.push(response.events.length);
    token = response.nextPageToken;
    if (token === '') return { messageIds, pageSizes };
  }
  t.fail('paging did not end after 100 pages');
  return { messageIds, pageSizes };
}

function trackEvents(userId: string, first: number, count: number): RawEvent[] {
  return Array.from({ length: count }, (_, offset) => {
    const i = first + offset;
    return {
      type: 'track',
      userId,
      messageId: `${userId}-${i}`,
      timestamp: new Date(Date.UTC(2024, 4, 1, 12, 0, i)).toISOString(),
      event: 'Page Scrolled',
      properties: { index: i },
    };
  });
}

t.test('queries - profile by every identifier', async (t) => {
  // External ids link profiles only for the types the identity settings configure.
  const node = await startTestNode(t, { identity: { identifiers: { 'external:crm_id': {} } } });

  await ingestBatch(node, [
    {
      type: 'identify',
      userId: 'dana',
      anonymousId: 'anon-dana',
      messageId: 'dana-1',
      traits: { plan: 'pro' },
      context: {
        traits: { email: 'dana@example.com', phone: '+44 20 7946 0000' },
        device: { id: 'device-7f3a', type: 'ios' },
        externalIds: [{ type: 'crm_id', id: 'crm-42', collection: 'users', encoding: 'none' }],
      },
    },
    { type: 'track', userId: 'dana', messageId: 'dana-2', event: 'Order Completed', properties: { total: 30 } },
  ]);

  const identifiers: Array<[string, string]> = [
    ['user_id', 'dana'],
    ['anonymous_id', 'anon-dana'],
    ['email', 'dana@example.com'],
    ['phone', '+44 20 7946 0000'],
    ['device_id', 'device-7f3a'],
    ['external:crm_id', 'crm-42'],
  ];
  for (const [type, value] of identifiers) {
    const profile = await getProfile(node, type, value);
    t.equal(profile.profileId, 'user:dana', `${type} finds dana's profile`);
    t.equal(profile.eventCount, 2, `${type}: event count`);
  }

  const profile = await getProfile(node, 'user_id', 'dana');
  t.same(
    profile.identifiers.map(({ type, value }) => `${type}=${value}`),
    ['user_id=dana', 'email=dana@example.com', 'phone=+442079460000', 'external:crm_id=crm-42', 'device_id=device-7f3a', 'anonymous_id=anon-dana'],
    'the profile lists every identifier as identity resolution linked it: normalised, highest priority first',
  );
  t.same(plain(profile.traits), { plan: 'pro', email: 'dana@example.com', phone: '+44 20 7946 0000' }, 'traits');
});

t.test('queries - unknown identifier is NOT_FOUND', async (t) => {
  const node = await startTestNode(t);
  await ingestBatch(node, [{ type: 'identify', userId: 'erin', context: { traits: { email: 'erin@example.com' } } }]);

  const missing: Array<[string, string]> = [
    ['user_id', 'nobody'],
    ['anonymous_id', 'anon-nobody'],
    ['email', 'nobody@example.com'],
    ['phone', '+1 555 0100'],
    ['device_id', 'device-none'],
    ['external:crm_id', 'crm-none'],
  ];
  for (const [type, value] of missing) {
    const error = await expectServiceError(getProfile(node, type, value));
    t.equal(error.code, status.NOT_FOUND, `${type}: status is NOT_FOUND`);
    t.equal(errorCodeOf(error), 'PROFILE_NOT_FOUND', `${type}: trailer code`);
    const reason = type === 'external:crm_id' ? ": identifier type external:crm_id is not in the workspace's identity settings, so it links no profile. Add it to the identifiers of the settings (rtcdp dev --identity FILE)" : '';
    t.equal(error.details, `no profile found for ${type} ${JSON.stringify(value)} in this workspace${reason}`, `${type}: message names the identifier`);
  }

  const badType = await expectServiceError(getProfile(node, 'fax', '123'));
  t.equal(badType.code, status.INVALID_ARGUMENT, 'unknown identifier type is INVALID_ARGUMENT');
  t.match(badType.details, 'identifier.type must be one of', 'message names the field');
  t.match(badType.details, '"fax"', 'message gives the received type');

  const emptyValue = await expectServiceError(getProfile(node, 'email', ''));
  t.equal(emptyValue.code, status.INVALID_ARGUMENT, 'empty identifier value is INVALID_ARGUMENT');
  t.match(emptyValue.details, 'identifier.value must be a non-empty string', 'message names the field');

  const events = await expectServiceError(listProfileEvents(node, { type: 'user_id', value: 'nobody' }, 10, ''));
  t.equal(events.code, status.NOT_FOUND, 'ListProfileEvents of an unknown user is NOT_FOUND');
  t.match(events.details, 'user_id "nobody"', 'message names the identifier');
});

t.test('queries - read your writes', async (t) => {
  // A snapshot after every event keeps identifier claims moving from memory to the store while lookups run.
  const node = await startTestNode(t, { actors: { snapshotEveryMessages: 1 } });

  const staleReads: string[] = [];
  const staleEmailReads: string[] = [];
  for (let i = 0; i < 200; i++) {
    const response = await ingestBatch(node, [
      { type: 'track', userId: 'frank', messageId: `frank-${i}`, event: 'Tick' },
      { type: 'identify', userId: `reader-${i}`, context: { traits: { email: `reader-${i}@example.com` } } },
    ]);
    if (response.accepted !== 2) staleReads.push(`iteration ${i}: ${response.accepted} of 2 events accepted`);

    const profile = await getProfile(node, 'user_id', 'frank');
    if (profile.eventCount !== i + 1) staleReads.push(`iteration ${i}: user_id read ${profile.eventCount} events, expected ${i + 1}`);

    const byEmail = await getProfile(node, 'email', `reader-${i}@example.com`).catch((error: Error) => error);
    if (byEmail instanceof Error) staleEmailReads.push(`iteration ${i}: email read failed: ${byEmail.message}`);
    else if (byEmail.profileId !== `user:reader-${i}`) staleEmailReads.push(`iteration ${i}: email read found ${byEmail.profileId}`);
  }

  t.same(staleReads, [], 'every user_id read includes the write before it');
  t.same(staleEmailReads, [], 'every email read finds the profile written before it');
});

t.test('queries - event paging across restart', async (t) => {
  const dataDir = t.testdir();
  const first = await startTestNode(t, { dataDir });
  await ingestBatch(first, trackEvents('gina', 0, 10));

  const expected = Array.from({ length: 10 }, (_, i) => `gina-${9 - i}`);
  const before = await readAllPages(t, first, 'gina', 3);
  t.same(before.pageSizes, [3, 3, 3, 1], 'before restart: pages of 3, 3, 3 and 1');
  t.same(before.messageIds, expected, 'before restart: newest first, no duplicates or gaps');

  const firstPage = await listProfileEvents(first, { type: 'user_id', value: 'gina' }, 3, '');
  t.same(firstPage.events[0]?.properties, { index: 9 }, 'events keep their properties');
  t.equal(firstPage.events[0]?.timestamp, '2024-05-01T12:00:09.000Z', 'events keep their timestamp');

  await first.rtcdp.stop();
  const second = await startTestNode(t, { dataDir });

  const after = await readAllPages(t, second, 'gina', 3);
  t.same(after.pageSizes, [3, 3, 3, 1], 'after restart: pages of 3, 3, 3 and 1');
  t.same(after.messageIds, expected, 'after restart: the same events in the same order');

  // Two new events are in the actor and not yet in the stored history, so pages mix both.
  await ingestBatch(second, trackEvents('gina', 10, 2));
  const mixed = await readAllPages(t, second, 'gina', 3);
  t.same(mixed.pageSizes, [3, 3, 3, 3], 'after new events: four pages of 3');
  t.same(mixed.messageIds, ['gina-11', 'gina-10', ...expected], 'after new events: newest first, no duplicates or gaps');

  const whole = await listProfileEvents(second, { type: 'user_id', value: 'gina' }, 0, '');
  t.equal(whole.events.length, 12, 'page_size 0 uses the default of 100');
  t.equal(whole.nextPageToken, '', 'a page that holds the rest has no next token');
});

t.test('queries - paging with snapshots in between', async (t) => {
  // A snapshot every 4 events moves part of the history to the store while the rest is in the actor.
  const node = await startTestNode(t, { actors: { snapshotEveryMessages: 4 } });
  for (let i = 0; i < 10; i++) await ingestBatch(node, trackEvents('hana', i, 1));

  const pages = await readAllPages(t, node, 'hana', 3);
  t.same(pages.messageIds, Array.from({ length: 10 }, (_, i) => `hana-${9 - i}`), 'newest first, no duplicates or gaps');

  const single = await readAllPages(t, node, 'hana', 1);
  t.equal(single.messageIds.length, 10, 'pages of 1 reach every event');
  t.equal(new Set(single.messageIds).size, 10, 'pages of 1 have no duplicates');
});

t.test('queries - invalid page token', async (t) => {
  const node = await startTestNode(t);
  await ingestBatch(node, trackEvents('ivan', 0, 3));

  for (const token of ['abc', '-1', '0', '1.5', '1e3x', '1e3', '0x10', ' 12', '9007199254740993']) {
    const error = await expectServiceError(listProfileEvents(node, { type: 'user_id', value: 'ivan' }, 3, token));
    t.equal(error.code, status.INVALID_ARGUMENT, `${JSON.stringify(token)}: status is INVALID_ARGUMENT`);
    t.equal(errorCodeOf(error), 'INVALID_ARGUMENT', `${JSON.stringify(token)}: trailer code`);
    t.match(error.details, `page_token is invalid: ${JSON.stringify(token)}`, `${JSON.stringify(token)}: message names the field and value`);
  }

  const tooLarge = await expectServiceError(listProfileEvents(node, { type: 'user_id', value: 'ivan' }, 1_001, ''));
  t.equal(tooLarge.code, status.INVALID_ARGUMENT, 'page_size 1001 is INVALID_ARGUMENT');
  t.match(tooLarge.details, 'page_size must be an integer from 1 to 1000, received 1001', 'message names the field and the rule');
});

t.test('queries - traits last writer wins by event time', async (t) => {
  const dataDir = t.testdir();
  const node = await startTestNode(t, { dataDir });

  const newer = await ingestBatch(node, [
    {
      type: 'identify',
      userId: 'jade',
      messageId: 'jade-new',
      timestamp: '2024-06-01T12:00:00.000Z',
      traits: { plan: 'enterprise' },
      context: { traits: { email: 'jade@new.example.com' } },
    },
  ]);
  t.equal(newer.accepted, 1, 'newer identify is accepted');

  const older = await ingestBatch(node, [
    {
      type: 'identify',
      userId: 'jade',
      messageId: 'jade-old',
      timestamp: '2024-05-01T12:00:00.000Z',
      traits: { plan: 'free', city: 'Leeds' },
      context: { traits: { email: 'jade@old.example.com' } },
    },
  ]);
  t.equal(older.accepted, 1, 'older identify sent later is accepted');

  const profile = await getProfile(node, 'user_id', 'jade');
  t.equal(profile.traits?.plan, 'enterprise', 'older plan does not overwrite the newer one');
  t.equal(profile.traits?.email, 'jade@new.example.com', 'older context email does not overwrite the newer one');
  t.equal(profile.traits?.city, 'Leeds', 'a trait only the older event has is set');
  t.equal(profile.eventCount, 2, 'both events are counted');

  await node.rtcdp.stop();
  const restarted = await startTestNode(t, { dataDir });
  await ingestBatch(restarted, [{ type: 'identify', userId: 'jade', messageId: 'jade-older', timestamp: '2024-04-01T12:00:00.000Z', traits: { plan: 'trial' } }]);

  const afterRestart = await getProfile(restarted, 'user_id', 'jade');
  t.equal(afterRestart.traits?.plan, 'enterprise', 'after restart an older plan still does not overwrite');

  await ingestBatch(restarted, [{ type: 'identify', userId: 'jade', messageId: 'jade-newest', timestamp: '2024-07-01T12:00:00.000Z', traits: { plan: 'team' } }]);
  const newest = await getProfile(restarted, 'user_id', 'jade');
  t.equal(newest.traits?.plan, 'team', 'a newer identify overwrites');
  t.equal(newest.traits?.city, 'Leeds', 'traits the newer identify lacks are kept');
});
