/**
 * Kills the node with SIGKILL several times while the Online Retail sample is being sent,
 * each time after a different delay, including during the replay right after a restart.
 * Every event acknowledged before any kill must come back as a duplicate, and the profiles
 * must then match the CSV exactly. A second node on the same data directory must fail to
 * start while the first one holds the RocksDB lock.
 */
import { spawn } from 'node:child_process';
import { Metadata } from '@grpc/grpc-js';
import t from 'tap';
import { callUnary, createIngestClient, createProfileClient } from '../../cli/client.js';
import { readOnlineRetailItems } from '../../cli/sources/online-retail.js';
import type { RawEvent } from '../../profiles/event.js';
import { rawEventToProto } from '../../profiles/segment-json.js';
import type { Event } from '../../proto/gen/rtcdp/v1/event.js';
import { RTCDP_BIN, SAMPLE_FILE, startNodeProcess } from '../helpers/node-process.js';

/** Delay from each start to its SIGKILL, in ms. The 60 ms kill falls in the replay after a restart, the others in the load. */
const KILL_DELAYS_MS = [1_200, 60, 700, 2_000];
const BATCH_SIZE = 500;
const SENDERS = 8;
const STATUS_ACCEPTED = 1;
const STATUS_DUPLICATE = 2;
const RESOURCE_EXHAUSTED = 8;

interface Expected {
  identifier: { type: string; value: string };
  count: number;
  quantity: number;
}

async function readSample(): Promise<RawEvent[]> {
  const events: RawEvent[] = [];
  for await (const item of readOnlineRetailItems(SAMPLE_FILE)) {
    if (item.kind === 'event') events.push(item.event);
  }
  return events;
}

/** Event count and total quantity per profile, computed from the CSV. */
function expectedProfiles(events: RawEvent[]): Map<string, Expected> {
  const profiles = new Map<string, Expected>();
  for (const event of events) {
    const identifier = typeof event.userId === 'string' ? { type: 'user_id', value: event.userId } : { type: 'anonymous_id', value: String(event.anonymousId) };
    const key = `${identifier.type}:${identifier.value}`;
    const profile = profiles.get(key) ?? { identifier, count: 0, quantity: 0 };
    profiles.set(key, profile);
    profile.count += 1;
    profile.quantity += Number((event.properties as { quantity: number }).quantity);
  }
  return profiles;
}

/**
 * Sends `events` in batches from 8 concurrent senders until all are sent or `stop.requested`.
 * Records each acknowledged messageId with its status. Retries RESOURCE_EXHAUSTED, and
 * returns on any other error because the node is gone.
 */
