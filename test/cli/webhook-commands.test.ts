/**
 * `rtcdp webhooks list` and `rtcdp webhooks dead-letters` as their own processes, against an
 * embedded node in this process that delivers to a real HTTP server on loopback.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { startEmbedded, type EmbeddedRtcdp } from '../../api/embedded.js';
import { silentLogger } from '../../common/logger.js';
import type { WebhookDestination } from '../../decisions/activation-delivery/webhook-config.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import { runCli } from '../helpers/node-process.js';

const SEGMENT = `apiVersion: rtcdp/v1
kind: Segment
metadata: { name: pro }
spec: { condition: 'has(traits.plan) && traits.plan == "pro"' }
`;

/** Starts an HTTP server on 127.0.0.1 that responds to every request with 400, which no retry can change. */
async function startRejectingReceiver(t: Test): Promise<URL> {
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => response.writeHead(400).end('rejected by the test receiver'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`);
}

function destination(name: string, url: URL, overrides: Partial<WebhookDestination> = {}): WebhookDestination {
  return { name, workspace: 'default', url, secret: 'webhook-test-secret-0001', types: [], maxAttempts: 3, timeoutMs: 5_000, maxBatchActivations: 100, maxRequestsPerSecond: 1_000, ...overrides };
}

async function startNode(t: Test, webhooks: WebhookDestination[]): Promise<EmbeddedRtcdp> {
  const embedded = await startEmbedded({ dataDir: t.testdir(), port: 0, host: '127.0.0.1', logger: silentLogger(), devMode: true, actors: { snapshotIntervalMs: 20 }, webhooks });
  t.teardown(() => embedded.stop());
  await new DefinitionRegistry(embedded.node.definitionStore).apply('default', [{ name: 'segments.yaml', content: SEGMENT }]);
  return embedded;
}

/** Polls `done` every 20 ms; fails after 15 s. */
async function waitFor(what: string, done: () => boolean): Promise<void> {
  for (let i = 0; i < 750; i++) {
    if (done()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

t.test('webhooks commands - destinations and dead letters', async (t) => {
  const url = await startRejectingReceiver(t);
  // One activation per batch, so each of the three entries becomes its own dead letter.
  const embedded = await startNode(t, [destination('crm', url, { maxBatchActivations: 1 }), destination('audit', url, { types: ['segment.exited'] })]);
  const users = ['u1', 'u2', 'u3'];
  await embedded.node.ingest('default', users.map((userId) => ({ type: 'identify', userId, messageId: `m-${userId}`, traits: { plan: 'pro' } })));
  await waitFor('three dead letters', () => embedded.webhooks?.stats('crm').deadLetteredBatches === 3);
  const server = ['--server', embedded.address];

  const list = await runCli(['webhooks', 'list', ...server]);
  t.equal(list.code, 0, `list exits 0; stderr: ${list.stderr}`);
  const lines = list.stdout.trimEnd().split('\n');
  t.match(lines[0], /^NAME\s+URL\s+TYPES\s+CURSOR\s+DELIVERED\s+ACTIVATIONS\s+FAILED ATTEMPTS\s+DEAD-LETTERED\s+REPLAYED\s+RATE LIMIT WAITS$/);
  t.match(lines[1], new RegExp(`^audit\\s+${url.href.replaceAll('.', '\\.')}\\s+segment\\.exited\\s+`), 'sorted by name, with its type filter');
  t.match(lines[2], new RegExp(`^crm\\s+${url.href.replaceAll('.', '\\.')}\\s+all\\s+3\\s+0\\s+0\\s+3\\s+3\\s+0\\s+0$`), 'each 400 was one failed attempt and one dead letter, none replayed yet');

  const json = await runCli(['webhooks', 'list', '--output', 'json', ...server]);
  const listed = JSON.parse(json.stdout) as { workspace: string; destinations: Array<{ name: string; cursor: number; deadLetteredBatches: number }> };
  t.equal(listed.workspace, 'default');
  t.match(listed.destinations, [{ name: 'audit' }, { name: 'crm', cursor: 3, deadLetteredBatches: 3 }]);

  const deadLetters = await runCli(['webhooks', 'dead-letters', 'crm', ...server]);
  t.equal(deadLetters.code, 0, `dead-letters exits 0; stderr: ${deadLetters.stderr}`);
  const row = (sequence: number) => `${sequence}-${sequence}\\s+1\\s+1\\s+400\\s+\\d{4}-\\d\\d-\\d\\dT\\S+Z\\s+-\\s+received HTTP 400: rejected by the test receiver\\n`;
  t.match(deadLetters.stdout, new RegExp(`^SEQUENCES\\s+ACTIVATIONS\\s+ATTEMPTS\\s+STATUS\\s+FAILED AT\\s+REPLAY\\s+ERROR\\n${row(1)}${row(2)}${row(3)}$`));

  const firstPage = await runCli(['webhooks', 'dead-letters', 'crm', '--limit', '2', ...server]);
  t.match(firstPage.stdout, new RegExp(`\\n${row(1)}${row(2)}\\nmore may follow: continue with --after 2\\n$`), 'a full page says where to continue');
  const lastPage = await runCli(['webhooks', 'dead-letters', 'crm', '--limit', '2', '--after', '2', ...server]);
  t.match(lastPage.stdout, new RegExp(`\\n${row(3)}$`), 'the next page has the rest and no hint');
  const pastEnd = await runCli(['webhooks', 'dead-letters', 'crm', '--after', '3', ...server]);
  t.equal(pastEnd.stdout, 'destination crm has no dead letters after sequence 3\n');

  const deadJson = await runCli(['webhooks', 'dead-letters', 'crm', '--output', 'json', ...server]);
  const parsed = JSON.parse(deadJson.stdout) as { deadLetters: Array<{ firstSequence: number; status: number; activations: Array<{ type: string; profileId: string }> }>; nextAfterSequence: number };
  t.equal(parsed.deadLetters.length, 3);
  t.match(parsed.deadLetters[0], { firstSequence: 1, status: 400, activations: [{ type: 'segment.entered' }] }, 'the JSON carries the activations');
  t.same(parsed.deadLetters.flatMap((deadLetter) => deadLetter.activations.map((activation) => activation.profileId)).sort(), users.map((userId) => `user:${userId}`));
  t.equal(parsed.nextAfterSequence, 3);

  const none = await runCli(['webhooks', 'dead-letters', 'audit', ...server]);
  t.equal(none.stdout, 'destination audit has no dead letters\n');

  const unknown = await runCli(['webhooks', 'dead-letters', 'billing', ...server]);
  t.not(unknown.code, 0, 'an unknown destination fails');
  t.match(unknown.stderr, /no webhook destination is named "billing": the destinations of workspace default on this node are audit, crm/);

  const empty = await runCli(['webhooks', 'dead-letters', '', ...server]);
  t.equal(empty.code, 2, 'an empty destination name is a usage error');
  t.match(empty.stderr, /destination is empty/);

  const badLimit = await runCli(['webhooks', 'dead-letters', 'crm', '--limit', '0', ...server]);
  t.not(badLimit.code, 0, 'a limit under 1 fails');
  t.match(badLimit.stderr, /--limit/);
});

t.test('webhooks commands - a node without destinations', async (t) => {
  const embedded = await startNode(t, []);
  const server = ['--server', embedded.address];

  const list = await runCli(['webhooks', 'list', ...server]);
  t.equal(list.code, 0, `list exits 0; stderr: ${list.stderr}`);
  t.equal(list.stdout, 'this node delivers to no webhook destination of workspace default (start it with --webhooks FILE)\n');

  const deadLetters = await runCli(['webhooks', 'dead-letters', 'crm', ...server]);
  t.not(deadLetters.code, 0);
  t.match(deadLetters.stderr, /no webhook destination is named "crm": this node delivers to no destination of workspace default/);
});

t.test('webhooks commands - replay of dead letters', async (t) => {
  // 400 until the dead letter exists, then 503 with a long Retry-After, so the replay stays queued while it waits.
  let requests = 0;
  let replayPhase = false;
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      requests += 1;
      if (replayPhase) response.writeHead(503, { 'Retry-After': '300' }).end('unavailable in the test');
      else response.writeHead(400).end('rejected by the test receiver');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`);

  const embedded = await startNode(t, [destination('crm', url)]);
  await embedded.node.ingest('default', [{ type: 'identify', userId: 'u1', messageId: 'm-u1', traits: { plan: 'pro' } }]);
  await waitFor('a dead letter', () => embedded.webhooks?.stats('crm').deadLetteredBatches === 1);
  replayPhase = true;
  const address = ['--server', embedded.address];

  const unknown = await runCli(['webhooks', 'replay', 'crm', '--first-sequence', '5', ...address]);
  t.not(unknown.code, 0, 'an unknown first sequence fails');
  t.match(unknown.stderr, /webhook destination crm has no dead letter with first sequence 5; list them with `rtcdp webhooks dead-letters crm`/);

  const neither = await runCli(['webhooks', 'replay', 'crm', ...address]);
  t.equal(neither.code, 2, 'a replay without a selection is a usage error');
  t.match(neither.stderr, /give either --all or at least one --first-sequence/);
  const both = await runCli(['webhooks', 'replay', 'crm', '--all', '--first-sequence', '1', ...address]);
  t.equal(both.code, 2, '--all with --first-sequence is a usage error');

  const otherDestination = await runCli(['webhooks', 'replay', 'billing', '--all', ...address]);
  t.not(otherDestination.code, 0, 'an unknown destination fails');
  t.match(otherDestination.stderr, /no webhook destination is named "billing"/);

  const replay = await runCli(['webhooks', 'replay', 'crm', '--first-sequence', '1', ...address]);
  t.equal(replay.code, 0, `replay exits 0; stderr: ${replay.stderr}`);
  t.equal(replay.stdout, 'queued 1 dead letter of destination crm for replay\n');
  await waitFor('the replay request', () => requests === 2);

  const table = await runCli(['webhooks', 'dead-letters', 'crm', ...address]);
  t.match(table.stdout, /\n1-1\s+1\s+1\s+400\s+\S+\s+queued\s+received HTTP 400/, 'the table marks the dead letter as queued while its replay waits to retry');
  const json = await runCli(['webhooks', 'dead-letters', 'crm', '--output', 'json', ...address]);
  t.match(JSON.parse(json.stdout), { deadLetters: [{ firstSequence: 1, replayQueued: true }] }, 'the JSON marks it too');
});
