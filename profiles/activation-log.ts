/**
 * The node's activation log: every activation a profile produced, per workspace, numbered
 * 1, 2, 3, … in the order they were written, in RocksDB next to the snapshots. Readers page
 * through it by sequence and wait for new entries, so a downstream consumer keeps its own
 * cursor and resumes after a restart where it left off.
 *
 * Snapshot writes run concurrently, so a later sequence can be written before an earlier one.
 * A reader sees only the sequences below the oldest write still in flight, which keeps the
 * log append-only for readers: a sequence it has passed never appears afterwards. A failed
 * write leaves its sequences unused; the profile writes its activations again, under new
 * sequences, with its next snapshot.
 */
import { decode, encode } from '../storage/codec.js';
import { keys, parseSequence, prefixEnd } from '../storage/keys.js';
import type { Store, WriteOp } from '../storage/store.js';
import type { ActivationType, ProfileActivation } from './activation.js';

export interface StoredActivation extends ProfileActivation {
  /** Position in the workspace's activation log, from 1. */
  sequence: number;
}

/** The sequences of one snapshot write. Pass it to `settle` once the write finished or failed. */
export interface ActivationBatch {
  readonly ops: WriteOp[];
  readonly workspaces: ReadonlyMap<string, { first: number; end: number }>;
}

export interface ListActivationsOptions {
  /** Returns activations with a greater sequence. Default 0, from the start. */
  afterSequence?: number;
  /** At most this many. Default 100. */
  limit?: number;
  /** Only these types; all when empty or undefined. */
  types?: readonly ActivationType[];
}

export interface ActivationPage {
  activations: StoredActivation[];
  /** The last sequence a reader can see now; page again after it to follow the log. */
  visibleSequence: number;
  /** The sequence to pass as `afterSequence` for the next page. */
  nextAfterSequence: number;
  /**
   * The newest sequence the log has handed out, so no cursor read from the log passes it.
   * On a node's own log it is `visibleSequence`. On a JetStream log, for a cursor past the
   * workspace's newest activation, it is the stream's last sequence, which does not fall
   * when activations expire.
   */
  endSequence: number;
}

interface WorkspaceLog {
  /** The next sequence to hand out. */
  next: number;
  /** [first, end) of each write in flight. */
  inFlight: Array<{ first: number; end: number }>;
  visible: number;
  waiters: Set<() => void>;
}

/** The destination of the activations a snapshot write covers: the node's activation log, or none when they were published elsewhere first. */
export interface ActivationSink {
  /** Returns the ops that store the activations, for the caller to add to its write. */
  prepare(activations: readonly ProfileActivation[]): Promise<ActivationBatch>;
  /** Marks a batch's write as finished or failed. */
  settle(batch: ActivationBatch): void;
}

/** A sink for activations that the caller stored elsewhere before the snapshot write, such as cluster mode's activation stream. */
export const PUBLISHED_ELSEWHERE: ActivationSink = {
  prepare: async () => ({ ops: [], workspaces: new Map() }),
  settle: () => {},
};

export class ActivationLog implements ActivationSink {
  readonly #store: Store;
  readonly #logs = new Map<string, WorkspaceLog>();
  readonly #opening = new Map<string, Promise<WorkspaceLog>>();

  constructor(store: Store) {
    this.#store = store;
  }

  /** Numbers the activations and returns the ops that store them; the caller adds them to its write. */
  async prepare(activations: readonly ProfileActivation[]): Promise<ActivationBatch> {
    const byWorkspace = new Map<string, ProfileActivation[]>();
    for (const activation of activations) {
      const list = byWorkspace.get(activation.workspace) ?? [];
      list.push(activation);
      byWorkspace.set(activation.workspace, list);
    }
    for (const workspace of byWorkspace.keys()) await this.#open(workspace);

    // Sequences are handed out after the last await, so two prepares never interleave them.
    const ops: WriteOp[] = [];
    const ranges = new Map<string, { first: number; end: number }>();
    for (const [workspace, list] of byWorkspace) {
      const log = this.#logs.get(workspace) as WorkspaceLog;
      const range = { first: log.next, end: log.next + list.length };
      log.next = range.end;
      log.inFlight.push(range);
      ranges.set(workspace, range);
      list.forEach((activation, i) => {
        const stored: StoredActivation = { ...activation, sequence: range.first + i };
        ops.push({ type: 'put', key: keys.activation(workspace, stored.sequence), value: encode(stored) });
      });
    }
    return { ops, workspaces: ranges };
  }

