/**
 * Workloads of a load generator. The Zipf workload sends track events for Zipf-distributed
 * customers until it is stopped. The profiles workload builds a fixed set of profiles, each
 * from one identify event and a number of track events that cycle through the event names.
 * The sessions workload (session-workload.ts) mixes event types, anonymous and known
 * customers, and the replay workload (replay-workload.ts) sends the events of a file.
 */
import { TRACK_EVENT_NAMES, userIdOf, type BatchEncoder } from './events.js';
import { createRandom, ZipfSampler } from './random.js';
import { ReplayWorkload, type ReplayWorkloadConfig } from './replay-workload.js';
import { SessionWorkload, type SessionWorkloadConfig } from './session-workload.js';

export type WorkloadConfig =
  | { kind: 'zipf'; customers: number; exponent: number }
  | { kind: 'profiles'; first: number; end: number; tracksPerProfile: number }
  | SessionWorkloadConfig
  | ReplayWorkloadConfig;

/** The identifier that finds a profile without the identifier index: the profile's userId or anonymousId. */
export interface ProfileRef {
  type: 'user_id' | 'anonymous_id';
  value: string;
}

export interface Workload {
  /** Customer ids run from `firstCustomer` to `endCustomer` - 1; slot s < endCustomer - firstCustomer is the profile of userId `user-(firstCustomer + s)`. */
  readonly firstCustomer: number;
  readonly endCustomer: number;
  /** Profiles the workload can send events to, numbered from 0 (the slots). */
  readonly profileCount: number;
  hasMore(): boolean;
  /** The identifier of the profile in `slot`. */
  profileOf(slot: number): ProfileRef;
  /** Adds up to `max` events to the encoder's batch and writes the slot of each event's profile to `slots`. Returns how many it added. */
  fill(encoder: BatchEncoder, slots: Int32Array, max: number): number;
}

/** Creates a workload that needs no file; `loadWorkload` also reads a replay file. */
export function createWorkload(config: Exclude<WorkloadConfig, ReplayWorkloadConfig>, seed: number): Workload {
  if (config.kind === 'zipf') return new ZipfWorkload(config.customers, config.exponent, seed);
  if (config.kind === 'sessions') return new SessionWorkload(config, seed);
  return new ProfilesWorkload(config.first, config.end, config.tracksPerProfile);
}

export async function loadWorkload(config: WorkloadConfig, seed: number): Promise<Workload> {
  return config.kind === 'replay' ? ReplayWorkload.load(config) : createWorkload(config, seed);
}

class ZipfWorkload implements Workload {
  readonly firstCustomer = 0;
  readonly endCustomer: number;
  readonly profileCount: number;
  readonly #sampler: ZipfSampler;
  readonly #random: () => number;

  constructor(customers: number, exponent: number, seed: number) {
    this.endCustomer = customers;
    this.profileCount = customers;
    this.#random = createRandom(seed ^ 0x5eed);
    this.#sampler = new ZipfSampler(customers, exponent, createRandom(seed));
  }

  hasMore(): boolean {
    return true;
  }

  profileOf(slot: number): ProfileRef {
    return { type: 'user_id', value: userIdOf(slot) };
  }

  fill(encoder: BatchEncoder, slots: Int32Array, max: number): number {
    for (let i = 0; i < max; i++) {
      const customer = this.#sampler.next();
      encoder.addTrack(customer, Math.floor(this.#random() * TRACK_EVENT_NAMES.length));
      slots[i] = customer;
    }
    return max;
  }
}

class ProfilesWorkload implements Workload {
  readonly firstCustomer: number;
  readonly endCustomer: number;
  readonly profileCount: number;
  readonly #eventsPerProfile: number;
  #customer: number;
  /** 0 is the identify event; step k > 0 is the track event named TRACK_EVENT_NAMES[(k - 1) % 10]. */
  #step = 0;

  constructor(first: number, end: number, tracksPerProfile: number) {
    this.firstCustomer = first;
    this.endCustomer = end;
    this.profileCount = end - first;
    this.#customer = first;
    this.#eventsPerProfile = 1 + tracksPerProfile;
  }

  hasMore(): boolean {
    return this.#customer < this.endCustomer;
  }

  profileOf(slot: number): ProfileRef {
    return { type: 'user_id', value: userIdOf(this.firstCustomer + slot) };
  }

  fill(encoder: BatchEncoder, slots: Int32Array, max: number): number {
    let added = 0;

    while (added < max && this.hasMore()) {
      if (this.#step === 0) encoder.addIdentify(this.#customer);
      else encoder.addTrack(this.#customer, (this.#step - 1) % TRACK_EVENT_NAMES.length);
      slots[added++] = this.#customer - this.firstCustomer;

      this.#step++;
      if (this.#step === this.#eventsPerProfile) {
        this.#step = 0;
        this.#customer++;
      }
    }

    return added;
  }
}
