/**
 * Streams a full month of real purchase data (UCI Online Retail, December 2010) over gRPC
 * into an embedded node in its own process, and checks every profile against counts and
 * sums computed here from the CSV. Then kills the node with SIGKILL right after the last
 * acknowledgement, restarts it, checks again, and sends the file a second time.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import t from 'tap';
import { callUnary, createIngestClient, createProfileClient, writeKeyMetadata } from '../../cli/client.js';
import { sendSources } from '../../cli/sender.js';
import { openSource } from '../../cli/sources/index.js';
import { rawEventToProto } from '../../profiles/segment-json.js';
import { EventStatus } from '../../proto/gen/rtcdp/v1/ingest.js';
import type { Profile } from '../../proto/gen/rtcdp/v1/profile.js';
import { SAMPLE_FILE, startNodeProcess } from '../helpers/node-process.js';

interface Expected {
  identifier: { type: string; value: string };
  count: number;
  byEvent: Map<string, { count: number; quantity: number; revenue: number }>;
}

/** Per customer (CustomerID) or guest invoice: lines, quantity and revenue per event name. */
function expectedProfiles(file: string): Map<string, Expected> {
  const rows: string[][] = parse(readFileSync(file), { from_line: 2 });
  const profiles = new Map<string, Expected>();

  for (const [invoiceNo, , , quantityText, , unitPriceText, customerId, ] of rows) {
    const identifier = customerId.trim() === ''
      ? { type: 'anonymous_id', value: `guest-${invoiceNo}` }
      : { type: 'user_id', value: String(Number(customerId)) };
    const key = `${identifier.type}:${identifier.value}`;
    const profile = profiles.get(key) ?? { identifier, count: 0, byEvent: new Map() };
    profiles.set(key, profile);

    const name = invoiceNo.startsWith('C') ? 'Order Line Cancelled' : 'Order Line Purchased';
    const stats = profile.byEvent.get(name) ?? { count: 0, quantity: 0, revenue: 0 };
    profile.byEvent.set(name, stats);

    const quantity = Number(quantityText);
    stats.count += 1;
    stats.quantity += quantity;
    stats.revenue += Math.round(quantity * Number(unitPriceText) * 100) / 100;
    profile.count += 1;
  }
  return profiles;
}

async function fetchProfile(server: string, identifier: { type: string; value: string }): Promise<Profile> {
  const client = createProfileClient(server);
  try {
    const response = await callUnary(client.getProfile.bind(client), { identifier }, writeKeyMetadata(undefined));
    return response.profile!;
  } finally {
    client.close();
  }
}

