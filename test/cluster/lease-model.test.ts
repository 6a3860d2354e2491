/**
 * A deterministic model check of ShardLeases. Three lease managers (two in some runs)
 * compete for two shards over one MemoryKvStore, and a seeded pseudo-random scheduler
 * decides each step. Time moves, a KV request reaches the store, a reply reaches its node,
 * or a request or reply is lost. A node calls acquire or release, pauses like SIGSTOP or
 * resumes, or restarts with a new incarnation. While a node is paused, its timers and
 * replies wait and time moves on. The store starts or stops returning stale reads, or the
 * KV goes down.
 *
 * After every step and every timer, the model checks:
 * - at most one manager reports owns(shard), paused ones included;
 * - a manager that reports owns(shard) had a write confirmed that was sent less than
 *   leaseTtlMs - stallMarginMs ago, and the stored record is its own, with its epoch;
 * - every new tenure of a shard has a higher epoch than any before it;
 * - a takeover of an unreleased lease of another holder is sent at least
 *   max(ttl) + takeoverMarginMs after the replaced record was written;
 * - a released lease is taken by the next node without time passing (the handover probe).
 *
 * A failing run reports its seed and the last steps; `LEASE_MODEL_SEED=n` reruns one seed.
 */
import t from 'tap';
import { silentLogger } from '../../common/logger.js';
import type { Clock, TimerHandle } from '../../cluster/clock.js';
import { KvConflictError, type KvEntry, type KvStore } from '../../storage/kv-store.js';
import { MemoryKvStore } from '../../storage/memory-kv-store.js';
import { decodeLeaseRecord, leaseEpoch, type LeaseRecord } from '../../cluster/leases/lease-record.js';
import { leaseKey, ShardLeases, type AcquireResult } from '../../cluster/leases/shard-leases.js';
import { settle } from '../helpers/manual-clock.js';

const SEEDS = 500;
const STEPS_PER_RUN = 400;
const SHARDS = [0, 1];
const LEASE_OPTIONS = { leaseTtlMs: 10_000, renewIntervalMs: 3_000, stallMarginMs: 2_000, takeoverMarginMs: 2_000, renewRetryIntervalMs: 1_000 };
const VALIDITY_MS = LEASE_OPTIONS.leaseTtlMs - LEASE_OPTIONS.stallMarginMs;
const TRACE_LINES = 40;

/** mulberry32: a small, fast pseudo-random generator with a 32-bit seed. */
function createRandom(seed: number): { next(): number; int(max: number): number; pick<T>(items: readonly T[]): T | undefined } {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4_294_967_296;
  };
  return {
    next,
    int: (max) => Math.floor(next() * max),
    pick: (items) => (items.length === 0 ? undefined : items[Math.floor(next() * items.length)]),
  };
}

class ModelViolation extends Error {}

interface ModelTimer {
  dueMs: number;
  order: number;
  callback: () => void;
}

/** A node's monotonic clock: world time plus the node's own origin, with timers that wait while the node is paused. */
class NodeClock implements Clock {
  readonly timers = new Set<ModelTimer>();

  constructor(
    private readonly world: World,
    private readonly originMs: number,
  ) {}

  nowMs(): number {
    return this.world.nowMs + this.originMs;
  }

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    const timer = { dueMs: this.world.nowMs + Math.max(0, delayMs), order: this.world.nextOrder(), callback };
    this.timers.add(timer);
    return { cancel: () => this.timers.delete(timer) };
  }
}

type KvMethod = 'get' | 'create' | 'update';

interface PendingCall {
  node: ModelNode;
  method: KvMethod;
  key: string;
  value?: Uint8Array;
  expectedRevision?: number;
  sentAtMs: number;
  stage: 'sent' | 'applied';
  outcome?: { ok: true; value: unknown } | { ok: false; error: unknown };
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** The KvStore of one node. Every call waits in the world until the scheduler moves it on. */
class ModelKv implements KvStore {
  constructor(
    private readonly world: World,
    private readonly node: ModelNode,
  ) {}

