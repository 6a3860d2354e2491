/**
 * `rtcdp identity quarantine list|approve|reject` and `rtcdp profile explain`: the links
 * identity resolution held because they would break the identity settings, and the path of
 * events that put two identifiers in one profile. Both call IdentityService.
 */
import type { Command } from 'commander';
import { ExplainLinkResponse, ListQuarantineResponse, QuarantinedLink, type LinkStep } from '../proto/gen/rtcdp/v1/identity.js';
import type { Identifier } from '../proto/gen/rtcdp/v1/profile.js';
import { callUnary, createIdentityClient, describeCallFailure, writeKeyMetadata } from './client.js';
import { OUTPUT_FORMATS, UsageError, parseChoice, parseServer, renderTable } from './common.js';

const QUARANTINE_STATUSES = ['pending', 'approved', 'rejected', 'all'];

interface ConnectionOptions {
  server: string;
  writeKey?: string;
  output: string;
}

interface ListOptions extends ConnectionOptions {
  status: string;
}

function addConnectionOptions(command: Command): Command {
  return command
    .requiredOption('--server <host:port>', 'address of the rtcdp node, for example 127.0.0.1:50051', parseServer)
    .option('--write-key <key>', 'write key of the workspace (default: none, which a dev-mode node maps to "default")')
    .option('--output <format>', 'output format: table or json', parseChoice('--output', OUTPUT_FORMATS), 'table');
}

/** Adds `quarantine list|approve|reject` to the `identity` command. */
export function addQuarantineCommands(identity: Command): void {
  const quarantine = identity
    .command('quarantine')
    .description('List, approve or reject identity links that were held because they would break the identity settings (a per-profile limit or merge protection).');

  addConnectionOptions(quarantine.command('list').description('List quarantined links, oldest first.'))
    .option('--status <status>', `only links with this status: ${QUARANTINE_STATUSES.join(', ')}`, parseChoice('--status', QUARANTINE_STATUSES), 'pending')
    .action((options: ListOptions) => runList(options));

  addConnectionOptions(quarantine.command('approve').argument('<id>', 'id of the quarantined link, as `quarantine list` prints it'))
    .description('Make a quarantined link although it breaks the settings: link the identifier, or merge the two profiles.')
    .action((id: string, options: ConnectionOptions) => runDecision('approve', id, options));

  addConnectionOptions(quarantine.command('reject').argument('<id>', 'id of the quarantined link, as `quarantine list` prints it'))
    .description('Leave a quarantined link unmade for good.')
    .action((id: string, options: ConnectionOptions) => runDecision('reject', id, options));
}

/** Adds `explain` to the `profile` command. */
export function addExplainCommand(profile: Command): void {
  addConnectionOptions(
    profile
      .command('explain')
      .argument('<first>', 'an identifier as TYPE=VALUE, for example user_id=u1, email=ana@example.com or external:crm_id=42')
      .argument('<second>', 'another identifier as TYPE=VALUE'),
  )
    .description('Show why two identifiers belong to one profile: the events that linked each identifier and the merges between their profiles.')
    .action((first: string, second: string, options: ConnectionOptions) => runExplain(parseIdentifier(first, 'first'), parseIdentifier(second, 'second'), options));
}

/** Parses TYPE=VALUE; the value may itself contain "=". */
export function parseIdentifier(text: string, argument: string): Identifier {
  const equals = text.indexOf('=');
  if (equals <= 0 || equals === text.length - 1) {
    throw new UsageError(`invalid ${argument} identifier "${text}": expected TYPE=VALUE, for example user_id=u1 or email=ana@example.com`);
  }
  return { type: text.slice(0, equals), value: text.slice(equals + 1) };
}

