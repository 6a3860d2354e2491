/**
 * The end-of-run check: for a sample of customers, the number of events the generators had
 * acknowledged as accepted must equal the profile's eventCount. A customer that got no
 * accepted event must have no profile.
 *
 * Workloads with anonymous events or a replayed file also send to profiles that are not a
 * numbered customer's userId. For a sample of those with accepted events, found by their
 * anonymousId or userId, the same equality must hold (`checkOtherProfiles`).
 */
import { userIdOf } from './events.js';
import type { GeneratorReport } from './generator.js';
import { createRandom } from './random.js';
import type { ProfileRef, Workload } from './workloads.js';

export interface CorrectnessResult {
  passed: boolean;
  sampledCustomers: number;
  /** Sum of the expected eventCounts of the sample. */
  sampledEvents: number;
  mismatches: Array<{ userId: string; expected: number; actual: number | 'not found' }>;
  /** The check of the other profiles, when the workload sent to any. */
  otherProfiles?: OtherProfilesResult;
}

/** The part of a generator's report that counts the events it got stored, per profile. */
export type ExpectedCounts = Pick<GeneratorReport, 'firstCustomer' | 'acceptedPerCustomer' | 'otherProfiles'>;

export interface OtherProfilesResult {
  passed: boolean;
  sampledProfiles: number;
  sampledEvents: number;
  /** `profile` is the identifier type and value, for example "anonymous_id anon-12". */
  mismatches: Array<{ profile: string; expected: number; actual: number | 'not found' }>;
}

/**
 * Splits accepted counts per slot into the numbered customers' part and the other
 * profiles, listing only those with an accepted event.
 */
export function splitAcceptedCounts(workload: Workload, acceptedPerProfile: Int32Array): Pick<GeneratorReport, 'firstCustomer' | 'acceptedPerCustomer' | 'otherProfiles'> {
  const customers = workload.endCustomer - workload.firstCustomer;
  const profiles: ProfileRef[] = [];
  const accepted: number[] = [];
  for (let slot = customers; slot < acceptedPerProfile.length; slot++) {
    if (acceptedPerProfile[slot] === 0) continue;
    profiles.push(workload.profileOf(slot));
    accepted.push(acceptedPerProfile[slot]);
  }

  return {
    firstCustomer: workload.firstCustomer,
    acceptedPerCustomer: acceptedPerProfile.slice(0, customers),
    otherProfiles: { profiles, accepted: Int32Array.from(accepted) },
  };
}

/** Adds up the generators' accepted events per customer, over customers [0, population). */
export function mergeAcceptedCounts(reports: ExpectedCounts[], population: number): Int32Array {
  const merged = new Int32Array(population);
  for (const report of reports) {
    report.acceptedPerCustomer.forEach((count, i) => {
      merged[report.firstCustomer + i] += count;
    });
  }
  return merged;
}

/**
 * Picks up to `size` customers: the 10 with the most events (the hot keys of a Zipf load),
 * then random ones, and a few that got no event at all when there are such customers.
 */
export function sampleCustomers(counts: Int32Array, size: number, seed: number): number[] {
  const random = createRandom(seed);
  const chosen = new Set<number>(topCustomers(counts, Math.min(10, size)));
  const withoutEvents: number[] = [];

  for (let attempt = 0; chosen.size < size && attempt < size * 20; attempt++) {
    const customer = Math.floor(random() * counts.length);
    if (counts[customer] > 0) chosen.add(customer);
    else if (withoutEvents.length < 3) withoutEvents.push(customer);
  }

  return [...chosen, ...withoutEvents];
}

function topCustomers(counts: Int32Array, n: number): number[] {
  return [...counts.keys()].sort((a, b) => counts[b] - counts[a]).slice(0, n);
}

/** A node host that reads profiles: the embedded one, or a cluster node, which queries each profile's owner. */
export interface EventCountSource {
  /** eventCount per user id, -1 where no profile exists. */
  eventCounts(userIds: string[]): Promise<Int32Array>;
}

/** A node host that reads profiles by userId or anonymousId. */
export interface ProfileCountSource {
  /** eventCount per profile, -1 where no profile exists. */
  eventCountsOf(profiles: ProfileRef[]): Promise<Int32Array>;
}

