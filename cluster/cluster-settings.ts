/**
 * Settings that every node of a cluster must share, kept in the cluster KV bucket. The
 * first node writes them (create, so two first nodes cannot both win); later nodes read
 * them and follow them, whatever their own options request.
 */
import { randomUUID } from 'node:crypto';
import { ConfigError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { decode, encode } from '../storage/codec.js';
import { KvConflictError, type KvStore } from '../storage/kv-store.js';

const SETTINGS_KEY = 'settings';
const SETTINGS_VERSION = 1;

export interface ClusterSettings {
  version: number;
  /** Virtual shards, fixed when the cluster is created. */
  shards: number;
  createdAt: string;
  /**
   * Identifies this cluster's NATS state. Lease revisions start again from 1 in a new
   * cluster, so a node's local snapshots are trusted only when they carry this id too.
   * Settings written before the id existed use `createdAt` in its place.
   */
  clusterId: string;
}

export async function loadClusterSettings(kv: KvStore, proposed: { shards: number }, logger: Logger): Promise<ClusterSettings> {
  const created: ClusterSettings = { version: SETTINGS_VERSION, shards: proposed.shards, createdAt: new Date().toISOString(), clusterId: randomUUID() };
  try {
    await kv.create(SETTINGS_KEY, encode(created));
    logger.info({ shards: created.shards }, 'created the cluster settings');
    return created;
  } catch (error) {
    if (!(error instanceof KvConflictError)) throw error;
  }

  const entry = await kv.get(SETTINGS_KEY);
  if (entry === null) throw new ConfigError('the cluster settings key exists but could not be read; retry the start');
  const stored = decode<ClusterSettings>(Buffer.from(entry.value));
  if (stored.version !== SETTINGS_VERSION || !Number.isInteger(stored.shards) || stored.shards < 1) {
    throw new ConfigError(`the cluster settings in NATS are invalid or of an unknown version: ${JSON.stringify(stored)}`);
  }
  if (stored.shards !== proposed.shards) {
    logger.warn({ shards: stored.shards, requestedShards: proposed.shards }, 'the cluster was created with another shard count; using the cluster\'s');
  }
  return { ...stored, clusterId: stored.clusterId ?? stored.createdAt };
}
