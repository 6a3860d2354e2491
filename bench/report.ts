/**
 * Output of a benchmark run: progress lines on stderr, the result table on stdout, and the
 * result JSON file with the machine it ran on.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  totalMemoryGiB: number;
  nodeVersion: string;
  platform: string;
  /** 1, 5 and 15 minute load averages. */
  loadAverage: number[];
  date: string;
}

export function machineInfo(): MachineInfo {
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    totalMemoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    nodeVersion: process.version,
    platform: `${os.platform()} ${os.release()}`,
    loadAverage: os.loadavg().map((value) => Math.round(value * 100) / 100),
    date: new Date().toISOString(),
  };
}

const startedAt = performance.now();

/** Writes a progress line to stderr, prefixed with the seconds since the harness started. */
export function progress(message: string): void {
  const seconds = ((performance.now() - startedAt) / 1_000).toFixed(1).padStart(6);
  process.stderr.write(`[${seconds} s] ${message}\n`);
}

export type TableRow = [label: string, value: string];

/** Prints a titled two-column table to stdout. */
export function printTable(title: string, rows: TableRow[]): void {
  const width = Math.max(...rows.map(([label]) => label.length));
  const lines = [title, '-'.repeat(title.length), ...rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`), ''];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Prints a titled table with a header row to stdout, each column padded to its widest cell. */
export function printColumns(title: string, header: string[], rows: string[][]): void {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => (row[column] ?? '').length)));
  const format = (row: string[]) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd();
  const lines = [title, '-'.repeat(title.length), format(header), ...rows.map(format), ''];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Formats a ratio as a percentage with one decimal, or "-" when the denominator is 0. */
export function formatShare(numerator: number, denominator: number): string {
  return denominator > 0 ? `${((100 * numerator) / denominator).toFixed(1)}%` : '-';
}

/** Writes `result` as `DIR/SCENARIO-TIMESTAMP.json` and returns the path. Typed arrays are written as plain arrays. */
export async function writeResultFile(dir: string, scenario: string, result: unknown): Promise<string> {
  await mkdir(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = path.join(dir, `${scenario}-${stamp}.json`);
  await writeFile(file, `${JSON.stringify(result, typedArraysAsLists, 2)}\n`);
  return file;
}

/** The facts of a run that its Markdown summary records besides the result tables. */
export interface RunSummary {
  scenario: string;
  /** The command line, as typed after `npm run bench --`. */
  command: string;
  startedAt: Date;
  finishedAt: Date;
  passed: boolean;
  /** The result tables the scenario printed on stdout. */
  tables: string;
  /** The JSON result file, to link to. */
  resultFile: string;
}

/**
 * Writes the Markdown summary of a run next to its JSON result file: the command, the
 * machine, the times, the outcome and the tables the scenario printed. Returns its path.
 */
export async function writeSummaryFile(summary: RunSummary): Promise<string> {
  const file = summary.resultFile.replace(/\.json$/, '.md');
  const cpus = os.cpus();
  const lines = [
    `# ${summary.scenario}: ${summary.passed ? 'passed' : 'FAILED'}`,
    '',
    `- Command: \`npm run bench -- ${summary.command}\``,
    `- Run: ${summary.startedAt.toISOString()} to ${summary.finishedAt.toISOString()} (${Math.round((summary.finishedAt.getTime() - summary.startedAt.getTime()) / 1000)} s)`,
    `- Machine: ${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${formatMiB(os.totalmem())} memory, ${os.type()} ${os.release()}, Node ${process.version}`,
    `- 1-minute load average at the end: ${os.loadavg()[0].toFixed(2)}`,
    `- Result file: \`${path.basename(summary.resultFile)}\``,
    '',
    '```',
    summary.tables.trimEnd(),
    '```',
    '',
  ];
  await writeFile(file, lines.join('\n'));
  return file;
}

function typedArraysAsLists(_key: string, value: unknown): unknown {
  return ArrayBuffer.isView(value) && !(value instanceof DataView) ? Array.from(value as unknown as ArrayLike<number>) : value;
}

export function formatCount(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

export function formatRate(perSecond: number): string {
  return `${formatCount(perSecond)}/s`;
}

export function formatMiB(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** Formats milliseconds: whole from 100 ms, with one decimal from 10 ms, and with two below. */
export function formatMs(ms: number): string {
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
