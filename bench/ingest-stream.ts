/**
 * A bidirectional IngestStream call that sends pre-encoded IngestBatchRequest bytes and
 * reads each IngestBatchResponse's counters without decoding its per-event results, so the
 * load generator spends its CPU on sending. Results are decoded only for a batch that was
 * not fully accepted.
 */
import { credentials, makeGenericClientConstructor, type Client, type ClientDuplexStream } from '@grpc/grpc-js';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { EventStatus, IngestBatchResponse, IngestServiceService } from '../proto/gen/rtcdp/v1/ingest.js';

export interface BatchAck {
  batchId: string;
  accepted: number;
  duplicates: number;
  rejected: number;
  /** The full response bytes, for `storedIndexes` when not every event was accepted. */
  bytes: Buffer;
}

type RawIngestClient = Client & {
  ingestStream(): ClientDuplexStream<Buffer, BatchAck>;
};

const passThrough = (bytes: Buffer): Buffer => bytes;

const RawIngestClientConstructor = makeGenericClientConstructor(
  {
    ingestStream: {
      ...IngestServiceService.ingestStream,
      requestSerialize: passThrough,
      responseDeserialize: parseBatchAck,
    },
  },
  'IngestService',
);

export function createRawIngestClient(address: string): RawIngestClient {
  return new RawIngestClientConstructor(address, credentials.createInsecure(), {}) as unknown as RawIngestClient;
}

/** Reads batch_id (field 2) and the accepted, duplicates and rejected counters (fields 3-5), skipping results. */
export function parseBatchAck(bytes: Buffer): BatchAck {
  const reader = new BinaryReader(bytes);
  const ack: BatchAck = { batchId: '', accepted: 0, duplicates: 0, rejected: 0, bytes };

  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const field = tag >>> 3;

    if (field === 2) ack.batchId = reader.string();
    else if (field === 3) ack.accepted = reader.uint32();
    else if (field === 4) ack.duplicates = reader.uint32();
    else if (field === 5) ack.rejected = reader.uint32();
    else reader.skip(tag & 7);
  }

  return ack;
}

/**
 * Returns the indexes of the events that this request stored, and the first rejection's
 * reason. ACCEPTED events count, and DUPLICATE events too when `duplicatesStored` is set.
 * That is right for a batch sent again after a failed stream, because only its earlier,
 * unacknowledged attempt can have stored those events.
 */
export function storedIndexes(ack: BatchAck, duplicatesStored: boolean): { indexes: number[]; firstRejection: string | null } {
  const response = IngestBatchResponse.decode(ack.bytes);
  const indexes: number[] = [];
  let firstRejection: string | null = null;

  for (const result of response.results) {
    if (result.status === EventStatus.EVENT_STATUS_ACCEPTED) indexes.push(result.index);
    else if (result.status === EventStatus.EVENT_STATUS_DUPLICATE && duplicatesStored) indexes.push(result.index);
    else if (result.status === EventStatus.EVENT_STATUS_REJECTED && firstRejection === null) firstRejection = `${result.code} ${result.field}: ${result.message}`;
  }

  return { indexes, firstRejection };
}
