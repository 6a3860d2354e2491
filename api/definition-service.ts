import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../common/logger.js';
import { assertWorkspaceName } from '../cluster/arguments.js';
import { InvalidArgumentError, UnsupportedOperationError } from '../cluster/errors.js';
import type { ServingNode } from '../cluster/serving-node.js';
import { DefinitionRegistry, type DefinitionChange as Change, type DefinitionResult as Result } from '../decisions/definitions/definition-registry.js';
import type { DefinitionStore, DefinitionVersion } from '../decisions/definitions/definition-store.js';
import { DEFINITION_KINDS, type DefinitionKind, type SourceFile } from '../decisions/definitions/document.js';
import type { DefinitionIssue } from '../decisions/definitions/issues.js';
import type { ComputedTraitComparison, DefinitionComparison, SegmentComparison, SegmentExample } from '../decisions/evaluation/definition-test.js';
import {
  ApplyRequest,
  DefinitionChange,
  DefinitionServiceService,
  DiffRequest,
  GetDefinitionRequest,
  ListDefinitionsRequest,
  SegmentTransition,
  TestDefinitionsRequest,
  type ApplyResponse,
  type ComputedTraitTestResult,
  type SegmentTestExample,
  type SegmentTestResult,
  type TestDefinitionsResponse,
  type Definition,
  type DefinitionResult,
  type DiffResponse,
  type GetDefinitionResponse,
  type ListDefinitionsResponse,
  type ValidationError,
} from '../proto/gen/rtcdp/v1/definitions.js';
import { workspaceOf, type AuthOptions } from './auth.js';
import { toServiceError } from './status.js';
import { assertWellFormed, strictDeserializer, type MalformedRequest } from './strict-decoding.js';

/** DefinitionService with strict request decoding. */
export const definitionServiceDefinition = {
  ...DefinitionServiceService,
  apply: { ...DefinitionServiceService.apply, requestDeserialize: strictDeserializer(ApplyRequest, 'rtcdp.v1.ApplyRequest') },
  listDefinitions: {
    ...DefinitionServiceService.listDefinitions,
    requestDeserialize: strictDeserializer(ListDefinitionsRequest, 'rtcdp.v1.ListDefinitionsRequest'),
  },
  getDefinition: { ...DefinitionServiceService.getDefinition, requestDeserialize: strictDeserializer(GetDefinitionRequest, 'rtcdp.v1.GetDefinitionRequest') },
  diff: { ...DefinitionServiceService.diff, requestDeserialize: strictDeserializer(DiffRequest, 'rtcdp.v1.DiffRequest') },
  testDefinitions: {
    ...DefinitionServiceService.testDefinitions,
    requestDeserialize: strictDeserializer(TestDefinitionsRequest, 'rtcdp.v1.TestDefinitionsRequest'),
  },
};

/** Dry-runs definitions on stored profiles: the node's testDefinitions, which only embedded nodes have. */
export type DefinitionTester = NonNullable<ServingNode['testDefinitions']>;

const CHANGE: Record<Change, DefinitionChange> = {
  created: DefinitionChange.DEFINITION_CHANGE_CREATED,
  updated: DefinitionChange.DEFINITION_CHANGE_UPDATED,
  unchanged: DefinitionChange.DEFINITION_CHANGE_UNCHANGED,
  deleted: DefinitionChange.DEFINITION_CHANGE_DELETED,
};

export function createDefinitionService(store: DefinitionStore, auth: AuthOptions, logger: Logger, tester?: DefinitionTester): UntypedServiceImplementation {
  const log = logger.child({ service: 'DefinitionService' });
  const registry = new DefinitionRegistry(store);

  /** Runs a handler and sends its response, or its error as a gRPC status. */
  function handle<Request, Response>(method: string, work: (request: Request, workspace: string, signal: AbortSignal) => Promise<Response>) {
    return (call: ServerUnaryCall<Request | MalformedRequest, Response>, callback: sendUnaryData<Response>) => {
      const cancelled = new AbortController();
      call.on('cancelled', () => cancelled.abort());
      void (async () => {
        const request = assertWellFormed(call.request);
        const workspace = workspaceOf(call.metadata, auth);
        // Definition keys contain the workspace as it is, so it must be a valid name.
        assertWorkspaceName(workspace);
        return work(request, workspace, cancelled.signal);
      })().then(
        (response) => callback(null, response),
        (error) => callback(toServiceError(error, log, { method })),
      );
    };
  }

  return {
    apply: handle<ApplyRequest, ApplyResponse>('Apply', async (request, workspace) => {
      const outcome = await registry.apply(workspace, requireFiles(request.files), { dryRun: request.dryRun, prune: request.prune });
      if (outcome.issues.length === 0 && !request.dryRun) {
        const changed = outcome.results.filter((result) => result.change !== 'unchanged');
        if (changed.length > 0) log.info({ workspace, changed: changed.map((result) => `${result.kind}/${result.name}@${result.version}`) }, 'applied definitions');
      }
      return { errors: outcome.issues.map(toValidationError), results: outcome.results.map(toResult), dryRun: request.dryRun };
    }),

    listDefinitions: handle<ListDefinitionsRequest, ListDefinitionsResponse>('ListDefinitions', async (request, workspace) => {
      const kind = request.kind === '' ? undefined : parseKind(request.kind);
      const versions = await registry.list(workspace, { kind, includeDeleted: request.includeDeleted });
      return { definitions: versions.map((version) => toDefinition(version, true)) };
    }),

    getDefinition: handle<GetDefinitionRequest, GetDefinitionResponse>('GetDefinition', async (request, workspace) => {
      if (request.name === '') throw new InvalidArgumentError('name is required: set the name of the definition');
      const found = await registry.get(workspace, parseKind(request.kind), request.name, request.version === 0 ? undefined : request.version);
      return { definition: toDefinition(found.definition, true), versions: found.versions.map((version) => toDefinition(version, false)) };
    }),

    diff: handle<DiffRequest, DiffResponse>('Diff', async (request, workspace) => {
      const outcome = await registry.diff(workspace, requireFiles(request.files), { prune: request.prune });
      return {
        errors: outcome.issues.map(toValidationError),
        diffs: outcome.diffs.map((diff) => ({ result: toResult(diff), unifiedDiff: diff.diff })),
      };
    }),

    testDefinitions: handle<TestDefinitionsRequest, TestDefinitionsResponse>('TestDefinitions', async (request, workspace, signal) => {
      if (tester === undefined) {
        throw new UnsupportedOperationError(
          "TestDefinitions is available on embedded nodes only, because a cluster node's RocksDB keeps only the history of the events it applied itself. " +
            'Use rtcdp apply --dry-run or rtcdp definitions diff here, or test against an embedded node (rtcdp dev)',
        );
      }
      const report = await tester(workspace, requireFiles(request.files), {
        prune: request.prune,
        profiles: request.profiles,
        identifiers: request.identifiers,
        signal,
      });
      return toTestResponse(report.issues, report.results, report.comparison);
    }),
  };
}