/** Compares every profile; returns the mismatches (empty when all match). */
async function mismatches(server: string, expected: Map<string, Expected>): Promise<string[]> {
  const found: string[] = [];
  const queue = [...expected.values()];
  const worker = async () => {
    for (let next = queue.pop(); next; next = queue.pop()) {
      const profile = await fetchProfile(server, next.identifier);
      const label = `${next.identifier.type} ${next.identifier.value}`;
      if (profile.eventCount !== next.count) found.push(`${label}: eventCount ${profile.eventCount}, expected ${next.count}`);
      for (const [name, stats] of next.byEvent) {
        const actual = profile.events[name];
        if (actual?.count !== stats.count) found.push(`${label}: ${name} count ${actual?.count}, expected ${stats.count}`);
        if (Math.abs((actual?.sums.quantity ?? NaN) - stats.quantity) > 1e-9) found.push(`${label}: ${name} quantity ${actual?.sums.quantity}, expected ${stats.quantity}`);
        if (Math.abs((actual?.sums.revenue ?? NaN) - stats.revenue) > 1e-6) found.push(`${label}: ${name} revenue ${actual?.sums.revenue}, expected ${stats.revenue}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return found;
}

t.test('online retail - a month over gRPC survives SIGKILL and resend', async (t) => {
  const dataDir = t.testdir();
  const expected = expectedProfiles(SAMPLE_FILE);
  const rowCount = [...expected.values()].reduce((sum, profile) => sum + profile.count, 0);
  t.equal(rowCount, 42_481, 'the sample has every row of December 2010');

  const first = await startNodeProcess(dataDir);
  t.teardown(() => first.stop('SIGKILL'));
  const sent = await sendSources([await openSource(SAMPLE_FILE)], { server: first.address, progress: 'off', notice: () => {} });
  t.equal(sent.accepted, rowCount, 'every row is accepted');
  t.equal(sent.duplicates, 0, 'no row is a duplicate on the first send');
  t.equal(sent.rejected + sent.clientErrors, 0, 'no row is rejected');
  t.same(await mismatches(first.address, expected), [], 'every profile matches the CSV');

  // Killed right after the acknowledgements: most profiles have not been snapshotted yet.
  const resent = await sendSources([await openSource(SAMPLE_FILE)], { server: first.address, progress: 'off', notice: () => {} });
  t.equal(resent.duplicates, rowCount, 'a second send is all duplicates');
  t.equal(await first.stop('SIGKILL'), 'SIGKILL');

  const second = await startNodeProcess(dataDir);
  t.teardown(() => second.stop('SIGKILL'));
  t.same(await mismatches(second.address, expected), [], 'after SIGKILL and restart, every profile matches');

  const third = await sendSources([await openSource(SAMPLE_FILE)], { server: second.address, progress: 'off', notice: () => {} });
  t.equal(third.duplicates, rowCount, 'after restart, sending again is all duplicates');
  t.equal(third.accepted, 0, 'after restart, sending again accepts nothing');
  t.same(await mismatches(second.address, expected), [], 'after the third send, every profile still matches');
  t.equal(await second.stop('SIGTERM'), 0, 'SIGTERM drains and exits 0');
  t.match(second.stderr(), /rtcdp: received SIGTERM, stopping\nrtcdp: stopped\n/, 'and says when it has stopped');
});

t.test('online retail - kill during load loses nothing acknowledged', async (t) => {
  const dataDir = t.testdir();
  const node = await startNodeProcess(dataDir);
  t.teardown(() => node.stop('SIGKILL'));
  const sending = sendSources([await openSource(SAMPLE_FILE)], { server: node.address, progress: 'off', notice: () => {}, maxAttempts: 1 })
    .then(() => 'completed', (error: Error) => error.message);
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  await node.stop('SIGKILL');

  const outcome = await sending;
  const acknowledged = Number(/(\d+) of \d+ events sent were acknowledged/.exec(outcome)?.[1] ?? (outcome === 'completed' ? 42_481 : 0));
  t.ok(acknowledged > 0, `some events were acknowledged before the kill (${outcome})`);

  // Every acknowledged event must be back after the restart, so resending the file finds
  // each of them a duplicate. The totals must then match the CSV exactly, counting nothing twice.
  const restarted = await startNodeProcess(dataDir);
  t.teardown(() => restarted.stop('SIGKILL'));
  const resent = await sendSources([await openSource(SAMPLE_FILE)], { server: restarted.address, progress: 'off', notice: () => {} });
  t.equal(resent.accepted + resent.duplicates, 42_481, 'every row is accepted or a duplicate');
  t.ok(resent.duplicates >= acknowledged, `all ${acknowledged} acknowledged rows are duplicates (found ${resent.duplicates})`);
  t.same(await mismatches(restarted.address, expectedProfiles(SAMPLE_FILE)), [], 'every profile matches the CSV exactly');
});

t.test('dev - limit option reaches validation', async (t) => {
  const node = await startNodeProcess(t.testdir(), ['--limit', 'maxMessageIdLength=5']);
  t.teardown(() => node.stop('SIGKILL'));
  const client = createIngestClient(node.address);
  t.teardown(() => client.close());

  const ingest = (messageId: string) =>
    callUnary(client.ingest.bind(client), { event: rawEventToProto({ type: 'track', userId: 'u', event: 'E', messageId }) }, writeKeyMetadata(undefined));
  t.equal((await ingest('short')).result?.status, EventStatus.EVENT_STATUS_ACCEPTED, 'a 5-character messageId is accepted');
  t.equal((await ingest('longer')).result?.code, 'MESSAGE_ID_TOO_LONG', 'a 6-character messageId is rejected');
});
