/**
 * A deterministic model check of the data side of a shard handoff: the shard's checkpoint
 * record (ShardStateRecord) and the fenced profile snapshots (SnapshotStore), both real, on
 * one MemoryKvStore. Nodes run tenures of one shard, and a seeded scheduler interleaves
 * appends to the log, applying, persisting, checkpointing, handoffs and crashes. Tenures
 * may overlap: an older owner that was paused past its lease keeps acting after a newer
 * owner started, as if the lease check itself had failed, so the writes' own fencing is
 * what keeps the data right.
 *
 * Checked after every step: no stored snapshot counts an event twice or an event that is
 * not in the log, and a checkpoint never passes an event that its profile's stored
 * snapshot lacks. At the end a new owner rebuilds every profile from the store and the log
 * after the checkpoint and must find exactly the log's counts.
 *
 * `HANDOFF_MODEL_SEED=n` reruns one seed.
 */
import t from 'tap';
import { KvConflictError } from '../../storage/kv-store.js';
import { MemoryKvStore } from '../../storage/memory-kv-store.js';
import { ShardFencedError } from '../../cluster/errors.js';
import { SnapshotStore } from '../../cluster/nats/snapshot-store.js';
import { ShardStateRecord, shardStateKey, type ShardState } from '../../cluster/shard-state.js';
import { decode } from '../../storage/codec.js';
import type { ProfileSnapshot } from '../../profiles/profile.js';

const SEEDS = 200;
const STEPS_PER_RUN = 300;
const SHARD = 0;
const WORKSPACE = 'w';
const PROFILES = ['p1', 'p2', 'p3', 'p4'];
const NODES = ['a', 'b', 'c'];

/** The part of a profile this model tracks: how many events it counted, and up to where. */
interface ModelProfile {
  count: number;
  lastApplied: number;
  appliedSequences: number[];
  revision: number | undefined;
  dirty: boolean;
}

interface Tenure {
  node: string;
  epoch: number;
  record: ShardStateRecord;
  profiles: Map<string, ModelProfile>;
  /** Index in the log of the next event to read. */
  next: number;
  /** Highest log sequence up to which every event read is in a stored snapshot. */
  durable: number;
  ended: boolean;
}

function createRandom(seed: number) {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4_294_967_296;
  };
  return { next, int: (max: number) => Math.floor(next() * max), pick: <T>(items: readonly T[]) => items[Math.floor(next() * items.length)] };
}

class Model {
  readonly kv = new MemoryKvStore();
  readonly snapshots = new SnapshotStore(this.kv);
  /** The event log: event i has sequence i + 1 and belongs to profile log[i]. */
  readonly log: string[] = [];
  readonly tenures: Tenure[] = [];
  #lastEpoch = 0;
  readonly trace: string[] = [];

  async startTenure(node: string): Promise<void> {
    this.#lastEpoch += 10;
    const epoch = this.#lastEpoch;
    const record = await ShardStateRecord.claim(this.kv, SHARD, epoch, node);
    const checkpoint = record.checkpoints[WORKSPACE] ?? 0;
    this.tenures.push({ node, epoch, record, profiles: new Map(), next: checkpoint, durable: checkpoint, ended: false });
    this.trace.push(`${node} starts epoch ${epoch} at checkpoint ${checkpoint}`);
  }

  active(): Tenure[] {
    return this.tenures.filter((tenure) => !tenure.ended);
  }

  async applyNext(tenure: Tenure): Promise<void> {
    if (tenure.next >= this.log.length) return;
    const sequence = tenure.next + 1;
    const profileId = this.log[tenure.next];
    const profile = await this.#profile(tenure, profileId);

    if (sequence > profile.lastApplied) {
      profile.count += 1;
      profile.lastApplied = sequence;
      profile.appliedSequences.push(sequence);
      profile.dirty = true;
    }
    tenure.next += 1;
    this.trace.push(`${tenure.node}@${tenure.epoch} applies ${sequence} to ${profileId}`);
  }

  async #profile(tenure: Tenure, profileId: string): Promise<ModelProfile> {
    const resident = tenure.profiles.get(profileId);
    if (resident !== undefined) return resident;