  /** Marks a batch's write as finished (or failed), which may make later sequences visible to readers. */
  settle(batch: ActivationBatch): void {
    for (const [workspace, range] of batch.workspaces) {
      const log = this.#logs.get(workspace) as WorkspaceLog;
      log.inFlight = log.inFlight.filter((candidate) => candidate !== range);
      const oldest = log.inFlight.reduce((min, candidate) => Math.min(min, candidate.first), log.next);
      if (oldest - 1 <= log.visible) continue;

      log.visible = oldest - 1;
      const waiters = [...log.waiters];
      log.waiters.clear();
      for (const wake of waiters) wake();
    }
  }

  /** Returns a page of a workspace's activations, oldest first. */
  async list(workspace: string, options: ListActivationsOptions = {}): Promise<ActivationPage> {
    const log = await this.#open(workspace);
    const after = options.afterSequence ?? 0;
    const limit = options.limit ?? 100;
    const types = options.types !== undefined && options.types.length > 0 ? new Set(options.types) : undefined;
    const visible = log.visible;

    const activations: StoredActivation[] = [];
    let last = after;
    // Pruning keeps the newest activation, so `visible` never falls below a cursor it handed out.
    if (after >= visible) return { activations, visibleSequence: visible, nextAfterSequence: after, endSequence: visible };

    for await (const entry of this.#store.iterate({ gt: keys.activation(workspace, after), lte: keys.activation(workspace, visible) })) {
      const stored = decode<StoredActivation>(entry.value);
      last = parseSequence(entry.key.toString());
      if (types === undefined || types.has(stored.type)) activations.push(stored);
      if (activations.length >= limit) break;
    }
    // A page that ran to the visible end skipped nothing after `last`.
    const nextAfterSequence = activations.length >= limit ? last : visible;
    return { activations, visibleSequence: visible, nextAfterSequence, endSequence: visible };
  }

  /**
   * Resolves once the workspace's visible sequence is past `afterSequence`, or when
   * `signal` aborts (without an error: the caller checks the signal).
   */
  async waitBeyond(workspace: string, afterSequence: number, signal: AbortSignal): Promise<void> {
    const log = await this.#open(workspace);
    if (log.visible > afterSequence || signal.aborted) return;

    await new Promise<void>((resolve) => {
      const done = () => {
        log.waiters.delete(check);
        signal.removeEventListener('abort', done);
        resolve();
      };
      // settle() empties the waiters before it calls them, so a waiter not yet satisfied adds itself again.
      const check = () => {
        if (log.visible > afterSequence) done();
        else log.waiters.add(check);
      };
      log.waiters.add(check);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * Deletes a workspace's oldest activations stored before `beforeMs`, in sequence order up
   * to the first newer one, at most `limit`. The newest visible activation is always kept,
   * so the numbering continues after a restart. Returns how many it deleted.
   */
  async prune(workspace: string, beforeMs: number, limit = 10_000): Promise<number> {
    const log = await this.#open(workspace);
    const range = { gte: keys.activation(workspace, 0), lt: keys.activation(workspace, log.visible), limit };

    let end = 0;
    let count = 0;
    for await (const entry of this.#store.iterate(range)) {
      if (decode<StoredActivation>(entry.value).atMs >= beforeMs) break;
      end = parseSequence(entry.key.toString()) + 1;
      count += 1;
    }
    if (count > 0) await this.#store.write([{ type: 'delRange', start: keys.activation(workspace, 0), end: keys.activation(workspace, end) }]);
    return count;
  }

  async #open(workspace: string): Promise<WorkspaceLog> {
    const open = this.#logs.get(workspace);
    if (open !== undefined) return open;

    let opening = this.#opening.get(workspace);
    if (opening === undefined) {
      opening = this.#read(workspace).finally(() => this.#opening.delete(workspace));
      this.#opening.set(workspace, opening);
    }
    return opening;
  }

  async #read(workspace: string): Promise<WorkspaceLog> {
    const prefix = keys.activationPrefix(workspace);
    const [last] = await this.#store.list({ gte: prefix, lt: prefixEnd(prefix), reverse: true, limit: 1 });
    const lastSequence = last === undefined ? 0 : parseSequence(last.key.toString());
    const log: WorkspaceLog = { next: lastSequence + 1, inFlight: [], visible: lastSequence, waiters: new Set() };
    this.#logs.set(workspace, log);
    return log;
  }
}
