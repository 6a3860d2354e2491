/**
 * The `cel` scenario: evaluations per second of segment conditions compiled once, with
 * @marcbachmann/cel-js (what decisions/definitions uses) and @bufbuild/cel, on the same
 * profile of 30 fields. Building the variables from a profile is not measured: each library
 * gets its variables prebuilt, in the form it expects. The run passes when both libraries
 * return the same result for every condition.
 */
import { CelScalar, celEnv, isCelError, mapType, parse, plan } from '@bufbuild/cel';
import { SegmentConditionCompiler, type ConditionActivation } from '../decisions/definitions/segment-condition.js';
import { createProfile, type ProfileSnapshot } from '../profiles/profile.js';
import { formatCount, machineInfo, progress, type MachineInfo } from './report.js';

export interface CelOptions {
  /** Measured time per library and condition, in seconds. */
  durationS: number;
  /** Measurements per library and condition; the median is reported. */
  rounds: number;
}

interface Measurement {
  condition: string;
  library: string;
  evaluationsPerSecond: number;
  nanosecondsPerEvaluation: number;
  result: unknown;
}

export interface CelResult {
  passed: boolean;
  machine: MachineInfo;
  options: CelOptions;
  profileFields: number;
  measurements: Measurement[];
}

const CONDITIONS = [
  'traits.plan == "pro" && eventCount > 10',
  'events["Order Completed"].count >= 3 && events["Order Completed"].sums["revenue"] > 100.0',
  'traits.country in ["NL", "DE", "BE"] && traits.age >= 18 && has(traits.email)',
  'traits.email.endsWith("@example.com") || lastSeenMs - firstSeenMs > 86400000',
];

/** Evaluations between two clock reads, so reading the clock costs little. */
const BATCH = 1_000;

/**
 * Builds a profile whose variables have 30 fields: 24 traits, 3 event names, eventCount,
 * firstSeenMs and lastSeenMs.
 */
function benchmarkProfile(): ProfileSnapshot {
  const profile = createProfile('default', 'bench-user');
  profile.traits = {
    email: 'ada@example.com',
    plan: 'pro',
    country: 'NL',
    age: 36,
    first_name: 'Ada',
    last_name: 'Lovelace',
    city: 'Amsterdam',
    language: 'nl',
    newsletter: true,
    loyalty_tier: 'gold',
    lifetime_orders: 42,
    phone: '+31201234567',
    company: 'Analytical Engines',
    title: 'Engineer',
    signup_source: 'referral',
    timezone: 'Europe/Amsterdam',
    currency: 'EUR',
    device: 'ios',
    marketing_consent: true,
    referral_code: 'ADA-2024',
    birthday: '1815-12-10',
    gender: 'female',
    score: 87.5,
    segment_hint: 'vip',
  };
  profile.events = {
    'Order Completed': { count: 12, sums: { revenue: 1_534.25, quantity: 30 }, firstSeenMs: 1_700_000_000_000, lastSeenMs: 1_733_000_000_000 },
    'Product Viewed': { count: 230, sums: { price: 9_120.5 }, firstSeenMs: 1_699_000_000_000, lastSeenMs: 1_733_100_000_000 },
    'page:Pricing': { count: 4, sums: {}, firstSeenMs: 1_710_000_000_000, lastSeenMs: 1_730_000_000_000 },
  };
  profile.eventCount = 246;
  profile.firstSeenMs = 1_699_000_000_000;
  profile.lastSeenMs = 1_733_100_000_000;
  return profile;
}

/** Converts the variables to the types that @bufbuild/cel bindings declare: maps as Map, integers as bigint. */
function bufbuildVariables(activation: ConditionActivation) {
  const traits = new Map(Object.entries(activation.traits));
  const events = new Map(
    Object.entries(activation.events).map(([name, stats]) => [
      name,
      new Map<string, bigint | Map<string, number>>([
        ['count', stats.count],
        ['sums', new Map(Object.entries(stats.sums))],
        ['firstSeenMs', stats.firstSeenMs],
        ['lastSeenMs', stats.lastSeenMs],
      ]),
    ]),
  );
  return { traits, events, eventCount: activation.eventCount, firstSeenMs: activation.firstSeenMs, lastSeenMs: activation.lastSeenMs };
}

