/**
 * `rtcdp decide` and `rtcdp decisions receipts`: ask DecisionService for a profile's next
 * best action, and read the receipts that explain past decisions.
 */
import { status } from '@grpc/grpc-js';
import type { Command } from 'commander';
import { DecideResponse, ListReceiptsResponse, type Receipt } from '../proto/gen/rtcdp/v1/decisions.js';
import { callUnary, createDecisionClient, describeCallFailure, isServiceError, serviceErrorDetails, writeKeyMetadata } from './client.js';
import { UsageError, renderTable } from './common.js';
import { addProfileTargetOptions, identifierFrom, notFound, type ProfileTargetOptions } from './identifier-options.js';

interface DecideOptions extends ProfileTargetOptions {
  channel?: string;
  context?: Record<string, unknown>;
}

export function addDecisionCommands(program: Command): void {
  const decide = program
    .command('decide')
    .description("Ask for a profile's next best action on a channel. The decision counts for the rules' caps and cooldowns, and its receipt explains it.");
  addProfileTargetOptions(decide);
  decide
    .option('--channel <name>', 'the inbound channel asking, such as web or app (default: none, which considers every rule)')
    .option('--context <key=value>', 'a fact of the request, the rules\' `context` variable (repeatable); a value that parses as JSON is used as JSON', collectContext)
    .action((options: DecideOptions) => runDecide(options));

  const decisions = program.command('decisions').description('Read the decisions made for a profile.');
  const receipts = decisions.command('receipts').description("Print the receipts of a profile's most recent decisions (up to 20), newest first.");
  addProfileTargetOptions(receipts);
  receipts.action((options: ProfileTargetOptions) => runReceipts(options));
}

function collectContext(value: string, previous: Record<string, unknown> | undefined): Record<string, unknown> {
  const equals = value.indexOf('=');
  if (equals <= 0) throw new UsageError(`invalid --context "${value}": expected KEY=VALUE, for example page=/pricing`);
  const key = value.slice(0, equals);
  const text = value.slice(equals + 1);
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: the value is the text itself.
  }
  return { ...(previous ?? {}), [key]: parsed };
}

async function runDecide(options: DecideOptions): Promise<void> {
  const identifier = identifierFrom(options);
  const client = createDecisionClient(options.server);
  try {
    const request = { identifier, channel: options.channel ?? '', context: options.context ?? {} };
    const response = await callUnary(client.decide.bind(client), request, writeKeyMetadata(options.writeKey));
    if (options.output === 'json') {
      process.stdout.write(`${JSON.stringify(DecideResponse.toJSON(response), null, 2)}\n`);
      return;
    }
    const lines = [`action: ${response.action === '' ? '(none)' : response.action}`, ...(response.receipt === undefined ? [] : receiptLines(response.receipt))];
    process.stdout.write(`${lines.join('\n')}\n`);
  } catch (error) {
    throw failure(error, identifier, options.server);
  } finally {
    client.close();
  }
}

async function runReceipts(options: ProfileTargetOptions): Promise<void> {
  const identifier = identifierFrom(options);
  const client = createDecisionClient(options.server);
  try {
    const response = await callUnary(client.listReceipts.bind(client), { identifier }, writeKeyMetadata(options.writeKey));
    if (options.output === 'json') {
      process.stdout.write(`${JSON.stringify(ListReceiptsResponse.toJSON(response), null, 2)}\n`);
      return;
    }
    const blocks = response.receipts.map((receipt) => receiptLines(receipt).join('\n'));
    process.stdout.write(`${blocks.length === 0 ? '(no decisions)' : blocks.join('\n\n')}\n`);
  } catch (error) {
    throw failure(error, identifier, options.server);
  } finally {
    client.close();
  }
}

function receiptLines(receipt: Receipt): string[] {
  const chosen = receipt.chosen;
  const outcome = chosen === undefined ? 'no rule chosen' : `${chosen.rule} v${chosen.version} -> ${chosen.action}${chosen.controlGroup ? ' (control group: action withheld)' : ''}`;
  const cause = receipt.cause === 'event' ? `an event (${receipt.messageId})` : 'a Decide call';
  const rows = receipt.candidates.map((candidate) => [
    candidate.rule,
    String(candidate.version),
    candidate.outcome,
    candidate.priority === undefined ? '-' : String(candidate.priority),
    candidate.detail === '' ? '-' : candidate.detail,
  ]);
  const header = `decision ${receipt.decisionId} at ${receipt.at} on channel ${receipt.channel === '' ? '(none)' : receipt.channel}, from ${cause}: ${outcome}`;
  if (rows.length === 0) {
    const scope = receipt.channel === '' ? 'the workspace has no decision rule' : `no decision rule of the workspace answers channel ${receipt.channel}`;
    return [header, `  (no candidates: ${scope}; \`rtcdp definitions get DecisionRule\` lists the rules and their channels)`];
  }
  return [header, ...renderTable([['RULE', 'VERSION', 'OUTCOME', 'PRIORITY', 'DETAIL'], ...rows])];
}

function failure(error: unknown, identifier: Parameters<typeof notFound>[0], server: string): unknown {
  if (isServiceError(error) && error.code === status.NOT_FOUND) return notFound(identifier, serviceErrorDetails(error));
  return describeCallFailure(error, server, 'DecisionService');
}
