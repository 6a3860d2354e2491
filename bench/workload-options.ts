/**
 * The workload a scenario's generators send, as chosen on the command line: the Zipf track
 * events (the default), the sessions mix (session-workload.ts), or the replay of a file
 * (replay-workload.ts).
 */
import { SESSION_EVENT_TYPES, type SessionEventType, type SessionWorkloadConfig } from './session-workload.js';
import type { WorkloadConfig } from './workloads.js';

export type WorkloadChoice = { kind: 'zipf' } | Omit<SessionWorkloadConfig, 'customers' | 'exponent'> | { kind: 'replay'; file: string };

/** The defaults of the sessions mix, for the options that are not given. */
export const SESSION_DEFAULTS = {
  sessionEvents: 5,
  eventWeights: { track: 60, page: 30, screen: 0, identify: 5, alias: 5 } as Record<SessionEventType, number>,
  knownPercent: 50,
  conversionPercent: 20,
  propertyBytes: [0],
};

/** The largest extra property, in bytes; with the rest of an event it stays under the node's 32 KiB event limit. */
export const MAX_PROPERTY_BYTES = 30_000;

export interface WorkloadFlags {
  workload?: string;
  replay?: string;
  sessionEvents?: number;
  eventMix?: Record<SessionEventType, number>;
  knownPercent?: number;
  conversionPercent?: number;
  propertyBytes?: number[];
}

const SESSION_FLAGS: Array<[keyof WorkloadFlags, string]> = [
  ['sessionEvents', '--session-events'],
  ['eventMix', '--event-mix'],
  ['knownPercent', '--known-percent'],
  ['conversionPercent', '--conversion-percent'],
  ['propertyBytes', '--property-bytes'],
];

/** Resolves the workload flags once. Returns an error message for a contradiction instead of a choice. */
export function resolveWorkload(flags: WorkloadFlags): WorkloadChoice | string {
  const kind = flags.workload ?? 'zipf';
  const sessionFlags = SESSION_FLAGS.filter(([key]) => flags[key] !== undefined).map(([, flag]) => flag);

  if (flags.replay !== undefined) {
    if (flags.workload !== undefined) return `--replay sends the file's events, so it cannot be combined with --workload ${flags.workload}`;
    if (sessionFlags.length > 0) return `${sessionFlags.join(', ')} set the sessions workload, which --replay does not use`;
    return { kind: 'replay', file: flags.replay };
  }
  if (kind === 'zipf') {
    if (sessionFlags.length > 0) return `${sessionFlags.join(', ')} apply only with --workload sessions`;
    return { kind: 'zipf' };
  }

  return {
    kind: 'sessions',
    sessionEvents: flags.sessionEvents ?? SESSION_DEFAULTS.sessionEvents,
    eventWeights: flags.eventMix ?? SESSION_DEFAULTS.eventWeights,
    knownPercent: flags.knownPercent ?? SESSION_DEFAULTS.knownPercent,
    conversionPercent: flags.conversionPercent ?? SESSION_DEFAULTS.conversionPercent,
    propertyBytes: flags.propertyBytes ?? SESSION_DEFAULTS.propertyBytes,
  };
}

/** The workload of generator `index` of `count`. */
export function workloadConfigOf(choice: WorkloadChoice | undefined, load: { customers: number; zipfExponent: number }, index: number, count: number): WorkloadConfig {
  if (choice === undefined || choice.kind === 'zipf') return { kind: 'zipf', customers: load.customers, exponent: load.zipfExponent };
  if (choice.kind === 'replay') return { kind: 'replay', file: choice.file, part: index, parts: count };
  return { ...choice, customers: load.customers, exponent: load.zipfExponent };
}

/** Parses "track=60,page=30,identify=5,alias=5"; a type left out gets weight 0. Throws with a message for the command line. */
export function parseEventMix(value: string): Record<SessionEventType, number> {
  const weights = Object.fromEntries(SESSION_EVENT_TYPES.map((type) => [type, 0])) as Record<SessionEventType, number>;

  for (const part of value.split(',')) {
    const [type, weightText] = part.split('=').map((text) => text.trim());
    const weight = Number(weightText);
    if (!(SESSION_EVENT_TYPES as readonly string[]).includes(type) || weightText === undefined || !Number.isFinite(weight) || weight < 0) {
      throw new RangeError(`--event-mix must list TYPE=WEIGHT pairs with TYPE one of ${SESSION_EVENT_TYPES.join(', ')} and WEIGHT a number of at least 0, received "${value}".`);
    }
    weights[type as SessionEventType] = weight;
  }

  if (weights.track + weights.page + weights.screen <= 0) {
    throw new RangeError(`--event-mix needs a positive weight for track, page or screen, because anonymous sessions send only those, received "${value}".`);
  }
  return weights;
}

/** Parses a comma-separated list of sizes in bytes, each from 0 to MAX_PROPERTY_BYTES. */
export function parsePropertyBytes(value: string): number[] {
  const sizes = value.split(',').map((text) => Number(text.trim()));
  if (sizes.length === 0 || sizes.some((size) => !Number.isInteger(size) || size < 0 || size > MAX_PROPERTY_BYTES)) {
    throw new RangeError(`--property-bytes must be a comma-separated list of integers from 0 to ${MAX_PROPERTY_BYTES}, received "${value}".`);
  }
  return sizes;
}
