/**
 * Base class of every error rtcdp raises on purpose. `code` is the stable contract that
 * callers, tests and the gRPC mapping match on; the message may be reworded.
 * Programmer mistakes stay TypeError or RangeError.
 */
export abstract class RtcdpError extends Error {
  abstract readonly code: string;

  /** Whether the same call may succeed if it is retried later, unchanged. */
  readonly retryable: boolean = false;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A component was used in a lifecycle state that does not allow the call. */
export class InvalidStateError extends RtcdpError {
  readonly code = 'INVALID_STATE';

  constructor(component: string, state: string, operation: string) {
    super(`${component} cannot ${operation} while ${state}`);
  }
}

/** An option or a definition is invalid; the message names the option and the rule. */
export class ConfigError extends RtcdpError {
  readonly code = 'INVALID_CONFIG';
}

/** The node is over a capacity limit; the caller should back off and retry. */
export class OverloadedError extends RtcdpError {
  readonly code = 'OVERLOADED';
  override readonly retryable = true;
}

/** A wait passed its deadline. */
export class DeadlineError extends RtcdpError {
  readonly code = 'DEADLINE_EXCEEDED';
  override readonly retryable = true;
}

/** The caller aborted the operation through its AbortSignal. */
export class AbortedError extends RtcdpError {
  readonly code = 'ABORTED';

  constructor(operation: string, options?: { cause?: unknown }) {
    super(`${operation} was aborted`, options);
  }
}

/** Throws AbortedError when the signal is already aborted, before any work is queued. */
export function throwIfAborted(signal: AbortSignal | undefined, operation: string): void {
  if (signal?.aborted) {
    throw new AbortedError(operation, { cause: signal.reason });
  }
}
