import { createRequire } from 'node:module';
import path from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { credentials, loadPackageDefinition, type ClientDuplexStream, Metadata, status, type Client, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import t, { type Test } from 'tap';
import { startTestNode } from '../helpers/grpc-node.js';

const require = createRequire(import.meta.url);
const REFLECTION_PROTO = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');

const LOADER_OPTIONS = { keepCase: true, enums: String, longs: String, defaults: true, oneofs: true };

/** Returns the constructor of a client for `service` ("package.Service") of a proto file. */
function clientConstructor(protoFile: string, service: string): ServiceClientConstructor {
  const loaded = loadPackageDefinition(loadSync(protoFile, LOADER_OPTIONS)) as Record<string, unknown>;
  let current: unknown = loaded;
  for (const part of service.split('.')) current = (current as Record<string, unknown>)[part];
  if (typeof current !== 'function') throw new Error(`${protoFile} has no service ${service}`);
  return current as ServiceClientConstructor;
}

const HealthClient = clientConstructor(healthProtoPath, 'grpc.health.v1.Health');
const ReflectionClient = clientConstructor(REFLECTION_PROTO, 'grpc.reflection.v1.ServerReflection');

interface HealthCheckResponse {
  status: string;
}

type UnaryCallback<T> = (error: ServiceError | null, response: T) => void;

function healthCheck(client: Client, service: string): Promise<HealthCheckResponse> {
  const check = (client as unknown as Record<string, (request: unknown, metadata: Metadata, callback: UnaryCallback<HealthCheckResponse>) => void>).Check;
  return new Promise((resolve, reject) => {
    check.call(client, { service }, new Metadata(), (error, response) => (error ? reject(error) : resolve(response)));
  });
}

function newClient(t: Test, constructor: ServiceClientConstructor, address: string): Client {
  const client = new constructor(address, credentials.createInsecure());
  t.teardown(() => client.close());
  return client;
}

interface ReflectionResponse {
  message_response: string;
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

/** Sends one request on a new ServerReflectionInfo stream and returns the one response. */
function reflect(client: Client, request: Record<string, string>): Promise<ReflectionResponse> {
  const open = (client as unknown as Record<string, () => ClientDuplexStream<Record<string, string>, ReflectionResponse>>).ServerReflectionInfo;
  const call = open.call(client);
  return new Promise((resolve, reject) => {
    const responses: ReflectionResponse[] = [];
    call.on('data', (response: ReflectionResponse) => responses.push(response));
    call.on('error', reject);
    call.on('end', () => (responses.length === 1 ? resolve(responses[0]) : reject(new Error(`expected 1 response, received ${responses.length}`))));
    call.write(request);
    call.end();
  });
}

t.test('health - SERVING while running', async (t) => {
  const node = await startTestNode(t);
  const client = newClient(t, HealthClient, node.rtcdp.address);

  for (const service of ['', 'rtcdp.v1.IngestService', 'rtcdp.v1.ProfileService', 'rtcdp.v1.WebhookService', 'rtcdp.v1.DefinitionService']) {
    const response = await healthCheck(client, service);
    t.equal(response.status, 'SERVING', `${JSON.stringify(service)} is SERVING`);
  }
});

t.test('health - unknown service is NOT_FOUND', async (t) => {
  const node = await startTestNode(t);
  const client = newClient(t, HealthClient, node.rtcdp.address);

  const error = await healthCheck(client, 'rtcdp.v1.NoSuchService').then(
    () => undefined,
    (error: ServiceError) => error,
  );
  t.equal(error?.code, status.NOT_FOUND, 'status is NOT_FOUND');
  t.match(error?.details, 'rtcdp.v1.NoSuchService', 'message names the service');
});

t.test('health - watch reports NOT_SERVING on stop', async (t) => {
  const node = await startTestNode(t);
  const client = newClient(t, HealthClient, node.rtcdp.address);

  const watch = (client as unknown as Record<string, (request: unknown) => NodeJS.ReadableStream & { cancel(): void }>).Watch.call(client, { service: '' });
  const statuses: string[] = [];
  const notServing = new Promise<void>((resolve) => {
    watch.on('data', (response: HealthCheckResponse) => {
      statuses.push(response.status);
      if (response.status === 'SERVING') void node.rtcdp.stop();
      if (response.status === 'NOT_SERVING') resolve();
    });
  });
  watch.on('error', () => {
    // Cancelling the watch below ends it with CANCELLED.
  });

  await notServing;
  watch.cancel();
  await node.rtcdp.stop();

  t.same(statuses, ['SERVING', 'NOT_SERVING'], 'watch sees SERVING, then NOT_SERVING when the server stops');
  t.equal(node.rtcdp.node.state, 'stopped', 'the node stops');
});

t.test('reflection - lists rtcdp services', async (t) => {
  const node = await startTestNode(t);
  const client = newClient(t, ReflectionClient, node.rtcdp.address);

  const response = await reflect(client, { list_services: '*' });
  const names = response.list_services_response?.service.map((service) => service.name) ?? [];
  t.ok(names.includes('rtcdp.v1.IngestService'), 'lists rtcdp.v1.IngestService');
  t.ok(names.includes('rtcdp.v1.ProfileService'), 'lists rtcdp.v1.ProfileService');
  t.ok(names.includes('rtcdp.v1.DefinitionService'), 'lists rtcdp.v1.DefinitionService');
  t.ok(names.includes('rtcdp.v1.WebhookService'), 'lists rtcdp.v1.WebhookService');
  t.ok(names.includes('grpc.health.v1.Health'), 'lists grpc.health.v1.Health');
});

t.test('reflection - file containing IngestService', async (t) => {
  const node = await startTestNode(t);
  const client = newClient(t, ReflectionClient, node.rtcdp.address);

  const response = await reflect(client, { file_containing_symbol: 'rtcdp.v1.IngestService' });
  t.equal(response.message_response, 'file_descriptor_response', 'response is a file descriptor response');

  // NOTE: @grpc/proto-loader 0.8 builds one descriptor per package, so the file is named
  // "rtcdp_v1.proto" and declares both services, not "rtcdp/v1/ingest.proto" as in the source tree.
  const files = (response.file_descriptor_response?.file_descriptor_proto ?? []).map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
  const names = files.map((file) => file.name);
  const ingest = files.find((file) => file.service.some((service) => service.name === 'IngestService'));
  t.ok(ingest, `a returned file declares IngestService (files: ${names.join(', ')})`);
  t.equal(ingest?.package, 'rtcdp.v1', 'package');
  const missing = (ingest?.dependency ?? []).filter((dependency) => !names.includes(dependency));
  t.same(missing, [], 'every dependency of the file is returned with it');
  t.ok(
    ingest?.messageType.some((message) => message.name === 'IngestBatchRequest'),
    'the file declares IngestBatchRequest',
  );

  const service = ingest?.service.find((candidate) => candidate.name === 'IngestService');
  t.same(service?.method.map((method) => method.name), ['Ingest', 'IngestBatch', 'IngestStream'], 'IngestService methods');
  const stream = service?.method.find((method) => method.name === 'IngestStream');
  t.equal(stream?.clientStreaming, true, 'IngestStream streams requests');
  t.equal(stream?.serverStreaming, true, 'IngestStream streams responses');
  t.equal(stream?.inputType, '.rtcdp.v1.IngestBatchRequest', 'IngestStream request type');
});

t.test('reflection - unknown symbol is NOT_FOUND', async (t) => {
  const node = await startTestNode(t);
  const client = newClient(t, ReflectionClient, node.rtcdp.address);

  const response = await reflect(client, { file_containing_symbol: 'rtcdp.v1.NoSuchService' });
  t.equal(response.message_response, 'error_response', 'response is an error response');
  t.equal(response.error_response?.error_code, status.NOT_FOUND, 'error code is NOT_FOUND');
});
