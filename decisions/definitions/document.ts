/**
 * The file format of definitions: YAML or JSON files that contain one or more documents of the form
 * `{ apiVersion: rtcdp/v1, kind, metadata: { name, workspace?, description? }, spec }`.
 * This module parses the files and checks that envelope, and validate.ts checks each kind's spec.
 */
import { isMap, isScalar, isSeq, LineCounter, parseAllDocuments, type Node as YamlNode } from 'yaml';
import type { JsonObject, JsonValue } from '../../profiles/event.js';
import { describe } from '../computed-traits/definition.js';
import type { DefinitionIssue } from './issues.js';

export const API_VERSION = 'rtcdp/v1';

export const DEFINITION_KINDS = ['ComputedTrait', 'Segment', 'DecisionRule', 'ContactPolicy', 'ScoringModel', 'Journey'] as const;
export type DefinitionKind = (typeof DEFINITION_KINDS)[number];


/**
 * Rule for definition names, the same as for computed trait names: a segment condition
 * refers to a computed trait as `computed.<name>`, so a name must be a CEL identifier.
 */
export const DEFINITION_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const NAME_RULE = 'must be 1 to 64 letters, digits or underscores starting with a letter';

/** Maximum length of metadata.description, in characters. */
export const MAX_DESCRIPTION_LENGTH = 1_000;

const DOCUMENT_KEYS = ['apiVersion', 'kind', 'metadata', 'spec'];
const METADATA_KEYS = ['name', 'workspace', 'description'];

/** A definition file as the client sent it. `name` is used only in messages. */
export interface SourceFile {
  name: string;
  content: string;
}

/** A document whose envelope is valid. Its spec is not validated yet. */
export interface DefinitionDocument {
  kind: DefinitionKind;
  name: string;
  /** '' when the document has none. */
  description: string;
  spec: JsonObject;
  location: DocumentLocation;
}

/** The file and position of a document, so that an issue about any of its values can name the file, path and line. */
export class DocumentLocation {
  constructor(
    readonly file: string,
    /** Position among the definitions of the file, counting every item of a top-level list. */
    readonly index: number,
    readonly node: YamlNode | undefined,
    private readonly lines: LineCounter | undefined,
  ) {}

  /** `documents[INDEX]`, the prefix of every path in this document. */
  get path(): string {
    return `documents[${this.index}]`;
  }

  /** Builds the issue for a value at `relativePath` in this document, such as `spec.window.days`. */
  issue(relativePath: string, rule: string): DefinitionIssue {
    const path = relativePath === '' || relativePath.startsWith('[') ? `${this.path}${relativePath}` : `${this.path}.${relativePath}`;
    const offset = offsetOf(this.node, relativePath);
    const position = offset === undefined || this.lines === undefined ? undefined : this.lines.linePos(offset);
    return { file: this.file, path, rule, line: position?.line ?? 0, column: position?.col ?? 0 };
  }
}

export interface ParsedFiles {
  documents: DefinitionDocument[];
  issues: DefinitionIssue[];
}

/**
 * Parses every file and checks each document's envelope. A workspace in metadata must be
 * `workspace`, the workspace of the caller's write key. Returns the documents with a valid
 * envelope and an issue for every problem found, in file order.
 */
export function parseDefinitionFiles(files: readonly SourceFile[], workspace: string): ParsedFiles {
  const documents: DefinitionDocument[] = [];
  const issues: DefinitionIssue[] = [];

  for (const file of files) {
    const parsed = parseFile(file);
    issues.push(...parsed.issues);
    for (const { value, location } of parsed.items) {
      const document = readEnvelope(value, location, workspace, issues);
      if (document !== undefined) documents.push(document);
    }
  }
  return { documents, issues };
}

interface FileItem {
  value: unknown;
  location: DocumentLocation;
}

/**
 * Splits a file into definitions: every document of a YAML stream, and every item of a
 * document that is a list (so a JSON file may hold one object or an array). Empty YAML
 * documents, such as one before a leading `---`, are skipped.
 */
