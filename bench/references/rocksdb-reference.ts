/**
 * RocksDB reference, forked by the harness: how many events a second rtcdp's Store
 * (rocksdb-native) takes when it only writes them, one batch at a time, as the embedded
 * event log does. Each batch has the puts of RocksDbEventLog's append: per event a log
 * record (msgpack of version, messageId, payload, appendedAtMs) and its dedup key, and per
 * partition the new head sequence. The payloads are the validated, msgpack-encoded events of
 * the ingest load. With `walSync` each write also waits for the WAL fdatasync, as the node's
 * appends do by default.
 *
 * Unlike the event log, the reference does not read the dedup keys before each write, and
 * nothing applies the events afterwards. Requests: 'run' (RocksDbRun) returns
 * RocksDbReport. SIGTERM or a closed IPC channel exits.
 */
import { randomBytes } from 'node:crypto';
import { prepareBatch } from '../../cluster/ingest-batch.js';
import { eventFromProto } from '../../api/convert.js';
import { Event } from '../../proto/gen/rtcdp/v1/event.js';
import { resolveEventLimits } from '../../profiles/validation.js';
import { encode } from '../../storage/codec.js';
import { keys } from '../../storage/keys.js';
import { Store, type WriteOp } from '../../storage/store.js';
import { sendEvent, serveIpc } from '../ipc.js';
import { encodeEventBatches, type PayloadOptions } from './payloads.js';

export interface RocksDbRun extends PayloadOptions {
  dataDir: string;
  walSync: boolean;
  warmupS: number;
  durationS: number;
}

export interface RocksDbReport {
  windowEvents: number;
  windowSeconds: number;
  /** Time of each write of the window, in ms. */
  writeLatenciesMs: Float64Array;
  cpuMs: number;
}

const WORKSPACE = 'default';

/** The embedded node's default shard count, which the log's partitions follow. */
const SHARDS = 16;

/** Distinct batches prepared up front; the writer cycles through them with new messageIds. */
const PAYLOAD_BATCHES = 64;

/** Record version of RocksDbEventLog's stored records. */
const LOG_RECORD_VERSION = 1;

interface PreparedEvent {
  shard: number;
  payload: Buffer;
}

/** Validates and encodes the load's events as the node does before it appends them. */
function prepareEvents(run: RocksDbRun): Promise<PreparedEvent[][]> {
  const limits = resolveEventLimits();
  return Promise.all(encodeEventBatches(PAYLOAD_BATCHES, run).map(async (batch) => {
    const raws = batch.map((bytes) => eventFromProto(Event.decode(bytes)));
    const prepared = await prepareBatch(WORKSPACE, raws, limits, SHARDS);
    if (prepared.events.length !== batch.length) throw new Error(`validation rejected ${batch.length - prepared.events.length} generated events, which are all valid`);
    return prepared.events.map((request) => ({ shard: request.shard, payload: request.payload }));
  }));
}

class LogWriter {
  readonly #heads = new Array<number>(SHARDS).fill(0);
  readonly #messageIdPrefix = randomBytes(4).toString('hex');
  #nextMessage = 0;

  /** Builds the write batch of one append, as RocksDbEventLog's #prepare does. */
  buildOps(events: PreparedEvent[]): WriteOp[] {
    const ops: WriteOp[] = [];
    const touched = new Set<number>();
    const appendedAtMs = Date.now();

    for (const { shard, payload } of events) {
      const messageId = `${this.#messageIdPrefix}-${(this.#nextMessage++).toString(36)}`;
      const sequence = ++this.#heads[shard];
      touched.add(shard);
      ops.push({ type: 'put', key: keys.logRecord(WORKSPACE, shard, sequence), value: encode({ version: LOG_RECORD_VERSION, messageId, payload, appendedAtMs }) });
      ops.push({ type: 'put', key: keys.dedup(WORKSPACE, messageId), value: `${shard}:${sequence}` });
    }

    for (const shard of touched) ops.push({ type: 'put', key: keys.logHead(WORKSPACE, shard), value: String(this.#heads[shard]) });
    return ops;
  }
}

async function measure(run: RocksDbRun): Promise<RocksDbReport> {
  const batches = await prepareEvents(run);
  const store = await Store.open({ path: run.dataDir, walSync: run.walSync });
  const writer = new LogWriter();
  const latencies: number[] = [];

  try {
    const startedAt = performance.now();
    const markAt = startedAt + run.warmupS * 1_000;
    const endAt = markAt + run.durationS * 1_000;
    let windowEvents = 0;
    let windowStartedAt = -1;
    let lastWriteAt = 0;

    for (let i = 0; performance.now() < endAt; i++) {
      const events = batches[i % batches.length];
      const writeStartedAt = performance.now();
      await store.write(writer.buildOps(events), { sync: true });
      lastWriteAt = performance.now();

      if (writeStartedAt >= markAt) {
        if (windowStartedAt < 0) windowStartedAt = writeStartedAt;
        windowEvents += events.length;
        latencies.push(lastWriteAt - writeStartedAt);
      }
    }

    const cpu = process.cpuUsage();
    return {
      windowEvents,
      windowSeconds: windowStartedAt < 0 ? 0 : (lastWriteAt - windowStartedAt) / 1_000,
      writeLatenciesMs: Float64Array.from(latencies),
      cpuMs: (cpu.user + cpu.system) / 1_000,
    };
  } finally {
    await store.close();
  }
}

serveIpc({ run: (run: RocksDbRun) => measure(run) }, () => process.exit(1));
process.on('SIGTERM', () => process.exit(0));
sendEvent('ready', { pid: process.pid });