/** Adds up the generators' accepted events per other profile, keyed by "type value". */
export function mergeOtherProfiles(reports: ExpectedCounts[]): Map<string, { profile: ProfileRef; expected: number }> {
  const merged = new Map<string, { profile: ProfileRef; expected: number }>();
  for (const report of reports) {
    report.otherProfiles.profiles.forEach((profile, i) => {
      const key = `${profile.type} ${profile.value}`;
      const entry = merged.get(key) ?? { profile, expected: 0 };
      entry.expected += report.otherProfiles.accepted[i];
      merged.set(key, entry);
    });
  }
  return merged;
}

/** Checks up to `size` other profiles: the 10 with the most events, then random ones. */
export async function checkOtherProfiles(
  node: ProfileCountSource,
  merged: Map<string, { profile: ProfileRef; expected: number }>,
  size: number,
  seed: number,
): Promise<OtherProfilesResult> {
  const entries = [...merged.entries()];
  const expected = Int32Array.from(entries, ([, entry]) => entry.expected);
  const sample = sampleCustomers(expected, size, seed).filter((index) => expected[index] > 0);
  const actual = await node.eventCountsOf(sample.map((index) => entries[index][1].profile));

  const mismatches: OtherProfilesResult['mismatches'] = [];
  let sampledEvents = 0;
  sample.forEach((index, i) => {
    sampledEvents += expected[index];
    if (actual[i] !== expected[index]) mismatches.push({ profile: entries[index][0], expected: expected[index], actual: actual[i] === -1 ? 'not found' : actual[i] });
  });

  return { passed: mismatches.length === 0 && sample.length > 0, sampledProfiles: sample.length, sampledEvents, mismatches };
}

export async function checkEventCounts(node: EventCountSource, counts: Int32Array, customers: number[]): Promise<CorrectnessResult> {
  const actual = await node.eventCounts(customers.map(userIdOf));
  return compareCounts(counts, customers, actual);
}

/** Compares expected counts with eventCounts read from the node (-1 meaning no profile). */
export function compareCounts(counts: Int32Array, customers: number[], actual: Int32Array): CorrectnessResult {
  const mismatches: CorrectnessResult['mismatches'] = [];
  let sampledEvents = 0;

  customers.forEach((customer, i) => {
    const expected = counts[customer];
    const found = actual[i];
    sampledEvents += expected;

    const matches = expected === 0 ? found === -1 : found === expected;
    if (!matches) mismatches.push({ userId: userIdOf(customer), expected, actual: found === -1 ? 'not found' : found });
  });

  return { passed: mismatches.length === 0 && customers.length > 0, sampledCustomers: customers.length, sampledEvents, mismatches };
}

export function describeCorrectness(result: CorrectnessResult): string {
  const others = result.otherProfiles === undefined ? '' : `; ${describeOtherProfiles(result.otherProfiles)}`;
  if (result.passed && result.sampledCustomers === 0 && result.otherProfiles !== undefined) return `passed: ${describeOtherProfiles(result.otherProfiles)}`;
  if (result.passed) return `passed: ${result.sampledCustomers} customers, ${result.sampledEvents} events, every eventCount as expected${others}`;
  if (result.mismatches.length === 0) return `FAILED: ${result.sampledCustomers} customers checked${others}`;

  const examples = result.mismatches.slice(0, 5).map((m) => `${m.userId} expected ${m.expected}, found ${m.actual}`);
  return `FAILED: ${result.mismatches.length} of ${result.sampledCustomers} customers differ (${examples.join('; ')})${others}`;
}

function describeOtherProfiles(result: OtherProfilesResult): string {
  if (result.passed) return `${result.sampledProfiles} profiles by anonymousId or replayed userId, ${result.sampledEvents} events, as expected`;

  const examples = result.mismatches.slice(0, 5).map((m) => `${m.profile} expected ${m.expected}, found ${m.actual}`);
  return `${result.mismatches.length} of ${result.sampledProfiles} profiles by anonymousId or replayed userId differ (${examples.join('; ')})`;
}