function parseFile(file: SourceFile): { items: FileItem[]; issues: DefinitionIssue[] } {
  const lines = new LineCounter();
  const items: FileItem[] = [];
  const issues: DefinitionIssue[] = [];

  for (const document of parseAllDocuments(file.content, { lineCounter: lines, prettyErrors: false })) {
    const firstError = document.errors[0];
    if (firstError !== undefined) {
      const position = lines.linePos(firstError.pos[0]);
      const message = firstError.message.split('\n')[0];
      issues.push({
        file: file.name,
        path: '',
        rule: `is not valid YAML or JSON: ${message} (at line ${position.line}, column ${position.col})`,
        line: position.line,
        column: position.col,
      });
      continue;
    }

    const contents = document.contents;
    if (contents === null || (isScalar(contents) && contents.value === null)) continue;

    let value: unknown;
    try {
      value = document.toJS({ maxAliasCount: 100 }) as unknown;
    } catch (error) {
      // The yaml package (2.9.1) throws ReferenceError for an alias it will not expand, such as one
      // whose expansion passes maxAliasCount (a "billion laughs" document).
      if (!(error instanceof ReferenceError)) throw error;
      const position = lines.linePos(contents.range?.[0] ?? 0);
      issues.push({
        file: file.name,
        path: '',
        rule: `is not valid YAML or JSON: ${error.message} (at line ${position.line}, column ${position.col})`,
        line: position.line,
        column: position.col,
      });
      continue;
    }
    if (isSeq(contents) && Array.isArray(value)) {
      contents.items.forEach((node, i) => items.push({ value: value[i], location: new DocumentLocation(file.name, items.length, node as YamlNode, lines) }));
    } else {
      items.push({ value, location: new DocumentLocation(file.name, items.length, contents, lines) });
    }
  }

  if (items.length === 0 && issues.length === 0) {
    issues.push({ file: file.name, path: '', rule: 'contains no definitions. Each document needs apiVersion, kind, metadata and spec', line: 0, column: 0 });
  }
  return { items, issues };
}

/** Checks the envelope of one document and returns it, or adds its issues and returns undefined. */
function readEnvelope(value: unknown, location: DocumentLocation, workspace: string, issues: DefinitionIssue[]): DefinitionDocument | undefined {
  const issueCount = issues.length;
  if (!isPlainObject(value)) {
    issues.push(location.issue('', `must be an object with apiVersion, kind, metadata and spec, got ${describe(value)}`));
    return undefined;
  }

  for (const key of Object.keys(value)) {
    if (!DOCUMENT_KEYS.includes(key)) issues.push(location.issue(memberPath('', key), `is not a field. The fields are ${DOCUMENT_KEYS.join(', ')}`));
  }

  if (value.apiVersion === undefined) issues.push(location.issue('apiVersion', `is missing. Use apiVersion: ${API_VERSION}`));
  else if (value.apiVersion !== API_VERSION) issues.push(location.issue('apiVersion', `must be ${API_VERSION}, got ${describe(value.apiVersion)}`));

  const kind = readKind(value.kind, location, issues);
  const metadata = readMetadata(value.metadata, location, workspace, issues);

  if (value.spec === undefined) issues.push(location.issue('spec', 'is missing. Give the settings of the definition under spec'));
  else if (!isPlainObject(value.spec)) issues.push(location.issue('spec', `must be an object, got ${describe(value.spec)}`));

  if (issues.length > issueCount || kind === undefined || metadata === undefined) return undefined;
  return { kind, name: metadata.name, description: metadata.description, spec: value.spec as JsonObject, location };
}

function readKind(value: unknown, location: DocumentLocation, issues: DefinitionIssue[]): DefinitionKind | undefined {
  if (value === undefined) {
    issues.push(location.issue('kind', `is missing. Use one of ${DEFINITION_KINDS.join(', ')}`));
    return undefined;
  }
  if ((DEFINITION_KINDS as readonly unknown[]).includes(value)) return value as DefinitionKind;

  issues.push(location.issue('kind', `must be one of ${DEFINITION_KINDS.join(', ')}, got ${describe(value)}`));
  return undefined;
}

