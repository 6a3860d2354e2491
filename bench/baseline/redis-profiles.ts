/**
 * Profiles of the Redis baseline: one Redis hash per profile, changed by a Lua script per
 * event (apply-event.lua), plus a list of the profile's most recent events. This is the
 * design many teams build instead of rtcdp: a stateless service in front of Redis, with no
 * event log, where the read-modify-write of each profile runs inside Redis.
 *
 * Client: ioredis. Its `defineCommand` sends EVAL on the first call on a connection and
 * EVALSHA after that, and resends after NOSCRIPT, so the script body crosses the socket once.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis, type Result } from 'ioredis';
import type { Logger } from '../../common/logger.js';
import type { CustomerEvent, JsonObject } from '../../profiles/event.js';
import { forEachIdentifier, profileIdOf, type Identifier } from '../../profiles/identifiers.js';
import { DEFAULT_PROFILE_LIMITS, eventName, PROFILE_SNAPSHOT_VERSION, type EventStats, type ProfileSnapshot } from '../../profiles/profile.js';
import { decode } from '../../storage/codec.js';
import { part } from '../../storage/keys.js';

const APPLY_EVENT_LUA = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), 'apply-event.lua'), 'utf8');

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** Runs apply-event.lua. Keys: the profile hash, the dedup key and the recent-events list, then the arguments its header lists. */
    rtcdpApplyEvent(...keysAndArgs: (string | Buffer)[]): Result<number, Context>;
  }
}

export interface RedisProfileOptions {
  /** How long a messageId is deduplicated, in seconds. rtcdp keeps messageIds 7 days. */
  dedupTtlS: number;
  /** Recent events kept per profile; 0 keeps none. rtcdp keeps 10. */
  recentEvents: number;
}

export const DEFAULT_REDIS_PROFILE_OPTIONS: RedisProfileOptions = {
  dedupTtlS: 7 * 24 * 3_600,
  recentEvents: DEFAULT_PROFILE_LIMITS.recentEvents,
};

/** A validated event and its msgpack encoding, which the recent-events list stores as rtcdp's log does. */
export interface EncodedEvent {
  event: CustomerEvent;
  payload: Buffer;
}

/** Per-event-name stats as apply-event.lua stores them with cmsgpack. */
interface StoredEventStats {
  c: number;
  f: number;
  l: number;
  n: number;
  /** An empty Lua table packs as an empty array. */
  s: Record<string, number> | [];
}

export class RedisProfileStore {
  readonly #redis: Redis;
  readonly #options: RedisProfileOptions;

  private constructor(redis: Redis, options: RedisProfileOptions) {
    this.#redis = redis;
    this.#options = options;
  }

  /** Connects to Redis at 127.0.0.1:`port` and registers the apply script. Connection errors are logged, and ioredis reconnects. */
  static async connect(port: number, options: RedisProfileOptions, logger: Logger): Promise<RedisProfileStore> {
    const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
    redis.on('error', (error: Error) => logger.warn({ err: error, port }, 'Redis connection error'));
    redis.defineCommand('rtcdpApplyEvent', { numberOfKeys: 3, lua: APPLY_EVENT_LUA });
    await redis.connect();
    return new RedisProfileStore(redis, options);
  }

