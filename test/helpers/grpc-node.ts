/**
 * Starts an embedded rtcdp node for gRPC tests, with clients from the CLI helpers, and
 * wraps the calls the API tests make. Every node and client is closed in `t.teardown`.
 */
import { Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import type { Test } from 'tap';
import { callUnary, createIngestClient, createProfileClient, isServiceError } from '../../cli/client.js';
import { startEmbedded, type EmbeddedOptions, type EmbeddedRtcdp } from '../../api/embedded.js';
import { ERROR_CODE_TRAILER } from '../../api/status.js';
import { silentLogger } from '../../common/logger.js';
import type { RawEvent } from '../../profiles/event.js';
import { rawEventToProto } from '../../profiles/segment-json.js';
import type { IngestBatchResponse, IngestServiceClient } from '../../proto/gen/rtcdp/v1/ingest.js';
import type { ListProfileEventsResponse, Profile, ProfileServiceClient } from '../../proto/gen/rtcdp/v1/profile.js';

export interface TestNode {
  rtcdp: EmbeddedRtcdp;
  ingest: IngestServiceClient;
  profiles: ProfileServiceClient;
}

export type TestNodeOptions = Partial<Omit<EmbeddedOptions, 'port' | 'logger'>>;

/**
 * Starts a node on `options.dataDir` (a new `t.testdir()` when unset) in dev mode unless
 * `options.devMode` is false, and stops it and its clients when the test ends.
 */
export async function startTestNode(t: Test, options: TestNodeOptions = {}): Promise<TestNode> {
  const rtcdp = await startEmbedded({ devMode: true, ...options, dataDir: options.dataDir ?? t.testdir(), port: 0, logger: silentLogger() });
  const ingest = createIngestClient(rtcdp.address);
  const profiles = createProfileClient(rtcdp.address);

  t.teardown(async () => {
    ingest.close();
    profiles.close();
    await rtcdp.stop();
  });
  return { rtcdp, ingest, profiles };
}

export function ingestBatch(node: TestNode, events: RawEvent[], metadata = new Metadata()): Promise<IngestBatchResponse> {
  const request = { events: events.map(rawEventToProto), batchId: '' };
  return callUnary(node.ingest.ingestBatch.bind(node.ingest), request, metadata);
}

export async function getProfile(node: TestNode, type: string, value: string, metadata = new Metadata()): Promise<Profile> {
  const response = await callUnary(node.profiles.getProfile.bind(node.profiles), { identifier: { type, value } }, metadata);
  if (response.profile === undefined) throw new Error(`GetProfile for ${type} ${JSON.stringify(value)} returned no profile`);
  return response.profile;
}

export function listProfileEvents(
  node: TestNode,
  identifier: { type: string; value: string },
  pageSize: number,
  pageToken: string,
): Promise<ListProfileEventsResponse> {
  return callUnary(node.profiles.listProfileEvents.bind(node.profiles), { identifier, pageSize, pageToken }, new Metadata());
}

/** Awaits a call that must fail and returns its gRPC error. */
export async function expectServiceError(call: Promise<unknown>): Promise<ServiceError> {
  let response: unknown;
  try {
    response = await call;
  } catch (error) {
    if (isServiceError(error)) return error;
    throw error;
  }
  throw new Error(`expected the call to fail, but it returned ${JSON.stringify(response)}`);
}

/** Returns the stable rtcdp error code from the error's trailer, or '' when it has none. */
export function errorCodeOf(error: ServiceError): string {
  const value = error.metadata?.get(ERROR_CODE_TRAILER)[0];
  return value === undefined ? '' : String(value);
}

/**
 * Sends `body` as the request of a unary method without encoding it, so a test can send
 * bytes that no generated client would produce. Resolves with the error or the response bytes.
 */
export function sendRawUnary(address: string, method: string, body: Buffer, metadata = new Metadata()): Promise<ServiceError | Buffer> {
  const client = new Client(address, credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      method,
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => bytes,
      body,
      metadata,
      { deadline: Date.now() + 10_000 },
      (error, response) => {
        client.close();
        resolve(error ?? (response as Buffer));
      },
    );
  });
}

/** Polls `condition` every 20 ms until it returns true, and throws after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, description: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
