/**
 * The `rtcdp` command line: `dev` runs an embedded node, `send` streams event files to a
 * node, and `profile get` / `profile events` read profiles.
 *
 * Exit codes: 0 on success, 1 when a call fails or nothing is found, 2 on a usage error.
 * Errors print one line on stderr, with a stack trace only when RTCDP_DEBUG=1.
 */
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError } from 'commander';
import { status } from '@grpc/grpc-js';
import { AbortedError } from '../common/errors.js';
import { createLogger } from '../common/logger.js';
import type { EventLimits } from '../profiles/validation.js';
import {
  type Identifier,
  ListProfileEventsResponse,
  type Profile,
  Profile as ProfileMessage,
} from '../proto/gen/rtcdp/v1/profile.js';
import type { Event } from '../proto/gen/rtcdp/v1/event.js';
import {
  callUnary,
  createProfileClient,
  deadlineFailure,
  describeServiceError,
  isServiceError,
  serviceErrorDetails,
  unreachable,
  writeKeyMetadata,
} from './client.js';
import { DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, type SendSummary, sendSources } from './sender.js';
import { type Source, SourceError, openSource } from './sources/index.js';
import {
  assertGrpcPortFree,
  CommandFailure,
  DEFAULT_SERVER,
  LOG_LEVELS,
  OUTPUT_FORMATS,
  UsageError,
  collectLimit,
  EVENT_LIMIT_HELP,
  collectWriteKey,
  parseChoice,
  parseInteger,
  parseServer,
  renderTable,
  waitForStopSignal,
} from './common.js';
import { addClusterCommands } from './cluster-commands.js';
import { addActivationCommands } from './activation-commands.js';
import { addWebhookCommands } from './webhook-commands.js';
import { addDecisionCommands } from './decision-commands.js';
import { addIdentityCommands } from './identity-commands.js';
import { addExplainCommand, addQuarantineCommands, addUnmergeCommand } from './identity-admin-commands.js';
import type { SourceFile } from '../decisions/definitions/document.js';
import { addDefinitionCommands, definitionIssuesFailure, readDefinitionFiles } from './definition-commands.js';
import { addNodeCommand } from './node-command.js';
import { readWebhookDestinations, WEBHOOKS_HELP } from './webhook-options.js';
import { addMatchingOptions, IDENTITY_HELP, readIdentitySettings, readMatchingSettings, type IdentityFileSettings, type MatchingCommandOptions } from './identity-options.js';
import type { OnlineMatchingSettings } from '../identity/online-matching.js';
import type { WebhookDestination } from '../decisions/activation-delivery/webhook-config.js';
import { addProfileTargetOptions, identifierFrom, notFound, type ProfileTargetOptions } from './identifier-options.js';

const MAX_PAGE_SIZE = 1000;
const MAX_BATCH_SIZE = 10_000;
const MAX_CONCURRENCY = 256;
const RECENT_EVENTS_SHOWN = 5;

const FILE_FORMATS_HELP =
  'A .csv file must be the UCI Online Retail export; .ndjson, .jsonl and .json files hold one Segment event ' +
  'or one {"batch": [...]} envelope per line, and a .json file may instead hold one JSON document: an event, an envelope or an array of events.';

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

/** Runs the CLI on `argv` (as in process.argv) and sets process.exitCode. */
export async function run(argv: readonly string[]): Promise<void> {
  // Output piped into a command that exits early, such as `head`, is not an error.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw error;
  });

  try {
    await buildProgram().parseAsync([...argv]);
  } catch (error) {
    process.exitCode = reportError(error);
  }
}

function buildProgram(): Command {
  const program = new Command('rtcdp')
    .description('rtcdp: a real-time customer data platform that builds customer profiles from event streams.')
    .version(readVersion(), '-V, --version', 'print the rtcdp version')
    .helpOption('-h, --help', 'show help for the command')
    .exitOverride()
    .configureOutput({
      // Commander prints its own usage errors, so they get the same "rtcdp: " prefix as ours.
      outputError: (message, write) => write(`rtcdp: ${withHelpHint(message.replace(/^error: /, ''))}`),
    })
    .showSuggestionAfterError(true);

  addDevCommand(program);
  addNodeCommand(program);
  addClusterCommands(program);
  addSendCommand(program);
  addProfileCommands(program);
  addDefinitionCommands(program);
  addActivationCommands(program);
  addWebhookCommands(program);
  addDecisionCommands(program);
  addQuarantineCommands(addIdentityCommands(program));
  return program;
}

