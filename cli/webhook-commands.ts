/**
 * `rtcdp webhooks list`, `rtcdp webhooks dead-letters NAME` and `rtcdp webhooks replay
 * NAME`: the webhook destinations a node delivers the workspace's activations to, their
 * counters, the batches they gave up on, and replays of those batches, through
 * WebhookService.
 */
import type { Command } from 'commander';
import type { WebhookDeadLetter, WebhookDestinationStatus } from '../proto/gen/rtcdp/v1/webhooks.js';
import { callUnary, createWebhookClient, describeCallFailure, writeKeyMetadata } from './client.js';
import { OUTPUT_FORMATS, parseChoice, parseInteger, parseServer, DEFAULT_SERVER, renderTable, UsageError } from './common.js';

const MAX_DEAD_LETTERS = 1_000;

interface WebhookCommandOptions {
  server: string;
  writeKey?: string;
  output: string;
}

interface DeadLetterCommandOptions extends WebhookCommandOptions {
  limit: number;
  after: number;
}

interface ReplayCommandOptions extends WebhookCommandOptions {
  all?: boolean;
  firstSequence?: number[];
}

export function addWebhookCommands(program: Command): void {
  const webhooks = program
    .command('webhooks')
    .description('Show the webhook destinations a node delivers activations to (rtcdp dev --webhooks, rtcdp node --webhooks) and the batches they gave up on, and replay those batches.');

  addOptions(
    webhooks
      .command('list')
      .description(
        "List the workspace's destinations on the node, with the sequence each delivered up to and the counters of the node that serves the command, since it started. " +
          'On a cluster node the cursor is the one all nodes share, DELIVERED BY names the node that holds the delivery lease (none while no node does), and the counters count only what that node delivered.',
      ),
  ).action(
    (options: WebhookCommandOptions) => runList(options),
  );

  addOptions(
    webhooks
      .command('dead-letters')
      .description('List the dead letters of a destination, oldest first: each batch that failed every attempt, or once with a status a retry cannot change, with its last error.')
      .argument('<destination>', 'name of the destination, as in the --webhooks file')
      .option('--limit <n>', `dead letters at most, 1 to ${MAX_DEAD_LETTERS}`, parseInteger('--limit', 1, MAX_DEAD_LETTERS), 100)
      .option('--after <sequence>', 'only dead letters whose first sequence is after this one; 0 starts at the oldest', parseInteger('--after', 0, Number.MAX_SAFE_INTEGER), 0),
  ).action((destination: string, options: DeadLetterCommandOptions) => runDeadLetters(destination, options));

  addOptions(
    webhooks
      .command('replay')
      .description(
        'Queue dead letters of a destination for replay. The node that delivers the destination sends each as one batch before its next live batch, so it arrives after later activations, ' +
          'and deletes it after a 2xx response. A replay that fails for good stays a dead letter.',
      )
      .argument('<destination>', 'name of the destination, as in the --webhooks file')
      .option('--all', 'replay every dead letter of the destination')
      .option('--first-sequence <sequence>', 'first sequence of a dead letter to replay, as `rtcdp webhooks dead-letters` lists it; repeat it for more', collectSequence),
  ).action((destination: string, options: ReplayCommandOptions) => runReplay(destination, options));
}

const parseSequence = parseInteger('--first-sequence', 1, Number.MAX_SAFE_INTEGER);

function collectSequence(value: string, previous: number[] | undefined): number[] {
  return [...(previous ?? []), parseSequence(value)];
}

function addOptions(command: Command): Command {
  return command
    .option('--server <host:port>', 'address of the rtcdp node', parseServer, DEFAULT_SERVER)
    .option('--write-key <key>', 'write key of the workspace (default: none, which a dev-mode node maps to "default")')
    .option('--output <format>', 'table or json', parseChoice('--output', OUTPUT_FORMATS), 'table');
}

async function runList(options: WebhookCommandOptions): Promise<void> {
  const client = createWebhookClient(options.server);
  try {
    const response = await callUnary(client.listWebhookDestinations.bind(client), {}, writeKeyMetadata(options.writeKey));
    if (options.output === 'json') {
      const destinations = response.destinations.map(({ deliveringNode, ...destination }) => ({ ...destination, deliveringNode: deliveringNode === '' ? null : deliveringNode }));
      process.stdout.write(`${JSON.stringify({ workspace: response.workspace, clusterMode: response.clusterMode, destinations }, null, 2)}\n`);
      return;
    }
    if (response.destinations.length === 0) {
      process.stdout.write(`this node delivers to no webhook destination of workspace ${response.workspace} (start it with --webhooks FILE)\n`);
      return;
    }
    const rows = response.clusterMode ? [CLUSTER_DESTINATION_HEADER, ...response.destinations.map(clusterDestinationRow)] : [DESTINATION_HEADER, ...response.destinations.map(destinationRow)];
    process.stdout.write(`${renderTable(rows, '').join('\n')}\n`);
  } catch (error) {
    throw describeCallFailure(error, options.server, 'WebhookService');
  } finally {
    client.close();
  }
}

