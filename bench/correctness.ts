/**
 * The end-of-run check: for a sample of customers, the number of events the generators had
 * acknowledged as accepted must equal the profile's eventCount. A customer that got no
 * accepted event must have no profile.
 */
import { userIdOf } from './events.js';
import type { GeneratorReport } from './generator.js';
import { createRandom } from './random.js';

export interface CorrectnessResult {
  passed: boolean;
  sampledCustomers: number;
  /** Sum of the expected eventCounts of the sample. */
  sampledEvents: number;
  mismatches: Array<{ userId: string; expected: number; actual: number | 'not found' }>;
}

/** Adds up the generators' accepted events per customer, over customers [0, population). */
export function mergeAcceptedCounts(reports: GeneratorReport[], population: number): Int32Array {
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
  if (result.passed) return `passed: ${result.sampledCustomers} customers, ${result.sampledEvents} events, every eventCount as expected`;

  const examples = result.mismatches.slice(0, 5).map((m) => `${m.userId} expected ${m.expected}, found ${m.actual}`);
  return `FAILED: ${result.mismatches.length} of ${result.sampledCustomers} customers differ (${examples.join('; ')})`;
}
