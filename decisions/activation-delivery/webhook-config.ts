/**
 * The webhook destinations file (`rtcdp dev --webhooks FILE`): a JSON or YAML list of
 * destinations, validated once at startup. Every rule broken is reported together, each
 * naming the field, the rule and the value received.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { RtcdpError } from '../../common/errors.js';
import { ACTIVATION_TYPES, type ActivationType } from '../../profiles/activation.js';

/** A destination as the file states it. */
export interface WebhookDestinationConfig {
  /** Unique name, 1-64 of A-Z, a-z, 0-9, "_" and "-"; keys the delivery cursor and dead letters. */
  name: string;
  /** The workspace whose activations are delivered. */
  workspace: string;
  /** http:// or https:// URL that receives the POST requests. */
  url: string;
  /** Name of the environment variable that contains the HMAC secret, at least 16 characters. */
  secretEnv: string;
  /** Deliver only these activation types. Default: every type. */
  types?: ActivationType[];
  /** Attempts per batch before it goes to the dead letters, 1 to 100. Default 8. */
  maxAttempts?: number;
  /** Time limit of one request, headers and body, 100 to 300,000 ms. Default 10,000. */
  timeoutMs?: number;
  /** Activations per request, 1 to 1,000. Default 100. */
  maxBatchActivations?: number;
  /** Requests per second, retries included, greater than 0 and at most 10,000. Default 10. */
  maxRequestsPerSecond?: number;
}

/** A validated destination with its defaults filled in and its secret read from the environment. */
export interface WebhookDestination {
  name: string;
  workspace: string;
  url: URL;
  secret: string;
  /** Empty for every type. */
  types: ActivationType[];
  maxAttempts: number;
  timeoutMs: number;
  maxBatchActivations: number;
  maxRequestsPerSecond: number;
}

/** The destinations file could not be read or breaks a rule; `issues` lists each broken rule. */
export class WebhookConfigError extends RtcdpError {
  readonly code = 'INVALID_WEBHOOK_CONFIG';

  constructor(
    readonly file: string,
    readonly issues: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(`invalid webhook destinations in ${file}: ${issues.join('; ')}`, options);
  }
}

export const WEBHOOK_DEFAULTS = { maxAttempts: 8, timeoutMs: 10_000, maxBatchActivations: 100, maxRequestsPerSecond: 10 } as const;
export const MIN_SECRET_LENGTH = 16;

const FIELDS = ['name', 'workspace', 'url', 'secretEnv', 'types', 'maxAttempts', 'timeoutMs', 'maxBatchActivations', 'maxRequestsPerSecond'];
const NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
// The same rule as the node's workspace names (cluster/arguments.ts).
const WORKSPACE_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Reads and validates a destinations file. Throws WebhookConfigError. */
export async function loadWebhookConfig(file: string, env: NodeJS.ProcessEnv): Promise<WebhookDestination[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new WebhookConfigError(file, [`failed to read the file: ${(error as Error).message}`], { cause: error });
  }
  return parseWebhookConfig(text, file, env);
}

/** Parses the text of a destinations file (JSON when `file` ends in .json, else YAML) and validates it. */
export function parseWebhookConfig(text: string, file: string, env: NodeJS.ProcessEnv): WebhookDestination[] {
  let document: unknown;
  try {
    document = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new WebhookConfigError(file, [`the file is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(error as Error).message}`], { cause: error });
  }
  return validateWebhookConfig(document, file, env);
}

/** Validates a parsed destinations list. Throws WebhookConfigError with every broken rule. */
export function validateWebhookConfig(document: unknown, file: string, env: NodeJS.ProcessEnv): WebhookDestination[] {
  if (!Array.isArray(document)) {
    throw new WebhookConfigError(file, [`the file must contain a list of destinations, received ${describe(document)}`]);
  }

  const issues: string[] = [];
  const destinations: WebhookDestination[] = [];
  const firstIndexOfName = new Map<string, number>();
  document.forEach((entry, index) => {
    const path = `webhooks[${index}]`;
    const destination = validateDestination(entry, path, env, issues);

    // A repeated name is reported with the destination's other issues, if it has any.
    const name = typeof entry === 'object' && entry !== null && typeof (entry as { name?: unknown }).name === 'string' ? (entry as { name: string }).name : undefined;
    const earlier = name === undefined ? undefined : firstIndexOfName.get(name);
    if (earlier !== undefined) issues.push(`${path}.name ${JSON.stringify(name)} is already used by webhooks[${earlier}], and names must be unique`);
    else if (name !== undefined) firstIndexOfName.set(name, index);
    if (destination !== null) destinations.push(destination);
  });

  if (issues.length > 0) throw new WebhookConfigError(file, issues);
  return destinations;
}

