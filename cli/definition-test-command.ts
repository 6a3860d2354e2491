/**
 * `rtcdp definitions test`: replays the stored events of sample profiles against proposed
 * definitions through DefinitionService.TestDefinitions, and prints which profiles would
 * enter or exit each segment and how many computed trait values would change.
 */
import type { Command } from 'commander';
import { DEFAULT_TEST_PROFILES, MAX_TEST_PROFILES } from '../decisions/evaluation/definition-test.js';
import type { JsonValue } from '../profiles/event.js';
import {
  SegmentTransition,
  type ComputedTraitTestResult,
  type ScoreTestResult,
  type DefinitionResult,
  type SegmentTestResult,
  type TestDefinitionsRequest,
  type TestDefinitionsResponse,
} from '../proto/gen/rtcdp/v1/definitions.js';
import { callUnary } from './client.js';
import { parseChoice, parseInteger, renderTable, UsageError, OUTPUT_FORMATS } from './common.js';
import { addConnectionOptions, CHANGE_WORDS, readDefinitionFiles, validationFailure, withClient, type ConnectionOptions } from './definition-commands.js';

const DEFAULT_TIMEOUT_MS = 300_000;

interface TestCommandOptions extends ConnectionOptions {
  filename: string[];
  prune: boolean;
  profiles?: number;
  userId?: string[];
  output: string;
  timeoutMs: number;
}

export function addDefinitionTestCommand(definitions: Command): void {
  addConnectionOptions(
    definitions
      .command('test')
      .description(
        'Replay the stored events of sample profiles against the definitions an apply of the files would leave, and against the ' +
          'current ones, and show which profiles would enter or exit each segment and how many computed trait values would change. ' +
          'Stores nothing. Embedded nodes only.',
      )
      .requiredOption('-f, --filename <path...>', 'definition file, or directory whose .yaml, .yml and .json files are tested in name order (repeatable)')
      .option('--profiles <n>', `number of profiles to test, the first ones in storage order (default ${DEFAULT_TEST_PROFILES}, at most ${MAX_TEST_PROFILES})`, parseInteger('--profiles', 1, MAX_TEST_PROFILES))
      .option('--user-id <id...>', 'test the profiles of these userIds instead of the first ones (repeatable)')
      .option('--prune', 'count the stored definitions that the files do not contain as deleted, as apply --prune would', false)
      .option('--output <format>', 'table, or json: the whole report', parseChoice('--output', OUTPUT_FORMATS), 'table')
      .option('--timeout-ms <ms>', 'how long to wait for the report', parseInteger('--timeout-ms', 1_000, 3_600_000), DEFAULT_TIMEOUT_MS)
      .addHelpText('after', '\nExample:\n  rtcdp definitions test -f data/definitions/ --profiles 1000'),
  ).action((options: TestCommandOptions) => runTest(options));
}

async function runTest(options: TestCommandOptions): Promise<void> {
  const userIds = options.userId ?? [];
  if (options.profiles !== undefined && userIds.length > 0) {
    throw new UsageError('--profiles and --user-id are exclusive: give --profiles to test the first profiles, or --user-id to test those profiles');
  }

  const files = await readDefinitionFiles(options.filename);
  const request: TestDefinitionsRequest = {
    files,
    prune: options.prune,
    profiles: options.profiles,
    identifiers: userIds.map((value) => ({ type: 'user_id', value })),
  };
  const response = await withClient(options, (client, metadata) => callUnary(client.testDefinitions.bind(client), request, metadata, options.timeoutMs));

  if (response.errors.length > 0) throw validationFailure(response.errors, 'nothing was tested');
  const output = options.output === 'json' ? `${JSON.stringify(reportJson(response), null, 2)}\n` : `${reportLines(response).join('\n')}\n`;
  process.stdout.write(output);
}

// ---------------------------------------------------------------------------
// Table output
// ---------------------------------------------------------------------------

function reportLines(response: TestDefinitionsResponse): string[] {
  const lines = [
    `tested ${response.profilesTested} ${response.profilesTested === 1 ? 'profile' : 'profiles'} (${response.eventsReplayed} events replayed) at ${response.evaluatedAt}`,
    `definitions: ${changeSummary(response.results)}`,
  ];
  if (response.historyCut > 0) {
    lines.push(
      `history cut: ${response.historyCut} ${response.historyCut === 1 ? 'profile has' : 'profiles have'} more than ${response.maxHistoryEvents} events, ` +
        `so only the oldest ${response.maxHistoryEvents} were replayed: ${response.historyCutExamples.join(', ')}`,
    );
  }

  lines.push('', ...renderTable([['SEGMENT', 'CHANGE', 'VERSION', 'MEMBERS', 'ENTERED', 'EXITED', 'UNCHANGED', 'ERRORS'], ...response.segments.map(segmentRow)], ''));
  lines.push('', ...renderTable([['COMPUTED TRAIT', 'CHANGE', 'VERSION', 'VALUES CHANGED'], ...response.computedTraits.map(traitRow)], ''));
  if (response.scores.length > 0) {
    lines.push('', ...renderTable([['SCORING MODEL', 'CHANGE', 'VERSION', 'SCORED', 'MEAN', 'VALUES CHANGED', 'ERRORS'], ...response.scores.map(scoreRow)], ''));
    for (const score of response.scores.filter((candidate) => candidate.errorExample !== '')) lines.push(`errors of ${score.name}, for example: ${score.errorExample}`);
  }
  if (response.rules.length > 0) {
    const rows = response.rules.map((rule) => [rule.name, CHANGE_WORDS[rule.change], transitionText(rule.versionBefore, rule.versionAfter), `${rule.chosenBefore} -> ${rule.chosenAfter}`]);
    lines.push('', ...renderTable([['DECISION RULE', 'CHANGE', 'VERSION', 'CHOSEN'], ...rows], ''));
    lines.push(`decisions: the chosen rule changes for ${response.decisionsChanged} of the tested profiles (a Decide call without a channel, before any decision)`);
  }

  for (const segment of response.segments.filter((candidate) => candidate.storedMismatches > 0)) {
    lines.push(
      '',
      `note: ${segment.storedMismatches} of the tested profiles are stored with another membership of ${segment.name} than the replay under the current definitions gives, ` +
        'for example because a time-based exit is still due',
    );
  }

  for (const segment of response.segments.filter((candidate) => candidate.examples.length > 0)) {
    lines.push('', `examples of ${segment.name}:`);
    const rows = segment.examples.map((example) => [
      example.transition === SegmentTransition.SEGMENT_TRANSITION_ENTERED ? 'entered' : 'exited',
      example.profileId,
      valuesText(example.computedBefore ?? {}, example.computedAfter ?? {}),
    ]);
    lines.push(...renderTable(rows));
  }
  return lines;
}