  get(key: string): Promise<KvEntry | null> {
    return this.world.send(this.node, { method: 'get', key }) as Promise<KvEntry | null>;
  }
  create(key: string, value: Uint8Array): Promise<number> {
    return this.world.send(this.node, { method: 'create', key, value }) as Promise<number>;
  }
  update(key: string, value: Uint8Array, expectedRevision: number): Promise<number> {
    return this.world.send(this.node, { method: 'update', key, value, expectedRevision }) as Promise<number>;
  }
  put(): Promise<number> {
    throw new Error('ShardLeases does not call put');
  }
  delete(): Promise<void> {
    throw new Error('ShardLeases does not call delete');
  }
  list(): Promise<KvEntry[]> {
    throw new Error('ShardLeases does not call list');
  }
}

interface ModelNode {
  index: number;
  nodeId: string;
  incarnation: string;
  clock: NodeClock;
  leases: ShardLeases;
  paused: boolean;
  /** Send time of the last write per key whose success reached this node, in world time. */
  confirmedSentAtMs: Map<string, number>;
  /** Whether the last onChange per shard was a gain. */
  ownedByEvents: Map<number, boolean>;
  acquiring: Set<number>;
  releasing: Set<number>;
}

interface StoredLease {
  revision: number;
  record: LeaseRecord;
  writtenAtMs: number;
}

interface Coverage {
  runs: number;
  steps: number;
  created: number;
  expiredTakeovers: number;
  releasedTakeovers: number;
  ownRecordRetakes: number;
  handoverProbes: number;
  stepDowns: number;
  renewalConflicts: number;
  lostCalls: number;
  pausedPastValidity: number;
  restarts: number;
}

class World {
  nowMs = 0;
  readonly store = new MemoryKvStore();
  readonly nodes: ModelNode[] = [];
  readonly pending: PendingCall[] = [];
  /** The true current record per key, which stale reads do not affect. */
  readonly stored = new Map<string, StoredLease>();
  readonly maxEpoch = new Map<number, number>();
  readonly trace: string[] = [];
  kvDown = false;
  violation: string | undefined;
  #order = 0;

  constructor(
    readonly seed: number,
    readonly coverage: Coverage,
  ) {}

  nextOrder(): number {
    return this.#order++;
  }

  log(line: string): void {
    this.trace.push(`[${this.nowMs}] ${line}`);
    if (this.trace.length > TRACE_LINES) this.trace.shift();
  }

  /** Records the first violation. Callbacks that run inside ShardLeases call this, because it catches listener errors. */
  note(message: string): void {
    this.violation ??= `seed ${this.seed} at ${this.nowMs} ms: ${message}\nlast steps:\n${this.trace.join('\n')}`;
  }

  fail(message: string): never {
    this.note(message);
    throw new ModelViolation(this.violation!);
  }