/** Returns the destination, or null after adding its issues to `issues`. */
function validateDestination(entry: unknown, path: string, env: NodeJS.ProcessEnv, issues: string[]): WebhookDestination | null {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    issues.push(`${path} must be an object, received ${describe(entry)}`);
    return null;
  }
  const fields = entry as Record<string, unknown>;
  const before = issues.length;

  for (const field of Object.keys(fields)) {
    if (!FIELDS.includes(field)) issues.push(`${path}.${field} is not a known field; expected one of ${FIELDS.join(', ')}`);
  }

  const name = requiredText(fields, 'name', path, issues, NAME_PATTERN, 'must be 1-64 of A-Z, a-z, 0-9, "_" and "-"');
  const workspace = requiredText(fields, 'workspace', path, issues, WORKSPACE_PATTERN, 'must be 1-64 of a-z, 0-9, "_" and "-", starting with a letter or digit');
  const url = parseUrl(fields.url, `${path}.url`, issues);
  const secret = readSecret(fields, path, env, issues);
  const types = parseTypes(fields.types, `${path}.types`, issues);
  const maxAttempts = integerField(fields, 'maxAttempts', path, issues, 1, 100);
  const timeoutMs = integerField(fields, 'timeoutMs', path, issues, 100, 300_000);
  const maxBatchActivations = integerField(fields, 'maxBatchActivations', path, issues, 1, 1_000);
  const maxRequestsPerSecond = rateField(fields.maxRequestsPerSecond, `${path}.maxRequestsPerSecond`, issues);

  if (issues.length > before) return null;
  return {
    name: name as string,
    workspace: workspace as string,
    url: url as URL,
    secret: secret as string,
    types,
    maxAttempts,
    timeoutMs,
    maxBatchActivations,
    maxRequestsPerSecond,
  };
}

function requiredText(fields: Record<string, unknown>, field: string, path: string, issues: string[], pattern: RegExp, rule: string): string | undefined {
  const value = fields[field];
  if (value === undefined) {
    issues.push(`${path}.${field} is missing`);
    return undefined;
  }
  if (typeof value !== 'string' || !pattern.test(value)) {
    issues.push(`${path}.${field} ${rule}, received ${describe(value)}`);
    return undefined;
  }
  return value;
}

function parseUrl(value: unknown, path: string, issues: string[]): URL | undefined {
  if (value === undefined) {
    issues.push(`${path} is missing`);
    return undefined;
  }

  const url = typeof value === 'string' && URL.canParse(value) ? new URL(value) : undefined;
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    // A URL of another scheme may carry a password, which the message must not repeat.
    const received = url !== undefined && (url.username !== '' || url.password !== '') ? `a URL of scheme ${url.protocol} with a user name or password` : describe(value);
    issues.push(`${path} must be an absolute http:// or https:// URL, received ${received}`);
    return undefined;
  }
  // fetch rejects URLs with credentials, and the URL would carry them into logs.
  if (url.username !== '' || url.password !== '') {
    issues.push(`${path} must not contain a user name or password; the receiver authenticates requests by their signature`);
    return undefined;
  }
  return url;
}

function readSecret(fields: Record<string, unknown>, path: string, env: NodeJS.ProcessEnv, issues: string[]): string | undefined {
  const name = requiredText(fields, 'secretEnv', path, issues, ENV_NAME_PATTERN, 'must be the name of an environment variable');
  if (name === undefined) return undefined;

  // The message names the variable but never shows its value.
  const secret = env[name];
  if (secret === undefined || secret === '') {
    issues.push(`${path}.secretEnv names ${name}, which is not set in the environment; set it to the destination's secret`);
    return undefined;
  }
  if (secret.length < MIN_SECRET_LENGTH) {
    issues.push(`${path}.secretEnv names ${name}, whose value must be at least ${MIN_SECRET_LENGTH} characters, received ${secret.length}`);
    return undefined;
  }
  return secret;
}

function parseTypes(value: unknown, path: string, issues: string[]): ActivationType[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length === 0) {
    issues.push(`${path} must be a non-empty list of activation types, received ${describe(value)}`);
    return [];
  }

  const types: ActivationType[] = [];
  value.forEach((type, index) => {
    if (typeof type === 'string' && (ACTIVATION_TYPES as readonly string[]).includes(type)) types.push(type as ActivationType);
    else issues.push(`${path}[${index}] must be one of ${ACTIVATION_TYPES.join(', ')}, received ${describe(type)}`);
  });
  return types;
}

function integerField(fields: Record<string, unknown>, field: keyof typeof WEBHOOK_DEFAULTS, path: string, issues: string[], min: number, max: number): number {
  const value = fields[field];
  if (value === undefined) return WEBHOOK_DEFAULTS[field];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    issues.push(`${path}.${field} must be an integer from ${min} to ${max}, received ${describe(value)}`);
    return WEBHOOK_DEFAULTS[field];
  }
  return value;
}

function rateField(value: unknown, path: string, issues: string[]): number {
  if (value === undefined) return WEBHOOK_DEFAULTS.maxRequestsPerSecond;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > 10_000) {
    issues.push(`${path} must be a number greater than 0 and at most 10000, received ${describe(value)}`);
    return WEBHOOK_DEFAULTS.maxRequestsPerSecond;
  }
  return value;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : 'a list';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  return JSON.stringify(value);
}
