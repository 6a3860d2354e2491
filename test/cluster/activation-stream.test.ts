/**
 * The cluster's activation log on a real nats-server: the end of the log that a cursor is
 * checked against, when other workspaces share the stream's sequences and when a
 * workspace's activations are gone.
 */
import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { createLogger } from '../../common/logger.js';
import { ACTIVATION_STREAM, activationSubject, JetStreamActivationLog } from '../../cluster/nats/activation-stream.js';
import type { ProfileActivation } from '../../profiles/activation.js';
import { startNatsServer } from '../helpers/nats-server.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });

function activation(workspace: string, id: string): ProfileActivation {
  return {
    id,
    type: 'segment.entered',
    workspace,
    profileId: `p-${id}`,
    name: 'pro',
    definitionVersion: 1,
    atMs: Date.now(),
    cause: { kind: 'event', shard: 0, sequence: 1, messageId: `m-${id}` },
  };
}

t.test('activation stream - end sequence of a cursor', async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const connection = await connect({ servers: server.url });
  t.teardown(() => connection.close());
  const log = await JetStreamActivationLog.open(connection, { replicas: 1, maxAgeMs: 3_600_000, duplicateWindowMs: 120_000, publishTimeoutMs: 5_000, logger });

  // Stream sequences 1, 2 and 3: one activation of workspace a, then two of workspace b.
  await log.publish([activation('a', 'a1')]);
  await log.publish([activation('b', 'b1')]);
  await log.publish([activation('b', 'b2')]);

  const atNewest = await log.list('a', { afterSequence: 1 });
  t.equal(atNewest.visibleSequence, 1, 'workspace a sees its newest activation at 1');
  t.equal(atNewest.endSequence, 1, 'a cursor at the newest activation ends the log there');

  const otherWorkspace = await log.list('a', { afterSequence: 3 });
  t.equal(otherWorkspace.endSequence, 3, 'past the workspace\'s newest, the end is the stream\'s last sequence');
  t.same(otherWorkspace.activations, [], 'and the page is empty');

  const pastStream = await log.list('a', { afterSequence: 4 });
  t.equal(pastStream.endSequence, 3, 'a cursor past the stream\'s last sequence lies past the end');

  const jsm = await jetstreamManager(connection);
  await jsm.streams.purge(ACTIVATION_STREAM, { filter: activationSubject('a') });
  const purged = await log.list('a', { afterSequence: 1 });
  t.equal(purged.visibleSequence, 0, 'with its activations gone, workspace a sees none');
  t.equal(purged.endSequence, 3, 'a cursor it handed out before stays within the end');
});
