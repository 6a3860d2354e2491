/**
 * The admin requests that read other members' stored histories, over a real nats-server:
 * one request for several profiles, and one request per profile to a member of the
 * version before, which serves only the single-profile request.
 */
import t, { type Test } from 'tap';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { adminSubject, requestAdmin } from '../../cluster/cluster-node.js';
import { InvalidArgumentError } from '../../cluster/errors.js';
import { serveSubject } from '../../cluster/nats/shard-rpc.js';
import { readStoredHistories, requestStoredHistories, type ProfileEventsRequest, type ProfileHistoriesRequest } from '../../cluster/stored-histories.js';
import { createLogger } from '../../common/logger.js';
import { encode } from '../../storage/codec.js';
import { keys } from '../../storage/keys.js';
import { Store } from '../../storage/store.js';
import { startNatsServer } from '../helpers/nats-server.js';

const logger = createLogger({ level: process.env.RTCDP_TEST_LOG_LEVEL ?? 'silent' });

const REQUEST: ProfileHistoriesRequest = {
  op: 'profileHistories',
  workspace: 'w',
  sources: [
    { profileId: 'user:u1', beforeSequence: null },
    { profileId: 'anon:a1', beforeSequence: 3 },
    { profileId: 'anon:none', beforeSequence: null },
  ],
  limit: 2,
};
const EXPECTED = [[5, 4], [2, 1], []];

/** Opens a store with five events of user:u1 and three of anon:a1, at sequences 1 to 5 and 1 to 3. */
async function storeWithHistories(t: Test): Promise<Store> {
  const store = await Store.open({ path: t.testdir(), walSync: false, logger });
  t.teardown(() => store.close());
  const events = [...[1, 2, 3, 4, 5].map((sequence) => ['user:u1', sequence] as const), ...[1, 2, 3].map((sequence) => ['anon:a1', sequence] as const)];
  await store.write(events.map(([profileId, sequence]) => ({ type: 'put', key: keys.profileEvent('w', profileId, sequence), value: encode({ messageId: `${profileId}-${sequence}` }) })));
  return store;
}

async function connectTo(t: Test): Promise<NatsConnection> {
  const server = await startNatsServer({ jetstream: false });
  t.teardown(() => server.stop());
  const connection = await connect({ servers: server.url });
  t.teardown(() => connection.close());
  return connection;
}

/** Sends requests to `nodeId` and records the op of each. */
function recordingSender(connection: NatsConnection, nodeId: string, timeoutMs = 2_000) {
  const ops: string[] = [];
  const send = (request: ProfileHistoriesRequest | ProfileEventsRequest) => {
    ops.push(request.op);
    return requestAdmin(connection, nodeId, request, timeoutMs);
  };
  return { ops, send };
}

t.test('stored histories - one request reads every profile', async (t) => {
  const store = await storeWithHistories(t);
  const connection = await connectTo(t);
  const subscription = serveSubject(connection, adminSubject('current'), (request) => readStoredHistories(store, request as ProfileHistoriesRequest), logger);
  t.teardown(() => subscription.unsubscribe());

  const { ops, send } = recordingSender(connection, 'current');
  const lists = await requestStoredHistories(send, REQUEST);
  t.same(
    lists.map((list) => list.map((event) => event.sequence)),
    EXPECTED,
    'each profile\'s newest events below its sequence, newest first',
  );
  t.same(ops, ['profileHistories'], 'in one request');

  const single = await readStoredHistories(store, { op: 'profileEvents', workspace: 'w', profileId: 'user:u1', beforeSequence: 5, limit: 10 });
  t.same(
    (single as Array<{ sequence: number }>).map((event) => event.sequence),
    [4, 3, 2, 1],
    'a node of this version still serves the single-profile request',
  );
});

t.test('stored histories - a member of the previous version gets one request per profile', async (t) => {
  const store = await storeWithHistories(t);
  const connection = await connectTo(t);
  // Serves requests as nodes did before profileHistories: the single-profile request, and rejects any other op as unknown.
  const previous = serveSubject(
    connection,
    adminSubject('previous'),
    async (request) => {
      const { op } = request as { op: string };
      if (op === 'profileEvents') return readStoredHistories(store, request as ProfileEventsRequest);
      throw new InvalidArgumentError(`unknown admin request ${JSON.stringify(op)}; expected status, drain or profileEvents`);
    },
    logger,
  );
  t.teardown(() => previous.unsubscribe());

  const { ops, send } = recordingSender(connection, 'previous');
  const lists = await requestStoredHistories(send, REQUEST);
  t.same(
    lists.map((list) => list.map((event) => event.sequence)),
    EXPECTED,
    'the same events as from a member of this version',
  );
  t.same(ops, ['profileHistories', 'profileEvents', 'profileEvents', 'profileEvents'], 'after the rejected request, one request per profile');
});

t.test('stored histories - other failures are not retried per profile', async (t) => {
  const connection = await connectTo(t);
  const { ops, send } = recordingSender(connection, 'gone', 300);

  await t.rejects(requestStoredHistories(send, REQUEST), { code: 'SHARD_UNAVAILABLE' }, 'a member that does not respond fails the request');
  t.same(ops, ['profileHistories'], 'without a request per profile');
});
