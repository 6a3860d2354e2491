/**
 * The options that name one profile on the command line (--user-id, --email, …), with the
 * node and the write key, shared by the commands that read or decide for a profile.
 */
import type { Command } from 'commander';
import type { Identifier } from '../proto/gen/rtcdp/v1/profile.js';
import { CommandFailure, OUTPUT_FORMATS, UsageError, parseChoice, parseServer, DEFAULT_SERVER } from './common.js';

export interface IdentifierOptions {
  userId?: string;
  anonymousId?: string;
  email?: string;
  phone?: string;
  deviceId?: string;
  external?: string;
}

export interface ProfileTargetOptions extends IdentifierOptions {
  server: string;
  writeKey?: string;
  output: string;
}

/** Adds --server, --write-key, the identifier options and --output to a command. */
export function addProfileTargetOptions(command: Command): void {
  command
    .option('--server <host:port>', 'address of the rtcdp node', parseServer, DEFAULT_SERVER)
    .option('--write-key <key>', 'write key of the workspace (default: none, which a dev-mode node maps to "default")')
    .option('--user-id <id>', 'find the profile by userId')
    .option('--anonymous-id <id>', 'find the profile by anonymousId')
    .option('--email <address>', 'find the profile by email trait')
    .option('--phone <number>', 'find the profile by phone trait')
    .option('--device-id <id>', 'find the profile by context.device.id')
    .option('--external <type:id>', 'find the profile by external id, for example crm_id:12345')
    .option('--output <format>', 'output format: table or json', parseChoice('--output', OUTPUT_FORMATS), 'table')
    .addHelpText('after', '\nGive exactly one of --user-id, --anonymous-id, --email, --phone, --device-id, --external.');
}

/** Returns the one identifier given on the command line, in the wire form of the Identifier message. */
export function identifierFrom(options: IdentifierOptions): Identifier {
  const identifiers: Identifier[] = [];
  const add = (type: string, value: string | undefined) => value !== undefined && identifiers.push({ type, value });

  add('user_id', options.userId);
  add('anonymous_id', options.anonymousId);
  add('email', options.email);
  add('phone', options.phone);
  add('device_id', options.deviceId);
  if (options.external !== undefined) {
    identifiers.push(parseExternal(options.external));
  }

  if (identifiers.length !== 1) {
    const problem = identifiers.length === 0 ? 'missing identifier' : `${identifiers.length} identifiers given`;
    throw new UsageError(`${problem}: give exactly one of --user-id, --anonymous-id, --email, --phone, --device-id, --external`);
  }
  if (identifiers[0].value === '') {
    throw new UsageError(`invalid ${optionOf(identifiers[0])} "": expected a non-empty value`);
  }
  return identifiers[0];
}

/** Parses TYPE:ID, or TYPE=ID as profile explain writes it; the first ":" or "=" ends the type, since no type contains either. */
function parseExternal(value: string): Identifier {
  const separator = value.search(/[:=]/);
  if (separator <= 0 || separator === value.length - 1) {
    throw new UsageError(`invalid --external "${value}": expected TYPE:ID, for example crm_id:12345`);
  }
  return { type: `external:${value.slice(0, separator)}`, value: value.slice(separator + 1) };
}

function optionOf(identifier: Identifier): string {
  return identifier.type.startsWith('external:') ? '--external' : `--${identifier.type.replace('_', '-')}`;
}

/** Formats an identifier for messages: "email alice@example.com", "user id 17850", "external id crm_id:12". */
export function describeIdentifier(identifier: Identifier): string {
  if (identifier.type.startsWith('external:')) {
    return `external id ${identifier.type.slice('external:'.length)}:${identifier.value}`;
  }
  return `${identifier.type.replace('_', ' ')} ${identifier.value}`;
}

/**
 * Returns the failure for an identifier that no profile of the workspace holds. The server's
 * message adds why when the identifier's type is not configured for linking.
 */
export function notFound(identifier: Identifier, serverMessage = ''): CommandFailure {
  const reason = /: (identifier type .*)$/.exec(serverMessage)?.[1];
  return new CommandFailure(`no profile found for ${describeIdentifier(identifier)} in this workspace${reason === undefined ? '' : `: ${reason}`}`);
}