  addNode(index: number, incarnation: string): ModelNode {
    const clock = new NodeClock(this, (index + 1) * 1_000_000 + ((this.seed * 7_919) % 100_000));
    const node: ModelNode = {
      index,
      nodeId: `node-${index}`,
      incarnation,
      clock,
      leases: undefined as unknown as ShardLeases,
      paused: false,
      confirmedSentAtMs: new Map(),
      ownedByEvents: new Map(),
      acquiring: new Set(),
      releasing: new Set(),
    };
    node.leases = new ShardLeases(new ModelKv(this, node), { nodeId: node.nodeId, incarnation, clock, logger: silentLogger(), ...LEASE_OPTIONS });
    node.leases.onChange((shard, owned) => this.#onChange(node, shard, owned));
    node.leases.start();
    this.nodes[index] = node;
    return node;
  }

  send(node: ModelNode, request: { method: KvMethod; key: string; value?: Uint8Array; expectedRevision?: number }): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.pending.push({ node, ...request, sentAtMs: this.nowMs, stage: 'sent', resolve, reject });
    });
  }

  /** Applies a request to the store and checks the takeover rule on every successful write. */
  async apply(call: PendingCall): Promise<void> {
    call.stage = 'applied';
    const previous = this.stored.get(call.key);
    try {
      let value: unknown;
      if (call.method === 'get') value = await this.store.get(call.key);
      else if (call.method === 'create') value = await this.store.create(call.key, call.value!);
      else value = await this.store.update(call.key, call.value!, call.expectedRevision!);
      call.outcome = { ok: true, value };
    } catch (error) {
      call.outcome = { ok: false, error };
    }
    this.log(`${call.node.nodeId} ${call.method} ${call.key}${call.expectedRevision === undefined ? '' : `@${call.expectedRevision}`} applied: ${describeOutcome(call)}`);

    if (call.method === 'get' || !call.outcome.ok) return;
    const revision = call.outcome.value as number;
    const record = decodeLeaseRecord(call.value!, call.key, revision);
    if (record.epoch === 0) this.#checkTakeover(call, record, previous);
    this.stored.set(call.key, { revision, record, writtenAtMs: this.nowMs });
  }

  #checkTakeover(call: PendingCall, record: LeaseRecord, previous: StoredLease | undefined): void {
    if (previous === undefined) {
      this.coverage.created += 1;
      return;
    }
    if (previous.record.released) {
      this.coverage.releasedTakeovers += 1;
      return;
    }
    if (previous.record.holder === record.holder && previous.record.incarnation === record.incarnation) {
      this.coverage.ownRecordRetakes += 1;
      return;
    }

    const waitMs = Math.max(previous.record.ttlMs, LEASE_OPTIONS.leaseTtlMs) + LEASE_OPTIONS.takeoverMarginMs;
    const waitedMs = call.sentAtMs - previous.writtenAtMs;
    if (waitedMs < waitMs) {
      this.fail(`${call.node.nodeId} took over ${call.key} from ${previous.record.holder} ${waitedMs} ms after its last write, before ${waitMs} ms`);
    }
    this.coverage.expiredTakeovers += 1;
  }

  /** Delivers a reply to its node, which must not be paused. */
  deliver(call: PendingCall): void {
    this.#remove(call);
    const outcome = call.outcome!;
    this.log(`${call.node.nodeId} ${call.method} ${call.key} reply: ${describeOutcome(call)}`);
    if (outcome.ok) {
      if (call.method !== 'get' && !decodeLeaseRecord(call.value!, call.key, outcome.value as number).released) {
        const confirmed = call.node.confirmedSentAtMs.get(call.key) ?? -Infinity;
        call.node.confirmedSentAtMs.set(call.key, Math.max(confirmed, call.sentAtMs));
      }
      call.resolve(outcome.value);
    } else {
      if (call.method === 'update' && outcome.error instanceof KvConflictError) {
        const record = decodeLeaseRecord(call.value!, call.key, 1);
        if (record.epoch !== 0 && !record.released) this.coverage.renewalConflicts += 1;
      }
      call.reject(outcome.error);
    }
  }

  /** Fails a call as a timeout or a dropped connection does, before or after the store applied it. */
  lose(call: PendingCall): void {
    this.#remove(call);
    this.coverage.lostCalls += 1;
    this.log(`${call.node.nodeId} ${call.method} ${call.key} lost ${call.stage === 'sent' ? 'before' : 'after'} the store`);
    call.reject(new Error(`model KV ${call.method} of ${call.key} timed out`));
  }

  #remove(call: PendingCall): void {
    this.pending.splice(this.pending.indexOf(call), 1);
  }

  /** Moves time forward, running the due timers of nodes that are not paused in order. */
  async advance(ms: number): Promise<void> {
    const targetMs = this.nowMs + ms;
    for (let due = this.#nextTimer(targetMs); due !== undefined; due = this.#nextTimer(targetMs)) {
      due.clock.timers.delete(due.timer);
      this.nowMs = Math.max(this.nowMs, due.timer.dueMs);
      due.timer.callback();
      await settle();
      this.check();
    }
    this.nowMs = targetMs;
    this.check();
  }

  #nextTimer(limitMs: number): { clock: NodeClock; timer: ModelTimer } | undefined {
    let next: { clock: NodeClock; timer: ModelTimer } | undefined;
    for (const node of this.nodes) {
      if (node.paused) continue;
      for (const timer of node.clock.timers) {
        if (timer.dueMs > limitMs) continue;
        if (next === undefined || timer.dueMs < next.timer.dueMs || (timer.dueMs === next.timer.dueMs && timer.order < next.timer.order)) {
          next = { clock: node.clock, timer };
        }
      }
    }
    return next;
  }

  /** Checks the invariants that must hold at every moment. */
  check(): void {
    if (this.violation !== undefined) throw new ModelViolation(this.violation);
    for (const shard of SHARDS) {
      const key = leaseKey(shard);
      const owners = this.nodes.filter((node) => node.leases.owns(shard));
      if (owners.length > 1) this.fail(`shard ${shard} is owned by ${owners.map((node) => node.nodeId).join(' and ')}`);

      const owner = owners[0];
      if (owner === undefined) continue;
      const confirmedSentAtMs = owner.confirmedSentAtMs.get(key) ?? -Infinity;
      if (this.nowMs >= confirmedSentAtMs + VALIDITY_MS) {
        this.fail(`${owner.nodeId}${owner.paused ? ' (paused)' : ''} owns shard ${shard}, but its last confirmed write was sent at ${confirmedSentAtMs} ms`);
      }
      const stored = this.stored.get(key);
      if (stored === undefined || stored.record.holder !== owner.nodeId || stored.record.incarnation !== owner.incarnation || stored.record.released) {
        this.fail(`${owner.nodeId} owns shard ${shard}, but the stored record is ${JSON.stringify(stored?.record)}`);
      }
      if (leaseEpoch(stored.record, stored.revision) !== owner.leases.epoch(shard)) {
        this.fail(`${owner.nodeId} reports epoch ${owner.leases.epoch(shard)} for shard ${shard}, the stored record has ${leaseEpoch(stored.record, stored.revision)}`);
      }
    }
  }

  #onChange(node: ModelNode, shard: number, owned: boolean): void {
    this.log(`${node.nodeId} onChange(${shard}, ${owned})`);
    if ((node.ownedByEvents.get(shard) ?? false) === owned) this.note(`${node.nodeId} reported onChange(${shard}, ${owned}) twice in a row`);
    node.ownedByEvents.set(shard, owned);
    if (!owned) {
      this.coverage.stepDowns += 1;
      return;
    }

    const epoch = node.leases.epoch(shard);
    const before = this.maxEpoch.get(shard) ?? 0;
    if (epoch <= before) this.note(`${node.nodeId} gained shard ${shard} with epoch ${epoch}, not above the earlier ${before}`);
    this.maxEpoch.set(shard, epoch);
  }
}

