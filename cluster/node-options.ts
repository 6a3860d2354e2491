import type { ActorSystemOptions } from '../actors/types.js';
import { ConfigError } from '../common/errors.js';
import { WORKSPACE_PATTERN } from './arguments.js';
import { resolveIdentitySettings, type IdentitySettings, type IdentitySettingsInput } from '../identity/identity-settings.js';
import type { OnlineMatchingSettings } from '../identity/online-matching.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { resolveEventLimits, type EventLimits } from '../profiles/validation.js';
import { DEFAULT_PROFILE_LIMITS, type AppliedEvent, type ProfileLimits } from '../profiles/profile.js';

export interface NodeOptions {
  /** Directory of the node's RocksDB database. Required. */
  dataDir: string;
  /** Virtual shards per workspace, fixed when the data directory is created. Default 16. */
  shards?: number;
  /** Events appended but not yet applied, node-wide, before ingestion fails with OVERLOADED. Default 50,000. */
  maxInFlightEvents?: number;
  /** How often each partition's checkpoint is written. Default 1,000 ms. */
  checkpointIntervalMs?: number;
  /**
   * How long the event log keeps a record after its checkpoint, and so how long its
   * messageId is deduplicated. Default 604,800,000 (7 days).
   */
  dedupWindowMs?: number;
  /** How often records past the dedup window are pruned from the log. Default 60,000 ms. */
  pruneIntervalMs?: number;
  /** How long a query waits for earlier events to be applied before it fails. Default 5,000 ms. */
  queryTimeoutMs?: number;
  /** fdatasync the RocksDB WAL before acknowledging events (power-loss durability). Default true. */
  walSync?: boolean;
  /** Time between sweeps of the durable timer index for due profile evaluations. Default 1,000 ms. */
  evaluationTimerIntervalMs?: number;
  /** Time between reloads of the definitions besides those a store change triggers. Default 10,000 ms. */
  definitionReloadIntervalMs?: number;
  /** How long activations are kept in the node's activation log. Default 604,800,000 (7 days). */
  activationRetentionMs?: number;
  eventLimits?: Partial<EventLimits>;
  profileLimits?: Partial<ProfileLimits>;
  /** Identity settings of every workspace without its own entry in `workspaceIdentity`. Default: the built-in defaults. */
  identity?: IdentitySettingsInput;
  /** Identity settings per workspace name; each replaces `identity` for its workspace. */
  workspaceIdentity?: Record<string, IdentitySettingsInput>;
  /** Fuzzy matching of live profiles by person traits, in worker threads. Default: off. */
  matching?: OnlineMatchingSettings;
  actors?: ActorSystemOptions;
  logger?: Logger;
  /** Called before each event is applied; a throw counts as a handler failure. For fault-injection tests. */
  beforeApply?: (applied: AppliedEvent, profileId: string) => void;
  /** Wall clock of evaluations, decisions and timers, in ms since the epoch. Default Date.now; tests move it forward. */
  now?: () => number;
}

export interface ResolvedNodeOptions {
  dataDir: string;
  shards: number;
  maxInFlightEvents: number;
  checkpointIntervalMs: number;
  queryTimeoutMs: number;
  dedupWindowMs: number;
  pruneIntervalMs: number;
  walSync: boolean;
  evaluationTimerIntervalMs: number;
  definitionReloadIntervalMs: number;
  activationRetentionMs: number;
  eventLimits: EventLimits;
  profileLimits: ProfileLimits;
  /** The validated identity settings of a workspace. */
  identitySettings: (workspace: string) => IdentitySettings;
  matching?: OnlineMatchingSettings;
  actors: ActorSystemOptions;
  logger: Logger;
  beforeApply?: (applied: AppliedEvent, profileId: string) => void;
  now: () => number;
}

/**
 * Snapshot cadence for profiles. A snapshot of a rarely seen profile costs about as much as
 * applying its event, so a longer interval saves work. The log replays what a crash loses.
 */
const DEFAULT_ACTOR_OPTIONS: ActorSystemOptions = { snapshotIntervalMs: 5_000, snapshotEveryMessages: 500 };

