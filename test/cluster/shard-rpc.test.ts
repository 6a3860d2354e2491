import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { createLogger } from '../../common/logger.js';
import { requestSubject, serveSubject } from '../../cluster/nats/shard-rpc.js';
import { startNatsServer } from '../helpers/nats-server.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });

t.test('shard rpc - a reply over max_payload fails the request', async (t) => {
  const server = await startNatsServer({ jetstream: false, maxPayloadBytes: 16_384 });
  t.teardown(() => server.stop());
  const connection = await connect({ servers: server.url });
  t.teardown(() => connection.close());

  const subscription = serveSubject(connection, 'rtcdp.test.large', async (request) => 'x'.repeat((request as { length: number }).length), logger);
  t.teardown(() => subscription.unsubscribe());

  t.equal(await requestSubject<string>(connection, 'rtcdp.test.large', { length: 100 }, 2_000, 'the test responder'), 'x'.repeat(100), 'a small reply arrives');
  await t.rejects(requestSubject(connection, 'rtcdp.test.large', { length: 20_000 }, 2_000, 'the test responder'), {
    code: 'REPLY_TOO_LARGE',
    message: /the reply has \d+ bytes, more than NATS carries in one message \(max_payload 16384\)/,
  });
  t.equal(await requestSubject<string>(connection, 'rtcdp.test.large', { length: 10 }, 2_000, 'the test responder'), 'x'.repeat(10), 'the responder still serves requests');
});
