/**
 * `rtcdp activations list` and `rtcdp activations tail`: read a workspace's activation log
 * (segment entries and exits) through ActivationService.
 */
import { status, type ServiceError } from '@grpc/grpc-js';
import type { Command } from 'commander';
import { ACTIVATION_TYPES } from '../profiles/activation.js';
import { UNMERGE_RULE } from '../profiles/identity-commands.js';
import { Activation as ActivationMessage, type Activation } from '../proto/gen/rtcdp/v1/activations.js';
import { callUnary, createActivationClient, describeCallFailure, writeKeyMetadata } from './client.js';
import { OUTPUT_FORMATS, parseChoice, parseInteger, parseServer, DEFAULT_SERVER, renderTable, waitForStopSignal } from './common.js';

const MAX_PAGE = 1_000;

interface ActivationCommandOptions {
  server: string;
  writeKey?: string;
  type?: string[];
  output: string;
}

interface ListCommandOptions extends ActivationCommandOptions {
  after: number;
  limit: number;
}

interface TailCommandOptions extends ActivationCommandOptions {
  /** The sequence to start after; undefined means after the newest activation stored when the command starts. */
  after?: number;
  count?: number;
}

export function addActivationCommands(program: Command): void {
  const activations = program
    .command('activations')
    .description("Read the workspace's activation log (segment changes, decisions, journey steps, merges and unmerges), numbered in the order they were stored.");

  addOptions(
    activations
      .command('list')
      .description('Print one page of activations after a sequence, oldest first, and the sequence to continue after.')
      .option('--after <sequence>', 'start after this sequence; 0 is the oldest kept', parseInteger('--after', 0, Number.MAX_SAFE_INTEGER), 0)
      .option('--limit <n>', `activations per page, 1 to ${MAX_PAGE}`, parseInteger('--limit', 1, MAX_PAGE), 100),
  ).action((options: ListCommandOptions) => runList(options));

  addOptions(
    activations
      .command('tail')
      .description('Print each new activation as it is stored, or those after a sequence first, until Ctrl-C.')
      .option('--after <sequence>', 'start after this sequence; 0 is the oldest kept (default: the newest stored when the command starts)', parseInteger('--after', 0, Number.MAX_SAFE_INTEGER))
      .option('--count <n>', 'stop after this many activations (default: run until stopped)', parseInteger('--count', 1, Number.MAX_SAFE_INTEGER)),
  ).action((options: TailCommandOptions) => runTail(options));
}

function addOptions(command: Command): Command {
  return command
    .option('--server <host:port>', 'address of the rtcdp node', parseServer, DEFAULT_SERVER)
    .option('--write-key <key>', 'write key of the workspace (default: none, which a dev-mode node maps to "default")')
    .option('--type <type...>', `only these types: ${ACTIVATION_TYPES.join(', ')} (default: all)`, collectType)
    .option('--output <format>', 'table, or json (one JSON object per line for tail)', parseChoice('--output', OUTPUT_FORMATS), 'table');
}

function collectType(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), parseChoice('--type', ACTIVATION_TYPES)(value)];
}

async function runList(options: ListCommandOptions): Promise<void> {
  const client = createActivationClient(options.server);
  try {
    const request = { afterSequence: options.after, limit: options.limit, types: options.type ?? [] };
    const response = await callUnary(client.listActivations.bind(client), request, writeKeyMetadata(options.writeKey));
    if (options.output === 'json') {
      const json = { activations: response.activations.map((activation) => ActivationMessage.toJSON(activation)), nextAfterSequence: response.nextAfterSequence };
      process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
      return;
    }
    const lines = [...renderTable([HEADER, ...response.activations.map(row)], ''), '', `continue with --after ${response.nextAfterSequence}`];
    process.stdout.write(`${lines.join('\n')}\n`);
  } catch (error) {
    throw describeCallFailure(error, options.server, 'ActivationService');
  } finally {
    client.close();
  }
}

async function runTail(options: TailCommandOptions): Promise<void> {
  const client = createActivationClient(options.server);
  let after: number;
  try {
    after = options.after ?? (await latestSequence(client, options.writeKey));
  } catch (error) {
    client.close();
    throw describeCallFailure(error, options.server, 'ActivationService');
  }

  const call = client.subscribeActivations({ afterSequence: after, types: options.type ?? [] }, writeKeyMetadata(options.writeKey));
  process.stderr.write(`following the activations after sequence ${after}; stop with Ctrl-C\n`);
  let received = 0;

  const finished = new Promise<void>((resolve, reject) => {
    call.on('data', (activation: Activation) => {
      received += 1;
      const line = options.output === 'json' ? JSON.stringify(ActivationMessage.toJSON(activation)) : row(activation).join('  ');
      process.stdout.write(`${line}\n`);
      if (options.count !== undefined && received >= options.count) call.cancel();
    });
    call.on('error', (error: ServiceError) => (error.code === status.CANCELLED ? resolve() : reject(describeCallFailure(error, options.server, 'ActivationService'))));
    call.on('end', () => resolve());
  });

  void waitForStopSignal().then(() => call.cancel());
  if (options.output === 'table') process.stdout.write(`${HEADER.join('  ')}\n`);
  try {
    await finished;
  } finally {
    client.close();
  }
}

/**
 * Returns the newest activation sequence that the node lets readers see now. The page
 * after the largest sequence is empty, so the node reads no activation for it.
 */
async function latestSequence(client: ReturnType<typeof createActivationClient>, writeKey: string | undefined): Promise<number> {
  const page = await callUnary(client.listActivations.bind(client), { afterSequence: Number.MAX_SAFE_INTEGER, limit: 1, types: [] }, writeKeyMetadata(writeKey));
  return page.latestSequence;
}

const HEADER = ['SEQUENCE', 'AT', 'TYPE', 'NAME', 'VERSION', 'PROFILE', 'CAUSE'];

function row(activation: Activation): string[] {
  return [
    String(activation.sequence),
    activation.at,
    activation.type,
    nameText(activation),
    String(activation.definitionVersion),
    activation.profileId,
    causeText(activation),
  ];
}

function nameText(activation: Activation): string {
  const name = activation.step === '' ? activation.name : `${activation.name}/${activation.step}`;
  if (activation.action === '') return name;
  return `${name} -> ${activation.action}${activation.channel === '' ? '' : ` on ${activation.channel}`}`;
}

function causeText(activation: Activation): string {
  const cause = activation.cause;
  if (cause === undefined) return '-';
  if (cause.kind === 'event') return `event ${cause.messageId} (shard ${cause.shard}, sequence ${cause.sequence})`;
  if (cause.kind === 'timer') return `timer due ${cause.due}`;
  if (cause.kind === 'decide') return 'Decide call';
  if (cause.kind === 'merge' && cause.rule === UNMERGE_RULE) return `unmerge (${cause.messageId})`;
  if (cause.kind === 'merge') return `merge by ${cause.rule} (${cause.messageId})`;
  return 'definition deleted';
}
