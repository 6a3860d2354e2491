/**
 * The one place where rtcdp errors become gRPC statuses. Each error's stable code travels
 * in the `rtcdp-error-code` trailer so clients can match on it without parsing messages.
 */
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { RtcdpError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';

const STATUS_BY_CODE: Record<string, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  OUT_OF_RANGE: status.OUT_OF_RANGE,
  INVALID_CONFIG: status.INVALID_ARGUMENT,
  MALFORMED_REQUEST: status.INVALID_ARGUMENT,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PROFILE_NOT_FOUND: status.NOT_FOUND,
  DEFINITION_NOT_FOUND: status.NOT_FOUND,
  INVALID_DEFINITION: status.INVALID_ARGUMENT,
  DEFINITION_CONFLICT: status.ABORTED,
  UNSUPPORTED_OPERATION: status.FAILED_PRECONDITION,
  OVERLOADED: status.RESOURCE_EXHAUSTED,
  NODE_UNAVAILABLE: status.UNAVAILABLE,
  INVALID_STATE: status.UNAVAILABLE,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  ABORTED: status.CANCELLED,
  EVENT_LOG_FAILED: status.UNAVAILABLE,
  EVENT_LOG_UNAVAILABLE: status.UNAVAILABLE,
  SHARD_UNAVAILABLE: status.UNAVAILABLE,
  SHARD_FENCED: status.UNAVAILABLE,
  STORAGE_FAILED: status.INTERNAL,
  IDENTITY_CONTENTION: status.UNAVAILABLE,
  IDENTITY_STORE_FAILED: status.UNAVAILABLE,
  IDENTITY_CHAIN_TOO_LONG: status.INTERNAL,
  IDENTIFIER_NOT_LINKED: status.NOT_FOUND,
  QUARANTINE_NOT_FOUND: status.NOT_FOUND,
  WEBHOOK_DESTINATION_NOT_FOUND: status.NOT_FOUND,
  WEBHOOK_DEAD_LETTER_NOT_FOUND: status.NOT_FOUND,
  QUARANTINE_DECIDED: status.FAILED_PRECONDITION,
  PROFILE_NOT_SURVIVOR: status.FAILED_PRECONDITION,
  NOT_MERGED: status.FAILED_PRECONDITION,
  UNMERGE_ORDER: status.FAILED_PRECONDITION,
  UNMERGE_UNSUPPORTED: status.FAILED_PRECONDITION,
  UNMERGE_HISTORY_EXPIRED: status.FAILED_PRECONDITION,
  PROFILES_SEPARATED: status.FAILED_PRECONDITION,
};

export const ERROR_CODE_TRAILER = 'rtcdp-error-code';

/**
 * Maximum length of a status message, in UTF-16 code units. Messages quote request values,
 * and grpc-js sends the message percent-encoded in the `grpc-message` trailer. With grpc-js
 * 1.14 on Node.js 20, a message of 100,000 characters got no status to the client before its
 * deadline, and the client's connection served no other call. A code unit encodes to at most
 * 9 bytes, so a message at this length stays below 64 KiB.
 */
export const MAX_STATUS_MESSAGE_LENGTH = 4_096;

/** Converts any thrown value to a ServiceError; unexpected errors are logged and hidden behind INTERNAL. */
export function toServiceError(error: unknown, logger: Logger, fields: Record<string, unknown> = {}): Partial<ServiceError> {
  const metadata = new Metadata();

  if (error instanceof RtcdpError) {
    metadata.set(ERROR_CODE_TRAILER, error.code);
    const code = STATUS_BY_CODE[error.code] ?? status.INTERNAL;
    if (code === status.INTERNAL) logger.error({ err: error, ...fields }, 'request failed');
    return { code, details: shortenMessage(error.message), metadata };
  }

  logger.error({ err: error, ...fields }, 'request failed with an unexpected error');
  metadata.set(ERROR_CODE_TRAILER, 'INTERNAL');
  return { code: status.INTERNAL, details: 'internal error; the node log has the details', metadata };
}

/** Cuts a message to MAX_STATUS_MESSAGE_LENGTH, without splitting a surrogate pair, and appends how many characters it cut. */
function shortenMessage(message: string): string {
  if (message.length <= MAX_STATUS_MESSAGE_LENGTH) return message;

  let end = MAX_STATUS_MESSAGE_LENGTH - 40;
  const last = message.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  const omitted = (message.length - end).toLocaleString('en-US');
  return `${message.slice(0, end)}… (${omitted} more characters)`;
}