function toTestResponse(issues: DefinitionIssue[], results: Result[], comparison: DefinitionComparison | undefined): TestDefinitionsResponse {
  return {
    errors: issues.map(toValidationError),
    results: results.map(toResult),
    evaluatedAt: comparison === undefined ? '' : new Date(comparison.nowMs).toISOString(),
    profilesTested: comparison?.profilesTested ?? 0,
    eventsReplayed: comparison?.eventsReplayed ?? 0,
    maxHistoryEvents: comparison?.maxHistoryEvents ?? 0,
    historyCut: comparison?.historyCut ?? 0,
    historyCutExamples: comparison?.historyCutExamples ?? [],
    segments: (comparison?.segments ?? []).map(toSegmentTestResult),
    computedTraits: (comparison?.computedTraits ?? []).map(toComputedTraitTestResult),
    scores: (comparison?.scores ?? []).map((score) => ({ ...score, change: CHANGE[score.change], meanBefore: score.meanBefore ?? undefined, meanAfter: score.meanAfter ?? undefined, errorExample: score.errorExample ?? '' })),
    rules: (comparison?.rules ?? []).map((rule) => ({ ...rule, change: CHANGE[rule.change] })),
    decisionsChanged: comparison?.decisionsChanged ?? 0,
  };
}

function toSegmentTestResult(segment: SegmentComparison): SegmentTestResult {
  return { ...segment, change: CHANGE[segment.change], examples: segment.examples.map(toSegmentTestExample) };
}

function toSegmentTestExample(example: SegmentExample): SegmentTestExample {
  return {
    profileId: example.profileId,
    transition: example.transition === 'entered' ? SegmentTransition.SEGMENT_TRANSITION_ENTERED : SegmentTransition.SEGMENT_TRANSITION_EXITED,
    computedBefore: example.computedBefore,
    computedAfter: example.computedAfter,
  };
}

function toComputedTraitTestResult(trait: ComputedTraitComparison): ComputedTraitTestResult {
  return { ...trait, change: CHANGE[trait.change] };
}

function requireFiles(files: SourceFile[]): SourceFile[] {
  if (files.length === 0) throw new InvalidArgumentError('files is empty: send at least one definition file');
  return files;
}

function parseKind(kind: string): DefinitionKind {
  if (!(DEFINITION_KINDS as readonly string[]).includes(kind)) {
    throw new InvalidArgumentError(`kind must be one of ${DEFINITION_KINDS.join(', ')}, received ${JSON.stringify(kind)}`);
  }
  return kind as DefinitionKind;
}

function toValidationError(issue: DefinitionIssue): ValidationError {
  return { file: issue.file, path: issue.path, message: issue.rule, line: issue.line, column: issue.column };
}

function toResult(result: Result): DefinitionResult {
  return {
    kind: result.kind,
    name: result.name,
    change: CHANGE[result.change],
    version: result.version,
    previousVersion: result.previousVersion,
    contentHash: result.contentHash,
    file: result.source.file,
    path: result.source.path,
  };
}

function toDefinition(version: DefinitionVersion, withSpec: boolean): Definition {
  return {
    workspace: version.workspace,
    kind: version.kind,
    name: version.name,
    description: version.description,
    version: version.version,
    contentHash: version.contentHash,
    appliedAt: new Date(version.appliedAtMs).toISOString(),
    deleted: version.deleted,
    spec: withSpec ? version.spec : undefined,
    sourceFile: version.source.file,
    sourcePath: version.source.path,
  };
}