  /**
   * Applies validated events in one pipeline, one script call each, in order. Returns for
   * each event whether it was applied (false: a duplicate messageId). Throws when a call
   * fails, and then the events before it may have been applied.
   */
  async apply(workspace: string, events: EncodedEvent[]): Promise<boolean[]> {
    if (events.length === 0) return [];

    const pipeline = this.#redis.pipeline();
    for (const encoded of events) pipeline.rtcdpApplyEvent(...this.#scriptArguments(workspace, encoded));
    const replies = (await pipeline.exec()) ?? [];

    return replies.map(([error, reply], index) => {
      if (error !== null) throw new Error(`Redis failed to apply event ${events[index].event.messageId}: ${error.message}`, { cause: error });
      return reply === 1;
    });
  }

  /** Reads a profile as rtcdp's ProfileSnapshot, or returns null when it has no hash. */
  async getProfile(workspace: string, profileId: string): Promise<ProfileSnapshot | null> {
    // MULTI, so that no script runs between the two reads.
    const replies = await this.#redis
      .multi()
      .hgetallBuffer(profileKey(workspace, profileId))
      .lrangeBuffer(recentKey(workspace, profileId), 0, -1)
      .exec();
    if (replies === null) throw new Error(`Redis aborted the transaction that reads profile ${profileId}`);

    const [[hashError, hash], [listError, recent]] = replies as [[Error | null, Record<string, Buffer>], [Error | null, Buffer[]]];
    if (hashError !== null) throw hashError;
    if (listError !== null) throw listError;
    if (Object.keys(hash).length === 0) return null;
    return toSnapshot(workspace, profileId, hash, recent);
  }

  /** Returns the server's CPU time (INFO used_cpu_sys + used_cpu_user) in ms, used_memory in bytes and the number of keys. */
  async serverStats(): Promise<RedisServerStats> {
    const info = parseInfo(await this.#redis.info());
    const keys = await this.#redis.dbsize();
    return {
      cpuMs: (Number(info.used_cpu_sys ?? 0) + Number(info.used_cpu_user ?? 0)) * 1_000,
      usedMemoryBytes: Number(info.used_memory ?? 0),
      keys,
    };
  }

  async close(): Promise<void> {
    await this.#redis.quit();
  }

  #scriptArguments(workspace: string, { event, payload }: EncodedEvent): (string | Buffer)[] {
    const profileId = profileIdOf(event);
    const limits = DEFAULT_PROFILE_LIMITS;
    const args: (string | Buffer)[] = [
      profileKey(workspace, profileId),
      dedupKey(workspace, event.messageId),
      recentKey(workspace, profileId),
      String(this.#options.dedupTtlS),
      String(event.timestampMs),
      eventName(event),
      this.#options.recentEvents > 0 ? payload : '',
      String(this.#options.recentEvents),
      String(limits.eventNames),
      String(limits.summedPropertiesPerEvent),
      String(limits.identifiers),
    ];

    const identifiers: string[] = [];
    forEachIdentifier(event, (type, value) => identifiers.push(type, value));
    args.push(String(identifiers.length / 2), ...identifiers);

    // The order in which rtcdp applies traits: context.traits, then an identify or group event's traits.
    const traits: string[] = [];
    addTraits(traits, event.context?.traits);
    if (event.type === 'identify' || event.type === 'group') addTraits(traits, event.traits);
    args.push(String(traits.length / 2), ...traits);

    const numbers: string[] = [];
    const properties = event.properties ?? {};
    for (const name of Object.keys(properties)) {
      const value = properties[name];
      if (typeof value === 'number') numbers.push(name, String(value));
    }
    args.push(String(numbers.length / 2), ...numbers);
    return args;
  }
}

export interface RedisServerStats {
  cpuMs: number;
  usedMemoryBytes: number;
  keys: number;
}

function addTraits(target: string[], traits: JsonObject | undefined): void {
  if (traits === undefined) return;
  for (const name of Object.keys(traits)) target.push(name, JSON.stringify(traits[name]));
}

function profileKey(workspace: string, profileId: string): string {
  return `profile/${part(workspace)}${part(profileId)}`;
}

function recentKey(workspace: string, profileId: string): string {
  return `recent/${part(workspace)}${part(profileId)}`;
}

function dedupKey(workspace: string, messageId: string): string {
  return `dedup/${part(workspace)}${part(messageId)}`;
}

function toSnapshot(workspace: string, profileId: string, hash: Record<string, Buffer>, recent: Buffer[]): ProfileSnapshot {
  const traits: ProfileSnapshot['traits'] = {};
  const traitTimesMs: ProfileSnapshot['traitTimesMs'] = {};
  const events: ProfileSnapshot['events'] = {};

  for (const [field, value] of Object.entries(hash)) {
    if (field.startsWith('t:')) traits[field.slice(2)] = JSON.parse(value.toString());
    else if (field.startsWith('tt:')) traitTimesMs[field.slice(3)] = Number(value.toString());
    else if (field.startsWith('e:')) events[field.slice(2)] = toEventStats(decode<StoredEventStats>(value));
  }

  const identifiers: Identifier[] = [];
  if (hash.ids !== undefined) {
    const ids = decode<string[]>(hash.ids);
    for (let i = 0; i < ids.length; i += 2) identifiers.push({ type: ids[i], value: ids[i + 1] });
  }

  return {
    version: PROFILE_SNAPSHOT_VERSION,
    workspace,
    profileId,
    identifiers,
    traits,
    traitTimesMs,
    events,
    eventCount: numberField(hash.count),
    firstSeenMs: numberField(hash.first),
    lastSeenMs: numberField(hash.last),
    computed: {},
    segments: {},
    nextEvaluationMs: 0,
    decisions: [],
    receipts: [],
    scores: {},
    modelStates: {},
    journeys: {},
    finishedJourneys: {},
    merges: [],
    splits: [],
    linkMarks: [],
    recent,
    // The baseline has no event log, so there is no log position.
    lastApplied: { shard: 0, sequence: 0 },
    recentMessageIds: [],
    recentMessageIdsTimestampMs: [],
    recentMessageIdsReceivedMs: [],
  };
}

function toEventStats(stats: StoredEventStats): EventStats {
  const sums = Array.isArray(stats.s) ? {} : { ...stats.s };
  return { count: stats.c, sums, firstSeenMs: stats.f, lastSeenMs: stats.l };
}

function numberField(value: Buffer | undefined): number {
  return value === undefined ? 0 : Number(value.toString());
}

function parseInfo(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) fields[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return fields;
}
