/**
 * Counts the decisions a Decide generator received, per rule and per profile, so that a run
 * can check them against the rules' caps and the contact policy. A decision counts whether
 * or not the profile is in the rule's control group, as the caps count it.
 */
import type { DecideOutcome } from './open-loop-drivers.js';

export interface DecisionTally {
  /** Decide calls that returned without a gRPC error. */
  calls: number;
  /** Calls that failed with NOT_FOUND, although each names a profile that the writers stored. */
  notFound: number;
  /** Calls that returned an action. */
  withAction: number;
  /** Calls whose chosen rule withheld its action because the profile is in its control group. */
  controlGroup: number;
  /** Calls with no rule chosen: none eligible, or every eligible one capped, in its cooldown or over the contact policy. */
  noneChosen: number;
  chosenPerRule: Record<string, number>;
  /** The maximum number of decisions of each rule that one profile got. */
  maxPerProfilePerRule: Record<string, number>;
  /** The maximum number of decisions that one profile got on each channel. */
  maxPerProfilePerChannel: Record<string, number>;
  /** The maximum number of decisions that one profile got on every channel together. */
  maxPerProfile: number;
  /** The minimum and maximum number of candidate rules that a receipt listed, per channel. */
  candidatesPerChannel: Record<string, { min: number; max: number }>;
}

export class DecisionCounter {
  readonly #perProfile = new Map<string, Map<string, number>>();
  readonly #tally: DecisionTally = emptyTally();

  record(profileKey: string, channel: string, outcome: DecideOutcome): void {
    const tally = this.#tally;
    tally.calls++;
    const range = (tally.candidatesPerChannel[channel] ??= { min: outcome.candidates, max: outcome.candidates });
    range.min = Math.min(range.min, outcome.candidates);
    range.max = Math.max(range.max, outcome.candidates);

    if (outcome.rule === '') {
      tally.noneChosen++;
      return;
    }
    if (outcome.controlGroup) tally.controlGroup++;
    if (outcome.action !== '') tally.withAction++;
    tally.chosenPerRule[outcome.rule] = (tally.chosenPerRule[outcome.rule] ?? 0) + 1;

    // Per profile: one counter per rule, per channel and in total, each under its own key.
    let counts = this.#perProfile.get(profileKey);
    if (counts === undefined) {
      counts = new Map();
      this.#perProfile.set(profileKey, counts);
    }
    for (const key of [`rule:${outcome.rule}`, `channel:${channel}`, 'total']) counts.set(key, (counts.get(key) ?? 0) + 1);
  }

  recordNotFound(): void {
    this.#tally.notFound++;
  }

  tally(): DecisionTally {
    const tally: DecisionTally = { ...this.#tally, maxPerProfilePerRule: {}, maxPerProfilePerChannel: {}, maxPerProfile: 0 };
    for (const counts of this.#perProfile.values()) {
      for (const [key, count] of counts) {
        if (key === 'total') tally.maxPerProfile = Math.max(tally.maxPerProfile, count);
        else if (key.startsWith('rule:')) raise(tally.maxPerProfilePerRule, key.slice('rule:'.length), count);
        else raise(tally.maxPerProfilePerChannel, key.slice('channel:'.length), count);
      }
    }
    return tally;
  }
}

/**
 * Adds up the tallies of several generators. The maxima per profile stay exact only when
 * each profile was queried by one generator, as with the single Decide generator the
 * harness starts.
 */
export function mergeTallies(tallies: DecisionTally[]): DecisionTally {
  const merged = emptyTally();
  for (const tally of tallies) {
    merged.calls += tally.calls;
    merged.notFound += tally.notFound;
    merged.withAction += tally.withAction;
    merged.controlGroup += tally.controlGroup;
    merged.noneChosen += tally.noneChosen;
    for (const [rule, count] of Object.entries(tally.chosenPerRule)) merged.chosenPerRule[rule] = (merged.chosenPerRule[rule] ?? 0) + count;
    for (const [rule, count] of Object.entries(tally.maxPerProfilePerRule)) raise(merged.maxPerProfilePerRule, rule, count);
    for (const [channel, count] of Object.entries(tally.maxPerProfilePerChannel)) raise(merged.maxPerProfilePerChannel, channel, count);
    merged.maxPerProfile = Math.max(merged.maxPerProfile, tally.maxPerProfile);
    for (const [channel, range] of Object.entries(tally.candidatesPerChannel)) {
      const current = merged.candidatesPerChannel[channel];
      merged.candidatesPerChannel[channel] = current === undefined ? { ...range } : { min: Math.min(current.min, range.min), max: Math.max(current.max, range.max) };
    }
  }
  return merged;
}

function emptyTally(): DecisionTally {
  return { calls: 0, notFound: 0, withAction: 0, controlGroup: 0, noneChosen: 0, chosenPerRule: {}, maxPerProfilePerRule: {}, maxPerProfilePerChannel: {}, maxPerProfile: 0, candidatesPerChannel: {} };
}

function raise(maxima: Record<string, number>, key: string, count: number): void {
  maxima[key] = Math.max(maxima[key] ?? 0, count);
}
