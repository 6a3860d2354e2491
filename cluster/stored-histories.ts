/**
 * The admin requests with which a cluster node reads the profile histories that another
 * member stored: the events it applied while it owned each profile's shard.
 *
 * `profileHistories` reads several profiles in one request, so a page of a profile and of
 * those merged into it costs one request per member. `profileEvents` reads one profile.
 * Nodes still serve it for members of the version before `profileHistories`, and send it to
 * such a member, one request per profile, when it rejects `profileHistories` as unknown.
 */
import type { StoredEvent } from '../profiles/profile-history.js';
import { ProfileHistoryReader } from '../profiles/profile-history.js';
import type { Store } from '../storage/store.js';
import { InvalidArgumentError } from './errors.js';

/** One profile of a `profileHistories` request; `beforeSequence` null reads from the newest. */
export interface HistoryRequestSource {
  profileId: string;
  beforeSequence: number | null;
}

/** Reads the newest `limit` stored events of each source, below its sequence. */
export interface ProfileHistoriesRequest {
  op: 'profileHistories';
  workspace: string;
  sources: HistoryRequestSource[];
  limit: number;
}

/** Reads the newest `limit` stored events of one profile below `beforeSequence`; null reads from the newest. */
export interface ProfileEventsRequest {
  op: 'profileEvents';
  workspace: string;
  profileId: string;
  beforeSequence: number | null;
  limit: number;
}

/** Returns the stored events that a history request names: one list for `profileEvents`, one per source for `profileHistories`. */
export async function readStoredHistories(store: Store, request: ProfileHistoriesRequest | ProfileEventsRequest): Promise<StoredEvent[] | StoredEvent[][]> {
  const reader = new ProfileHistoryReader(store);
  const read = (profileId: string, beforeSequence: number | null) => reader.newestEvents(request.workspace, profileId, beforeSequence ?? Number.POSITIVE_INFINITY, request.limit);
  if (request.op === 'profileEvents') return read(request.profileId, request.beforeSequence);

  if (!Array.isArray(request.sources)) throw new InvalidArgumentError('profileHistories request has no sources list; expected sources: [{ profileId, beforeSequence }]');
  return Promise.all(request.sources.map((source) => read(source.profileId, source.beforeSequence)));
}

/**
 * Sends a `profileHistories` request to one member through `send` and returns one list per
 * source. A member of the version before it rejects the request as unknown, and then gets
 * one `profileEvents` request per source instead.
 */
export async function requestStoredHistories(send: (request: ProfileHistoriesRequest | ProfileEventsRequest) => Promise<unknown>, request: ProfileHistoriesRequest): Promise<StoredEvent[][]> {
  try {
    return (await send(request)) as StoredEvent[][];
  } catch (error) {
    if (!isUnknownRequest(error)) throw error;
  }

  const { workspace, limit } = request;
  return Promise.all(request.sources.map(async ({ profileId, beforeSequence }) => (await send({ op: 'profileEvents', workspace, profileId, beforeSequence, limit })) as StoredEvent[]));
}

/**
 * Returns whether a member rejected an admin request because it does not know its op. Members
 * reply to an unknown op with INVALID_ARGUMENT and a message that starts with
 * "unknown admin request", in this version and the one before it.
 */
function isUnknownRequest(error: unknown): boolean {
  return error instanceof InvalidArgumentError && error.message.startsWith('unknown admin request');
}
