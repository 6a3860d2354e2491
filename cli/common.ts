/**
 * Pieces every rtcdp command shares: the two failure classes that set the exit code,
 * option parsers that name the option and the value they reject, tables, and the stop signal.
 */
import { createServer } from 'node:net';
import { DEFAULT_EVENT_LIMITS, resolveEventLimits, type EventLimits } from '../profiles/validation.js';
import { RtcdpError } from '../common/errors.js';

/** A wrong command line: the message names the option and the value. Exits with 2. */
export class UsageError extends RtcdpError {
  readonly code = 'USAGE';
}

/** A command that ran and failed, such as a profile that does not exist. Exits with 1. */
export class CommandFailure extends RtcdpError {
  readonly code = 'COMMAND_FAILED';
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
export const OUTPUT_FORMATS = ['table', 'json'];
/** The address of `rtcdp dev` and `npm start`, which every client command uses unless --server names another. */
export const DEFAULT_SERVER = '127.0.0.1:50051';

/** Pads every column but the last to its widest cell. */
export function renderTable(rows: readonly string[][], indent = '  '): string[] {
  if (rows.length === 0) {
    return [`${indent}(none)`];
  }

  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, column) => {
      widths[column] = Math.max(widths[column] ?? 0, cell.length);
    });
  }
  return rows.map((row) => indent + row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]))).join('  '));
}

/** Resolves with the name of the first SIGINT or SIGTERM. A second one exits at once with 1. */
export function waitForStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) {
        process.stderr.write(`rtcdp: received ${signal} again, exiting before the node has stopped\n`);
        process.exit(1);
      }
      received = true;
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

// ---------------------------------------------------------------------------
// Option parsers: each throws UsageError naming the option and the value.
// ---------------------------------------------------------------------------

export function parseInteger(option: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const number = /^-?\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(number) || number < min || number > max) {
      throw new UsageError(`invalid ${option} "${value}": expected an integer from ${min} to ${max}`);
    }
    return number;
  };
}

export function parseChoice(option: string, choices: readonly string[]): (value: string) => string {
  return (value) => {
    if (!choices.includes(value)) {
      throw new UsageError(`invalid ${option} "${value}": expected one of ${choices.join(', ')}`);
    }
    return value;
  };
}

/** Builds the parser of an option whose value is HOST:PORT, with an IPv6 host in brackets ([::1]:50051). */
export function parseHostPort(option: string): (value: string) => string {
  return (value) => {
    const match = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]+):(\d+)$/.exec(value);
    if (!match) {
      throw new UsageError(`invalid ${option} "${value}": expected HOST:PORT, for example 127.0.0.1:50051`);
    }

    const port = Number(match[2]);
    if (port < 1 || port > 65535) {
      throw new UsageError(`invalid ${option} "${value}": the port must be an integer from 1 to 65535`);
    }
    return value;
  };
}

/** Accepts the --server address of a node as HOST:PORT. */
export const parseServer = parseHostPort('--server');

/** Help of the --limit option of the commands that start a node. */
export const EVENT_LIMIT_HELP = `event limit to override (repeatable), one of: ${Object.entries(DEFAULT_EVENT_LIMITS)
  .map(([name, value]) => `${name} (default ${value})`)
  .join(', ')}. Sizes are in bytes, maxFutureSkewMs in milliseconds`;

/** Adds one NAME=VALUE event limit override. */
export function collectLimit(value: string, previous: Partial<EventLimits> | undefined): Partial<EventLimits> {
  const [name, text] = value.split('=', 2);
  if (text === undefined || !/^[0-9]+$/.test(text)) {
    throw new UsageError(`invalid --limit "${value}": expected NAME=N with N a positive integer, such as maxEventBytes=65536`);
  }
  const limits = { ...previous, [name]: Number(text) };
  try {
    resolveEventLimits(limits);
  } catch (error) {
    throw new UsageError(`invalid --limit "${value}": ${(error as Error).message}`);
  }
  return limits;
}

/**
 * Adds one KEY=WORKSPACE pair. Messages never repeat the key because it is a secret.
 * The last "=" splits the pair, so a key may contain "=" (as base64 does) but a workspace may not.
 */
export function collectWriteKey(value: string, previous: Map<string, string> | undefined): Map<string, string> {
  const keys = previous ?? new Map<string, string>();
  const separator = value.lastIndexOf('=');
  const key = value.slice(0, Math.max(0, separator));
  const workspace = value.slice(separator + 1);

  if (separator <= 0 || workspace === '') {
    throw new UsageError('invalid --write-key: expected KEY=WORKSPACE with a non-empty key and workspace');
  }
  if (keys.has(key)) {
    throw new UsageError(`invalid --write-key: the same key is given for workspaces "${keys.get(key)}" and "${workspace}"`);
  }

  keys.set(key, workspace);
  return keys;
}


/**
 * Returns whether another process listens on `host`:`port`, by listening there for a moment.
 * Throws CommandFailure when the check itself fails for another reason than a busy port.
 */
export async function portInUse(host: string, port: number): Promise<boolean> {
  const server = createServer();
  const error = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
    server.once('error', resolve);
    server.listen(port, host, () => resolve(null));
  });
  if (error === null) {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return false;
  }
  if (error.code === 'EADDRINUSE') return true;
  throw new CommandFailure(`cannot check port ${port} on ${host}: ${error.message}`, { cause: error });
}

/** Throws UsageError when the gRPC port is in use, so a node fails before it opens its data directory or joins a cluster. */
export async function assertGrpcPortFree(host: string, port: number, option: string): Promise<void> {
  if (port === 0 || !(await portInUse(host, port))) return;
  throw new UsageError(`cannot listen on ${host}:${port}: the port is in use. Pick another ${option}, or ${option} 0 for any free port`);
}