async function runDeadLetters(destination: string, options: DeadLetterCommandOptions): Promise<void> {
  if (destination === '') throw new UsageError('destination is empty: name a destination of the --webhooks file, as `rtcdp webhooks list` shows them');
  const client = createWebhookClient(options.server);
  try {
    const request = { destination, limit: options.limit, afterSequence: options.after };
    const response = await callUnary(client.listWebhookDeadLetters.bind(client), request, writeKeyMetadata(options.writeKey));
    if (options.output === 'json') {
      const deadLetters = response.deadLetters.map(({ activationsJson, status, ...deadLetter }) => ({
        ...deadLetter,
        // null, as the table's "-": the last attempt got no HTTP response.
        status: status === 0 ? null : status,
        activations: JSON.parse(activationsJson) as unknown,
      }));
      process.stdout.write(`${JSON.stringify({ deadLetters, nextAfterSequence: response.nextAfterSequence }, null, 2)}\n`);
      return;
    }
    if (response.deadLetters.length === 0) {
      const where = options.after === 0 ? '' : ` after sequence ${options.after}`;
      process.stdout.write(`destination ${destination} has no dead letters${where}\n`);
      return;
    }

    const lines = renderTable([DEAD_LETTER_HEADER, ...response.deadLetters.map(deadLetterRow)], '');
    if (response.deadLetters.length === options.limit) lines.push('', `more may follow: continue with --after ${response.nextAfterSequence}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  } catch (error) {
    throw describeCallFailure(error, options.server, 'WebhookService');
  } finally {
    client.close();
  }
}

async function runReplay(destination: string, options: ReplayCommandOptions): Promise<void> {
  if (destination === '') throw new UsageError('destination is empty: name a destination of the --webhooks file, as `rtcdp webhooks list` shows them');
  const all = options.all === true;
  const firstSequences = options.firstSequence ?? [];
  if (all === (firstSequences.length > 0)) {
    throw new UsageError(
      `give either --all or at least one --first-sequence, for example --first-sequence 1; \`rtcdp webhooks dead-letters ${destination}\` lists the first sequence of each dead letter`,
    );
  }

  const client = createWebhookClient(options.server);
  try {
    const request = { destination, all, firstSequences };
    const response = await callUnary(client.replayWebhookDeadLetters.bind(client), request, writeKeyMetadata(options.writeKey));
    if (options.output === 'json') {
      process.stdout.write(`${JSON.stringify({ destination, queued: response.queued }, null, 2)}\n`);
      return;
    }
    const noun = response.queued === 1 ? 'dead letter' : 'dead letters';
    process.stdout.write(`queued ${response.queued} ${noun} of destination ${destination} for replay\n`);
  } catch (error) {
    throw describeCallFailure(error, options.server, 'WebhookService');
  } finally {
    client.close();
  }
}

// The counters count since the node started: DEAD-LETTERED counts batches moved to the dead letters, not those left.
const DESTINATION_HEADER = ['NAME', 'URL', 'TYPES', 'CURSOR', 'DELIVERED', 'ACTIVATIONS', 'FAILED ATTEMPTS', 'DEAD-LETTERED', 'REPLAYED', 'RATE LIMIT WAITS'];

function destinationRow(destination: WebhookDestinationStatus): string[] {
  return [
    destination.name,
    destination.url,
    destination.types.length === 0 ? 'all' : destination.types.join(','),
    String(destination.cursor),
    String(destination.deliveredBatches),
    String(destination.deliveredActivations),
    String(destination.failedAttempts),
    String(destination.deadLetteredBatches),
    String(destination.replayedBatches),
    String(destination.rateLimitWaits),
  ];
}

/** A cluster node's table adds the node that delivers each destination, after its cursor. */
const CLUSTER_DESTINATION_HEADER = [...DESTINATION_HEADER.slice(0, 4), 'DELIVERED BY', ...DESTINATION_HEADER.slice(4)];

function clusterDestinationRow(destination: WebhookDestinationStatus): string[] {
  const row = destinationRow(destination);
  return [...row.slice(0, 4), destination.deliveringNode === '' ? 'none' : destination.deliveringNode, ...row.slice(4)];
}

const DEAD_LETTER_HEADER = ['SEQUENCES', 'ACTIVATIONS', 'ATTEMPTS', 'STATUS', 'FAILED AT', 'REPLAY', 'ERROR'];

function deadLetterRow(deadLetter: WebhookDeadLetter): string[] {
  const activations = (JSON.parse(deadLetter.activationsJson) as unknown[]).length;
  return [
    `${deadLetter.firstSequence}-${deadLetter.lastSequence}`,
    String(activations),
    String(deadLetter.attempts),
    deadLetter.status === 0 ? '-' : String(deadLetter.status),
    deadLetter.failedAt,
    deadLetter.replayQueued ? 'queued' : '-',
    deadLetter.error,
  ];
}
