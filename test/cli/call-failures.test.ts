import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import t from 'tap';
import { describeCallFailure } from '../../cli/client.js';

function serviceError(code: status, details: string): ServiceError {
  return Object.assign(new Error(`${code} ${details}`), { code, details, metadata: new Metadata() });
}

t.test('call failures - a timeout shows the node message or the client deadline', async (t) => {
  const fromNode = describeCallFailure(serviceError(status.DEADLINE_EXCEEDED, 'timed out after 5000 ms waiting for shard 2 to deliver events up to 6'), '127.0.0.1:50051', 'ProfileService');
  t.match(fromNode, { message: '127.0.0.1:50051 timed out: timed out after 5000 ms waiting for shard 2 to deliver events up to 6' }, 'the node named what it waited for');

  const fromClient = describeCallFailure(serviceError(status.DEADLINE_EXCEEDED, 'Deadline exceeded after 15.002s'), '127.0.0.1:50051', 'ProfileService');
  t.match(fromClient, { message: 'request to 127.0.0.1:50051 timed out after 15 s' }, 'the client deadline passed');
});

t.test('call failures - unavailable from the node or the connection', async (t) => {
  const fromNode = serviceError(status.UNAVAILABLE, "the identity graph's store failed: timeout");
  fromNode.metadata.set('rtcdp-error-code', 'IDENTITY_STORE_FAILED');
  t.match(
    describeCallFailure(fromNode, '127.0.0.1:50051', 'ProfileService'),
    { message: "the node at 127.0.0.1:50051 cannot serve the request now: the identity graph's store failed: timeout. Retry shortly; in cluster mode, check that its NATS servers run" },
    'a node that sent its error code is reachable',
  );

  const fromConnection = serviceError(status.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:50051');
  t.match(
    describeCallFailure(fromConnection, '127.0.0.1:50051', 'ProfileService'),
    { message: /^cannot reach rtcdp at 127\.0\.0\.1:50051: .*Check --server, or start a node there/ },
    'a connection error names the server to check',
  );
});
