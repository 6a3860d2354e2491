/**
 * The sessions workload: a mix of event types in sessions, closer to what a website and an
 * app send than the Zipf workload's track events.
 *
 * A session is a run of events of one customer (Zipf-distributed) with a mean length of
 * `sessionEvents`. A customer is either known (its events carry userId and anonymousId) or
 * anonymous (its events carry only its anonymousId). `knownPercent` of the customers are
 * known from the start. An anonymous customer's session ends, with probability
 * `conversionPercent`, in an identify with its userId and anonymousId, after which the
 * customer is known to this generator.
 *
 * Identity resolution makes each customer one profile: every event of customer c carries
 * anonymousId `anon-c`, and every event with userId `user-c` carries it too (identify, alias
 * and a known customer's events), which links the two. So slot c counts every event of
 * customer c, and its profile is found by `anon-c`. The workload has no numbered customers
 * found by userId alone, as an anonymous customer who never converts has no userId.
 */
import { anonymousIdOf, encodeEventTail, traitsOf, TRACK_EVENT_NAMES, userIdOf, type BatchEncoder } from './events.js';
import { createRandom, ZipfSampler } from './random.js';
import type { ProfileRef, Workload } from './workloads.js';

export const SESSION_EVENT_TYPES = ['track', 'page', 'screen', 'identify', 'alias'] as const;

export type SessionEventType = (typeof SESSION_EVENT_TYPES)[number];

export interface SessionWorkloadConfig {
  kind: 'sessions';
  customers: number;
  exponent: number;
  /** Mean events per session before a conversion's identify; lengths are geometric, at least 1. */
  sessionEvents: number;
  /** Relative weight of each event type. An anonymous customer draws only among track, page and screen. */
  eventWeights: Record<SessionEventType, number>;
  /** Share of customers known from their first event, in percent. */
  knownPercent: number;
  /** Share of an anonymous customer's sessions that end in an identify with its userId, in percent. */
  conversionPercent: number;
  /** Sizes of an extra string property on track, page and screen events, in bytes; one is drawn per event. */
  propertyBytes: number[];
}

const PAGE_NAMES = ['Home', 'Product', 'Category', 'Cart', 'Checkout', 'Search', 'Account', 'Help'];
const SCREEN_NAMES = ['Home', 'Product', 'Basket', 'Orders', 'Settings'];
const NAMES_BY_TYPE: Record<'track' | 'page' | 'screen', readonly string[]> = { track: TRACK_EVENT_NAMES, page: PAGE_NAMES, screen: SCREEN_NAMES };

/** Pre-encoded variants per event type, name and property size. */
const VARIANTS = 8;

/** Strings longer than 8,192 characters are rejected by the node, so a large extra property is split into several. */
const MAX_STRING_CHARS = 8_000;

export class SessionWorkload implements Workload {
  readonly firstCustomer = 0;
  readonly endCustomer: number;
  readonly profileCount: number;
  readonly #config: SessionWorkloadConfig;
  readonly #sampler: ZipfSampler;
  readonly #random: () => number;
  /** 1 for a customer that this generator has seen convert. */
  readonly #converted: Uint8Array;
  readonly #tails = new Map<string, Uint8Array[]>();
  readonly #knownWeights: number[];
  readonly #anonymousWeights: number[];
  #customer = 0;
  #known = false;
  #remaining = 0;

  constructor(config: SessionWorkloadConfig, seed: number) {
    this.#config = config;
    this.endCustomer = 0;
    this.profileCount = config.customers;
    this.#random = createRandom(seed ^ 0x5e55);
    this.#sampler = new ZipfSampler(config.customers, config.exponent, createRandom(seed));
    this.#converted = new Uint8Array(config.customers);
    this.#knownWeights = SESSION_EVENT_TYPES.map((type) => config.eventWeights[type]);
    this.#anonymousWeights = SESSION_EVENT_TYPES.map((type) => (type === 'identify' || type === 'alias' ? 0 : config.eventWeights[type]));
  }

  hasMore(): boolean {
    return true;
  }

  profileOf(slot: number): ProfileRef {
    return { type: 'anonymous_id', value: anonymousIdOf(slot) };
  }

