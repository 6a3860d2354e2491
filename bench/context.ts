/**
 * The run context that the harness gives every scenario: the child process registry, and
 * the directories for data, result files and charts.
 */
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcesses } from './processes.js';
import { progress } from './report.js';

export interface RunContext {
  processes: ChildProcesses;
  resultsDir: string;
  /** Directory for SVG charts, or null to write none (the smoke run). */
  chartsDir: string | null;
  /** Parent of the run's RocksDB data directories, removed at the end unless keepData. */
  dataRoot: string;
  keepData: boolean;
  seed: number;
}

export async function createDataRoot(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'rtcdp-bench-'));
}

export async function removeDataRoot(context: RunContext): Promise<void> {
  if (context.keepData) {
    progress(`kept data directories under ${context.dataRoot}`);
    return;
  }
  await rm(context.dataRoot, { recursive: true, force: true });
}

export function dataDir(context: RunContext, name: string): string {
  return path.join(context.dataRoot, name);
}

/** Writes an SVG chart under chartsDir and returns its path, or returns null when charts are off. */
export async function writeChart(context: RunContext, name: string, svg: string): Promise<string | null> {
  if (context.chartsDir === null) return null;
  await mkdir(context.chartsDir, { recursive: true });
  const file = path.join(context.chartsDir, name);
  await writeFile(file, svg);
  progress(`wrote chart ${file}`);
  return file;
}
