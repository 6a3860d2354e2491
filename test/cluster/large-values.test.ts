import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createLogger } from '../../common/logger.js';
import { LargeValueStream, messageLimitBytes } from '../../cluster/nats/large-values.js';
import { startNatsServer } from '../helpers/nats-server.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });
const STREAM = 'RTCDP_TEST_PARTS';

async function setup(t: Test) {
  const server = await startNatsServer({ maxPayloadBytes: 16_384 });
  t.teardown(() => server.stop());
  const connection = await connect({ servers: server.url });
  t.teardown(() => connection.close());
  const values = await LargeValueStream.open(connection, { stream: STREAM, subject: 'rtcdp.test.parts', replicas: 1, maxAgeMs: 0, requestTimeoutMs: 2_000, logger });
  return { connection, values };
}

t.test('large values - a value over max_payload is stored as parts and read back whole', async (t) => {
  const { connection, values } = await setup(t);
  t.equal(messageLimitBytes(connection), 16_384 - 4_096, 'the limit leaves room for headers under max_payload');

  const value = randomBytes(50_000);
  const ref = await values.write(value);
  t.equal(ref.sequences.length, Math.ceil(50_000 / values.messageLimitBytes), 'one message per part');
  t.equal(ref.bytes, 50_000);
  t.same(Buffer.from((await values.read(ref))!), value, 'the parts join into the value');

  const empty = await values.write(new Uint8Array(0));
  t.same(empty.sequences, [], 'an empty value has no parts');
  t.same(Buffer.from((await values.read(empty))!), Buffer.alloc(0));
});

t.test('large values - a removed value reads as null and its parts leave the stream', async (t) => {
  const { connection, values } = await setup(t);
  const ref = await values.write(randomBytes(30_000));
  await values.remove(ref);

  t.equal(await values.read(ref), null, 'a reader of a replaced value learns to read its reference again');
  const jsm = await jetstreamManager(connection);
  t.equal((await jsm.streams.info(STREAM)).state.messages, 0, 'no part and no marker stays');
  await values.remove(ref);
  t.pass('removing parts already gone is not an error');
});

t.test('large values - parts that do not match their reference are reported as corrupt', async (t) => {
  const { values } = await setup(t);
  const first = await values.write(randomBytes(20_000));
  const second = await values.write(randomBytes(20_000));
  const mixed = { ...first, sequences: [first.sequences[0], ...second.sequences.slice(1)] };

  await t.rejects(values.read(mixed), { code: 'CORRUPT_VALUE', message: /do not match their reference \(20000 bytes, SHA-256 / });
});
