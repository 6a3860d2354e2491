/**
 * Workloads of a load generator. The Zipf workload sends track events for Zipf-distributed
 * customers until it is stopped. The profiles workload builds a fixed set of profiles, each
 * from one identify event and a number of track events that cycle through the event names.
 */
import { TRACK_EVENT_NAMES, type BatchEncoder } from './events.js';
import { createRandom, ZipfSampler } from './random.js';

export type WorkloadConfig =
  | { kind: 'zipf'; customers: number; exponent: number }
  | { kind: 'profiles'; first: number; end: number; tracksPerProfile: number };

export interface Workload {
  /** Customer ids run from `firstCustomer` to `endCustomer` - 1. */
  readonly firstCustomer: number;
  readonly endCustomer: number;
  hasMore(): boolean;
  /** Adds up to `max` events to the encoder's batch and writes each event's customer to `customers`. Returns how many it added. */
  fill(encoder: BatchEncoder, customers: Int32Array, max: number): number;
}

export function createWorkload(config: WorkloadConfig, seed: number): Workload {
  return config.kind === 'zipf' ? new ZipfWorkload(config.customers, config.exponent, seed) : new ProfilesWorkload(config.first, config.end, config.tracksPerProfile);
}

class ZipfWorkload implements Workload {
  readonly firstCustomer = 0;
  readonly endCustomer: number;
  readonly #sampler: ZipfSampler;
  readonly #random: () => number;

  constructor(customers: number, exponent: number, seed: number) {
    this.endCustomer = customers;
    this.#random = createRandom(seed ^ 0x5eed);
    this.#sampler = new ZipfSampler(customers, exponent, createRandom(seed));
  }

  hasMore(): boolean {
    return true;
  }

  fill(encoder: BatchEncoder, customers: Int32Array, max: number): number {
    for (let i = 0; i < max; i++) {
      const customer = this.#sampler.next();
      encoder.addTrack(customer, Math.floor(this.#random() * TRACK_EVENT_NAMES.length));
      customers[i] = customer;
    }
    return max;
  }
}

class ProfilesWorkload implements Workload {
  readonly firstCustomer: number;
  readonly endCustomer: number;
  readonly #eventsPerProfile: number;
  #customer: number;
  /** 0 is the identify event; step k > 0 is the track event named TRACK_EVENT_NAMES[(k - 1) % 10]. */
  #step = 0;

  constructor(first: number, end: number, tracksPerProfile: number) {
    this.firstCustomer = first;
    this.endCustomer = end;
    this.#customer = first;
    this.#eventsPerProfile = 1 + tracksPerProfile;
  }

  hasMore(): boolean {
    return this.#customer < this.endCustomer;
  }

  fill(encoder: BatchEncoder, customers: Int32Array, max: number): number {
    let added = 0;

    while (added < max && this.hasMore()) {
      if (this.#step === 0) encoder.addIdentify(this.#customer);
      else encoder.addTrack(this.#customer, (this.#step - 1) % TRACK_EVENT_NAMES.length);
      customers[added++] = this.#customer;

      this.#step++;
      if (this.#step === this.#eventsPerProfile) {
        this.#step = 0;
        this.#customer++;
      }
    }

    return added;
  }
}
