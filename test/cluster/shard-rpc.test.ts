import t from 'tap';
import { connect } from '@nats-io/transport-node';
import { createLogger } from '../../common/logger.js';
import { fetchChunkedReply, ReplyChunks } from '../../cluster/nats/reply-chunks.js';
import { requestSubject, serveSubject } from '../../cluster/nats/shard-rpc.js';
import { startNatsServer } from '../helpers/nats-server.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });

t.test('shard rpc - without chunks, a reply over max_payload fails the request', async (t) => {
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

t.test('shard rpc - a reply over max_payload arrives in chunks', async (t) => {
  const server = await startNatsServer({ jetstream: false, maxPayloadBytes: 16_384 });
  t.teardown(() => server.stop());
  const connection = await connect({ servers: server.url });
  t.teardown(() => connection.close());
  const chunks = new ReplyChunks(connection, { keepMs: 30_000, maxKeptBytes: 150_000, logger });
  chunks.start();
  t.teardown(() => chunks.stop());

  const subscription = serveSubject(connection, 'rtcdp.test.large', async (request) => 'x'.repeat((request as { length: number }).length), logger, chunks);
  t.teardown(() => subscription.unsubscribe());

  t.equal(await requestSubject<string>(connection, 'rtcdp.test.large', { length: 100_000 }, 5_000, 'the test responder'), 'x'.repeat(100_000), 'the whole reply arrives');
  t.equal(await requestSubject<string>(connection, 'rtcdp.test.large', { length: 10 }, 2_000, 'the test responder'), 'x'.repeat(10), 'a small reply still comes in one message');

  const parallel = await Promise.all(Array.from({ length: 20 }, () => requestSubject<string>(connection, 'rtcdp.test.large', { length: 60_000 }, 10_000, 'the test responder')));
  t.ok(parallel.every((reply) => reply.length === 60_000), '20 large replies at once all arrive, each after its retries when the kept bytes are over the limit');
});

t.test('shard rpc - a requester that never fetches its chunks costs memory only until they expire', async (t) => {
  const server = await startNatsServer({ jetstream: false, maxPayloadBytes: 16_384 });
  t.teardown(() => server.stop());
  const connection = await connect({ servers: server.url });
  t.teardown(() => connection.close());
  const chunks = new ReplyChunks(connection, { keepMs: 200, maxKeptBytes: 50_000, logger });
  chunks.start();
  t.teardown(() => chunks.stop());

  const first = chunks.keep(new Uint8Array(40_000));
  t.equal(first.chunks, Math.ceil(40_000 / (16_384 - 4_096)), 'one chunk per message of up to max_payload less 4 KiB');
  t.throws(() => chunks.keep(new Uint8Array(40_000)), { code: 'REPLY_TOO_LARGE', retryable: true, message: /already keeps 40000 bytes of large replies/ });
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.doesNotThrow(() => chunks.keep(new Uint8Array(40_000)), 'the expired reply no longer counts');
  await t.rejects(fetchChunkedReply(connection, first, 500), { code: 'REPLY_TOO_LARGE', message: /received 0 of the 4 chunks of a 40000-byte reply within 500 ms/ });
});
