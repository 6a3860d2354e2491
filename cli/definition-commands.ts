/**
 * `rtcdp apply`, `rtcdp definitions get` and `rtcdp definitions diff`: manage a workspace's
 * computed traits and segments as YAML or JSON files, through DefinitionService.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { describeFsError } from '../common/fs-errors.js';
import { canonicalDocument, toYaml } from '../decisions/definitions/canonical.js';
import { DEFINITION_KINDS, type DefinitionKind } from '../decisions/definitions/document.js';
import type { DefinitionIssue } from '../decisions/definitions/issues.js';
import {
  DefinitionChange,
  type Definition,
  type DefinitionResult,
  type DefinitionServiceClient,
  type SourceFile,
  type ValidationError,
} from '../proto/gen/rtcdp/v1/definitions.js';
import { callUnary, createDefinitionClient, describeCallFailure, writeKeyMetadata } from './client.js';
import { CommandFailure, UsageError, parseChoice, parseInteger, parseServer, DEFAULT_SERVER, renderTable } from './common.js';
import { addDefinitionTestCommand } from './definition-test-command.js';

const DEFINITION_FILE_EXTENSIONS = ['.yaml', '.yml', '.json'];
const GET_OUTPUT_FORMATS = ['table', 'json', 'yaml'];

/** Words accepted for each kind on the command line, compared in lower case without "-" and "_". */
const KIND_ALIASES: Record<string, DefinitionKind> = {
  computedtrait: 'ComputedTrait',
  computedtraits: 'ComputedTrait',
  segment: 'Segment',
  segments: 'Segment',
  decisionrule: 'DecisionRule',
  decisionrules: 'DecisionRule',
  rule: 'DecisionRule',
  rules: 'DecisionRule',
  contactpolicy: 'ContactPolicy',
  contactpolicies: 'ContactPolicy',
  scoringmodel: 'ScoringModel',
  scoringmodels: 'ScoringModel',
  model: 'ScoringModel',
  models: 'ScoringModel',
  journey: 'Journey',
  journeys: 'Journey',
};

export const CHANGE_WORDS: Record<DefinitionChange, string> = {
  [DefinitionChange.DEFINITION_CHANGE_UNSPECIFIED]: 'unknown',
  [DefinitionChange.DEFINITION_CHANGE_CREATED]: 'created',
  [DefinitionChange.DEFINITION_CHANGE_UPDATED]: 'updated',
  [DefinitionChange.DEFINITION_CHANGE_UNCHANGED]: 'unchanged',
  [DefinitionChange.DEFINITION_CHANGE_DELETED]: 'deleted',
};

export interface ConnectionOptions {
  server: string;
  writeKey?: string;
}

interface ApplyCommandOptions extends ConnectionOptions {
  filename: string[];
  dryRun: boolean;
  prune: boolean;
}

interface DiffCommandOptions extends ConnectionOptions {
  filename: string[];
  prune: boolean;
}

interface GetCommandOptions extends ConnectionOptions {
  output: string;
  definitionVersion?: number;
  includeDeleted: boolean;
}

