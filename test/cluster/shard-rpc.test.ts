import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { createLogger } from '../../common/logger.js';
import { jetstreamManager } from '@nats-io/jetstream';
import { openReplyParts, REPLY_PARTS_STREAM, requestSubject, serveSubject } from '../../cluster/nats/shard-rpc.js';
import { startNatsServer } from '../helpers/nats-server.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });

t.test('shard rpc - without a parts stream, a reply over max_payload fails the request', async (t) => {
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

t.test('shard rpc - a reply over max_payload arrives in parts, which the requester deletes', async (t) => {
  const server = await startNatsServer({ maxPayloadBytes: 16_384 });
  t.teardown(() => server.stop());
  const connection = await connect({ servers: server.url });
  t.teardown(() => connection.close());
  const replyParts = await openReplyParts(connection, { replicas: 1, requestTimeoutMs: 2_000, logger });

  const subscription = serveSubject(connection, 'rtcdp.test.large', async (request) => 'x'.repeat((request as { length: number }).length), logger, replyParts);
  t.teardown(() => subscription.unsubscribe());

  const reply = await requestSubject<string>(connection, 'rtcdp.test.large', { length: 100_000 }, 5_000, 'the test responder', replyParts);
  t.equal(reply, 'x'.repeat(100_000), 'the whole reply arrives');
  const jsm = await jetstreamManager(connection);
  t.equal((await jsm.streams.info(REPLY_PARTS_STREAM)).state.messages, 0, 'its parts are deleted once read');
  t.equal(await requestSubject<string>(connection, 'rtcdp.test.large', { length: 10 }, 2_000, 'the test responder', replyParts), 'x'.repeat(10), 'a small reply still comes in one message');

  await t.rejects(requestSubject(connection, 'rtcdp.test.large', { length: 100_000 }, 2_000, 'the test responder'), {
    code: 'REPLY_TOO_LARGE',
    message: /the reply of \d+ bytes was sent in parts, which this caller cannot read/,
  });
});
