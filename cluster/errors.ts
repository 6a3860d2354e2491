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

/** A request position lies past the end of what is stored, such as a cursor from before the node's data was deleted. */
export class OutOfRangeError extends RtcdpError {
  readonly code = 'OUT_OF_RANGE';
}

/** The node cannot serve the call in its mode, such as a call that needs every profile's full history on a cluster node. */
export class UnsupportedOperationError extends RtcdpError {
  readonly code = 'UNSUPPORTED_OPERATION';
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

/** A write for a shard found a newer owner's epoch: this node lost the shard and must stop applying its events. */
export class ShardFencedError extends RtcdpError {
  readonly code = 'SHARD_FENCED';

  constructor(
    readonly shard: number,
    readonly epoch: number,
    readonly newerEpoch: number,
    what: string,
  ) {
    super(`${what} for shard ${shard} was rejected: this node's lease epoch ${epoch} is older than epoch ${newerEpoch} of the shard's new owner`);
  }
}

/** No node answered for a shard before the call's deadline, for example while the shard moves between nodes. */
export class ShardUnavailableError extends RtcdpError {
  readonly code = 'SHARD_UNAVAILABLE';
  override readonly retryable = true;
}