export function addDefinitionCommands(program: Command): void {
  addConnectionOptions(
    program
      .command('apply')
      .description(
        'Validate definition files (computed traits, segments, decision rules, contact policies, scoring models and journeys, YAML or JSON) as one set and store a new version of each ' +
          'definition that changed. An invalid set stores nothing; every error is listed with its file and path.',
      )
      .requiredOption('-f, --filename <path...>', 'definition file, or directory whose .yaml, .yml and .json files are applied in name order (repeatable)')
      .option('--dry-run', 'validate and print what would change, without storing anything', false)
      .option('--prune', "also delete the workspace's stored definitions that the files do not contain", false)
      .addHelpText('after', '\nExample:\n  rtcdp apply -f data/definitions/ --dry-run'),
  ).action((options: ApplyCommandOptions) => runApply(options));

  const definitions = program.command('definitions').description("Read and compare a workspace's definitions.");

  addConnectionOptions(
    definitions
      .command('get')
      .description('List the latest version of every definition, of one kind, or show one definition and its versions.')
      .argument('[kind]', `${DEFINITION_KINDS.join(' or ')} (also lower case or plural, such as segments)`)
      .argument('[name]', 'name of one definition')
      // Not --version, which the root command takes to print the rtcdp version.
      .option('--definition-version <n>', 'with a name: show this version instead of the latest', parseInteger('--definition-version', 1, 2 ** 32 - 1))
      .option('--include-deleted', 'also list definitions deleted by apply --prune', false)
      .option(
        '--output <format>',
        'table, or json or yaml: the definitions as documents that rtcdp apply accepts',
        parseChoice('--output', GET_OUTPUT_FORMATS),
        'table',
      ),
  ).action((kind: string | undefined, name: string | undefined, options: GetCommandOptions) => runGet(kind, name, options));

  addConnectionOptions(
    definitions
      .command('diff')
      .description('Show what rtcdp apply would change: a unified diff of each definition\'s canonical YAML against the stored version.')
      .requiredOption('-f, --filename <path...>', 'definition file, or directory whose .yaml, .yml and .json files are compared in name order (repeatable)')
      .option('--prune', 'also show the stored definitions that apply --prune would delete', false),
  ).action((options: DiffCommandOptions) => runDiff(options));

  addDefinitionTestCommand(definitions);
}

export function addConnectionOptions(command: Command): Command {
  return command
    .option('--server <host:port>', 'address of the rtcdp node', parseServer, DEFAULT_SERVER)
    .option('--write-key <key>', 'write key of the workspace (default: none, which a dev-mode node maps to "default")');
}

// ---------------------------------------------------------------------------
// rtcdp apply
// ---------------------------------------------------------------------------

async function runApply(options: ApplyCommandOptions): Promise<void> {
  const files = await readDefinitionFiles(options.filename);
  const response = await withClient(options, (client, metadata) =>
    callUnary(client.apply.bind(client), { files, dryRun: options.dryRun, prune: options.prune }, metadata),
  );

  if (response.errors.length > 0) throw validationFailure(response.errors, 'nothing was applied');

  const rows = response.results.map((result) => [CHANGE_WORDS[result.change], result.kind, result.name, versionText(result), sourceText(result)]);
  const lines = [...renderTable([['CHANGE', 'KIND', 'NAME', 'VERSION', 'SOURCE'], ...rows], ''), '', summaryLine(response.results, options.dryRun)];
  process.stdout.write(`${lines.join('\n')}\n`);
}

function versionText(result: DefinitionResult): string {
  if (result.change === DefinitionChange.DEFINITION_CHANGE_UNCHANGED || result.previousVersion === 0) return String(result.version);
  return `${result.previousVersion} -> ${result.version}`;
}

function sourceText(result: DefinitionResult): string {
  return result.file === '' ? '-' : `${result.file} ${result.path}`;
}

function summaryLine(results: readonly DefinitionResult[], dryRun: boolean): string {
  const counts = new Map<string, number>();
  for (const result of results) counts.set(CHANGE_WORDS[result.change], (counts.get(CHANGE_WORDS[result.change]) ?? 0) + 1);
  const parts = ['created', 'updated', 'unchanged', 'deleted'].filter((word) => counts.has(word)).map((word) => `${counts.get(word)} ${word}`);
  const prefix = dryRun ? 'dry run, nothing was stored' : 'applied';
  return `${prefix}: ${results.length} ${results.length === 1 ? 'definition' : 'definitions'} (${parts.join(', ')})`;
}

// ---------------------------------------------------------------------------
// rtcdp definitions diff
// ---------------------------------------------------------------------------

