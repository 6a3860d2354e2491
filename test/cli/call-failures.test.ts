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
