/**
 * The calls an open-loop generator makes, each behind one `send` that resolves with the
 * request's acknowledgement or rejects with its gRPC error:
 *
 * - unary: IngestService.Ingest, one event per call;
 * - batch: IngestService.IngestBatch, one batch per call;
 * - stream: batches written to one IngestStream call, acknowledged in order;
 * - query: ProfileService.GetProfile by userId or anonymousId;
 * - decide: DecisionService.Decide by userId or anonymousId, with a channel and a context.
 *
 * Ingest requests are pre-encoded bytes (events.ts), and responses are read for their
 * counters only, so the generator's CPU goes into sending.
 */
import { credentials, makeGenericClientConstructor, Metadata, type Client, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { createDecisionClient, createProfileClient } from '../cli/client.js';
import type { DecisionServiceClient } from '../proto/gen/rtcdp/v1/decisions.js';
import { EventStatus, IngestResponse, IngestServiceService } from '../proto/gen/rtcdp/v1/ingest.js';
import type { ProfileServiceClient } from '../proto/gen/rtcdp/v1/profile.js';
import { parseBatchAck, type BatchAck } from './ingest-stream.js';
import type { ProfileRef } from './workloads.js';

export const INGEST_DRIVERS = ['unary', 'batch', 'stream'] as const;

export type IngestDriver = (typeof INGEST_DRIVERS)[number];

export interface IngestSender {
  /** Sends IngestRequest bytes (unary) or IngestBatchRequest bytes (batch, stream). */
  send(bytes: Buffer): Promise<BatchAck>;
  close(): void;
}

type UnaryCallback<T> = (error: ServiceError | null, response?: T) => void;

type RawIngestClient = Client & {
  ingest(bytes: Buffer, metadata: Metadata, options: { deadline: number }, callback: UnaryCallback<BatchAck>): void;
  ingestBatch(bytes: Buffer, metadata: Metadata, options: { deadline: number }, callback: UnaryCallback<BatchAck>): void;
  ingestStream(): ClientDuplexStream<Buffer, BatchAck>;
};

const passThrough = (bytes: Buffer): Buffer => bytes;

const RawIngestClientConstructor = makeGenericClientConstructor(
  {
    ingest: { ...IngestServiceService.ingest, requestSerialize: passThrough, responseDeserialize: parseIngestAck },
    ingestBatch: { ...IngestServiceService.ingestBatch, requestSerialize: passThrough, responseDeserialize: parseBatchAck },
    ingestStream: { ...IngestServiceService.ingestStream, requestSerialize: passThrough, responseDeserialize: parseBatchAck },
  },
  'IngestService',
);

/** Reads an IngestResponse as the acknowledgement of a batch of one event. */
function parseIngestAck(bytes: Buffer): BatchAck {
  const status = IngestResponse.decode(bytes).result?.status;
  return {
    batchId: '',
    accepted: status === EventStatus.EVENT_STATUS_ACCEPTED ? 1 : 0,
    duplicates: status === EventStatus.EVENT_STATUS_DUPLICATE ? 1 : 0,
    rejected: status === EventStatus.EVENT_STATUS_REJECTED ? 1 : 0,
    bytes,
  };
}

export function createIngestSender(driver: IngestDriver, address: string, callTimeoutMs: number): IngestSender {
  const client = new RawIngestClientConstructor(address, credentials.createInsecure(), {}) as unknown as RawIngestClient;
  if (driver === 'stream') return new StreamSender(client);

  const method = driver === 'unary' ? client.ingest.bind(client) : client.ingestBatch.bind(client);
  return {
    send: (bytes) =>
      new Promise((resolve, reject) => {
        method(bytes, new Metadata(), { deadline: Date.now() + callTimeoutMs }, (error, ack) => (error === null ? resolve(ack!) : reject(error)));
      }),
    close: () => client.close(),
  };
}

/**
 * Writes batches to one IngestStream call and resolves them in order as the responses
 * arrive. When the stream fails, every batch awaiting a response is rejected with its
 * error, and the next send opens a new stream.
 */
class StreamSender implements IngestSender {
  readonly #client: RawIngestClient;
  #call: ClientDuplexStream<Buffer, BatchAck> | null = null;
  #pending: Array<{ resolve: (ack: BatchAck) => void; reject: (error: Error) => void }> = [];

  constructor(client: RawIngestClient) {
    this.#client = client;
  }

  send(bytes: Buffer): Promise<BatchAck> {
    const call = this.#openCall();
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      // An open-loop sender does not wait for 'drain': grpc-js buffers what the socket cannot take yet.
      call.write(bytes);
    });
  }

  close(): void {
    this.#call?.end();
    this.#client.close();
  }

  #openCall(): ClientDuplexStream<Buffer, BatchAck> {
    if (this.#call !== null) return this.#call;

    const call = this.#client.ingestStream();
    call.on('data', (ack: BatchAck) => this.#pending.shift()?.resolve(ack));
    call.on('error', (error: ServiceError) => {
      if (this.#call === call) this.#call = null;
      const failed = this.#pending;
      this.#pending = [];
      for (const pending of failed) pending.reject(error);
    });
    this.#call = call;
    return call;
  }
}

export interface QuerySender {
  /** Resolves with the profile's eventCount, or rejects with the call's gRPC error (NOT_FOUND when it has no profile). */
  send(profile: ProfileRef): Promise<number>;
  close(): void;
}

export function createQuerySender(address: string, callTimeoutMs: number): QuerySender {
  const client: ProfileServiceClient = createProfileClient(address);
  return {
    send: (profile) =>
      new Promise((resolve, reject) => {
        client.getProfile({ identifier: profile }, new Metadata(), { deadline: Date.now() + callTimeoutMs }, (error, response) =>
          error === null ? resolve(Number(response.profile?.eventCount ?? 0)) : reject(error),
        );
      }),
    close: () => client.close(),
  };
}

/** The outcome of a Decide call, as far as the generator counts it. */
export interface DecideOutcome {
  /** The chosen rule; '' when no rule was chosen. */
  rule: string;
  /** The profile is in the chosen rule's control group, so the action was withheld. */
  controlGroup: boolean;
  action: string;
  /** Rules the receipt lists as candidates. */
  candidates: number;
}

export interface DecideSender {
  /** Resolves with the decision, or rejects with the call's gRPC error (NOT_FOUND when the profile does not exist). */
  send(profile: ProfileRef, channel: string, context: Record<string, string>): Promise<DecideOutcome>;
  close(): void;
}

export function createDecideSender(address: string, callTimeoutMs: number): DecideSender {
  const client: DecisionServiceClient = createDecisionClient(address);
  return {
    send: (profile, channel, context) =>
      new Promise((resolve, reject) => {
        client.decide({ identifier: profile, channel, context }, new Metadata(), { deadline: Date.now() + callTimeoutMs }, (error, response) => {
          if (error !== null) {
            reject(error);
            return;
          }
          const receipt = response.receipt;
          resolve({
            rule: receipt?.chosen?.rule ?? '',
            controlGroup: receipt?.chosen?.controlGroup ?? false,
            action: response.action,
            candidates: receipt?.candidates.length ?? 0,
          });
        });
      }),
    close: () => client.close(),
  };
}
