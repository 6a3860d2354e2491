/**
 * Waiting for a replicated JetStream stream to serve requests. When several clients create
 * the same stream at once on a NATS cluster, nats-server 2.9.10 confirms the create to the
 * clients that did not win it before the stream's replicas have elected a leader. Requests to
 * the stream then fail with "jetstream is not enabled" or get no reply until their timeout.
 * Soon after the leader is elected, a direct get (the default read of a KV bucket) can still
 * go to a replica that has not caught up, and get no reply. So a node opening its streams
 * waits for the leader, and then for the replicas to catch up.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { StreamInfo } from '@nats-io/jetstream';
import { errors as natsErrors } from '@nats-io/transport-node';

/** How long opening a stream waits for it to be ready. A leader election normally takes well under a second. */
export const STREAM_READY_TIMEOUT_MS = 10_000;
const POLL_INTERVAL_MS = 100;

/**
 * Runs `create` again each time it fails with a NATS request timeout, until
 * STREAM_READY_TIMEOUT_MS has passed. Creating a replicated stream goes through the NATS
 * cluster's meta leader, which can leave requests unanswered while several nodes start at
 * once. `create` must be safe to repeat, as adding a stream with the same configuration is.
 * `onTimeout` runs before each new attempt.
 */
export async function retryOnTimeout<T>(create: () => Promise<T>, onTimeout: () => void = () => {}): Promise<T> {
  const deadline = performance.now() + STREAM_READY_TIMEOUT_MS;
  for (;;) {
    try {
      return await create();
    } catch (error) {
      if (!(error instanceof natsErrors.TimeoutError) || performance.now() > deadline) throw error;
      onTimeout();
    }
  }
}

/**
 * Resolves once `readInfo` reports a leader and every replica that is not offline as
 * current, or no cluster at all (a single server). When replicas are still behind at
 * `timeoutMs`, resolves anyway, because the leader serves every request but direct gets.
 * Throws when the stream has no leader by then, naming the stream and the last state seen.
 */
export async function waitForStreamReady(stream: string, readInfo: () => Promise<StreamInfo>, timeoutMs = STREAM_READY_TIMEOUT_MS): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let lastState = 'no reply';
  let hasLeader = false;

  for (;;) {
    try {
      const info = await readInfo();
      if (info.cluster === undefined) return;
      hasLeader = (info.cluster.leader ?? '') !== '';
      const behind = (info.cluster.replicas ?? []).filter((replica) => !replica.current && replica.offline !== true);
      if (hasLeader && behind.length === 0) return;
      lastState = hasLeader ? `replicas ${behind.map((replica) => replica.name).join(', ')} not caught up` : `replicas ${info.config.num_replicas}, no leader yet`;
    } catch (error) {
      lastState = `stream info failed: ${(error as Error).message}`;
    }

    if (performance.now() + POLL_INTERVAL_MS > deadline) break;
    await sleep(POLL_INTERVAL_MS);
  }
  if (hasLeader) return;
  throw new Error(
    `JetStream stream ${stream} has no leader after ${timeoutMs} ms (${lastState}); check that enough NATS servers with JetStream are running for its replicas`,
  );
}