/** Runs `evaluate` for about `durationS` and returns evaluations per second. */
function measure(evaluate: () => unknown, durationS: number): number {
  for (let i = 0; i < 20 * BATCH; i++) evaluate();

  const deadline = process.hrtime.bigint() + BigInt(Math.round(durationS * 1e9));
  const start = process.hrtime.bigint();
  let count = 0;
  let now = start;
  while (now < deadline) {
    for (let i = 0; i < BATCH; i++) evaluate();
    count += BATCH;
    now = process.hrtime.bigint();
  }
  return count / (Number(now - start) / 1e9);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export async function runCel(options: CelOptions): Promise<CelResult> {
  const profile = benchmarkProfile();
  const compiler = new SegmentConditionCompiler([]);
  const activation = compiler.activation(profile, {}, 1_733_200_000_000);
  const profileFields = Object.keys(profile.traits).length + Object.keys(profile.events).length + 3;

  const bufEnv = celEnv({
    variables: {
      traits: mapType(CelScalar.STRING, CelScalar.DYN),
      events: mapType(CelScalar.STRING, CelScalar.DYN),
      eventCount: CelScalar.INT,
      firstSeenMs: CelScalar.INT,
      lastSeenMs: CelScalar.INT,
    },
  });
  const bufVariables = bufbuildVariables(activation);

  const cells: Array<{ condition: string; library: string; evaluate: () => unknown; result: unknown; rates: number[] }> = [];
  let passed = true;
  for (const [index, condition] of CONDITIONS.entries()) {
    const compiled = compiler.compile(condition);
    if (!compiled.ok) throw new Error(`condition ${index + 1} does not compile with cel-js: ${compiled.error.rule}`);
    const celJs = () => compiled.condition.evaluate(activation);
    const bufProgram = plan(bufEnv, parse(condition));
    const bufbuild = () => bufProgram(bufVariables);

    const results = { celJs: celJs(), bufbuild: bufbuild() };
    if (isCelError(results.bufbuild) || results.celJs !== results.bufbuild) {
      progress(`condition ${index + 1}: the libraries disagree: cel-js ${String(results.celJs)}, @bufbuild/cel ${String(results.bufbuild)}`);
      passed = false;
    }
    cells.push({ condition, library: '@marcbachmann/cel-js', evaluate: celJs, result: results.celJs, rates: [] });
    cells.push({ condition, library: '@bufbuild/cel', evaluate: bufbuild, result: results.bufbuild, rates: [] });
  }

  // Each round measures every cell once, so a change in the machine's load during the run
  // spreads over all cells instead of falling on one library or condition.
  for (let round = 1; round <= options.rounds; round++) {
    for (const cell of cells) cell.rates.push(measure(cell.evaluate, options.durationS));
    progress(`round ${round} of ${options.rounds} done`);
  }

  const measurements: Measurement[] = cells.map((cell) => {
    const rate = median(cell.rates);
    return { condition: cell.condition, library: cell.library, evaluationsPerSecond: rate, nanosecondsPerEvaluation: 1e9 / rate, result: cell.result };
  });

  printCelTable(measurements, profileFields);
  return { passed, machine: machineInfo(), options, profileFields, measurements };
}

function printCelTable(measurements: readonly Measurement[], profileFields: number): void {
  const title = `CEL evaluations per second, compiled once, profile of ${profileFields} fields (median of rounds)`;
  const rows = [['#', 'LIBRARY', 'EVALUATIONS/S', 'NS/EVAL', 'RESULT']];
  for (const measurement of measurements) {
    rows.push([
      String(CONDITIONS.indexOf(measurement.condition) + 1),
      measurement.library,
      formatCount(measurement.evaluationsPerSecond),
      measurement.nanosecondsPerEvaluation.toFixed(0),
      String(measurement.result),
    ]);
  }

  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  const lines = [title, '-'.repeat(title.length), ...rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd()), ''];
  lines.push('conditions:', ...CONDITIONS.map((condition, index) => `  ${index + 1}. ${condition}`), '');
  process.stdout.write(`${lines.join('\n')}\n`);
}
