import t from 'tap';
import { RequestOne } from '@nats-io/nats-core/internal';
import { connect, errors } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { restoreSettledRequestErrors, skipSettledRequestErrors } from '../../cluster/nats/settled-requests.js';
import { startNatsServer } from '../helpers/nats-server.js';

// Records the error each cancel() receives, under the patch, which wraps whatever method the
// prototype has when it is installed. The client builds a new RequestError when it gets none.
const cancelErrors: Array<Error | undefined> = [];
const clientCancel = RequestOne.prototype.cancel;
const clientResolver = RequestOne.prototype.resolver;
RequestOne.prototype.cancel = function recordCancel(this: RequestOne, error?: Error) {
  cancelErrors.push(error);
  clientCancel.call(this, error);
};
const recordingCancel = RequestOne.prototype.cancel;
t.teardown(() => {
  restoreSettledRequestErrors();
  RequestOne.prototype.cancel = clientCancel;
});

skipSettledRequestErrors();
skipSettledRequestErrors();

const server = await startNatsServer();
t.teardown(() => server.stop());
const connection = await connect({ servers: server.url, noAsyncTraces: true });
t.teardown(() => connection.close());
connection.subscribe('echo', {
  callback: (_error, message) => {
    message.respond(message.data);
  },
});
connection.subscribe('silent', { callback: () => undefined });
await connection.flush();

t.beforeEach(() => {
  cancelErrors.length = 0;
});

t.test('settled requests - a replied request reuses one cancel error', async (t) => {
  const first = await connection.request('echo', 'a', { timeout: 2_000 });
  const second = await connection.request('echo', 'b', { timeout: 2_000 });

  t.equal(first.string(), 'a', 'the first reply arrives');
  t.equal(second.string(), 'b', 'the second reply arrives');
  t.equal(cancelErrors.length, 2, 'each request is cancelled once after its reply');
  t.type(cancelErrors[0], Error, 'the cancel gets an error, so the client builds none');
  t.equal(cancelErrors[1], cancelErrors[0], 'both requests get the same error object');
});

t.test('settled requests - a request without a reply still times out', async (t) => {
  await t.rejects(connection.request('silent', 'x', { timeout: 200 }), errors.TimeoutError, 'the request rejects with TimeoutError');

  t.equal(cancelErrors.length, 1, 'the timed-out request is cancelled once');
  t.equal(cancelErrors[0], undefined, 'an unsettled request is cancelled as before, so the client builds its own error');
});

t.test('settled requests - a subject without responders still rejects', async (t) => {
  const error = await connection.request('nobody.listens', 'x', { timeout: 2_000 }).then(
    () => null,
    (reason: unknown) => reason,
  );

  t.type(error, errors.RequestError, 'the request rejects with RequestError');
  t.ok((error as InstanceType<typeof errors.RequestError>).isNoResponders(), 'the error says no responder listens');
});

t.test('settled requests - JetStream publishes are acknowledged', async (t) => {
  const jsm = await jetstreamManager(connection);
  await jsm.streams.add({ name: 'SETTLED', subjects: ['settled.>'] });
  const js = jetstream(connection);

  const acks = await Promise.all(Array.from({ length: 50 }, (_, i) => js.publish(`settled.${i % 4}`, `m${i}`, { msgID: `m${i}` })));
  const again = await js.publish('settled.0', 'm0', { msgID: 'm0' });

  t.same(acks.map((ack) => ack.seq).sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 1), 'every publish is acknowledged with its own sequence');
  t.ok(again.duplicate, 'a resent message id is still reported as a duplicate');
  t.equal((await jsm.streams.info('SETTLED')).state.messages, 50, 'the stream holds every message once');
});

t.test('settled requests - a pending request rejects when the connection closes', async (t) => {
  const own = await connect({ servers: server.url, noAsyncTraces: true });
  const pending = own.request('silent', 'x', { timeout: 10_000 });
  await own.close();

  await t.rejects(pending, 'the request rejects instead of waiting for its timeout');
});

t.test('settled requests - restoring puts back the wrapped methods', async (t) => {
  restoreSettledRequestErrors();

  t.equal(RequestOne.prototype.cancel, recordingCancel, 'cancel is the method the patch wrapped');
  t.equal(RequestOne.prototype.resolver, clientResolver, 'resolver is the client\'s own');
  const reply = await connection.request('echo', 'c', { timeout: 2_000 });
  t.equal(reply.string(), 'c', 'requests work without the patch');
  t.equal(cancelErrors.at(-1), undefined, 'without the patch a replied request is cancelled without an error, as the client does');
});