function describeOutcome(call: PendingCall): string {
  const outcome = call.outcome!;
  if (!outcome.ok) return (outcome.error as Error).name;
  if (call.method !== 'get') return `revision ${String(outcome.value)}`;
  const entry = outcome.value as KvEntry | null;
  if (entry === null) return 'missing';
  const record = decodeLeaseRecord(entry.value, entry.key, entry.revision);
  return `${record.holder}${record.released ? ' released' : ''} at ${entry.revision}`;
}

function runningNodes(world: World): ModelNode[] {
  return world.nodes.filter((node) => !node.paused);
}

function callAcquire(world: World, node: ModelNode, shard: number): Promise<AcquireResult | Error> {
  node.acquiring.add(shard);
  world.log(`${node.nodeId} acquire(${shard})`);
  return node.leases.acquire(shard).then(
    (result) => {
      node.acquiring.delete(shard);
      world.log(`${node.nodeId} acquire(${shard}) -> ${JSON.stringify(result)}`);
      return result;
    },
    (error: unknown) => {
      node.acquiring.delete(shard);
      world.log(`${node.nodeId} acquire(${shard}) failed: ${String(error)}`);
      // Only transient KV failures may reject an acquire.
      if (!/model KV .* timed out/.test(String(error))) world.note(`acquire rejected with ${String(error)}`);
      return error as Error;
    },
  );
}

function callRelease(world: World, node: ModelNode, shard: number): Promise<boolean> {
  node.releasing.add(shard);
  world.log(`${node.nodeId} release(${shard})`);
  return node.leases.release(shard).then((released) => {
    node.releasing.delete(shard);
    world.log(`${node.nodeId} release(${shard}) -> ${released}`);
    return released;
  });
}