async function sendBatches(server: string, events: Event[], acknowledged: Map<string, number>, stop: { requested: boolean }): Promise<void> {
  const client = createIngestClient(server);
  let next = 0;

  const sender = async () => {
    while (!stop.requested && next < events.length) {
      const start = next;
      next += BATCH_SIZE;
      const request = { events: events.slice(start, start + BATCH_SIZE), batchId: `batch-${start}` };

      for (let attempt = 0; attempt < 100 && !stop.requested; attempt++) {
        try {
          const response = await callUnary(client.ingestBatch.bind(client), request, new Metadata(), 30_000);
          for (const result of response.results) acknowledged.set(result.messageId, result.status);
          break;
        } catch (error) {
          if ((error as { code?: number }).code !== RESOURCE_EXHAUSTED) return;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    }
  };

  try {
    await Promise.all(Array.from({ length: SENDERS }, sender));
  } finally {
    client.close();
  }
}

/** Compares every profile with the CSV and returns the mismatches, an empty list when all match. */
async function mismatches(server: string, expected: Map<string, Expected>): Promise<string[]> {
  const client = createProfileClient(server);
  const found: string[] = [];
  const queue = [...expected.values()];

  const checker = async () => {
    for (let next = queue.pop(); next !== undefined; next = queue.pop()) {
      const label = `${next.identifier.type} ${next.identifier.value}`;
      try {
        const response = await callUnary(client.getProfile.bind(client), { identifier: next.identifier }, new Metadata(), 30_000);
        const profile = response.profile!;
        const quantity = Object.values(profile.events).reduce((sum, stats) => sum + (stats.sums.quantity ?? 0), 0);
        if (profile.eventCount !== next.count) found.push(`${label}: eventCount ${profile.eventCount}, expected ${next.count}`);
        if (Math.abs(quantity - next.quantity) > 1e-9) found.push(`${label}: quantity ${quantity}, expected ${next.quantity}`);
      } catch (error) {
        found.push(`${label}: ${(error as Error).message}`);
      }
    }
  };

  try {
    await Promise.all(Array.from({ length: 16 }, checker));
  } finally {
    client.close();
  }
  return found;
}

t.test('chaos - repeated SIGKILL during load', async (t) => {
  const events = await readSample();
  const protos = events.map(rawEventToProto);
  const expected = expectedProfiles(events);
  const dataDir = t.testdir();
  const acknowledged = new Map<string, number>();

  for (const [cycle, delayMs] of KILL_DELAYS_MS.entries()) {
    const node = await startNodeProcess(dataDir);
    t.teardown(() => node.stop('SIGKILL'));

    // Every cycle resends a sample of what is already acknowledged first, then the rest.
    const resent = protos.filter((event, index) => acknowledged.has(event.messageId) && index % 20 === cycle);
    const unsent = protos.filter((event) => !acknowledged.has(event.messageId));
    const stop = { requested: false };
    const sending = sendBatches(node.address, [...resent, ...unsent], acknowledged, stop);

    await new Promise((resolve) => setTimeout(resolve, delayMs));
    t.equal(await node.stop('SIGKILL'), 'SIGKILL', `cycle ${cycle}: the node is killed after ${delayMs} ms`);
    stop.requested = true;
    await sending;
  }

  const acknowledgedBeforeLastStart = [...acknowledged.keys()];
  t.ok(acknowledgedBeforeLastStart.length > 0, `some events were acknowledged before the kills (${acknowledgedBeforeLastStart.length})`);

  const node = await startNodeProcess(dataDir);
  t.teardown(() => node.stop('SIGKILL'));
  const final = new Map<string, number>();
  await sendBatches(node.address, protos, final, { requested: false });

  t.equal(final.size, events.length, 'every event of the sample is acknowledged on the last send');
  const notDuplicate = acknowledgedBeforeLastStart.filter((messageId) => final.get(messageId) !== STATUS_DUPLICATE);
  t.same(notDuplicate.slice(0, 10), [], 'every event acknowledged before a kill is a duplicate now');
  const unexpected = [...final.values()].filter((status) => status !== STATUS_ACCEPTED && status !== STATUS_DUPLICATE);
  t.equal(unexpected.length, 0, 'every event is accepted or a duplicate');
  t.same((await mismatches(node.address, expected)).slice(0, 10), [], 'every profile matches the CSV');

  t.equal(await node.stop('SIGTERM'), 0, 'SIGTERM drains and exits 0');
  const restarted = await startNodeProcess(dataDir);
  t.teardown(() => restarted.stop('SIGKILL'));
  t.same((await mismatches(restarted.address, expected)).slice(0, 10), [], 'after a clean restart every profile still matches');
  t.equal(await restarted.stop('SIGTERM'), 0, 'the second SIGTERM also exits 0');
});

t.test('chaos - second node on a locked data directory', async (t) => {
  const dataDir = t.testdir();
  const first = await startNodeProcess(dataDir);
  t.teardown(() => first.stop('SIGKILL'));

  const second = spawn(process.execPath, [RTCDP_BIN, 'dev', '--data', dataDir, '--port', '0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  second.stderr.on('data', (chunk) => (stderr += chunk));
  const timer = setTimeout(() => second.kill('SIGKILL'), 30_000);
  const exitCode = await new Promise((resolve) => second.on('exit', (code, signal) => resolve(code ?? signal)));
  clearTimeout(timer);

  t.equal(exitCode, 1, 'the second node exits with 1');
  t.match(stderr, /data directory .* is in use by another rtcdp process/, 'the error says the directory is in use');

  const client = createIngestClient(first.address);
  t.teardown(() => client.close());
  const response = await callUnary(client.ingest.bind(client), { event: rawEventToProto({ type: 'track', userId: 'lock', messageId: 'lock-1', event: 'E' }) }, new Metadata());
  t.equal(response.result?.status, STATUS_ACCEPTED, 'the first node still accepts events');
  t.equal(await first.stop('SIGTERM'), 0, 'the first node drains and exits 0');
});
