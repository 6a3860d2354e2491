/**
 * Reads profiles as this node stored them: snapshots and each profile's history of applied
 * events. Nothing here goes through the actors, so a reader sees what the last snapshot
 * writes stored, not events that an actor applied since.
 */
import type { CustomerEvent } from './event.js';
import { fromSnapshot, type AppliedEvent, type ProfileSnapshot } from './profile.js';
import { decode } from '../storage/codec.js';
import { keys, parseSequence, prefixEnd } from '../storage/keys.js';
import type { Store } from '../storage/store.js';

/** One event of a profile's stored history: its log sequence and its msgpack payload. */
export interface StoredEvent {
  sequence: number;
  payload: Buffer;
}

/** A profile's stored snapshot, brought to the current layout, with its id. */
export interface StoredProfile {
  profileId: string;
  snapshot: ProfileSnapshot;
}

export class ProfileHistoryReader {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /**
   * Yields the first `count` profiles of a workspace in the order of their snapshot keys.
   * Profiles merged into another are skipped: their state is part of the survivor's.
   */
  async *firstProfiles(workspace: string, count: number): AsyncGenerator<StoredProfile> {
    if (count <= 0) return;

    const prefix = keys.snapshotPrefix(workspace);
    let yielded = 0;
    for await (const entry of this.#store.iterate({ gte: prefix, lt: prefixEnd(prefix) })) {
      const snapshot = fromSnapshot(decode<ProfileSnapshot>(entry.value));
      if (snapshot.mergedInto !== undefined) continue;

      yield { profileId: snapshot.profileId, snapshot };
      yielded += 1;
      if (yielded === count) return;
    }
  }

  /** Returns a profile's stored snapshot, or undefined when it has none. */
  async get(workspace: string, profileId: string): Promise<StoredProfile | undefined> {
    const stored = await this.#store.get(keys.snapshot(workspace, profileId));
    return stored === null ? undefined : { profileId, snapshot: fromSnapshot(decode<ProfileSnapshot>(stored)) };
  }

  /**
   * Yields a profile's stored history in log order, oldest first, as the actor applied it.
   * The history is keyed by sequence alone, and every event of a profile comes from the
   * shard of its last applied position, so that shard completes each position.
   */
  async *events(profile: StoredProfile): AsyncGenerator<AppliedEvent> {
    const { workspace, lastApplied } = profile.snapshot;
    const prefix = keys.profileEventPrefix(workspace, profile.profileId);
    for await (const entry of this.#store.iterate({ gte: prefix, lt: prefixEnd(prefix) })) {
      const position = { shard: lastApplied.shard, sequence: parseSequence(entry.key.toString()) };
      yield { event: decode<CustomerEvent>(entry.value), position, payload: entry.value };
    }
  }

  /** Returns up to `limit` events of the profile's stored history with a sequence below `beforeSequence`, newest first. */
  async newestEvents(workspace: string, profileId: string, beforeSequence: number, limit: number): Promise<StoredEvent[]> {
    const prefix = keys.profileEventPrefix(workspace, profileId);
    const upper = Number.isFinite(beforeSequence) ? keys.profileEvent(workspace, profileId, beforeSequence) : prefixEnd(prefix);
    const entries = await this.#store.list({ gte: prefix, lt: upper, reverse: true, limit });
    return entries.map((entry) => ({ sequence: parseSequence(entry.key.toString()), payload: entry.value }));
  }
}