    const loaded = await this.snapshots.load(WORKSPACE, SHARD, profileId);
    const stored = loaded?.snapshot as unknown as Omit<ModelProfile, 'revision' | 'dirty'> | undefined;
    const profile: ModelProfile = stored === undefined
      ? { count: 0, lastApplied: 0, appliedSequences: [], revision: undefined, dirty: false }
      : { ...stored, appliedSequences: [...stored.appliedSequences], revision: loaded?.revision, dirty: false };
    tenure.profiles.set(profileId, profile);
    return profile;
  }

  /** Persists every dirty profile, then lets the checkpoint pass what they cover. */
  async persist(tenure: Tenure): Promise<void> {
    const readUpTo = tenure.next;
    for (const [profileId, profile] of tenure.profiles) {
      if (!profile.dirty) continue;
      const snapshot = { count: profile.count, lastApplied: profile.lastApplied, appliedSequences: [...profile.appliedSequences] } as unknown as ProfileSnapshot;
      profile.revision = await this.snapshots.write({ workspace: WORKSPACE, shard: SHARD, profileId, snapshot, expectedRevision: profile.revision }, tenure.epoch);
      profile.dirty = false;
    }
    tenure.durable = readUpTo;
    this.trace.push(`${tenure.node}@${tenure.epoch} persists up to ${readUpTo}`);
  }

  async checkpoint(tenure: Tenure): Promise<void> {
    await tenure.record.write({ [WORKSPACE]: tenure.durable });
    this.trace.push(`${tenure.node}@${tenure.epoch} checkpoints ${tenure.durable}`);
  }

  /** Runs `step`; a fenced write ends the tenure, as it stops a shard host. */
  async guarded(tenure: Tenure, step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (error) {
      if (!(error instanceof ShardFencedError) && !(error instanceof KvConflictError)) throw error;
      tenure.ended = true;
      this.trace.push(`${tenure.node}@${tenure.epoch} is fenced: ${(error as Error).message}`);
    }
  }

  /** Checks that every stored snapshot counts each of its events once, and only events of its profile in the log. */
  async checkStored(): Promise<string | null> {
    for (const profileId of PROFILES) {
      const loaded = await this.snapshots.load(WORKSPACE, SHARD, profileId);
      if (loaded === null) continue;
      const stored = loaded.snapshot as unknown as ModelProfile;
      if (new Set(stored.appliedSequences).size !== stored.appliedSequences.length) return `${profileId} counts an event twice: ${stored.appliedSequences}`;
      if (stored.count !== stored.appliedSequences.length) return `${profileId} count ${stored.count} differs from its ${stored.appliedSequences.length} events`;
      for (const sequence of stored.appliedSequences) {
        if (this.log[sequence - 1] !== profileId) return `${profileId} counts event ${sequence}, which belongs to ${this.log[sequence - 1]}`;
      }
    }
    return null;
  }

  /** Checks that the stored checkpoint never passes an event that the stored snapshot of its profile lacks. */
  async checkCheckpoint(): Promise<string | null> {
    const entry = await this.kv.get(shardStateKey(SHARD));
    if (entry === null) return null;
    const checkpoint = decode<ShardState>(Buffer.from(entry.value)).checkpoints[WORKSPACE] ?? 0;

    for (let sequence = 1; sequence <= checkpoint; sequence++) {
      const profileId = this.log[sequence - 1];
      const loaded = await this.snapshots.load(WORKSPACE, SHARD, profileId);
      const stored = loaded?.snapshot as unknown as ModelProfile | undefined;
      if (stored === undefined || stored.lastApplied < sequence) {
        return `checkpoint ${checkpoint} passes event ${sequence} of ${profileId}, but its stored snapshot ends at ${stored?.lastApplied ?? 'none'}`;
      }
    }
    return null;
  }
}

async function runSeed(seed: number): Promise<string | null> {
  const random = createRandom(seed);
  const model = new Model();

  for (let step = 0; step < STEPS_PER_RUN; step++) {
    const roll = random.next();
    const active = model.active();
    const tenure = random.pick(active);

    if (roll < 0.25) {
      model.log.push(random.pick(PROFILES));
    } else if (roll < 0.3 || active.length === 0) {
      // A new owner, while older ones may still run: a paused owner that resumes late.
      await model.startTenure(random.pick(NODES));
    } else if (roll < 0.6) {
      await model.guarded(tenure, () => model.applyNext(tenure));
    } else if (roll < 0.75) {
      await model.guarded(tenure, () => model.persist(tenure));
    } else if (roll < 0.85) {
      await model.guarded(tenure, () => model.checkpoint(tenure));
    } else if (roll < 0.92) {
      // Handoff: apply what was read, persist everything, checkpoint, end.
      await model.guarded(tenure, async () => {
        await model.persist(tenure);
        await model.checkpoint(tenure);
      });
      tenure.ended = true;
    } else {
      tenure.ended = true;
      model.trace.push(`${tenure.node}@${tenure.epoch} crashes`);
    }

    const problem = (await model.checkStored()) ?? (await model.checkCheckpoint());
    if (problem !== null) return `step ${step}: ${problem}\n${model.trace.slice(-30).join('\n')}`;
  }

  // A last owner rebuilds every profile and reads the log to its end.
  await model.startTenure('auditor');
  const auditor = model.active().at(-1) as Tenure;
  while (auditor.next < model.log.length) await model.applyNext(auditor);
  for (const profileId of PROFILES) {
    const expected = model.log.filter((owner) => owner === profileId).length;
    const profile = auditor.profiles.get(profileId) ?? { count: 0 };
    const rebuilt = auditor.profiles.has(profileId) ? profile.count : ((await model.snapshots.load(WORKSPACE, SHARD, profileId))?.snapshot as unknown as ModelProfile | undefined)?.count ?? 0;
    if (rebuilt !== expected) return `after the run ${profileId} counts ${rebuilt}, the log has ${expected}\n${model.trace.slice(-30).join('\n')}`;
  }
  return null;
}

t.test('handoff model - fenced writes keep every count exact', async (t) => {
  const only = process.env.HANDOFF_MODEL_SEED;
  const seeds = only === undefined ? Array.from({ length: SEEDS }, (_, i) => i + 1) : [Number(only)];
  const failures: string[] = [];
  for (const seed of seeds) {
    const problem = await runSeed(seed);
    if (problem !== null) failures.push(`seed ${seed}: ${problem}`);
    if (failures.length > 0) break;
  }
  t.same(failures, [], `${seeds.length} seeds of ${STEPS_PER_RUN} steps`);
});