/** Adds where to find a command's arguments to Commander's message about a missing one, on the same line. */
function withHelpHint(message: string): string {
  return message.replace(/^(missing required argument '[^']+')\n$/, '$1; the command\'s --help lists its arguments\n');
}

function readVersion(): string {
  const text = readFileSync(new URL('../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}

/** Maps an error to its exit code after printing it as one line on stderr. */
function reportError(error: unknown): number {
  if (error instanceof CommanderError) {
    // Commander has printed its message already. Help and version exit with 0.
    return error.exitCode === 0 ? 0 : 2;
  }

  process.stderr.write(`rtcdp: ${errorMessage(error)}\n`);
  if (process.env.RTCDP_DEBUG === '1' && error instanceof Error && error.stack !== undefined) {
    process.stderr.write(`${error.stack}\n`);
  }

  if (error instanceof UsageError || error instanceof SourceError) {
    return 2;
  }
  return 1;
}

function errorMessage(error: unknown): string {
  if (isServiceError(error)) {
    return describeServiceError(error);
  }
  return error instanceof Error ? error.message : String(error);
}

// ---------------------------------------------------------------------------
// rtcdp dev
// ---------------------------------------------------------------------------

interface DevOptions {
  data: string;
  host: string;
  port: number;
  load?: string[];
  definitions?: string[];
  writeKey?: Map<string, string>;
  logLevel: string;
  shards: number;
  maxInFlight: number;
  maxResident: number;
  walSync: boolean;
  limit?: Partial<EventLimits>;
  webhooks?: string;
  identity?: string;
}

type DevCommandOptions = DevOptions & MatchingCommandOptions;

function addDevCommand(program: Command): void {
  const command = program
    .command('dev')
    .description(
      'Run an embedded rtcdp node (RocksDB and the gRPC API in this process), optionally load event files into ' +
        'workspace "default", and serve until SIGINT or SIGTERM. Calls without a write key use workspace "default".',
    )
    .option('--data <dir>', 'directory of the RocksDB database, created when missing', '.rtcdp-data')
    .option('--host <host>', 'IP address or host name to listen on', '127.0.0.1')
    .option('--port <port>', 'TCP port to listen on, 0 for any free port', parseInteger('--port', 0, 65535), 50051)
    .option('--load <file...>', `event files to send once the server listens. ${FILE_FORMATS_HELP}`)
    .option(
      '--definitions <path...>',
      'definition files, or directories of .yaml, .yml and .json files, applied to workspace "default" before --load, as rtcdp apply -f does',
    )
    .option(
      '--write-key <key=workspace>',
      'accept write key KEY for workspace WORKSPACE (repeatable; default: none)',
      collectWriteKey,
    )
    .option(
      '--log-level <level>',
      `server log level on stderr, one of ${LOG_LEVELS.join(', ')}. RTCDP_LOG_LEVEL overrides it`,
      parseChoice('--log-level', LOG_LEVELS),
      'info',
    )
    .option('--shards <count>', 'virtual shards per workspace, fixed when the data directory is created', parseInteger('--shards', 1, 65536), 16)
    .option(
      '--max-in-flight <events>',
      'events acknowledged but not yet applied before ingestion answers RESOURCE_EXHAUSTED',
      parseInteger('--max-in-flight', 1, 10_000_000),
      50_000,
    )
    .option('--max-resident <profiles>', 'profiles kept in memory; the least recently used are passivated above it', parseInteger('--max-resident', 1, 100_000_000), 100_000)
    .option('--limit <name=value>', EVENT_LIMIT_HELP, collectLimit)
    .option('--no-wal-sync', 'acknowledge events without fdatasync of the RocksDB WAL: safe against a process crash, not a power loss')
    .option('--webhooks <file>', WEBHOOKS_HELP)
    .option('--identity <file>', IDENTITY_HELP);
  addMatchingOptions(command)
    .addHelpText('after', '\nExample:\n  rtcdp dev --port 50051 --load data/online-retail-2010-12.csv')
    .action((options: DevCommandOptions) => runDev(options));
}

async function runDev(options: DevCommandOptions): Promise<void> {
  const sources = await openSources(options.load ?? []);
  const definitionFiles = await readDefinitionFiles(options.definitions ?? [], '--definitions');
  const webhooks = await readWebhookDestinations(options.webhooks);
  const identity = await readIdentitySettings(options.identity);
  const matching = await readMatchingSettings(options);
  await assertGrpcPortFree(options.host, options.port, '--port');
  await mkdir(options.data, { recursive: true });

  const embedded = await startDevNode(options, webhooks, { ...identity, matching });
  process.stdout.write(`rtcdp listening on ${embedded.address}\n`);
  if (definitionFiles.length > 0) await applyDevDefinitions(embedded, definitionFiles);

  const stopSignal = waitForStopSignal();
  const loading = new AbortController();
  void stopSignal.then(() => loading.abort());

  const example = await loadFiles(sources, embedded.address, loading.signal);
  if (!loading.signal.aborted) {
    printQueryHint(embedded.address, example);
  }

  const signal = await stopSignal;
  process.stderr.write(`rtcdp: received ${signal}, stopping\n`);
  await embedded.stop();
  process.stderr.write('rtcdp: stopped\n');
  process.exitCode = 0;
}

/** Applies definition files to workspace "default"; an invalid set stops the node and fails the command. */
async function applyDevDefinitions(embedded: Awaited<ReturnType<typeof startDevNode>>, files: SourceFile[]): Promise<void> {
  const { DefinitionRegistry } = await import('../decisions/definitions/definition-registry.js');
  const outcome = await new DefinitionRegistry(embedded.node.definitionStore).apply('default', files);
  if (outcome.issues.length > 0) {
    await embedded.stop();
    throw definitionIssuesFailure(outcome.issues, 'nothing was applied');
  }

  const changed = outcome.results.filter((result) => result.change !== 'unchanged').length;
  process.stdout.write(`definitions: ${outcome.results.length} applied (${changed} new or changed)\n`);
}

async function startDevNode(options: DevOptions, webhooks: WebhookDestination[], identity: IdentityFileSettings & { matching?: OnlineMatchingSettings }) {
  // Imported here so that `send` and `profile` never load RocksDB and the server.
  const { startEmbedded } = await import('../api/embedded.js');
  const logger = createLogger({ level: options.logLevel });

  try {
    return await startEmbedded({
      dataDir: options.data,
      host: options.host,
      port: options.port,
      logger,
      devMode: true,
      writeKeys: options.writeKey ?? new Map(),
      shards: options.shards,
      maxInFlightEvents: options.maxInFlight,
      walSync: options.walSync,
      actors: { maxResidentActors: options.maxResident },
      eventLimits: options.limit,
      webhooks,
      ...identity,
    });
  } catch (error) {
    throw new CommandFailure(describeStartFailure(error, options), { cause: error });
  }
}

function describeStartFailure(error: unknown, options: DevOptions): string {
  const message = errorMessage(error);
  if (message.includes('EADDRINUSE')) {
    return `cannot listen on ${options.host}:${options.port}: the port is in use. Pick another --port, or --port 0 for any free port`;
  }
  if (message.includes('LOCK')) {
    return `data directory ${options.data} is in use by another rtcdp process; stop it or pick another --data`;
  }
  if (message.includes('Name resolution failed')) {
    return `cannot listen on --host ${options.host}: ${message}`;
  }
  return `failed to start rtcdp with --data ${options.data}: ${message}`;
}

/** Sends each file to the embedded node and returns an identifier to show in the query hint. */
async function loadFiles(
  sources: readonly Source[],
  address: string,
  signal: AbortSignal,
): Promise<SendSummary['exampleIdentifier']> {
  let example: SendSummary['exampleIdentifier'];

  for (const source of sources) {
    process.stdout.write(`loading ${source.file}\n`);
    try {
      const summary = await sendSources([source], { server: address, signal });
      printSummary(summary, [source.file]);
      example = example?.type === 'user_id' ? example : (summary.exampleIdentifier ?? example);
    } catch (error) {
      if (error instanceof AbortedError) {
        process.stderr.write(`rtcdp: stopped loading ${source.file}\n`);
        break;
      }
      // The node keeps serving, so one failed file does not stop the others.
      process.stderr.write(`rtcdp: loading ${source.file} failed: ${errorMessage(error)}\n`);
    }
  }

  return example;
}

/** How this process was started, for commands to copy: "rtcdp" when on PATH, else "node bin/rtcdp.js". */
function commandName(): string {
  const script = process.argv[1] ?? '';
  if (path.basename(script) === 'rtcdp') return 'rtcdp';
  return `node ${path.relative(process.cwd(), script) || script}`;
}

function printQueryHint(address: string, example: SendSummary['exampleIdentifier']): void {
  const server = clientAddress(address);
  const identifier = example ?? { type: 'user_id', value: 'USER_ID' };
  const flag = identifier.type === 'user_id' ? '--user-id' : '--anonymous-id';
  const lines = [
    '',
    'Query a profile with:',
    `  ${commandName()} profile get --server ${server} ${flag} ${identifier.value}`,
    `  ${commandName()} profile events --server ${server} ${flag} ${identifier.value} --page-size 20`,
    'List segment entries and exits with:',
    `  ${commandName()} activations list --server ${server}`,
    'Press Ctrl-C to stop.',
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

/**
 * Returns an address a client can connect to: a wildcard host becomes the loopback
 * address, and an IPv6 host gets the brackets that HOST:PORT needs.
 */
function clientAddress(address: string): string {
  const separator = address.lastIndexOf(':');
  const host = address.slice(0, separator).replace(/^\[(.*)\]$/, '$1');
  const port = address.slice(separator + 1);

  if (host === '0.0.0.0') {
    return `127.0.0.1:${port}`;
  }
  if (host === '::') {
    return `[::1]:${port}`;
  }
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

// ---------------------------------------------------------------------------
// rtcdp send
// ---------------------------------------------------------------------------

interface SendCommandOptions {
  server: string;
  writeKey?: string;
  batchSize: number;
  concurrency: number;
}

function addSendCommand(program: Command): void {
  program
    .command('send')
    .description(
      'Send the events of one or more files to an rtcdp node over a gRPC stream, then print how many were ' +
        'accepted, duplicate and rejected. Sending a file again to an embedded node is safe: events are deduplicated by messageId, and an NDJSON event without one gets one made of the file name, line number and a hash of the line. A cluster drops a resent messageId only within its duplicate window (2 minutes by default).',
    )
    .argument('<file...>', `event files, sent in the order given. ${FILE_FORMATS_HELP}`)
    .option('--server <host:port>', 'address of the rtcdp node', parseServer, DEFAULT_SERVER)
    .option('--write-key <key>', 'write key of the workspace (default: none, which a dev-mode node maps to "default")')
    .option(
      '--batch-size <events>',
      `maximum events per batch, 1 to ${MAX_BATCH_SIZE}. A batch also stays under 450,000 bytes of JSON`,
      parseInteger('--batch-size', 1, MAX_BATCH_SIZE),
      DEFAULT_BATCH_SIZE,
    )
    .option(
      '--concurrency <batches>',
      `maximum batches sent and awaiting a response, 1 to ${MAX_CONCURRENCY}`,
      parseInteger('--concurrency', 1, MAX_CONCURRENCY),
      DEFAULT_CONCURRENCY,
    )
    .addHelpText(
      'after',
      [
        '',
        'Exit codes: 0 when every batch was acknowledged, even with rejected events. 1 when the',
        'connection failed after 10 attempts, the server failed the stream, or the files held',
        'events but none could be sent. 2 on a usage error.',
        '',
        'Example:',
        '  rtcdp send --server 127.0.0.1:50051 data/online-retail-2010-12.csv',
      ].join('\n'),
    )
    .action((files: string[], options: SendCommandOptions) => runSend(files, options));
}

async function runSend(files: string[], options: SendCommandOptions): Promise<void> {
  const sources = await openSources(files);
  const summary = await sendSources(sources, {
    server: options.server,
    writeKey: options.writeKey,
    batchSize: options.batchSize,
    concurrency: options.concurrency,
  });

  printSummary(summary, files);
  if (summary.sent === 0 && summary.clientErrors > 0) throw new CommandFailure('no event of the files could be sent: every one failed the checks above');
}

/** Opens every file before anything is sent, so a typo in the last file does not leave a partial send. */
async function openSources(files: readonly string[]): Promise<Source[]> {
  const sources: Source[] = [];
  for (const file of files) {
    sources.push(await openSource(file));
  }
  return sources;
}

function printSummary(summary: SendSummary, files: readonly string[]): void {
  const seconds = summary.elapsedMs / 1000;
  const rate = seconds > 0 ? Math.round(summary.sent / seconds) : summary.sent;
  const fileLabel = files.length === 1 ? files[0] : `${files.length} files`;
  const lines = [
    `sent ${summary.sent} ${summary.sent === 1 ? 'event' : 'events'} from ${fileLabel} in ${seconds.toFixed(1)} s (${rate} events/s)`,
    ...renderTable([
      ['accepted', String(summary.accepted)],
      ['duplicate', String(summary.duplicates)],
      ['rejected', String(summary.rejected)],
      ['client errors', String(summary.clientErrors)],
    ]),
  ];

  const failures = summary.rejected + summary.clientErrors;
  if (summary.firstRejections.length > 0) {
    lines.push('', `first rejections (${summary.firstRejections.length} of ${failures}):`);
    lines.push(...renderTable([['LOCATION', 'CODE', 'FIELD', 'MESSAGE'], ...summary.firstRejections.map(rejectionRow)]));
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

function rejectionRow(rejection: SendSummary['firstRejections'][number]): string[] {
  return [`${rejection.file}:${rejection.line}`, rejection.code, rejection.field || '-', rejection.message];
}

// ---------------------------------------------------------------------------
// rtcdp profile get / rtcdp profile events
// ---------------------------------------------------------------------------

type ProfileCommandOptions = ProfileTargetOptions;

interface EventsCommandOptions extends ProfileCommandOptions {
  pageSize?: number;
  pageToken?: string;
}

function addProfileCommands(program: Command): void {
  const profile = program.command('profile').description('Read customer profiles, explain how they were linked, and undo merges.');

  const get = profile
    .command('get')
    .description('Print the profile that owns an identifier: identifiers, traits, event statistics and recent events.');
  addProfileTargetOptions(get);
  get.action((options: ProfileCommandOptions) => runProfileGet(options));

  addExplainCommand(profile);
  addUnmergeCommand(profile);

  const events = profile
    .command('events')
    .description(
      "List a profile's events, newest first, one page at a time: its own and those the profiles merged into it applied before the merge, interleaved by receive time. The PROFILE column names the profile whose history contains each event.",
    );
  addProfileTargetOptions(events);
  events
    .option(
      '--page-size <events>',
      `events per page, 1 to ${MAX_PAGE_SIZE} (default: 100, set by the server)`,
      parseInteger('--page-size', 1, MAX_PAGE_SIZE),
    )
    .option('--page-token <token>', 'token printed after the previous page, to read the next one (default: first page)')
    .action((options: EventsCommandOptions) => runProfileEvents(options));
}

async function runProfileGet(options: ProfileCommandOptions): Promise<void> {
  const identifier = identifierFrom(options);
  const client = createProfileClient(options.server);

  try {
    const metadata = writeKeyMetadata(options.writeKey);
    const response = await callUnary(client.getProfile.bind(client), { identifier }, metadata);
    if (response.profile === undefined) {
      throw notFound(identifier);
    }
    printProfile(response.profile, options.output);
  } catch (error) {
    throw describeCallFailure(error, identifier, options.server);
  } finally {
    client.close();
  }
}

async function runProfileEvents(options: EventsCommandOptions): Promise<void> {
  const identifier = identifierFrom(options);
  const client = createProfileClient(options.server);

  try {
    const metadata = writeKeyMetadata(options.writeKey);
    const request = { identifier, pageSize: options.pageSize ?? 0, pageToken: options.pageToken ?? '' };
    const response = await callUnary(client.listProfileEvents.bind(client), request, metadata);
    printEvents(response, options.output);
  } catch (error) {
    throw describeCallFailure(error, identifier, options.server);
  } finally {
    client.close();
  }
}

/** Turns a failed profile call into a one-line CommandFailure. Other errors pass through unchanged. */
function describeCallFailure(error: unknown, identifier: Identifier, server: string): unknown {
  if (!isServiceError(error)) {
    return error;
  }

  switch (error.code) {
    case status.NOT_FOUND:
      return notFound(identifier, serviceErrorDetails(error));
    case status.UNAVAILABLE:
      return unreachable(error, server);
    case status.DEADLINE_EXCEEDED:
      return deadlineFailure(error, server);
    case status.UNAUTHENTICATED:
    case status.PERMISSION_DENIED:
      return new CommandFailure(`${server} rejected the write key: ${serviceErrorDetails(error)}. Pass a write key the node was started with, or none to a node in dev mode`);
    default:
      return new CommandFailure(`request to ${server} failed: ${describeServiceError(error)}`);
  }
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

function printProfile(profile: Profile, output: string): void {
  if (output === 'json') {
    process.stdout.write(`${JSON.stringify(ProfileMessage.toJSON(profile), roundSum, 2)}\n`);
    return;
  }

  const lines = [
    ...renderTable([
      ['profile', profile.profileId],
      ['events', String(profile.eventCount)],
      ['first seen', profile.firstSeen || '-'],
      ['last seen', profile.lastSeen || '-'],
    ], ''),
    '',
    'identifiers:',
    ...renderTable(profile.identifiers.map((identifier) => [identifier.type, identifier.value])),
    '',
    'merged profiles:',
    ...renderMerges(profile),
    '',
    'traits:',
    ...renderObject(profile.traits),
    '',
    'events by name:',
    ...renderEventStats(profile),
    '',
    'computed traits:',
    ...renderObject(profile.computedTraits),
    '',
    'segments:',
    ...renderSegments(profile),
    '',
    'scores:',
    ...renderObject(profile.scores),
    '',
    'journeys:',
    ...renderJourneys(profile),
    '',
    `recent events (newest first, ${Math.min(RECENT_EVENTS_SHOWN, profile.recentEvents.length)} of the ${profile.recentEvents.length} the profile keeps; profile events lists them all):`,
    ...renderTable(profile.recentEvents.slice(0, RECENT_EVENTS_SHOWN).map(eventRow)),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

function renderJourneys(profile: Profile): string[] {
  const names = Object.keys(profile.journeys).sort();
  if (names.length === 0) return ['  (none)'];
  const rows = names.map((name) => {
    const position = profile.journeys[name];
    return [name, position.step, position.enteredAt, position.waitUntil === '' ? '-' : position.waitUntil];
  });
  return renderTable([['JOURNEY', 'STEP', 'ENTERED AT', 'WAITING UNTIL'], ...rows]);
}

function renderMerges(profile: Profile): string[] {
  if (profile.merges.length === 0) return ['  (none)'];
  const rows = profile.merges.map((merge) => [merge.profileId, merge.rule, merge.messageId, merge.mergedAt, merge.mergedVia || '-']);
  return renderTable([['PROFILE', 'RULE', 'MESSAGE ID', 'MERGED AT', 'THROUGH'], ...rows]);
}

function renderSegments(profile: Profile): string[] {
  const names = Object.keys(profile.segments).sort();
  if (names.length === 0) return ['  (none)'];
  const rows = names.map((name) => [name, profile.segments[name].enteredAt, String(profile.segments[name].definitionVersion)]);
  return renderTable([['SEGMENT', 'ENTERED AT', 'VERSION'], ...rows]);
}

function renderEventStats(profile: Profile): string[] {
  const names = Object.keys(profile.events).sort();
  if (names.length === 0) {
    return ['  (none)'];
  }

  const rows = names.map((name) => {
    const stats = profile.events[name];
    const sums = Object.entries(stats.sums)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([property, sum]) => `${property}=${formatNumber(sum)}`)
      .join(' ');
    return [name, String(stats.count), stats.firstSeen, stats.lastSeen, sums || '-'];
  });
  return renderTable([['EVENT', 'COUNT', 'FIRST SEEN', 'LAST SEEN', 'SUMS'], ...rows]);
}

function printEvents(response: ListProfileEventsResponse, output: string): void {
  if (output === 'json') {
    process.stdout.write(`${JSON.stringify(ListProfileEventsResponse.toJSON(response), null, 2)}\n`);
    return;
  }

  const lines =
    response.events.length === 0
      ? ['no events']
      : renderTable([['TIME', 'TYPE', 'NAME', 'MESSAGE ID', 'PROFILE', 'PROPERTIES'], ...response.events.map((event, i) => historyRow(event, response.profileIds[i] ?? ''))], '');
  if (response.nextPageToken !== '') {
    lines.push('', `next page: --page-token ${response.nextPageToken}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  const unavailable = response.unavailableNodes;
  if (unavailable.length > 0) {
    const [nodes, pronoun] = unavailable.length === 1 ? ['node', 'it'] : ['nodes', 'they'];
    process.stderr.write(
      `warning: ${nodes} ${unavailable.join(', ')} did not respond in time, so this page is missing the events that only ${pronoun} stored. ` +
        `The next page token skips them: run the same command again, with the same --page-token, once ${pronoun} ${unavailable.length === 1 ? 'responds' : 'respond'} for the complete page\n`,
    );
  }
  const departed = response.departedNodes;
  if (departed.length > 0) {
    const [nodes, membership, pronoun] = departed.length === 1 ? ['node', 'is no longer a member', 'it'] : ['nodes', 'are no longer members', 'they'];
    process.stderr.write(
      `warning: ${nodes} ${departed.join(', ')} owned this profile's shard and ${membership} of the cluster, so this page is missing the events that only ${pronoun} stored. ` +
        `A node that rejoins with its data directory serves them again\n`,
    );
  }
}

function eventRow(event: Event): string[] {
  const name = event.event || event.name || '-';
  return [event.timestamp, event.type, name, event.messageId, truncate(compactJson(event.properties), 80)];
}

/** Returns the table row of an event for `profile events`: the row of `profile get`, with the profile whose history contains the event before the properties. */
function historyRow(event: Event, profileId: string): string[] {
  const row = eventRow(event);
  row.splice(4, 0, profileId || '-');
  return row;
}

function renderObject(object: Record<string, unknown> | undefined): string[] {
  const entries = Object.entries(object ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (entries.length === 0) {
    return ['  (none)'];
  }
  return renderTable(entries.map(([key, value]) => [key, typeof value === 'string' ? value : JSON.stringify(value)]));
}

function compactJson(value: unknown): string {
  return value === undefined ? '-' : JSON.stringify(value);
}

function truncate(text: string, maxLength: number): string {
  return text.length <= maxLength ? text : `${text.slice(0, maxLength - 3)}...`;
}

/** Rounds JSON numbers as the table does (no float noise such as 5391.210000000001), so both outputs show the same sums. */
function roundSum(_key: string, value: unknown): unknown {
  return typeof value === 'number' ? Number(formatNumber(value)) : value;
}

function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Math.round(value * 1e6) / 1e6);
}

// Runs the CLI when this file is the entry point (`node --import tsx cli/main.ts`).
// bin/rtcdp.js imports it and calls run() itself.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(process.argv);
}
