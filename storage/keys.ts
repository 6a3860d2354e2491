/**
 * The key layout of the node's RocksDB database. Every key starts with a family name and
 * the workspace, so a workspace's data can be listed and removed by prefix. Variable-length
 * parts are written as `<byteLength>:<text>`, so no user-supplied value can run into the
 * next part of a key however many separators it contains. Numbers are zero-padded so that
 * byte order is numeric order.
 */

const SEQUENCE_DIGITS = 15;
const SHARD_DIGITS = 5;

/** Writes a variable-length part so that it cannot be confused with what follows it. */
export function part(text: string): string {
  return `${Buffer.byteLength(text)}:${text}`;
}

export function padSequence(sequence: number): string {
  return String(sequence).padStart(SEQUENCE_DIGITS, '0');
}

function padShard(shard: number): string {
  return String(shard).padStart(SHARD_DIGITS, '0');
}

export const keys = {
  /** Node-wide settings fixed at creation, such as the shard count. */
  meta: (name: string) => `meta/${name}`,

  logRecord: (workspace: string, shard: number, sequence: number) =>
    `log/${workspace}/${padShard(shard)}/${padSequence(sequence)}`,
  logPartitionPrefix: (workspace: string, shard: number) => `log/${workspace}/${padShard(shard)}/`,
  /** Last sequence appended to a partition. */
  logHead: (workspace: string, shard: number) => `loghead/${workspace}/${padShard(shard)}`,
  logHeadPrefix: () => 'loghead/',
  /** Last sequence a partition's records are all reflected in snapshots up to. */
  checkpoint: (workspace: string, shard: number) => `checkpoint/${workspace}/${padShard(shard)}`,
  /** messageId of an appended event, kept as long as its log record. */
  dedup: (workspace: string, messageId: string) => `dedup/${workspace}/${part(messageId)}`,

  snapshot: (workspace: string, profileId: string) => `snapshot/${workspace}/${part(profileId)}`,
  snapshotPrefix: (workspace: string) => `snapshot/${workspace}/`,
  profileEvent: (workspace: string, profileId: string, sequence: number) =>
    `profile-event/${workspace}/${part(profileId)}/${padSequence(sequence)}`,
  profileEventPrefix: (workspace: string, profileId: string) => `profile-event/${workspace}/${part(profileId)}/`,
  identifier: (workspace: string, type: string, value: string) => `identifier/${workspace}/${part(type)}${part(value)}`,
  deadLetter: (workspace: string, profileId: string, sequence: number) =>
    `dead-letter/${workspace}/${part(profileId)}/${padSequence(sequence)}`,
  deadLetterPrefix: (workspace: string) => `dead-letter/${workspace}/`,

  /** One stored version of a definition, such as a Segment (decisions/definitions). */
  definitionVersion: (workspace: string, kind: string, name: string, version: number) =>
    `definition-version/${workspace}/${part(kind)}${part(name)}/${padSequence(version)}`,
  definitionVersionPrefix: (workspace: string, kind: string, name: string) => `definition-version/${workspace}/${part(kind)}${part(name)}/`,
  /** The latest version number of a definition. */
  definitionLatest: (workspace: string, kind: string, name: string) => `definition-latest/${workspace}/${part(kind)}${part(name)}`,
  /** Prefix of the latest-version keys of a workspace, or of one kind in it. */
  definitionLatestPrefix: (workspace: string, kind?: string) => `definition-latest/${workspace}/${kind === undefined ? '' : part(kind)}`,

  /** An activation message of a workspace, by its sequence in the workspace's activation log. */
  activation: (workspace: string, sequence: number) => `activation/${workspace}/${padSequence(sequence)}`,
  activationPrefix: (workspace: string) => `activation/${workspace}/`,
  /** A profile's entry in the durable timer index: it must be evaluated again at `dueMs`. */
  evaluationTimer: (workspace: string, shard: number, dueMs: number, profileId: string) =>
    `evaluation-timer/${workspace}/${padShard(shard)}/${padSequence(dueMs)}/${part(profileId)}`,
  evaluationTimerPrefix: (workspace: string, shard: number) => `evaluation-timer/${workspace}/${padShard(shard)}/`,

  /** The sequence of the workspace's activation log that a webhook destination has delivered up to. */
  webhookCursor: (workspace: string, destination: string) => `webhook-cursor/${workspace}/${part(destination)}`,
  /** A batch that a webhook destination gave up on, by the sequence of its first activation. */
  webhookDeadLetter: (workspace: string, destination: string, firstSequence: number) =>
    `webhook-dead-letter/${workspace}/${part(destination)}/${padSequence(firstSequence)}`,
  webhookDeadLetterPrefix: (workspace: string, destination: string) => `webhook-dead-letter/${workspace}/${part(destination)}/`,
  /** How many attempts of a webhook destination's next batch failed (a FailedAttemptsRecord). */
  webhookAttempts: (workspace: string, destination: string) => `webhook-attempts/${workspace}/${part(destination)}`,

  /** Cluster mode: the tenure chain in which a profile's local snapshot was written. */
  clusterSnapshotChain: (workspace: string, profileId: string) => `cluster-chain/${workspace}/${part(profileId)}`,
  /** Cluster mode: the lease epoch and tenure chain of this node's last completed handoff of a shard. */
  shardRelease: (shard: number) => `shard-release/${padShard(shard)}`,
};

/** Returns the key just after every key that starts with `prefix`, for an exclusive upper bound. */
export function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

export function parseLogHeadKey(key: string): { workspace: string; shard: number } {
  const [, workspace, shard] = key.split('/');
  return { workspace, shard: Number(shard) };
}

/** Returns the due time and profile id of an evaluation timer key. */
export function parseEvaluationTimerKey(key: string): { dueMs: number; profileId: string } {
  const [, workspace, shard] = key.split('/', 3);
  const rest = key.slice(`evaluation-timer/${workspace}/${shard}/`.length);
  const dueMs = Number(rest.slice(0, SEQUENCE_DIGITS));
  const profilePart = rest.slice(SEQUENCE_DIGITS + 1);
  return { dueMs, profileId: profilePart.slice(profilePart.indexOf(':') + 1) };
}

export function parseSequence(key: string): number {
  return Number(key.slice(key.length - SEQUENCE_DIGITS));
}
