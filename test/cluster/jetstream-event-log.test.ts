import t from 'tap';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { silentLogger } from '../../common/logger.js';
import { JetStreamEventLog } from '../../cluster/nats/jetstream-event-log.js';
import { EVENT_STREAM } from '../../cluster/nats/subjects.js';
import { eventLogContract } from '../storage/event-log-contract.js';
import { startNatsServer } from '../helpers/nats-server.js';

const server = await startNatsServer();
t.teardown(() => server.stop());
const logger = silentLogger();

async function openLog(connection: NatsConnection): Promise<JetStreamEventLog> {
  return JetStreamEventLog.open({ connection, replicas: 1, duplicateWindowMs: 120_000, maxAgeMs: 3_600_000, publishTimeoutMs: 5_000, logger });
}

eventLogContract(t, 'jetstream event log', {
  contiguous: false,
  pruneForgetsMessageIds: false,
  async open(t) {
    let connection = await connect({ servers: server.url });
    // Each test starts from an empty stream.
    const jsm = await jetstreamManager(connection);
    await jsm.streams.delete(EVENT_STREAM).catch(() => false);
    let log = await openLog(connection);
    t.teardown(async () => {
      await log.close();
      await connection.close();
    });

    return {
      log,
      async reopen() {
        await log.close();
        await connection.close();
        connection = await connect({ servers: server.url });
        log = await openLog(connection);
        return log;
      },
    };
  },
});
