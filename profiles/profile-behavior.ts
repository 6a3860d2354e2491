/**
 * Gives the generic actor runtime its customer meaning: how a profile actor loads, applies
 * an event, persists its snapshot with its new history and identifiers, and stores a
 * dead letter.
 */
import type { ActorBehavior } from '../actors/types.js';
import type { Logger } from '../common/logger.js';
import { decode, encode } from '../storage/codec.js';
import { keys } from '../storage/keys.js';
import type { Store, WriteOp } from '../storage/store.js';
import { IdentifierIndex } from './identifier-index.js';
import { applyEvent, createProfile, fromSnapshot, toSnapshot, type AppliedEvent, type ProfileLimits, type ProfileSnapshot, type ProfileState } from './profile.js';

export const DEAD_LETTER_VERSION = 1;

export interface DeadLetterRecord {
  version: number;
  workspace: string;
  profileId: string;
  shard: number;
  sequence: number;
  messageId: string;
  error: string;
  attempts: number;
  failedAt: string;
  payload: Buffer;
}

/** How many of a profile's unpersisted events and new identifiers a persist covers. */
export interface PersistCounts {
  events: number;
  identifiers: number;
}

export interface ProfileBehaviorOptions {
  store: Store;
  index: IdentifierIndex;
  limits: ProfileLimits;
  logger: Logger;
  /** Called before each event is applied; a throw counts as a failure of the handler. For fault-injection tests. */
  beforeApply?: (applied: AppliedEvent, profileId: string) => void;
}

/** Splits an actor key into its workspace and profile id. Workspaces never contain "/". */
export function parseActorKey(key: string): { workspace: string; profileId: string } {
  const slash = key.indexOf('/');
  return { workspace: key.slice(0, slash), profileId: key.slice(slash + 1) };
}

export function actorKey(workspace: string, profileId: string): string {
  return `${workspace}/${profileId}`;
}

export class ProfileBehavior implements ActorBehavior<ProfileState, AppliedEvent> {
  readonly #options: ProfileBehaviorOptions;

  constructor(options: ProfileBehaviorOptions) {
    this.#options = options;
  }

  async load(key: string): Promise<ProfileState | undefined> {
    const { workspace, profileId } = parseActorKey(key);
    const stored = await this.#options.store.get(keys.snapshot(workspace, profileId));
    if (stored === null) return undefined;
    return fromSnapshot(decode<ProfileSnapshot>(stored));
  }

  create(key: string): ProfileState {
    const { workspace, profileId } = parseActorKey(key);
    return createProfile(workspace, profileId);
  }

  handle(state: ProfileState, applied: AppliedEvent): ProfileState {
    this.#options.beforeApply?.(applied, state.profileId);

    const claimsBefore = state.newIdentifiers.length;
    applyEvent(state, applied, this.#options.limits);
    for (const identifier of state.newIdentifiers.slice(claimsBefore)) {
      this.#options.index.claim(state.workspace, identifier, state.profileId, applied.event.timestampMs);
    }
    return state;
  }

  /**
   * Writes each profile's snapshot, its events applied since the last snapshot, and its new
   * identifiers in one batch, with `extraOps`. `covered` records how much of each list this
   * write includes: the lengths now, or the `captured` ones of a caller that wrote the
   * same part elsewhere first.
   * The lists are cut by that count only after the write, because the actor may apply more
   * events while the write is in flight.
   */
  async persist(snapshots: Array<{ key: string; state: ProfileState }>, extraOps: WriteOp[] = [], captured?: PersistCounts[]): Promise<void> {
    const ops: WriteOp[] = [...extraOps];
    const covered = snapshots.map(({ state }, i) => ({
      state,
      events: captured?.[i].events ?? state.unpersisted.length,
      identifiers: captured?.[i].identifiers ?? state.newIdentifiers.length,
    }));
    const claims = covered.flatMap(({ state, identifiers }) =>
      state.newIdentifiers.slice(0, identifiers).map((identifier) => ({ workspace: state.workspace, identifier, profileId: state.profileId })),
    );

    for (const { state, events } of covered) {
      ops.push({ type: 'put', key: keys.snapshot(state.workspace, state.profileId), value: encode(toSnapshot(state)) });
      for (const event of state.unpersisted.slice(0, events)) {
        ops.push({ type: 'put', key: keys.profileEvent(state.workspace, state.profileId, event.sequence), value: event.payload });
      }
    }
    ops.push(...(await this.#options.index.prepare(claims)));

    await this.#options.store.write(ops);

    for (const { state, events, identifiers } of covered) {
      state.unpersisted.splice(0, events);
      state.newIdentifiers.splice(0, identifiers);
    }
    this.#options.index.settle(claims);
  }

  async deadLetter(key: string, applied: AppliedEvent, error: unknown, attempts: number): Promise<void> {
    const { workspace, profileId } = parseActorKey(key);
    const record: DeadLetterRecord = {
      version: DEAD_LETTER_VERSION,
      workspace,
      profileId,
      shard: applied.position.shard,
      sequence: applied.position.sequence,
      messageId: applied.event.messageId,
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
      attempts,
      failedAt: new Date().toISOString(),
      payload: applied.payload,
    };

    await this.#options.store.write([{ type: 'put', key: keys.deadLetter(workspace, profileId, applied.position.sequence), value: encode(record) }], { sync: true });
    this.#options.logger.warn({ workspace, profileId, shard: record.shard, sequence: record.sequence, messageId: record.messageId, attempts, err: error }, 'event moved to dead letters');
  }
}