function readMetadata(
  value: unknown,
  location: DocumentLocation,
  workspace: string,
  issues: DefinitionIssue[],
): { name: string; description: string } | undefined {
  if (value === undefined) {
    issues.push(location.issue('metadata', 'is missing. Give at least metadata.name'));
    return undefined;
  }
  if (!isPlainObject(value)) {
    issues.push(location.issue('metadata', `must be an object, got ${describe(value)}`));
    return undefined;
  }

  const issueCount = issues.length;
  for (const key of Object.keys(value)) {
    if (!METADATA_KEYS.includes(key)) issues.push(location.issue(memberPath('metadata', key), `is not a field. The fields are ${METADATA_KEYS.join(', ')}`));
  }

  const name = value.name;
  if (name === undefined) issues.push(location.issue('metadata.name', `is missing. It ${NAME_RULE}`));
  else if (typeof name !== 'string' || !DEFINITION_NAME.test(name)) issues.push(location.issue('metadata.name', `${NAME_RULE}, got ${describe(name)}`));

  if (value.workspace !== undefined && value.workspace !== workspace) {
    const rule =
      typeof value.workspace === 'string'
        ? `is ${JSON.stringify(value.workspace)}, but the write key is for workspace ${JSON.stringify(workspace)}. Apply it with the write key of its workspace, or remove metadata.workspace`
        : `must be a workspace name, got ${describe(value.workspace)}`;
    issues.push(location.issue('metadata.workspace', rule));
  }

  const description = value.description ?? '';
  if (typeof description !== 'string' || description.length > MAX_DESCRIPTION_LENGTH) {
    issues.push(location.issue('metadata.description', `must be a string of at most ${MAX_DESCRIPTION_LENGTH} characters, got ${typeof description === 'string' ? `${description.length} characters` : describe(description)}`));
  }

  if (issues.length > issueCount) return undefined;
  return { name: name as string, description: description as string };
}

/** Returns whether a value is an object parsed from YAML or JSON, not a list, null or a tagged value. */
export function isPlainObject(value: unknown): value is Record<string, JsonValue> {
  return typeof value === 'object' && value !== null && [Object.prototype, null].includes(Object.getPrototypeOf(value));
}

/** Appends a key to a path, quoting keys that are not identifiers: `spec["a b"]`. */
export function memberPath(parent: string, key: string): string {
  const member = /^[A-Za-z_$][\w$]*$/.test(key) ? key : `[${JSON.stringify(key)}]`;
  if (parent === '' || member.startsWith('[')) return `${parent}${member}`;
  return `${parent}.${member}`;
}

/**
 * Finds the source offset of the value at `path` (such as `spec.window.days` or
 * `spec["a b"][2]`) below `node`. A path that goes past the values present, such as a
 * missing key, resolves to the deepest value that exists on the way.
 */
function offsetOf(node: YamlNode | undefined, path: string): number | undefined {
  let current = node;
  for (const token of pathTokens(path)) {
    const next = childOf(current, token);
    if (next === undefined) break;
    current = next;
  }
  return current?.range?.[0];
}

function childOf(node: YamlNode | undefined, token: string | number): YamlNode | undefined {
  if (typeof token === 'number') return isSeq(node) ? ((node.items[token] as YamlNode | undefined) ?? undefined) : undefined;
  if (!isMap(node)) return undefined;

  const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === token);
  if (pair === undefined) return undefined;
  // A key without a value (`condition:`) has a null value node, or none at all.
  const value = pair.value as YamlNode | null;
  return value !== null && value.range !== undefined && value.range !== null ? value : (pair.key as YamlNode);
}

/** Splits `a.b[2]["c d"]` into `['a', 'b', 2, 'c d']`. */
export function pathTokens(path: string): Array<string | number> {
  const tokens: Array<string | number> = [];
  const pattern = /(?:^|\.)([A-Za-z_$][\w$]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/g;
  for (const match of path.matchAll(pattern)) {
    if (match[1] !== undefined) tokens.push(match[1]);
    else if (match[2] !== undefined) tokens.push(Number(match[2]));
    else tokens.push(JSON.parse(match[3]) as string);
  }
  return tokens;
}
