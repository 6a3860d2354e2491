/**
 * `rtcdp identity quarantine list|approve|reject`, `rtcdp profile explain` and `rtcdp profile
 * unmerge`: the links identity resolution held because they would break the identity
 * settings, the path of events that put two identifiers in one profile, and undoing a merge.
 * All call IdentityService.
 */
import { status } from '@grpc/grpc-js';
import type { Command } from 'commander';
import { ERROR_CODE_TRAILER } from '../api/status.js';
import { IDENTIFIER_TYPES } from '../profiles/identifiers.js';
import { ExplainLinkResponse, ListQuarantineResponse, QuarantinedLink, UnmergeProfileResponse, type LinkStep } from '../proto/gen/rtcdp/v1/identity.js';
import type { Identifier, Profile } from '../proto/gen/rtcdp/v1/profile.js';
import { callUnary, createIdentityClient, describeCallFailure, isServiceError, serviceErrorDetails, writeKeyMetadata } from './client.js';
import { CommandFailure, OUTPUT_FORMATS, UsageError, parseChoice, parseServer, DEFAULT_SERVER, renderTable } from './common.js';

const QUARANTINE_STATUSES = ['pending', 'approved', 'rejected', 'all'];

/**
 * Deadline of an UnmergeProfile call. The node waits up to its query timeout (by default
 * 5 s embedded, 10 s in cluster mode) for the actors to carry out the split. The client
 * waits longer, so it receives the node's own error, which names what is still pending.
 */
const UNMERGE_DEADLINE_MS = 30_000;

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
    .option('--server <host:port>', 'address of the rtcdp node', parseServer, DEFAULT_SERVER)
    .option('--write-key <key>', 'write key of the workspace (default: none, which a dev-mode node maps to "default")')
    .option('--output <format>', 'output format: table or json', parseChoice('--output', OUTPUT_FORMATS), 'table');
}

/** Adds `quarantine list|approve|reject` to the `identity` command. */
export function addQuarantineCommands(identity: Command): void {
  const quarantine = identity
    .command('quarantine')
    .description(
      'List, approve or reject identity links that were held for review: links that would break the identity settings (PER_PROFILE_LIMIT, MERGE_PROTECTED), ' +
        'links between two profiles an operator unmerged (UNMERGED), and fuzzy matches that scored for review or would break the settings (FUZZY_MATCH).',
    );

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
      .argument('<identifier>', 'an identifier as TYPE=VALUE, for example user_id=u1, email=ana@example.com or external:crm_id=42')
      .argument('<other-identifier>', 'a second identifier as TYPE=VALUE, which the command shows the link to'),
  )
    .description('Show why two identifiers belong to one profile: the events that linked each identifier and the merges between their profiles.')
    .action((first: string, second: string, options: ConnectionOptions) => runExplain(parseIdentifier(first, 'first'), parseIdentifier(second, 'second'), options));
}

/** Adds `unmerge` to the `profile` command. */
export function addUnmergeCommand(profile: Command): void {
  addConnectionOptions(
    profile
      .command('unmerge')
      .argument('<profile>', 'an identifier of the profile the other one was merged into, as TYPE=VALUE, for example user_id=u1')
      .argument('<merged>', 'the merged profile to split off: an identifier it brought in, as TYPE=VALUE (anonymous_id=a1), or its profile id (anon:a1)'),
  )
    .description('Undo a merge: split a merged profile off its survivor again, each with its own events.')
    .addHelpText(
      'after',
      [
        '',
        "The survivor's events since the merge are replayed, so each profile gets its",
        'own events back and its segments are evaluated again. Both profiles produce a',
        'profile.unmerged activation. Afterwards an event that links the two is',
        'quarantined with reason UNMERGED; approving that link merges them again.',
        '',
        'Identifiers are written TYPE=VALUE (user_id=u1, external:crm_id=42), profile',
        'ids PREFIX:VALUE (user:u1, anon:a1, email:ana@example.com), as `rtcdp profile',
        'get` lists them under merged profiles. <merged> is an identifier when the part',
        'before its first "=" has no ":" other than the one of external:NAME, and a',
        'profile id otherwise, so anon:abc== is a profile id.',
        '',
        'Only a merge directly into the current survivor can be undone, and only while',
        'the event log holds the events since the merge (7 days by default). Once a',
        'profile was split by an unmerge, the merges it had before can no longer be',
        'undone.',
        '',
        'Example:',
        '  rtcdp profile unmerge user_id=u1 anonymous_id=a1 --server 127.0.0.1:50051',
      ].join('\n'),
    )
    .action((survivor: string, merged: string, options: ConnectionOptions) => runUnmerge(parseIdentifier(survivor, 'profile'), parseMergedProfile(merged), options));
}

