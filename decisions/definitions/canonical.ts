/**
 * The canonical form of a definition: its document with object keys sorted, so that key
 * order, YAML or JSON syntax, comments and whitespace do not change its content hash.
 */
import { createHash } from 'node:crypto';
import { createTwoFilesPatch } from 'diff';
import { stringify } from 'yaml';
import type { JsonObject, JsonValue } from '../../profiles/event.js';
import { API_VERSION, type DefinitionKind } from './document.js';

/** The parts of a definition that its content hash covers. The workspace is not one of them. */
export interface DefinitionContent {
  kind: DefinitionKind;
  name: string;
  description: string;
  spec: JsonObject;
}

/** Returns a copy of a JSON value with the keys of every object in code-unit order. */
export function sortKeys<T extends JsonValue>(value: T): T {
  if (Array.isArray(value)) return value.map((item) => sortKeys(item)) as T;
  if (value === null || typeof value !== 'object') return value;

  const sorted: JsonObject = {};
  for (const key of Object.keys(value).sort()) sorted[key] = sortKeys((value as JsonObject)[key]);
  return sorted as T;
}

/** Returns the document of a definition in canonical form, as `definitions get --output json` shows it. */
export function canonicalDocument(content: DefinitionContent, workspace?: string): JsonObject {
  const metadata: JsonObject = { name: content.name };
  if (workspace !== undefined) metadata.workspace = workspace;
  if (content.description !== '') metadata.description = content.description;
  return { apiVersion: API_VERSION, kind: content.kind, metadata, spec: sortKeys(content.spec) };
}

/** Returns the SHA-256 of the canonical JSON of a definition, as 64 hex digits. */
export function contentHash(content: DefinitionContent): string {
  return createHash('sha256').update(JSON.stringify(canonicalDocument(content))).digest('hex');
}

/** Renders documents as one YAML stream that `rtcdp apply` reads back unchanged. */
export function toYaml(documents: readonly JsonObject[]): string {
  return documents.map((document) => stringify(document, { lineWidth: 0 })).join('---\n');
}

/**
 * Returns a unified diff between two renderings of a definition; '' when they are equal.
 * An empty side stands for a definition that does not exist there.
 */
export function unifiedDiff(label: string, current: { text: string; header: string }, proposed: { text: string; header: string }): string {
  if (current.text === proposed.text) return '';
  const patch = createTwoFilesPatch(`a/${label}`, `b/${label}`, current.text, proposed.text, current.header, proposed.header, { context: 3 });
  // The first line is a row of "=" that jsdiff adds before the file headers.
  return patch.replace(/^=+\n/, '');
}
