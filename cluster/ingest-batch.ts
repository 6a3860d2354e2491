/**
 * The part of ingestion both node kinds share: validate a batch, route each valid event to
 * its shard, and prepare its log append. Results come back in request order.
 */
import { randomUUID } from 'node:crypto';
import type { RawEvent } from '../profiles/event.js';
import { profileIdOf } from '../profiles/identifiers.js';
import { validateBatch, type EventLimits } from '../profiles/validation.js';
import { encode } from '../storage/codec.js';
import type { AppendOutcome, AppendRequest } from '../storage/event-log.js';
import { messageIdOf } from './arguments.js';
import { shardOf } from './routing.js';

export type IngestStatus = 'accepted' | 'duplicate' | 'rejected';

export interface IngestResult {
  index: number;
  messageId: string;
  status: IngestStatus;
  code?: string;
  field?: string;
  message?: string;
}

export interface PreparedBatch {
  /** One result per event; accepted ones may still turn into duplicates when appended. */
  results: IngestResult[];
  requests: AppendRequest[];
  /** The results of `requests`, in the same order. */
  accepted: IngestResult[];
}

export function prepareBatch(workspace: string, raws: RawEvent[], limits: EventLimits, shards: number): PreparedBatch {
  const validated = validateBatch(raws, limits, { receivedAt: new Date(), generateMessageId: randomUUID });
  const requests: AppendRequest[] = [];
  const accepted: IngestResult[] = [];

  const results: IngestResult[] = validated.map((result, index) => {
    if (!result.ok) return { index, messageId: messageIdOf(raws[index]), status: 'rejected', code: result.code, field: result.field, message: result.message };

    const shard = shardOf(profileIdOf(result.event), shards);
    requests.push({ workspace, shard, messageId: result.event.messageId, payload: encode(result.event), value: result.event });
    const ingested: IngestResult = { index, messageId: result.event.messageId, status: 'accepted' };
    accepted.push(ingested);
    return ingested;
  });

  return { results, requests, accepted };
}

/** Marks the accepted results whose append found a duplicate; returns how many were appended. */
export function applyOutcomes(accepted: IngestResult[], outcomes: AppendOutcome[]): number {
  let appended = 0;
  outcomes.forEach((outcome, i) => {
    if (outcome.status === 'duplicate') accepted[i].status = 'duplicate';
    else appended += 1;
  });
  return appended;
}