function segmentRow(segment: SegmentTestResult): string[] {
  return [
    segment.name,
    CHANGE_WORDS[segment.change],
    transitionText(segment.versionBefore, segment.versionAfter),
    `${segment.membersBefore} -> ${segment.membersAfter}`,
    String(segment.entered),
    String(segment.exited),
    String(segment.unchanged),
    transitionText(segment.evaluationErrorsBefore, segment.evaluationErrorsAfter),
  ];
}

function traitRow(trait: ComputedTraitTestResult): string[] {
  return [trait.name, CHANGE_WORDS[trait.change], transitionText(trait.versionBefore, trait.versionAfter), String(trait.valuesChanged)];
}

function scoreRow(score: ScoreTestResult): string[] {
  const mean = (value: number | undefined) => (value === undefined ? '-' : value.toPrecision(4));
  return [
    score.name,
    CHANGE_WORDS[score.change],
    transitionText(score.versionBefore, score.versionAfter),
    `${score.scoredBefore} -> ${score.scoredAfter}`,
    `${mean(score.meanBefore)} -> ${mean(score.meanAfter)}`,
    String(score.valuesChanged),
    `${score.evaluationErrorsBefore} -> ${score.evaluationErrorsAfter}`,
  ];
}

/** `3` when both sides are equal, else `3 -> 4`, with `-` for a version 0 (none). */
function transitionText(before: number, after: number): string {
  if (before === after) return String(before);
  return `${before === 0 ? '-' : before} -> ${after === 0 ? '-' : after}`;
}

/** Lists each computed value after the apply, `name=VALUE`, or `name=BEFORE->AFTER` when it changes. */
function valuesText(before: Record<string, JsonValue>, after: Record<string, JsonValue>): string {
  const names = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  if (names.length === 0) return '(no computed traits)';
  return names
    .map((name) => {
      const was = name in before ? valueText(before[name]) : '-';
      const is = name in after ? valueText(after[name]) : '-';
      return was === is ? `${name}=${is}` : `${name}=${was}->${is}`;
    })
    .join(' ');
}

/** Returns a value as JSON text, with numbers to at most 6 decimals, so float sums read as amounts. */
function valueText(value: JsonValue): string {
  return JSON.stringify(value, (_key, field: unknown) => (typeof field === 'number' && !Number.isInteger(field) ? Number(field.toFixed(6)) : field));
}

function changeSummary(results: readonly DefinitionResult[]): string {
  const counts = new Map<string, number>();
  for (const result of results) counts.set(CHANGE_WORDS[result.change], (counts.get(CHANGE_WORDS[result.change]) ?? 0) + 1);
  return ['created', 'updated', 'unchanged', 'deleted']
    .filter((word) => counts.has(word))
    .map((word) => `${counts.get(word)} ${word}`)
    .join(', ');
}

// ---------------------------------------------------------------------------
// JSON output: the response, with changes and transitions as words
// ---------------------------------------------------------------------------

function reportJson(response: TestDefinitionsResponse) {
  return {
    evaluatedAt: response.evaluatedAt,
    profilesTested: response.profilesTested,
    eventsReplayed: response.eventsReplayed,
    maxHistoryEvents: response.maxHistoryEvents,
    historyCut: response.historyCut,
    historyCutExamples: response.historyCutExamples,
    results: response.results.map((result) => ({ ...result, change: CHANGE_WORDS[result.change] })),
    segments: response.segments.map((segment) => ({
      ...segment,
      change: CHANGE_WORDS[segment.change],
      examples: segment.examples.map((example) => ({
        ...example,
        transition: example.transition === SegmentTransition.SEGMENT_TRANSITION_ENTERED ? 'entered' : 'exited',
      })),
    })),
    computedTraits: response.computedTraits.map((trait) => ({ ...trait, change: CHANGE_WORDS[trait.change] })),
    scores: response.scores.map((score) => ({ ...score, change: CHANGE_WORDS[score.change], meanBefore: score.meanBefore ?? null, meanAfter: score.meanAfter ?? null, errorExample: score.errorExample || null })),
    rules: response.rules.map((rule) => ({ ...rule, change: CHANGE_WORDS[rule.change] })),
    decisionsChanged: response.decisionsChanged,
  };
}
