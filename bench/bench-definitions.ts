/**
 * Definition files for the scenarios that take `--definitions`: read them as `rtcdp apply -f`
 * does, and apply them to the node's workspace before any load, so every profile is
 * evaluated under them from its first event.
 */
import path from 'node:path';
import { readDefinitionFiles } from '../cli/definition-commands.js';
import type { NodeHost } from './children.js';
import { BENCH_DIR } from './processes.js';
import { progress } from './report.js';

/** The bench definition set: computed traits, segments, decision rules and a contact policy for the events of events.ts. */
export const BENCH_DEFINITIONS_DIR = path.join(BENCH_DIR, 'definitions');

export interface AppliedDefinitions {
  /** The paths given, files or directories. */
  paths: string[];
  /** Every file read, in the order applied. */
  files: string[];
  /** Definitions in the set. */
  definitions: number;
}

/** Applies the definition files under `paths` to the node's workspace; returns null when `paths` is empty. */
export async function applyDefinitions(node: NodeHost, paths: readonly string[]): Promise<AppliedDefinitions | null> {
  if (paths.length === 0) return null;

  const files = await readDefinitionFiles(paths, '--definitions');
  const definitions = await node.applyDefinitions(files);
  progress(`applied ${definitions} definitions from ${files.map((file) => path.relative(process.cwd(), file.name) || file.name).join(', ')}`);
  return { paths: [...paths], files: files.map((file) => file.name), definitions };
}
