/**
 * Redis baseline service process, forked by the harness: rtcdp's ApiServer on a free port
 * of 127.0.0.1 (dev mode, workspace "default") in front of a RedisBaselineNode, connected
 * to the harness's redis-server. The service keeps no state of its own, so it needs no
 * drain: everything it acknowledged is already in Redis.
 *
 * The config is the JSON in argv[2]. Requests: 'stats' returns BaselineSample. SIGTERM or a
 * closed IPC channel stops the gRPC server and the Redis connection and exits.
 */
import { ApiServer } from '../../api/server.js';
import { createLogger } from '../../common/logger.js';
import { sendEvent, serveIpc } from '../ipc.js';
import { RedisBaselineNode, type BaselineCounters } from './baseline-node.js';
import { RedisProfileStore, type RedisProfileOptions, type RedisServerStats } from './redis-profiles.js';

export interface BaselineServiceConfig extends RedisProfileOptions {
  redisPort: number;
}

export interface BaselineSample {
  /** Milliseconds since the Unix epoch. */
  timeMs: number;
  counters: BaselineCounters;
  /** CPU time this service process used so far, in ms. */
  cpuMs: number;
  redis: RedisServerStats;
}

/** How long calls in progress get to finish when the service stops, in milliseconds. */
const STOP_GRACE_MS = 2_000;

const config = JSON.parse(process.argv[2] ?? '{}') as BaselineServiceConfig;
const logger = createLogger({ level: 'warn', name: 'rtcdp-bench-redis-baseline' });
const store = await RedisProfileStore.connect(config.redisPort, config, logger);
const node = new RedisBaselineNode(store, logger);
const server = new ApiServer(node, { host: '127.0.0.1', port: 0, auth: { writeKeys: new Map(), devMode: true }, logger });
const address = await server.start();
let stopping: Promise<void> | null = null;

async function sample(): Promise<BaselineSample> {
  const cpu = process.cpuUsage();
  return {
    timeMs: performance.timeOrigin + performance.now(),
    counters: { ...node.counters },
    cpuMs: (cpu.user + cpu.system) / 1_000,
    redis: await store.serverStats(),
  };
}

function stopAndExit(code: number): void {
  stopping ??= server.stop({ graceMs: STOP_GRACE_MS }).then(() => store.close());
  stopping.then(
    () => process.exit(code),
    (error) => {
      logger.error({ err: error }, 'Redis baseline service failed to stop cleanly');
      process.exit(1);
    },
  );
}

serveIpc({ stats: () => sample() }, () => stopAndExit(1));
process.on('SIGTERM', () => stopAndExit(0));
sendEvent('ready', { address, pid: process.pid });