/** Validates options once and fills in defaults. Throws RangeError naming the option and the rule. */
export function resolveNodeOptions(options: NodeOptions): ResolvedNodeOptions {
  if (typeof options.dataDir !== 'string' || options.dataDir === '') {
    throw new RangeError(`dataDir must be a non-empty path, received ${JSON.stringify(options.dataDir)}`);
  }

  return {
    dataDir: options.dataDir,
    shards: positiveInteger('shards', options.shards ?? 16, 65_536),
    maxInFlightEvents: positiveInteger('maxInFlightEvents', options.maxInFlightEvents ?? 50_000),
    checkpointIntervalMs: positiveInteger('checkpointIntervalMs', options.checkpointIntervalMs ?? 1_000),
    queryTimeoutMs: positiveInteger('queryTimeoutMs', options.queryTimeoutMs ?? 5_000),
    dedupWindowMs: positiveInteger('dedupWindowMs', options.dedupWindowMs ?? 7 * 24 * 3_600_000),
    pruneIntervalMs: positiveInteger('pruneIntervalMs', options.pruneIntervalMs ?? 60_000),
    walSync: options.walSync ?? true,
    evaluationTimerIntervalMs: positiveInteger('evaluationTimerIntervalMs', options.evaluationTimerIntervalMs ?? 1_000),
    definitionReloadIntervalMs: positiveInteger('definitionReloadIntervalMs', options.definitionReloadIntervalMs ?? 10_000),
    activationRetentionMs: positiveInteger('activationRetentionMs', options.activationRetentionMs ?? 7 * 24 * 3_600_000),
    eventLimits: resolveEventLimits(options.eventLimits),
    profileLimits: resolveProfileLimits(options.profileLimits),
    identitySettings: resolveWorkspaceIdentity(options.identity, options.workspaceIdentity),
    matching: options.matching,
    actors: { ...DEFAULT_ACTOR_OPTIONS, ...definedFields(options.actors ?? {}) },
    logger: options.logger ?? silentLogger(),
    beforeApply: options.beforeApply,
    now: options.now ?? Date.now,
  };
}

/**
 * Validates the identity settings once: the default and each workspace's. Throws one
 * ConfigError that names, for every invalid setting, the workspace and the setting.
 */
export function resolveWorkspaceIdentity(defaults: IdentitySettingsInput | undefined, perWorkspace: Record<string, IdentitySettingsInput> = {}): (workspace: string) => IdentitySettings {
  const problems: string[] = [];
  const resolve = (input: IdentitySettingsInput | undefined, label: string): IdentitySettings | undefined => {
    try {
      return resolveIdentitySettings(input ?? {});
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(`${label}: ${error.message}`);
      return undefined;
    }
  };

  // The labels are the keys of an --identity file, which is where most settings come from.
  const fallback = resolve(defaults, 'default');
  const byWorkspace = new Map<string, IdentitySettings>();
  for (const [workspace, input] of Object.entries(perWorkspace)) {
    if (!WORKSPACE_PATTERN.test(workspace)) {
      problems.push(`identity settings name workspace ${JSON.stringify(workspace)}, but a workspace name is 1-64 characters of a-z, 0-9, "_" or "-", starting with a letter or digit`);
      continue;
    }
    const settings = resolve(input, `workspaces.${workspace}`);
    if (settings !== undefined) byWorkspace.set(workspace, settings);
  }

  if (problems.length > 0 || fallback === undefined) throw new ConfigError(problems.join('\n'));
  return (workspace) => byWorkspace.get(workspace) ?? fallback;
}

function definedFields<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as Partial<T>;
}

/** Fills in `defaults` and validates every limit; `messageIdRetentionMs` may be 0 (no time limit). */
export function resolveProfileLimits(partial: Partial<ProfileLimits> = {}, defaults: ProfileLimits = DEFAULT_PROFILE_LIMITS): ProfileLimits {
  for (const name of Object.keys(partial)) {
    if (!Object.hasOwn(defaults, name)) throw new RangeError(`unknown profile limit ${JSON.stringify(name)}, expected one of ${Object.keys(defaults).join(', ')}`);
  }
  const limits = { ...defaults, ...definedFields(partial) };
  for (const [name, value] of Object.entries(limits)) {
    if (name !== 'messageIdRetentionMs') positiveInteger(`profileLimits.${name}`, value);
    else if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`profileLimits.messageIdRetentionMs must be 0 (no time limit) or a positive integer of ms, received ${value}`);
    }
  }
  return limits;
}

export function positiveInteger(name: string, value: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new RangeError(`${name} must be an integer from 1 to ${max}, received ${value}`);
  }
  return value;
}
