/** The `--identity FILE` option of `rtcdp dev` and `rtcdp node`: the identity settings of the workspaces. */
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { resolveWorkspaceIdentity } from '../cluster/node-options.js';
import { ConfigError } from '../common/errors.js';
import type { IdentitySettingsInput } from '../identity/identity-settings.js';
import { UsageError } from './common.js';

export const IDENTITY_HELP =
  'JSON or YAML file of identity settings: `default` for every workspace and `workspaces` by name, each with ' +
  'identifiers (maxPerProfile, mergeProtected, blockedValues per type), priority, emailRules, defaultRegion and ' +
  'invalidIdentifiers (identity/README.md). Default: the built-in settings';

export interface IdentityFileSettings {
  identity?: IdentitySettingsInput;
  workspaceIdentity?: Record<string, IdentitySettingsInput>;
}

const FILE_KEYS = ['default', 'workspaces'];

/** Reads and validates the settings file; a missing or invalid file is a usage error naming the setting. */
export async function readIdentitySettings(file: string | undefined): Promise<IdentityFileSettings> {
  if (file === undefined) return {};

  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(`--identity ${file}: cannot read the file: ${(error as Error).message}`, { cause: error });
  }

  let parsed: unknown;
  try {
    parsed = parse(text);
  } catch (error) {
    throw new UsageError(`--identity ${file}: not valid YAML or JSON: ${(error as Error).message}`, { cause: error });
  }
  const settings = readSettingsObject(parsed, file);

  try {
    resolveWorkspaceIdentity(settings.identity, settings.workspaceIdentity);
  } catch (error) {
    if (error instanceof ConfigError) throw new UsageError(`--identity ${file}: ${error.message}`, { cause: error });
    throw error;
  }
  return settings;
}

function readSettingsObject(parsed: unknown, file: string): IdentityFileSettings {
  if (!isObject(parsed)) throw new UsageError(`--identity ${file}: must contain an object with default and workspaces`);
  const unknown = Object.keys(parsed).find((key) => !FILE_KEYS.includes(key));
  if (unknown !== undefined) throw new UsageError(`--identity ${file}: ${unknown} is not a known field; expected default or workspaces`);

  const { default: defaults, workspaces } = parsed;
  if (workspaces !== undefined && !isObject(workspaces)) throw new UsageError(`--identity ${file}: workspaces must map workspace names to identity settings`);
  return { identity: defaults as IdentitySettingsInput | undefined, workspaceIdentity: workspaces as Record<string, IdentitySettingsInput> | undefined };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