  fill(encoder: BatchEncoder, slots: Int32Array, max: number): number {
    let added = 0;

    while (added < max) {
      if (this.#remaining === 0) this.#startSession();

      if (this.#remaining > 0) {
        slots[added++] = this.#addSessionEvent(encoder);
        this.#remaining--;
      } else {
        // remaining is -1: the anonymous session ends in an identify.
        slots[added++] = this.#addIdentify(encoder);
        this.#converted[this.#customer] = 1;
        this.#known = true;
        this.#remaining = 0;
      }

      if (this.#remaining === 0 && !this.#known && this.#random() * 100 < this.#config.conversionPercent) this.#remaining = -1;
    }

    return added;
  }

  /** Whether the customer starts known; the same for every generator, so that runs are reproducible. */
  isKnownAtStart(customer: number): boolean {
    const hashed = (Math.imul(customer + 1, 0x9e3779b1) >>> 0) / 4_294_967_296;
    return hashed * 100 < this.#config.knownPercent;
  }

  #startSession(): void {
    this.#customer = this.#sampler.next();
    this.#known = this.#converted[this.#customer] === 1 || this.isKnownAtStart(this.#customer);
    this.#remaining = geometric(this.#config.sessionEvents, this.#random);
  }

  #addSessionEvent(encoder: BatchEncoder): number {
    const type = SESSION_EVENT_TYPES[pickWeighted(this.#known ? this.#knownWeights : this.#anonymousWeights, this.#random)];
    if (type === 'identify') return this.#addIdentify(encoder);
    if (type === 'alias') {
      encoder.addEvent({ type: 'alias', userId: userIdOf(this.#customer), previousId: anonymousIdOf(this.#customer) });
      return this.#customer;
    }

    const userId = this.#known ? userIdOf(this.#customer) : '';
    encoder.addWithTail(this.#pickTail(type), userId, anonymousIdOf(this.#customer));
    return this.#customer;
  }

  #addIdentify(encoder: BatchEncoder): number {
    encoder.addEvent({ type: 'identify', userId: userIdOf(this.#customer), anonymousId: anonymousIdOf(this.#customer), traits: traitsOf(this.#customer) });
    return this.#customer;
  }

  #pickTail(type: 'track' | 'page' | 'screen'): Uint8Array {
    const names = NAMES_BY_TYPE[type];
    const nameIndex = Math.floor(this.#random() * names.length);
    const sizeIndex = Math.floor(this.#random() * this.#config.propertyBytes.length);
    const key = `${type}|${nameIndex}|${sizeIndex}`;

    let variants = this.#tails.get(key);
    if (variants === undefined) {
      const propertyBytes = this.#config.propertyBytes[sizeIndex];
      variants = Array.from({ length: VARIANTS }, () => encodeTail(type, names[nameIndex], propertyBytes, this.#random));
      this.#tails.set(key, variants);
    }
    return variants[Math.floor(this.#random() * variants.length)];
  }
}

function encodeTail(type: 'track' | 'page' | 'screen', name: string, propertyBytes: number, random: () => number): Uint8Array {
  const properties: Record<string, unknown> =
    type === 'track'
      ? { product_id: `sku-${Math.floor(random() * 100_000)}`, price: Math.round(random() * 50_000) / 100, quantity: 1 + Math.floor(random() * 5) }
      : { path: `/${name.toLowerCase()}/${Math.floor(random() * 1_000)}`, title: name, referrer: 'https://www.example.org/' };
  Object.assign(properties, paddingProperties(propertyBytes, random));

  const context = { ip: `198.51.100.${Math.floor(random() * 254) + 1}`, extra: { library: { name: 'analytics.js', version: '4.1.0' }, locale: 'en-US' } };
  return type === 'track' ? encodeEventTail({ type, event: name, properties, context }) : encodeEventTail({ type, name, properties, context });
}

/** Returns string properties `notes_0`, `notes_1`, ... of `bytes` ASCII characters in all. */
export function paddingProperties(bytes: number, random: () => number): Record<string, string> {
  const properties: Record<string, string> = {};
  for (let part = 0; part * MAX_STRING_CHARS < bytes; part++) {
    const length = Math.min(MAX_STRING_CHARS, bytes - part * MAX_STRING_CHARS);
    let text = '';
    while (text.length < length) text += Math.floor(random() * 2 ** 32).toString(36);
    properties[`notes_${part}`] = text.slice(0, length);
  }
  return properties;
}

/** Draws a length of at least 1 with the given mean from a geometric distribution. */
function geometric(mean: number, random: () => number): number {
  if (mean <= 1) return 1;
  const p = 1 / mean;
  return 1 + Math.floor(Math.log(1 - random()) / Math.log(1 - p));
}

function pickWeighted(weights: number[], random: () => number): number {
  let total = 0;
  for (const weight of weights) total += weight;

  let u = random() * total;
  for (let i = 0; i < weights.length; i++) {
    u -= weights[i];
    if (u < 0 && weights[i] > 0) return i;
  }
  // Rounding can leave u at 0 after the last weight; the last type with a weight then wins.
  for (let i = weights.length - 1; i >= 0; i--) if (weights[i] > 0) return i;
  throw new RangeError('every event type has weight 0');
}
