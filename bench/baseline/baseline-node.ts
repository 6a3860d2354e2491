/**
 * The Redis baseline as a ServingNode, so rtcdp's own ApiServer serves it: the same gRPC
 * services, strict request decoding, stream flow control and error statuses as an rtcdp
 * node. Only what happens behind `ingest` and `getProfile` differs.
 *
 * Ingest runs rtcdp's `prepareBatch` (validateBatch, then msgpack encoding of each valid
 * event, the work rtcdp does before its log append) and then applies the valid events in
 * Redis, one script call each. An event is acknowledged once Redis has replied, so it is
 * applied when it is acknowledged: there is no apply lag to wait for.
 */
import { RtcdpError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { InvalidArgumentError, ProfileNotFoundError } from '../../cluster/errors.js';
import { prepareBatch, type IngestResult } from '../../cluster/ingest-batch.js';
import type { ProfileEventsPage, ServingNode } from '../../cluster/serving-node.js';
import type { CustomerEvent, RawEvent } from '../../profiles/event.js';
import { profileIdForIdentifier, type Identifier } from '../../profiles/identifiers.js';
import type { ProfileView } from '../../profiles/profile.js';
import { resolveEventLimits, type EventLimits } from '../../profiles/validation.js';
import { decode } from '../../storage/codec.js';
import type { RedisProfileStore } from './redis-profiles.js';

/** prepareBatch routes events to shards, which the baseline does not use. */
const SHARDS = 1;

/** Redis failed a call; the events of the batch may be applied or not, so the client resends them with the same messageIds. */
export class RedisUnavailableError extends RtcdpError {
  readonly code = 'NODE_UNAVAILABLE';
  override readonly retryable = true;
}

export interface BaselineCounters {
  appliedEvents: number;
  duplicateEvents: number;
  rejectedEvents: number;
  batches: number;
}

export class RedisBaselineNode implements ServingNode {
  readonly counters: BaselineCounters = { appliedEvents: 0, duplicateEvents: 0, rejectedEvents: 0, batches: 0 };
  readonly #store: RedisProfileStore;
  readonly #logger: Logger;
  readonly #limits: EventLimits = resolveEventLimits();

  constructor(store: RedisProfileStore, logger: Logger) {
    this.#store = store;
    this.#logger = logger;
  }

  async ingest(workspace: string, raws: RawEvent[]): Promise<IngestResult[]> {
    const prepared = await prepareBatch(workspace, raws, this.#limits, SHARDS);
    const { results, accepted } = prepared;
    const events = prepared.events.map((request) => ({ event: request.value as CustomerEvent, payload: request.payload }));

    let applied: boolean[];
    try {
      applied = await this.#store.apply(workspace, events);
    } catch (error) {
      this.#logger.error({ err: error, events: events.length }, 'Redis failed to apply a batch');
      throw new RedisUnavailableError(`Redis failed to apply the batch of ${events.length} events: ${(error as Error).message}`, { cause: error });
    }

    applied.forEach((wasApplied, i) => {
      if (wasApplied) this.counters.appliedEvents++;
      else {
        accepted[i].status = 'duplicate';
        this.counters.duplicateEvents++;
      }
    });
    this.counters.rejectedEvents += results.length - accepted.length;
    this.counters.batches++;
    return results;
  }

  /** Returns the profile; the baseline has no computed traits. */
  async getProfile(workspace: string, identifier: Identifier): Promise<ProfileView> {
    const profileId = requireDirectIdentifier(identifier);
    const profile = await this.#store.getProfile(workspace, profileId);
    if (profile === null) throw new ProfileNotFoundError(`no profile has ${identifier.type} "${identifier.value}"`);
    return { ...profile, computedValues: {} };
  }

  /** Returns the profile's recent events, newest first, as one page: the baseline keeps no other events. */
  async listProfileEvents(workspace: string, identifier: Identifier): Promise<ProfileEventsPage> {
    const profile = await this.getProfile(workspace, identifier);
    return { events: profile.recent.map((payload) => decode<CustomerEvent>(payload)), nextPageToken: '', unavailableNodes: [], departedNodes: [] };
  }
}

/** Maps user_id and anonymous_id to the profile id; the baseline keeps no index of other identifiers. */
function requireDirectIdentifier(identifier: Identifier): string {
  const profileId = profileIdForIdentifier(identifier);
  if (profileId === undefined) {
    throw new InvalidArgumentError(`the Redis baseline finds profiles by user_id or anonymous_id only, received identifier type "${identifier.type}"`);
  }
  return profileId;
}
