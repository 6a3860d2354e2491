/**
 * A workspace's definitions compiled for evaluation: one aggregator per computed trait and
 * one compiled condition per segment, built once per set of stored versions and shared by
 * every profile of the workspace.
 */
import type { Logger } from '../../common/logger.js';
import { createComputedTrait, type ComputedTrait } from '../computed-traits/computed-trait.js';
import { ComputedTraitConfigError, resolveComputedTrait } from '../computed-traits/definition.js';
import type { DefinitionVersion } from '../definitions/definition-store.js';
import { SegmentConditionCompiler, type SegmentCondition } from '../definitions/segment-condition.js';

export interface CompiledTrait {
  name: string;
  version: number;
  /** Content hash of the definition: a profile's state built under another hash starts again. */
  hash: string;
  trait: ComputedTrait;
}

export interface CompiledSegment {
  name: string;
  version: number;
  hash: string;
  condition: SegmentCondition;
}

export class WorkspaceProgram {
  private constructor(
    readonly workspace: string,
    readonly traits: readonly CompiledTrait[],
    readonly segments: readonly CompiledSegment[],
    readonly compiler: SegmentConditionCompiler,
    /** Computed traits that some segment reads, by name: only their expiries need timers. */
    readonly traitsReadBySegments: ReadonlySet<string>,
  ) {}

  /** Whether the workspace defines nothing to evaluate. */
  get empty(): boolean {
    return this.traits.length === 0 && this.segments.length === 0;
  }

  /**
   * Compiles the latest stored versions of a workspace, tombstones left out. Every stored
   * version passed validation when it was applied, so a definition that fails to compile
   * here is skipped with an error log rather than stopping the others.
   */
  static compile(workspace: string, versions: readonly DefinitionVersion[], logger: Logger): WorkspaceProgram {
    const traits: CompiledTrait[] = [];
    for (const version of versions.filter((candidate) => candidate.kind === 'ComputedTrait' && !candidate.deleted)) {
      try {
        const definition = resolveComputedTrait({ ...version.spec, name: version.name }, {}, 'spec');
        traits.push({ name: version.name, version: version.version, hash: version.contentHash, trait: createComputedTrait(definition) });
      } catch (error) {
        if (!(error instanceof ComputedTraitConfigError)) throw error;
        logger.error({ workspace, kind: version.kind, name: version.name, version: version.version, err: error }, 'stored computed trait does not compile; it is not evaluated');
      }
    }

    const compiler = new SegmentConditionCompiler(traits.map(({ name, trait }) => ({ name, kind: trait.definition.kind })));
    const segments: CompiledSegment[] = [];
    for (const version of versions.filter((candidate) => candidate.kind === 'Segment' && !candidate.deleted)) {
      const compiled = compiler.compile(String(version.spec.condition));
      if (compiled.ok) {
        segments.push({ name: version.name, version: version.version, hash: version.contentHash, condition: compiled.condition });
      } else {
        logger.error({ workspace, kind: version.kind, name: version.name, version: version.version, rule: compiled.error.rule }, 'stored segment does not compile; it is not evaluated');
      }
    }

    const read = new Set(segments.flatMap((segment) => segment.condition.computedTraits));
    return new WorkspaceProgram(workspace, traits, segments, compiler, read);
  }
}
