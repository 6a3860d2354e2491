import { randomUUID } from 'node:crypto';
import { inspect } from 'node:util';
import { ConfigError } from '../../common/errors.js';
import { silentLogger, type Logger } from '../../common/logger.js';
import { systemClock, type Clock } from '../clock.js';

/** The largest delay that Node.js timers accept. */
const MAX_TIMER_DELAY_MS = 2_147_483_647;

export interface ShardLeaseOptions {
  /** This node's id, stored as the lease holder. Required. */
  nodeId: string;
  /**
   * Id of this process run of the node, stored with the holder, so a restarted node does
   * not mistake its previous run's lease for its own. Default: a random UUID.
   */
  incarnation?: string;
  /** How long a lease lasts after a write, in milliseconds. It is stored in the record. Default 10,000. */
  leaseTtlMs?: number;
  /** Time between renewals, in milliseconds. Default 3,000. */
  renewIntervalMs?: number;
  /**
   * Time before the end of the ttl at which the holder stops reporting ownership, in
   * milliseconds. It covers a pause between checking owns() and acting on it. Default 2,000.
   */
  stallMarginMs?: number;
  /**
   * Time a taker waits beyond the ttl before it takes over an unchanged lease, in
   * milliseconds. It covers clocks that run at slightly different rates. Default 2,000.
   */
  takeoverMarginMs?: number;
  /** Delay before a renewal that failed with a transient error is sent again, in milliseconds. Default 1,000. */
  renewRetryIntervalMs?: number;
  /**
   * Time between two reads of another node's lease while acquire() waits it out, in
   * milliseconds: how soon a release or a renewal ends the wait. Default 200.
   */
  takeoverPollIntervalMs?: number;
  clock?: Clock;
  logger?: Logger;
}

export interface ResolvedShardLeaseOptions {
  nodeId: string;
  incarnation: string;
  leaseTtlMs: number;
  renewIntervalMs: number;
  stallMarginMs: number;
  takeoverMarginMs: number;
  renewRetryIntervalMs: number;
  takeoverPollIntervalMs: number;
  clock: Clock;
  logger: Logger;
}

const DEFAULTS = {
  leaseTtlMs: 10_000,
  renewIntervalMs: 3_000,
  stallMarginMs: 2_000,
  takeoverMarginMs: 2_000,
  renewRetryIntervalMs: 1_000,
  takeoverPollIntervalMs: 200,
} as const;

const DURATION_OPTIONS = ['leaseTtlMs', 'renewIntervalMs', 'stallMarginMs', 'takeoverMarginMs', 'renewRetryIntervalMs', 'takeoverPollIntervalMs'] as const;
type DurationOption = (typeof DURATION_OPTIONS)[number];

/** Fills in defaults and validates every option. Throws ConfigError naming the option and the rule. */
export function resolveShardLeaseOptions(options: ShardLeaseOptions): ResolvedShardLeaseOptions {
  requireName('nodeId', options.nodeId);
  const incarnation = options.incarnation ?? randomUUID();
  requireName('incarnation', incarnation);

  const durations: Record<DurationOption, number> = { ...DEFAULTS };
  for (const name of DURATION_OPTIONS) {
    const value = options[name] ?? DEFAULTS[name];
    if (!Number.isInteger(value) || value < 1 || value > MAX_TIMER_DELAY_MS) {
      throw new ConfigError(`${name} must be an integer from 1 to ${MAX_TIMER_DELAY_MS} ms, received ${inspect(value)}`);
    }
    durations[name] = value;
  }

  const { leaseTtlMs, renewIntervalMs, stallMarginMs, renewRetryIntervalMs } = durations;
  if (stallMarginMs >= leaseTtlMs) {
    throw new ConfigError(`stallMarginMs (${stallMarginMs}) must be less than leaseTtlMs (${leaseTtlMs}), so a lease is valid for some time`);
  }
  // A lease is valid for leaseTtlMs - stallMarginMs after its last write was sent, so a
  // renewal must be sent before then, with time left for a retry.
  const validityMs = leaseTtlMs - stallMarginMs;
  if (renewIntervalMs >= validityMs) {
    throw new ConfigError(
      `renewIntervalMs (${renewIntervalMs}) must be less than leaseTtlMs - stallMarginMs (${validityMs}), ` +
        'so a renewal is sent before the lease stops being valid',
    );
  }
  if (renewRetryIntervalMs >= validityMs - renewIntervalMs) {
    throw new ConfigError(
      `renewRetryIntervalMs (${renewRetryIntervalMs}) must be less than leaseTtlMs - stallMarginMs - renewIntervalMs (${validityMs - renewIntervalMs}), ` +
        'so a failed renewal is retried before the lease stops being valid',
    );
  }

  return {
    nodeId: options.nodeId,
    incarnation,
    ...durations,
    clock: options.clock ?? systemClock,
    logger: options.logger ?? silentLogger(),
  };
}

function requireName(name: string, value: unknown): void {
  if (typeof value !== 'string' || value === '') {
    throw new ConfigError(`${name} must be a non-empty string, received ${inspect(value)}`);
  }
}
