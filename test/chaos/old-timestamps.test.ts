/**
 * Events are accepted with any timestamp up to 24 hours ahead of the server clock, including
 * 1970-01-01T00:00:00Z (0 ms since the epoch) and dates before 1970 (negative ms). The
 * profile's first and last seen times must then be those event times, not empty and not
 * taken from a later event.
 */
import t from 'tap';
import type { RawEvent } from '../../profiles/event.js';
import { getProfile, ingestBatch, startTestNode } from '../helpers/grpc-node.js';

const EPOCH = '1970-01-01T00:00:00.000Z';

function track(userId: string, messageId: string, timestamp: string): RawEvent {
  return { type: 'track', userId, messageId, timestamp, event: 'Order Completed' };
}

t.test('chaos - timestamp at the epoch', async (t) => {
  const node = await startTestNode(t);
  const response = await ingestBatch(node, [track('epoch-only', 'epoch-1', EPOCH)]);
  t.equal(response.accepted, 1, 'the event is accepted');

  const profile = await getProfile(node, 'user_id', 'epoch-only');
  t.equal(profile.eventCount, 1, 'the event is counted');
  t.equal(profile.firstSeen, EPOCH, 'firstSeen is the epoch');
  t.equal(profile.lastSeen, EPOCH, 'lastSeen is the epoch');
  t.equal(profile.events['Order Completed']?.firstSeen, EPOCH, 'the event name firstSeen is the epoch');
});

t.test('chaos - epoch then a later event', async (t) => {
  const node = await startTestNode(t);
  const response = await ingestBatch(node, [track('epoch-then-2020', 'mixed-1', EPOCH), track('epoch-then-2020', 'mixed-2', '2020-01-01T00:00:00.000Z')]);
  t.equal(response.accepted, 2, 'both events are accepted');

  const profile = await getProfile(node, 'user_id', 'epoch-then-2020');
  t.equal(profile.firstSeen, EPOCH, 'firstSeen stays at the earlier event, the epoch');
  t.equal(profile.lastSeen, '2020-01-01T00:00:00.000Z', 'lastSeen is the later event');
});

t.test('chaos - timestamps before 1970', async (t) => {
  const node = await startTestNode(t);
  const response = await ingestBatch(node, [track('before-1970', 'old-1', '1950-06-01T00:00:00.000Z'), track('before-1970', 'old-2', '1960-06-01T00:00:00.000Z')]);
  t.equal(response.accepted, 2, 'both events are accepted');

  const profile = await getProfile(node, 'user_id', 'before-1970');
  t.equal(profile.firstSeen, '1950-06-01T00:00:00.000Z', 'firstSeen is the 1950 event');
  t.equal(profile.lastSeen, '1960-06-01T00:00:00.000Z', 'lastSeen is the 1960 event');
});