/**
 * Releases a shard owned by one running node and has another running node acquire it,
 * moving only those two nodes' KV calls and never the clock. The taker must get the
 * shard without waiting. Reads are current during the probe, because a stale read of the
 * record before the release makes any taker wait.
 */
async function probeHandover(world: World, random: ReturnType<typeof createRandom>): Promise<void> {
  const shard = random.pick(SHARDS)!;
  const owner = runningNodes(world).find((node) => node.leases.owns(shard) && !node.releasing.has(shard) && !node.acquiring.has(shard));
  const taker = random.pick(runningNodes(world).filter((node) => node !== owner && !node.acquiring.has(shard) && !node.releasing.has(shard)));
  if (owner === undefined || taker === undefined) return;

  world.coverage.handoverProbes += 1;
  const staleReads = world.store.staleReads;
  world.store.staleReads = 0;
  const startMs = world.nowMs;
  world.log(`probe: ${owner.nodeId} hands shard ${shard} over to ${taker.nodeId}`);

  const released = await driveUntilSettled(world, owner, callRelease(world, owner, shard));
  if (released !== true) world.fail(`${owner.nodeId} could not release shard ${shard} during the probe`);

  const result = await driveUntilSettled(world, taker, callAcquire(world, taker, shard));
  if (!(result instanceof Error) && result.acquired && result.previous?.holder === owner.nodeId && result.previous.released) {
    if (world.nowMs !== startMs) world.fail('time moved during the probe');
  } else {
    world.fail(`${taker.nodeId} did not take the released shard ${shard} at once: ${JSON.stringify(result)}`);
  }
  world.store.staleReads = staleReads;
}

/** Moves only `node`'s KV calls, without moving time, until `promise` settles. */
async function driveUntilSettled<T>(world: World, node: ModelNode, promise: Promise<T>): Promise<T> {
  let settled = false;
  let value: T | undefined;
  void promise.then((result) => {
    settled = true;
    value = result;
  });

  await settle();
  while (!settled) {
    const call = world.pending.find((pending) => pending.node === node);
    if (call === undefined) world.fail(`${node.nodeId} waits for something other than the KV during the probe`);
    if (call.stage === 'sent') await world.apply(call);
    else world.deliver(call);
    await settle();
    world.check();
  }
  return value as T;
}

