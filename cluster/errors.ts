import { RtcdpError } from '../common/errors.js';

/** The node is starting, draining or stopped and does not take the call. */
export class NodeUnavailableError extends RtcdpError {
  readonly code = 'NODE_UNAVAILABLE';
  override readonly retryable = true;
}

/** No profile holds the identifier in the workspace. */
export class ProfileNotFoundError extends RtcdpError {
  readonly code = 'PROFILE_NOT_FOUND';
}

/** A request argument breaks a rule; the message names the argument and the rule. */
export class InvalidArgumentError extends RtcdpError {
  readonly code = 'INVALID_ARGUMENT';
}

/** The write key is missing or unknown. */
export class UnauthenticatedError extends RtcdpError {
  readonly code = 'UNAUTHENTICATED';
}

/** The data directory was created with settings this node's options contradict. */
export class DataDirectoryMismatchError extends RtcdpError {
  readonly code = 'DATA_DIRECTORY_MISMATCH';
}

/** The event log did not acknowledge an append in time; the events may or may not be stored, so resend them with the same messageIds. */
export class EventLogUnavailableError extends RtcdpError {
  readonly code = 'EVENT_LOG_UNAVAILABLE';
  override readonly retryable = true;
}