async function runDiff(options: DiffCommandOptions): Promise<void> {
  const files = await readDefinitionFiles(options.filename);
  const response = await withClient(options, (client, metadata) => callUnary(client.diff.bind(client), { files, prune: options.prune }, metadata));

  if (response.errors.length > 0) throw validationFailure(response.errors, 'nothing was compared');

  const output: string[] = [];
  const changed = response.diffs.filter((diff) => diff.unifiedDiff !== '');
  for (const diff of changed) output.push(diff.unifiedDiff.endsWith('\n') ? diff.unifiedDiff : `${diff.unifiedDiff}\n`);

  const results = response.diffs.flatMap((diff) => (diff.result === undefined ? [] : [diff.result]));
  const count = (change: DefinitionChange) => results.filter((result) => result.change === change).length;
  const summary = [
    `${count(DefinitionChange.DEFINITION_CHANGE_CREATED)} to create`,
    `${count(DefinitionChange.DEFINITION_CHANGE_UPDATED)} to update`,
    `${count(DefinitionChange.DEFINITION_CHANGE_UNCHANGED)} unchanged`,
  ];
  if (options.prune) summary.push(`${count(DefinitionChange.DEFINITION_CHANGE_DELETED)} to delete`);
  output.push(`${summary.join(', ')}\n`);
  process.stdout.write(output.join(changed.length > 0 ? '\n' : ''));
}

// ---------------------------------------------------------------------------
// rtcdp definitions get
// ---------------------------------------------------------------------------

async function runGet(kindArgument: string | undefined, name: string | undefined, options: GetCommandOptions): Promise<void> {
  const kind = kindArgument === undefined ? undefined : parseKind(kindArgument);
  if (options.definitionVersion !== undefined && name === undefined) {
    throw new UsageError('--definition-version needs a kind and a name, such as: rtcdp definitions get Segment vip --definition-version 2');
  }

  if (kind !== undefined && name !== undefined) {
    const response = await withClient(options, (client, metadata) =>
      callUnary(client.getDefinition.bind(client), { kind, name, version: options.definitionVersion ?? 0 }, metadata),
    );
    if (response.definition === undefined) throw new CommandFailure(`the server returned no definition for ${kind} ${name}`);
    printDefinition(response.definition, response.versions, options.output);
    return;
  }

  const response = await withClient(options, (client, metadata) =>
    callUnary(client.listDefinitions.bind(client), { kind: kind ?? '', includeDeleted: options.includeDeleted }, metadata),
  );
  printDefinitionList(response.definitions, options.output);
}

function printDefinitionList(definitions: readonly Definition[], output: string): void {
  if (output !== 'table') {
    printDocuments(definitions.filter((definition) => !definition.deleted), output);
    return;
  }

  if (definitions.length === 0) {
    process.stdout.write('no definitions\n');
    return;
  }
  const rows = definitions.map((definition) => [
    definition.kind,
    definition.name,
    String(definition.version),
    definition.deleted ? 'deleted' : definition.contentHash.slice(0, 12),
    definition.appliedAt,
    definition.description || '-',
  ]);
  process.stdout.write(`${renderTable([['KIND', 'NAME', 'VERSION', 'HASH', 'APPLIED AT', 'DESCRIPTION'], ...rows], '').join('\n')}\n`);
}

