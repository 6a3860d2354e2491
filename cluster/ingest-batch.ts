/**
 * The part of ingestion both node kinds share: validate a batch, resolve each valid event
 * to its profile, and prepare the log appends. Results come back in request order.
 */
import { randomUUID } from 'node:crypto';
import type { EventResolution, EventResolver } from '../identity/event-resolver.js';
import type { MergeNotice } from '../identity/identity-graph.js';
import type { CustomerEvent, RawEvent } from '../profiles/event.js';
import { profileIdOf } from '../profiles/identifiers.js';
import { commandMessageIds, type LinkCommand, type MergeCommand } from '../profiles/identity-commands.js';
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
  /**
   * Every append, in order: the link marks of the merges the events' resolution made, the
   * accepted events, then the merge commands. A link mark goes ahead of the events, so a
   * survivor's partition has it before any event that the merge routes there.
   */
  requests: AppendRequest[];
  /** The accepted events' appends, which start at `requests[eventOffset]`. */
  events: AppendRequest[];
  eventOffset: number;
  /** The results of the accepted events, in the order of `events`. */
  accepted: IngestResult[];
  /** Merges whose command is among `requests`; mark them announced once the append succeeds. */
  merges: MergeNotice[];
}

/** Returns those of `messageIds` that the event log already contains (EventLog.storedMessageIds). */
export type StoredMessageIds = (messageIds: readonly string[]) => Promise<Set<string>>;

/**
 * Validates a batch, resolves each valid event to its profile through identity resolution,
 * and prepares the appends: each event to its profile's shard, each merge command to the
 * shard of the profile merged away. An event whose identifier breaks the identity settings
 * is rejected with the identifier's code and field. An event whose messageId `stored` finds
 * in the log is a duplicate without identity resolution, which would otherwise act on it
 * again: after an unmerge, for example, a resent event would ask to link the two profiles.
 */
export async function prepareBatch(workspace: string, raws: RawEvent[], limits: EventLimits, shards: number, resolver?: EventResolver, stored?: StoredMessageIds): Promise<PreparedBatch> {
  const validated = validateBatch(raws, limits, { receivedAt: new Date(), generateMessageId: randomUUID });
  const known = stored === undefined ? new Set<string>() : await stored(validated.flatMap((result) => (result.ok ? [result.event.messageId] : [])));
  const resolutions = await Promise.all(validated.map((result) => (result.ok && !known.has(result.event.messageId) ? resolveEvent(resolver, workspace, result.event) : undefined)));
  const events: AppendRequest[] = [];
  const accepted: IngestResult[] = [];
  const merges: MergeNotice[] = [];

  const results: IngestResult[] = validated.map((result, index) => {
    if (!result.ok) return { index, messageId: messageIdOf(raws[index]), status: 'rejected', code: result.code, field: result.field, message: result.message };
    if (known.has(result.event.messageId)) return { index, messageId: result.event.messageId, status: 'duplicate' };
    const resolution = resolutions[index]!;
    if (!resolution.ok) return { index, messageId: result.event.messageId, status: 'rejected', code: resolution.code, field: resolution.field, message: resolution.message };

    const event = { ...result.event, profileId: resolution.profileId, ...(resolver === undefined ? {} : { identifiers: resolution.identifiers }) };
    events.push({ workspace, shard: shardOf(resolution.profileId, shards), messageId: event.messageId, payload: encode(event), value: event });
    merges.push(...resolution.merges);
    const ingested: IngestResult = { index, messageId: event.messageId, status: 'accepted' };
    accepted.push(ingested);
    return ingested;
  });

  const announced = dedupeMerges(merges);
  const links = announced.map((merge) => linkRequest(merge, shards));
  const requests = [...links, ...events, ...announced.map((merge) => mergeRequest(merge, shards))];
  return { results, requests, events, eventOffset: links.length, accepted, merges };
}

/** Returns the append of the command that makes the losing profile's actor hand its state to the survivor. */
export function mergeRequest(merge: MergeNotice, shards: number): AppendRequest {
  const command: MergeCommand = { command: 'merge', profileId: merge.loser, into: merge.winner, cause: merge.cause };
  return { workspace: merge.workspace, shard: shardOf(merge.loser, shards), messageId: commandMessageIds.merge(merge.loser, merge.winner, merge.cause.messageId), payload: encode(command), value: command };
}

/** Returns the append of the command that marks, in the survivor's partition, where a merge begins. */
export function linkRequest(merge: MergeNotice, shards: number): AppendRequest {
  const command: LinkCommand = { command: 'link', profileId: merge.winner, from: merge.loser, cause: merge.cause };
  return { workspace: merge.workspace, shard: shardOf(merge.winner, shards), messageId: commandMessageIds.link(merge.loser, merge.winner, merge.cause.messageId), payload: encode(command), value: command };
}

/** Resolves an event through `resolver`; without one (the benchmark baselines), by its userId or anonymousId. */
function resolveEvent(resolver: EventResolver | undefined, workspace: string, event: CustomerEvent): Promise<EventResolution> | EventResolution {
  if (resolver !== undefined) return resolver.resolve(workspace, event);
  return { ok: true, profileId: profileIdOf(event), identifiers: [], merges: [], quarantined: [], unlinked: [] };
}

function dedupeMerges(merges: MergeNotice[]): MergeNotice[] {
  const seen = new Set<string>();
  return merges.filter((merge) => !seen.has(merge.loser) && seen.add(merge.loser));
}

/**
 * Marks the accepted results whose append found a duplicate; returns how many records were
 * appended. Outcomes around the accepted events are those of link marks and merge commands,
 * which have no result.
 */
export function applyOutcomes(batch: Pick<PreparedBatch, 'accepted' | 'eventOffset'>, outcomes: AppendOutcome[]): number {
  let appended = 0;
  outcomes.forEach((outcome, i) => {
    if (outcome.status === 'appended') appended += 1;
    else if (i >= batch.eventOffset && i < batch.eventOffset + batch.accepted.length) batch.accepted[i - batch.eventOffset].status = 'duplicate';
  });
  return appended;
}