async function runModel(seed: number, coverage: Coverage): Promise<void> {
  const random = createRandom(seed);
  const world = new World(seed, coverage);
  const nodeCount = seed % 4 === 0 ? 2 : 3;
  const restarts: number[] = [];
  for (let index = 0; index < nodeCount; index++) {
    world.addNode(index, 'run-1');
    restarts.push(1);
  }
  coverage.runs += 1;

  for (let step = 0; step < STEPS_PER_RUN; step++) {
    coverage.steps += 1;
    const roll = random.next();
    const sent = world.pending.filter((call) => call.stage === 'sent');
    const replies = world.pending.filter((call) => call.stage === 'applied' && !call.node.paused);

    if (roll < 0.27) {
      // Mostly short moves, sometimes past a renewal interval, rarely past a whole ttl.
      const size = random.next();
      let ms = 1 + random.int(800);
      if (size >= 0.95) ms = 5_000 + random.int(15_000);
      else if (size >= 0.7) ms = 800 + random.int(4_000);
      await world.advance(ms);
    } else if (roll < 0.52) {
      const call = random.pick(sent);
      if (call === undefined) continue;
      if (world.kvDown) world.lose(call);
      else await world.apply(call);
    } else if (roll < 0.72) {
      const call = random.pick(replies);
      if (call === undefined) continue;
      world.deliver(call);
    } else if (roll < 0.75) {
      const call = random.pick(world.pending.filter((pending) => !pending.node.paused));
      if (call === undefined) continue;
      world.lose(call);
    } else if (roll < 0.84) {
      const node = random.pick(runningNodes(world));
      const shard = random.pick(SHARDS)!;
      if (node === undefined || node.acquiring.has(shard)) continue;
      void callAcquire(world, node, shard);
    } else if (roll < 0.88) {
      const node = random.pick(runningNodes(world));
      const shard = random.pick(SHARDS)!;
      if (node === undefined || !node.leases.owns(shard) || node.releasing.has(shard)) continue;
      void callRelease(world, node, shard);
    } else if (roll < 0.905) {
      const node = random.pick(runningNodes(world));
      if (node === undefined) continue;
      node.paused = true;
      world.log(`${node.nodeId} paused`);
    } else if (roll < 0.94) {
      const node = random.pick(world.nodes.filter((candidate) => candidate.paused));
      if (node === undefined) continue;
      // Before any timer runs, a resumed node must not report a lease whose validity passed.
      const pastValidity = SHARDS.some((shard) => node.ownedByEvents.get(shard) === true && !node.leases.owns(shard));
      if (pastValidity) coverage.pausedPastValidity += 1;
      node.paused = false;
      world.log(`${node.nodeId} resumed`);
      world.check();
      await world.advance(0);
    } else if (roll < 0.95) {
      // A crash and restart with a new incarnation. The old process's requests may still
      // reach the store, but no reply reaches anyone, because they belong to a node paused for good.
      const node = random.pick(runningNodes(world));
      if (node === undefined) continue;
      node.leases.stop();
      restarts[node.index] += 1;
      coverage.restarts += 1;
      world.log(`${node.nodeId} restarted as run-${restarts[node.index]}`);
      const crashed: ModelNode = { ...node, paused: true };
      for (const call of world.pending.filter((pending) => pending.node === node)) call.node = crashed;
      world.addNode(node.index, `run-${restarts[node.index]}`);
    } else if (roll < 0.96) {
      world.store.staleReads = random.int(3);
      world.log(`stale reads: ${world.store.staleReads}`);
    } else if (roll < 0.97) {
      world.kvDown = !world.kvDown;
      world.log(world.kvDown ? 'KV down' : 'KV up');
    } else {
      await probeHandover(world, random);
    }

    await settle();
    world.check();
  }

  for (const node of world.nodes) node.leases.stop();
}

t.test('lease model - random schedules keep the lease rules', { timeout: 120_000 }, async (t) => {
  const coverage: Coverage = {
    runs: 0,
    steps: 0,
    created: 0,
    expiredTakeovers: 0,
    releasedTakeovers: 0,
    ownRecordRetakes: 0,
    handoverProbes: 0,
    stepDowns: 0,
    renewalConflicts: 0,
    lostCalls: 0,
    pausedPastValidity: 0,
    restarts: 0,
  };
  const only = process.env.LEASE_MODEL_SEED;
  const seeds = only === undefined ? Array.from({ length: SEEDS }, (_, seed) => seed + 1) : [Number(only)];

  const startedAt = performance.now();
  for (const seed of seeds) {
    try {
      await runModel(seed, coverage);
    } catch (error) {
      t.fail(error instanceof ModelViolation ? error.message : `seed ${seed} threw: ${String((error as Error).stack)}`);
      return;
    }
  }
  t.pass(`${coverage.runs} runs of ${STEPS_PER_RUN} steps kept every rule`);
  t.comment(`model check took ${Math.round(performance.now() - startedAt)} ms: ${JSON.stringify(coverage)}`);

  if (only !== undefined) return;
  // Each rule must have been exercised, or the run proves little.
  t.ok(coverage.created > 0, 'leases were created');
  t.ok(coverage.expiredTakeovers > 0, 'unreleased leases were taken over after expiry');
  t.ok(coverage.releasedTakeovers > 0, 'released leases were taken over');
  t.ok(coverage.ownRecordRetakes > 0, 'nodes retook their own records');
  t.ok(coverage.handoverProbes > 0, 'handover probes ran');
  t.ok(coverage.stepDowns > 0, 'nodes stepped down');
  t.ok(coverage.renewalConflicts > 0, 'renewals met conflicts');
  t.ok(coverage.lostCalls > 0, 'KV calls were lost');
  t.ok(coverage.pausedPastValidity > 0, 'paused nodes resumed after their validity passed');
  t.ok(coverage.restarts > 0, 'nodes restarted');
});