/**
 * Parses the merged profile of `profile unmerge`: an identifier as TYPE=VALUE, or a profile id
 * as PREFIX:VALUE. A profile id's value may contain "=", so the text is an identifier only
 * when the part before its first "=" contains no ":" or is external:NAME.
 */
export function parseMergedProfile(text: string): Identifier | string {
  const equals = text.indexOf('=');
  const head = equals < 0 ? text : text.slice(0, equals);
  const colons = head.split(':').length - 1;
  if (equals > 0 && (colons === 0 || (colons === 1 && head.startsWith('external:')))) return parseIdentifier(text, 'merged');

  if (!text.includes(':')) {
    throw new UsageError(`invalid merged profile "${text}": expected an identifier as TYPE=VALUE (anonymous_id=a1) or a profile id as PREFIX:VALUE (anon:a1)`);
  }
  return text;
}

/** Parses TYPE=VALUE; the value may itself contain "=". */
export function parseIdentifier(text: string, argument: string): Identifier {
  const equals = text.indexOf('=');
  if (equals <= 0 || equals === text.length - 1) {
    throw new UsageError(`invalid ${argument} identifier "${text}": expected TYPE=VALUE, for example user_id=u1 or email=ana@example.com`);
  }
  const type = text.slice(0, equals);
  if (!(IDENTIFIER_TYPES as readonly string[]).includes(type) && !/^external:[^=]+$/.test(type)) {
    throw new UsageError(`invalid ${argument} identifier "${text}": TYPE must be one of ${IDENTIFIER_TYPES.join(', ')}, or external:NAME for an external id, as in external:crm_id=42`);
  }
  return { type, value: text.slice(equals + 1) };
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

async function runUnmerge(survivor: Identifier, merged: Identifier | string, options: ConnectionOptions): Promise<void> {
  const client = createIdentityClient(options.server);
  try {
    const request = typeof merged === 'string' ? { profile: survivor, mergedProfileId: merged } : { profile: survivor, mergedIdentifier: merged };
    const response = await callUnary(client.unmergeProfile.bind(client), request, writeKeyMetadata(options.writeKey), UNMERGE_DEADLINE_MS);
    if (options.output === 'json') {
      process.stdout.write(`${JSON.stringify(UnmergeProfileResponse.toJSON(response), null, 2)}\n`);
      return;
    }
    process.stdout.write(`${unmergeText(response).join('\n')}\n`);
  } catch (error) {
    throw describeUnmergeFailure(error, options.server);
  } finally {
    client.close();
  }
}

/**
 * Describes a failed unmerge. A DEADLINE_EXCEEDED with an rtcdp error code came from the node,
 * and its message states that the unmerge is in the log. One without came from the client.
 */
function describeUnmergeFailure(error: unknown, server: string): unknown {
  if (!isServiceError(error) || error.code !== status.DEADLINE_EXCEEDED) return describeCallFailure(error, server, 'IdentityService');
  if (error.metadata.get(ERROR_CODE_TRAILER).length > 0) return new CommandFailure(serviceErrorDetails(error));
  return new CommandFailure(`request to ${server} timed out after ${UNMERGE_DEADLINE_MS / 1000} s; the unmerge may still complete, so check both profiles with rtcdp profile get before retrying`);
}

function unmergeText(response: UnmergeProfileResponse): string[] {
  const lines = [`split profile ${response.restoredProfileId} off ${response.survivorProfileId} (unmerge ${response.unmergeId})`];
  const moved = response.profiles.filter((profileId) => profileId !== response.restoredProfileId);
  if (moved.length > 0) lines.push(`profiles merged later that went with ${response.restoredProfileId}: ${moved.join(', ')}`);

  lines.push('', `${response.survivorProfileId} (survivor):`, ...sideRows(response.survivorIdentifiers, response.survivor));
  lines.push('', `${response.restoredProfileId} (restored):`, ...sideRows(response.restoredIdentifiers, response.restored));
  return lines;
}

function sideRows(identifiers: Identifier[], profile: Profile | undefined): string[] {
  const segments = profile === undefined ? [] : Object.keys(profile.segments).sort();
  return renderTable([
    ['identifiers', identifiers.length === 0 ? '(none)' : identifiers.map(describe).join(', ')],
    ['events', profile === undefined ? '-' : String(profile.eventCount)],
    ['segments', segments.length === 0 ? '(none)' : segments.join(', ')],
  ]);
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
