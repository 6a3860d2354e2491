/**
 * Cluster node host process, forked by the harness: runs one rtcdp cluster node with its
 * gRPC server (`startClusterProcess`, dev mode, workspace "default") on a free port of
 * 127.0.0.1, and serves the harness's requests over IPC.
 *
 * The node logs at info level into this process. Every record goes to `<dataDir>.log`,
 * which the harness keeps with --keep-data. Warnings and errors also go to stderr, and
 * the records of shard moves ("took over the shard", "handed the shard off" with its
 * handoffMs, lost leases) go to the harness as 'shardMove' events.
 *
 * The config is the JSON in argv[2]. SIGTERM stops the node as `rtcdp node` does: it
 * stops taking calls, hands its shards to the other nodes, and the process exits. A closed
 * IPC channel does the same. SIGKILL, which the harness sends to simulate a crash, leaves
 * everything to the other nodes.
 */
import { mkdir } from 'node:fs/promises';
import { pino } from 'pino';
import { startClusterProcess, type ClusterProcess } from '../api/cluster.js';
import type { ClusterNodeOptions } from '../cluster/cluster-options.js';
import { sendEvent, serveIpc } from './ipc.js';

/** Node timings the harness may change. The node's defaults apply to the rest. */
export type ClusterTimings = Pick<
  ClusterNodeOptions,
  'leaseTtlMs' | 'leaseRenewIntervalMs' | 'heartbeatIntervalMs' | 'memberTimeoutMs' | 'rebalanceStableForMs' | 'checkpointIntervalMs'
>;

export interface ClusterNodeHostConfig {
  servers: string[];
  nodeId: string;
  dataDir: string;
  /** Virtual shards, used only by the node that creates the cluster. */
  shards: number;
  timings: ClusterTimings;
}

/** A node log record about a shard changing hands. */
export interface ShardMoveRecord {
  /** Milliseconds since the Unix epoch, from the log record. */
  timeMs: number;
  nodeId: string;
  message: string;
  shard: number;
  epoch: number | null;
  /** From "handed the shard off": the time from the start of the handoff to the released lease. */
  handoffMs: number | null;
  /** From "handed the shard off": the time from when the shard stopped serving to the released lease. */
  pauseMs: number | null;
}

const SHARD_MOVE_MESSAGES = new Set([
  'took over the shard',
  'handed the shard off',
  'lost the shard lease; stopped applying its events',
]);

/** pino's numeric level of "warn". */
const WARN_LEVEL = 40;

const WORKSPACE = 'default';

/** Profiles queried at once by 'eventCounts'. */
const QUERY_CONCURRENCY = 32;

const config = JSON.parse(process.argv[2] ?? '{}') as ClusterNodeHostConfig;

/** Receives the node's JSON log lines: forwards shard moves to the harness and writes warnings and errors to stderr. */
const logDestination = {
  write(line: string): void {
    let record: { level?: number; time?: number; msg?: string; shard?: number; epoch?: number; handoffMs?: number; pauseMs?: number | null };
    try {
      record = JSON.parse(line);
    } catch {
      process.stderr.write(line);
      return;
    }

    if ((record.level ?? 0) >= WARN_LEVEL) process.stderr.write(line);
    if (record.msg !== undefined && SHARD_MOVE_MESSAGES.has(record.msg) && typeof record.shard === 'number') {
      const move: ShardMoveRecord = {
        timeMs: record.time ?? Date.now(),
        nodeId: config.nodeId,
        message: record.msg,
        shard: record.shard,
        epoch: record.epoch ?? null,
        handoffMs: record.handoffMs ?? null,
        pauseMs: record.pauseMs ?? null,
      };
      sendEvent('shardMove', move);
    }
  },
};

const logFile = pino.destination({ dest: `${config.dataDir}.log`, sync: false, mkdir: true });
const logger = pino({ name: 'rtcdp-bench-cluster-node', level: 'info' }, pino.multistream([{ stream: logDestination, level: 'info' }, { stream: logFile, level: 'info' }]));

await mkdir(config.dataDir, { recursive: true });
const started: ClusterProcess = await startClusterProcess({
  servers: config.servers,
  nodeId: config.nodeId,
  dataDir: config.dataDir,
  host: '127.0.0.1',
  port: 0,
  shards: config.shards,
  replicas: 1,
  devMode: true,
  logger,
  ...config.timings,
});

let exiting = false;

function stopAndExit(code: number): void {
  if (exiting) return;
  exiting = true;
  started.stop().then(
    () => {
      logFile.flushSync();
      process.exit(code);
    },
    (error) => {
      logger.error({ err: error }, 'cluster node host failed to stop the node');
      process.exit(1);
    },
  );
}

async function eventCountOf(userId: string): Promise<number> {
  try {
    const profile = await started.node.getProfile(WORKSPACE, { type: 'user_id', value: userId });
    return profile.eventCount;
  } catch (error) {
    if ((error as { code?: string }).code === 'PROFILE_NOT_FOUND') return -1;
    throw error;
  }
}

/** eventCount per user id (-1 where no profile exists), a few queries at a time. */
async function eventCounts(userIds: string[]): Promise<Int32Array> {
  const counts = new Int32Array(userIds.length);
  for (let first = 0; first < userIds.length; first += QUERY_CONCURRENCY) {
    const chunk = userIds.slice(first, first + QUERY_CONCURRENCY);
    const found = await Promise.all(chunk.map(eventCountOf));
    counts.set(found, first);
  }
  return counts;
}

serveIpc(
  {
    status: () => started.node.status(),
    eventCounts: (userIds: string[]) => eventCounts(userIds),
  },
  () => stopAndExit(1),
);

process.on('SIGTERM', () => stopAndExit(0));
// An admin drain request stops the node without a signal.
void started.stopped.then(() => {
  if (!exiting) process.exit(0);
});
sendEvent('ready', { address: started.address, nodeId: started.node.nodeId, pid: process.pid });
