/**
 * The identity options of `rtcdp dev` and `rtcdp node`: `--identity FILE`, the identity
 * settings of the workspaces, and the online fuzzy matching options.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { parse } from 'yaml';
import { resolveWorkspaceIdentity } from '../cluster/node-options.js';
import { ConfigError } from '../common/errors.js';
import type { IdentitySettingsInput } from '../identity/identity-settings.js';
import { readModelFile } from '../identity/matching/model-file.js';
import type { OnlineMatchingSettings } from '../identity/online-matching.js';
import { parseInteger, UsageError } from './common.js';

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

export interface MatchingCommandOptions {
  matchingModel?: string;
  matchingWorkers?: number;
  matchThreshold?: number;
  reviewThreshold?: number;
}

/** Adds the online fuzzy matching options to `rtcdp dev` or `rtcdp node`. */
export function addMatchingOptions(command: Command): Command {
  return command
    .option(
      '--matching-model <file>',
      'turn on fuzzy matching of live profiles by person traits (firstName, lastName, birthday, address, phone, email), scored with the model of this ' +
        'report.json of `rtcdp identity match` (or a model file); pairs above --match-threshold merge, pairs above --review-threshold are filed for review (default: off)',
    )
    .option('--matching-workers <count>', 'worker threads of the fuzzy matcher (default: the available parallelism)', parseInteger('--matching-workers', 1, 64))
    .option('--match-threshold <p>', 'probability at or above which a fuzzy match merges two profiles (default: 0.95)', parseProbability('--match-threshold'))
    .option('--review-threshold <p>', 'probability at or above which a fuzzy match is filed for review (default: 0.5)', parseProbability('--review-threshold'));
}

/** Reads the model file; an unreadable or invalid model is a usage error naming the option. */
export async function readMatchingSettings(options: MatchingCommandOptions): Promise<OnlineMatchingSettings | undefined> {
  const file = options.matchingModel;
  if (file === undefined) {
    const stray = [['--matching-workers', options.matchingWorkers], ['--match-threshold', options.matchThreshold], ['--review-threshold', options.reviewThreshold]].find(([, value]) => value !== undefined);
    if (stray !== undefined) throw new UsageError(`${stray[0]} needs --matching-model: without a model, online matching is off`);
    return undefined;
  }
  if ((options.reviewThreshold ?? 0.5) > (options.matchThreshold ?? 0.95)) {
    throw new UsageError(`--review-threshold must be at most --match-threshold (${options.reviewThreshold ?? 0.5} > ${options.matchThreshold ?? 0.95})`);
  }

  try {
    const model = await readModelFile(file, `--matching-model ${file}`);
    return { model, workers: options.matchingWorkers, minMatchProbability: options.matchThreshold, minReviewProbability: options.reviewThreshold };
  } catch (error) {
    if (error instanceof ConfigError) throw new UsageError(error.message, { cause: error });
    throw error;
  }
}

function parseProbability(option: string): (value: string) => number {
  return (value) => {
    const probability = Number(value);
    if (value.trim() === '' || !Number.isFinite(probability) || probability <= 0 || probability >= 1) {
      throw new UsageError(`invalid ${option} "${value}": expected a number greater than 0 and less than 1`);
    }
    return probability;
  };
}
