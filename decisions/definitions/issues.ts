/**
 * Validation problems of a set of definition files. Validation collects every problem of a
 * set before it gives up, so that one run of `rtcdp apply --dry-run` lists all of them.
 */
import { RtcdpError } from '../../common/errors.js';

/** One broken rule, such as `segments.yaml: documents[1].spec.condition: invalid CEL ...`. */
export interface DefinitionIssue {
  /** The file name as the client sent it, or STORED_DEFINITION_FILE for a definition already stored. */
  readonly file: string;
  /** Path of the value in the file, such as `documents[1].spec.condition`. Empty when the whole file is at fault. */
  readonly path: string;
  /** The rule and the value that breaks it. */
  readonly rule: string;
  /** 1-based line and column in the file of the value at fault; 0 when unknown. */
  readonly line: number;
  readonly column: number;
}

/**
 * File name of an issue about a definition that is already stored and that the applied set
 * would break, such as a stored Segment whose condition no longer type-checks.
 */
export const STORED_DEFINITION_FILE = '(stored definition)';

/** Formats an issue as one line: `FILE: PATH: RULE`. */
export function formatIssue(issue: DefinitionIssue): string {
  return issue.path === '' ? `${issue.file}: ${issue.rule}` : `${issue.file}: ${issue.path}: ${issue.rule}`;
}

/** A set of definitions is invalid. `issues` lists every problem, and the message lists up to 20 of them. */
export class DefinitionValidationError extends RtcdpError {
  readonly code = 'INVALID_DEFINITION';

  constructor(readonly issues: readonly DefinitionIssue[]) {
    const shown = issues.slice(0, 20).map(formatIssue);
    const more = issues.length > shown.length ? `; and ${issues.length - shown.length} more` : '';
    super(`${issues.length} invalid definition ${issues.length === 1 ? 'setting' : 'settings'}: ${shown.join('; ')}${more}`);
  }
}
