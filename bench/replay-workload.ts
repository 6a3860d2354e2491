/**
 * The replay workload: the events of a file (Segment NDJSON or the Online Retail CSV, read
 * with the `rtcdp send` readers in cli/sources) instead of generated ones. Each event keeps
 * its timestamp, identifiers, properties and traits. The file is sent again from the start
 * when it runs out, so every send gets a new messageId, which stops the node from dropping
 * a repeat as a duplicate. With several generators, generator `part` sends every
 * `parts`-th event of the file.
 *
 * The node routes each event to the profile of its userId, else of its anonymousId. The
 * workload numbers those profiles in the order the file first names them.
 */
import { openSource } from '../cli/sources/index.js';
import type { RawEvent } from '../profiles/event.js';
import { rawEventToProto } from '../profiles/segment-json.js';
import { Event } from '../proto/gen/rtcdp/v1/event.js';
import type { BatchEncoder } from './events.js';
import type { ProfileRef, Workload } from './workloads.js';

export interface ReplayWorkloadConfig {
  kind: 'replay';
  file: string;
  part: number;
  parts: number;
}

export interface ReplayFileSummary {
  events: number;
  /** Lines the reader could not turn into an event. */
  invalidLines: number;
  /** Events without userId and anonymousId, which the node would reject; they are not sent. */
  withoutIdentity: number;
}

export class ReplayWorkload implements Workload {
  readonly firstCustomer = 0;
  readonly endCustomer = 0;
  readonly summary: ReplayFileSummary;
  readonly #profiles: ProfileRef[];
  readonly #tails: Uint8Array[];
  readonly #slots: Int32Array;
  #next = 0;

  private constructor(profiles: ProfileRef[], tails: Uint8Array[], slots: Int32Array, summary: ReplayFileSummary) {
    this.#profiles = profiles;
    this.#tails = tails;
    this.#slots = slots;
    this.summary = summary;
  }

  /** Reads this generator's share of the file. Throws when the file cannot be read or contains no event to send. */
  static async load(config: ReplayWorkloadConfig): Promise<ReplayWorkload> {
    const source = await openSource(config.file);
    const profiles: ProfileRef[] = [];
    const slotOf = new Map<string, number>();
    const tails: Uint8Array[] = [];
    const slots: number[] = [];
    const summary: ReplayFileSummary = { events: 0, invalidLines: 0, withoutIdentity: 0 };
    let index = 0;

    for await (const item of source.items()) {
      if (item.kind === 'error') {
        summary.invalidLines++;
        continue;
      }
      if (index++ % config.parts !== config.part) continue;

      const event = toProto(item.event);
      if (event === null) {
        summary.invalidLines++;
        continue;
      }
      const profile = profileOf(event);
      if (profile === null) {
        summary.withoutIdentity++;
        continue;
      }

      const key = `${profile.type}:${profile.value}`;
      let slot = slotOf.get(key);
      if (slot === undefined) {
        slot = profiles.push(profile) - 1;
        slotOf.set(key, slot);
      }
      tails.push(Event.encode({ ...event, messageId: '' }).finish());
      slots.push(slot);
      summary.events++;
    }

    if (tails.length === 0) throw new Error(`${config.file} has no event with a userId or anonymousId for generator ${config.part} of ${config.parts}`);
    return new ReplayWorkload(profiles, tails, Int32Array.from(slots), summary);
  }

  get profileCount(): number {
    return this.#profiles.length;
  }

  hasMore(): boolean {
    return true;
  }

  profileOf(slot: number): ProfileRef {
    return this.#profiles[slot];
  }

  fill(encoder: BatchEncoder, slots: Int32Array, max: number): number {
    for (let i = 0; i < max; i++) {
      encoder.addWithMessageId(this.#tails[this.#next]);
      slots[i] = this.#slots[this.#next];
      this.#next = (this.#next + 1) % this.#tails.length;
    }
    return max;
  }
}

/** Converts like `rtcdp send`, which reports an event that protobuf cannot carry as an invalid line. */
function toProto(raw: RawEvent): Event | null {
  try {
    return rawEventToProto(raw);
  } catch (error) {
    if (error instanceof TypeError) return null;
    throw error;
  }
}

function profileOf(event: Event): ProfileRef | null {
  if (event.userId !== '') return { type: 'user_id', value: event.userId };
  if (event.anonymousId !== '') return { type: 'anonymous_id', value: event.anonymousId };
  return null;
}
