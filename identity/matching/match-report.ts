/**
 * The report of a batch run: report.json (every figure and the model, which `--model` can
 * read back), report.md (the same for people), pairs.csv (every match and suggestion to
 * review) and score-distribution.svg.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BatchMatchResult } from './batch-match.js';
import { weightOf } from './fellegi-sunter.js';
import type { DecidedPair } from './pair-decisions.js';
import { renderScoreChart } from './score-chart.js';

export const REPORT_VERSION = 1;

export interface ReportContext {
  /** The command line that produced the run, for the record. */
  command: string;
  workers: number;
  pairsPerTask: number;
}

export interface ReportFiles {
  json: string;
  markdown: string;
  pairs: string;
  chart: string;
}

export async function writeMatchReport(dir: string, result: BatchMatchResult, context: ReportContext): Promise<ReportFiles> {
  await mkdir(dir, { recursive: true });
  const files: ReportFiles = {
    json: path.join(dir, 'report.json'),
    markdown: path.join(dir, 'report.md'),
    pairs: path.join(dir, 'pairs.csv'),
    chart: path.join(dir, 'score-distribution.svg'),
  };
  const report = reportObject(result, context);

  await writeFile(files.json, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(files.markdown, renderMarkdown(result, context));
  await writeFile(files.pairs, renderPairsCsv(result));
  await writeFile(files.chart, renderChart(result));
  return files;
}

/** Comparisons per second of the comparison and estimation stages, which run in the workers. */
export function comparisonsPerSecond(result: BatchMatchResult): number {
  const seconds = (result.timingsMs.compare + result.timingsMs.estimate) / 1_000;
  return seconds > 0 ? result.comparisons / seconds : 0;
}

function reportObject(result: BatchMatchResult, context: ReportContext) {
  return {
    version: REPORT_VERSION,
    createdAt: new Date().toISOString(),
    command: context.command,
    mode: result.mode,
    files: result.files,
    fields: result.schema.fields.map((field) => ({ name: field.name, kind: field.kind })),
    settings: {
      thresholds: result.thresholds,
      blockingRules: result.blockingRules,
      maxBlockSize: result.maxBlockSize,
      workers: context.workers,
      pairsPerTask: context.pairsPerTask,
    },
    blocking: result.blocking,
    pairs: {
      matches: result.decisions.matches.length,
      reviews: result.decisions.reviews.length,
      droppedByOneToOne: result.decisions.droppedByOneToOne,
    },
    evaluation: result.evaluation ?? null,
    bestThreshold: result.decisions.bestThreshold ?? null,
    estimation: result.estimation ?? null,
    model: result.model,
    histogram: result.decisions.histogram,
    comparisons: result.comparisons,
    comparisonsPerSecond: Math.round(comparisonsPerSecond(result)),
    timingsMs: Object.fromEntries(Object.entries(result.timingsMs).map(([stage, ms]) => [stage, Math.round(ms)])),
  };
}

function renderMarkdown(result: BatchMatchResult, context: ReportContext): string {
  const { decisions, evaluation } = result;
  const lines = [
    `# Person matching report: ${result.mode}`,
    '',
    `- Command: \`${context.command}\``,
    ...result.files.map((file) => `- File: \`${file.file}\`, ${formatCount(file.records)} records`),
    `- Fields compared: ${result.schema.fields.map((field) => field.name).join(', ')}`,
    `- Blocking rules: ${result.blockingRules.map((rule) => `\`${rule}\``).join(', ')} (blocks over ${formatCount(result.maxBlockSize)} records skipped: ${result.blocking.oversizedBlocks.reduce((sum, count) => sum + count, 0)})`,
    `- Candidate pairs: ${formatCount(result.blocking.candidatePairs)}; comparisons in ${context.workers} workers, random pairs included: ${formatCount(result.comparisons)} (${formatCount(comparisonsPerSecond(result))} per second)`,
    `- Matches (probability >= ${result.thresholds.minMatchProbability}): ${formatCount(decisions.matches.length)}; to review (>= ${result.thresholds.minReviewProbability}): ${formatCount(decisions.reviews.length)}${decisions.droppedByOneToOne > 0 ? `; dropped by one-to-one: ${formatCount(decisions.droppedByOneToOne)}` : ''}`,
    `- Time: ${Object.entries(result.timingsMs).map(([stage, ms]) => `${stage} ${(ms / 1_000).toFixed(2)} s`).join(', ')}`,
    '',
  ];

  if (evaluation !== undefined) {
    lines.push(
      '## Against the ground truth',
      '',
      '| true pairs | found by blocking | true positives | false positives | false negatives | precision | recall | F1 |',
      '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      `| ${formatCount(evaluation.truePairs)} | ${formatCount(evaluation.truePairsInCandidates)} | ${formatCount(evaluation.truePositives)} | ${formatCount(evaluation.falsePositives)} | ${formatCount(evaluation.falseNegatives)} | ${evaluation.precision.toFixed(4)} | ${evaluation.recall.toFixed(4)} | ${evaluation.f1.toFixed(4)} |`,
      '',
      `True pairs among the suggestions to review: ${formatCount(decisions.trueReviews)}.`,
    );
    if (decisions.bestThreshold !== undefined) {
      const best = decisions.bestThreshold;
      lines.push(`The highest F1 over thresholds was ${best.f1.toFixed(4)} (precision ${best.precision.toFixed(4)}, recall ${best.recall.toFixed(4)}) at match weight ${best.weight}, probability ${best.probability.toPrecision(6)}.`);
    }
    lines.push('');
  }

  lines.push('## Estimated parameters', '', `lambda (prior probability that a candidate pair is a match): ${result.model.lambda.toPrecision(4)}`, '');
  if (result.estimation !== undefined) {
    lines.push(`u from: ${result.estimation.uEstimation}${result.estimation.randomPairs > 0 ? ` (${formatCount(result.estimation.randomPairs)} random pairs)` : ''}`, '', '| EM run on | pairs | estimated | iterations | converged |', '| --- | ---: | --- | ---: | --- |');
    for (const run of result.estimation.runs) lines.push(`| ${run.pairsFrom} | ${formatCount(run.pairs)} | ${run.estimated} | ${run.iterations} | ${run.converged ? 'yes' : 'no'} |`);
    lines.push('');
  } else {
    lines.push('The parameters were given with --model, not estimated.', '');
  }
  lines.push('| field | level | m | u | weight (log2 m/u) |', '| --- | --- | ---: | ---: | ---: |');
  for (const field of result.model.fields) {
    for (const level of field.levels) lines.push(`| ${field.name} | ${level.label} | ${level.m.toPrecision(4)} | ${level.u.toPrecision(4)} | ${Math.log2(level.m / level.u).toFixed(2)} |`);
  }
  lines.push('', '## Score distribution', '', '![score distribution](score-distribution.svg)', '');
  return lines.join('\n');
}

function renderPairsCsv(result: BatchMatchResult): string {
  const withTruth = result.evaluation !== undefined;
  const header = ['id_a', 'id_b', 'match_weight', 'match_probability', 'decision', ...(withTruth ? ['true_match'] : [])].join(',');
  const row = (pair: DecidedPair, decision: string) =>
    [csvValue(pair.a), csvValue(pair.b), pair.weight.toFixed(4), pair.probability.toPrecision(6), decision, ...(withTruth ? [String(pair.trueMatch)] : [])].join(',');
  return [header, ...result.decisions.matches.map((pair) => row(pair, 'match')), ...result.decisions.reviews.map((pair) => row(pair, 'review')), ''].join('\n');
}

function renderChart(result: BatchMatchResult): string {
  return renderScoreChart({
    title: `Match weights of the candidate pairs (${result.files.map((file) => path.basename(file.file)).join(' × ')})`,
    histogram: result.decisions.histogram,
    markers: [
      { weight: weightOf(result.thresholds.minMatchProbability), label: 'match' },
      { weight: weightOf(result.thresholds.minReviewProbability), label: 'review' },
    ],
  });
}

function csvValue(value: string): string {
  return /[",\n\r]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

function formatCount(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}