async function runList(options: ListOptions): Promise<void> {
  const client = createIdentityClient(options.server);
  try {
    const status = options.status === 'all' ? '' : options.status;
    const response = await callUnary(client.listQuarantine.bind(client), { status }, writeKeyMetadata(options.writeKey));
    if (options.output === 'json') {
      process.stdout.write(`${JSON.stringify(ListQuarantineResponse.toJSON(response), null, 2)}\n`);
      return;
    }
    if (response.links.length === 0) {
      process.stdout.write(`(no ${options.status === 'all' ? '' : `${options.status} `}quarantined links)\n`);
      return;
    }
    const rows = [['ID', 'STATUS', 'REASON', 'IDENTIFIER', 'PROFILE', 'OTHER PROFILE', 'EVENT', 'AT'], ...response.links.map(linkRow)];
    process.stdout.write(`${renderTable(rows, '').join('\n')}\n`);
  } catch (error) {
    throw describeCallFailure(error, options.server, 'IdentityService');
  } finally {
    client.close();
  }
}

async function runDecision(decision: 'approve' | 'reject', id: string, options: ConnectionOptions): Promise<void> {
  const client = createIdentityClient(options.server);
  try {
    const call = decision === 'approve' ? client.approveLink.bind(client) : client.rejectLink.bind(client);
    const link = await callUnary(call, { id }, writeKeyMetadata(options.writeKey));
    if (options.output === 'json') {
      process.stdout.write(`${JSON.stringify(QuarantinedLink.toJSON(link), null, 2)}\n`);
      return;
    }
    const outcome = decisionText(decision, link);
    process.stdout.write(`${link.id} ${link.status}: ${outcome}\n`);
  } catch (error) {
    throw describeCallFailure(error, options.server, 'IdentityService');
  } finally {
    client.close();
  }
}

async function runExplain(first: Identifier, second: Identifier, options: ConnectionOptions): Promise<void> {
  const client = createIdentityClient(options.server);
  try {
    const response = await callUnary(client.explainLink.bind(client), { first, second }, writeKeyMetadata(options.writeKey));
    if (options.output === 'json') {
      process.stdout.write(`${JSON.stringify(ExplainLinkResponse.toJSON(response), null, 2)}\n`);
      return;
    }
    const lines = [`${describe(first)} and ${describe(second)} belong to profile ${response.profileId}:`, ...response.steps.map((step, i) => `  ${i + 1}. ${stepText(step)}`)];
    process.stdout.write(`${lines.join('\n')}\n`);
  } catch (error) {
    throw describeCallFailure(error, options.server, 'IdentityService');
  } finally {
    client.close();
  }
}

function decisionText(decision: 'approve' | 'reject', link: QuarantinedLink): string {
  if (link.otherProfileId !== '') {
    const via = link.identifier === undefined ? '' : ` (linked by ${describe(link.identifier)})`;
    return decision === 'approve' ? `profiles ${link.profileId} and ${link.otherProfileId} are merged${via}` : `profiles ${link.profileId} and ${link.otherProfileId} stay apart`;
  }
  return decision === 'approve' ? `${describe(link.identifier)} is now linked to profile ${link.profileId}` : `${describe(link.identifier)} stays unlinked from profile ${link.profileId}`;
}

function linkRow(link: QuarantinedLink): string[] {
  return [link.id, link.status, link.reason, describe(link.identifier), link.profileId, link.otherProfileId || '-', link.messageId, link.at];
}

function stepText(step: LinkStep): string {
  const cause = `${step.rule === 'approved-link' ? 'approved link' : 'event'} ${step.messageId} at ${step.at}`;
  if (step.kind === 'linked') {
    const via = step.via === undefined ? '' : `, together with ${describe(step.via)}`;
    return `${describe(step.identifier)} linked to profile ${step.profileId} by ${cause}${via}`;
  }
  const carried = step.from.length === 0 ? '' : ` (it carried ${[...step.from, ...step.into].map(describe).join(' and ')})`;
  return `profile ${step.profileId} merged into ${step.intoProfileId} by ${cause}${carried}`;
}

function describe(identifier: Identifier | undefined): string {
  return identifier === undefined ? '-' : `${identifier.type}=${identifier.value}`;
}
