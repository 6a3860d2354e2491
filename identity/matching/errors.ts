/**
 * Errors of person matching. Invalid options raise ConfigError (common/errors.ts), which
 * names the option and the rule.
 */
import { RtcdpError } from '../../common/errors.js';

/** A comparison or preparation task failed in a worker thread. The cause is the worker's error. */
export class MatchingTaskError extends RtcdpError {
  readonly code = 'MATCHING_TASK_FAILED';
}

/**
 * A record file cannot be used: it is missing or unreadable, it lacks a mapped column, or a
 * row's id or truth value is unusable. The message names the file, the option and the column.
 */
export class RecordInputError extends RtcdpError {
  readonly code = 'INVALID_RECORD_INPUT';
}