function printDefinition(definition: Definition, versions: readonly Definition[], output: string): void {
  if (output !== 'table') {
    if (definition.deleted) throw new CommandFailure(`${definition.kind} ${definition.name} version ${definition.version} marks its deletion and has no document; pick an earlier --definition-version`);
    printDocuments([definition], output);
    return;
  }

  const lines = [
    ...renderTable(
      [
        ['kind', definition.kind],
        ['name', definition.name],
        ['workspace', definition.workspace],
        ['version', `${definition.version}${definition.deleted ? ' (deleted)' : ''}`],
        ['content hash', definition.contentHash || '-'],
        ['applied at', definition.appliedAt],
        ['source', definition.sourceFile === '' ? '-' : `${definition.sourceFile} ${definition.sourcePath}`],
        ['description', definition.description || '-'],
      ],
      '',
    ),
    '',
    'spec:',
    ...(definition.deleted ? ['  (deleted)'] : toYaml([definition.spec ?? {}]).trimEnd().split('\n').map((line) => `  ${line}`)),
    '',
    'versions:',
    ...renderTable([
      ['VERSION', 'HASH', 'APPLIED AT'],
      ...versions.map((version) => [String(version.version), version.deleted ? 'deleted' : version.contentHash.slice(0, 12), version.appliedAt]),
    ]),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Prints definitions as documents that `rtcdp apply` accepts: a YAML stream or a JSON array. */
function printDocuments(definitions: readonly Definition[], output: string): void {
  const documents = definitions.map((definition) =>
    canonicalDocument({ kind: definition.kind as DefinitionKind, name: definition.name, description: definition.description, spec: definition.spec ?? {} }, definition.workspace),
  );
  if (output === 'json') process.stdout.write(`${JSON.stringify(documents, null, 2)}\n`);
  else process.stdout.write(documents.length === 0 ? '' : toYaml(documents));
}

function parseKind(value: string): DefinitionKind {
  const kind = KIND_ALIASES[value.toLowerCase().replace(/[-_]/g, '')];
  if (kind === undefined) throw new UsageError(`invalid kind "${value}": expected one of ${DEFINITION_KINDS.join(', ')}`);
  return kind;
}

// ---------------------------------------------------------------------------
// Files, calls and errors
// ---------------------------------------------------------------------------

/**
 * Reads every file to send. A directory contributes its .yaml, .yml and .json files (not its
 * subdirectories) in code-unit order of their names. Each file is named as the user would
 * find it: the path given, or the directory joined with the file name.
 */
export async function readDefinitionFiles(paths: readonly string[], option = '-f'): Promise<SourceFile[]> {
  const files: SourceFile[] = [];
  for (const given of paths) {
    let isDirectory: boolean;
    try {
      isDirectory = (await stat(given)).isDirectory();
    } catch (error) {
      throw new UsageError(`cannot read ${option} ${given}: ${describeFsError(error)}`);
    }

    if (!isDirectory) {
      files.push({ name: given, content: await readFile(given, 'utf8') });
      continue;
    }

    const entries = await readdir(given, { withFileTypes: true });
    const names = entries
      .filter((entry) => entry.isFile() && DEFINITION_FILE_EXTENSIONS.includes(path.extname(entry.name).toLowerCase()))
      .map((entry) => entry.name)
      .sort();
    if (names.length === 0) throw new UsageError(`directory ${given} has no ${DEFINITION_FILE_EXTENSIONS.join(', ')} files`);
    for (const name of names) {
      const file = path.join(given, name);
      files.push({ name: file, content: await readFile(file, 'utf8') });
    }
  }
  return files;
}

export async function withClient<T>(options: ConnectionOptions, call: (client: DefinitionServiceClient, metadata: ReturnType<typeof writeKeyMetadata>) => Promise<T>): Promise<T> {
  const client = createDefinitionClient(options.server);
  try {
    return await call(client, writeKeyMetadata(options.writeKey));
  } catch (error) {
    throw describeCallFailure(error, options.server, 'DefinitionService');
  } finally {
    client.close();
  }
}

/** Builds the failure for a set that an in-process apply rejected, in the format of validationFailure. */
export function definitionIssuesFailure(issues: readonly DefinitionIssue[], outcome: string): CommandFailure {
  return validationFailure(
    issues.map((issue) => ({ file: issue.file, path: issue.path, message: issue.rule, line: issue.line, column: issue.column })),
    outcome,
  );
}

/**
 * Builds the failure for an invalid set: a first line with the count, then one line per
 * error as FILE:LINE:COLUMN: PATH: MESSAGE, the form editors and terminals link to the
 * place. LINE:COLUMN is left out where the position is unknown, and PATH where the whole
 * file is at fault.
 */
export function validationFailure(errors: readonly ValidationError[], outcome: string): CommandFailure {
  const lines = errors.map((error) => {
    const place = error.line > 0 ? `${error.file}:${error.line}:${error.column}` : error.file;
    return error.path === '' ? `${place}: ${error.message}` : `${place}: ${error.path}: ${error.message}`;
  });
  const count = `${errors.length} validation ${errors.length === 1 ? 'error' : 'errors'}`;
  // reportError prefixes the first line with "rtcdp: "; the others get the same prefix here.
  return new CommandFailure([`${count}, ${outcome}:`, ...lines].join('\nrtcdp: '));
}

