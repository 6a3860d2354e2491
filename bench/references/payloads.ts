/**
 * The events of the ingest load, outside a gRPC request: the same generator code
 * (BatchEncoder and the Zipf workload) encodes batches, which are split into the protobuf
 * bytes of each Event. The NATS reference publishes those bytes, and the RocksDB reference
 * stores them validated and msgpack-encoded as rtcdp's event log does.
 */
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { BatchEncoder } from '../events.js';
import { createRandom } from '../random.js';
import { createWorkload } from '../workloads.js';

export interface PayloadOptions {
  batchSize: number;
  customers: number;
  zipfExponent: number;
  seed: number;
}

/** Field 1 of IngestBatchRequest, `repeated Event events`, length-delimited. */
const EVENTS_FIELD = 1;

/** Encodes `batches` batches of the Zipf load and returns each batch as the bytes of its events. */
export function encodeEventBatches(batches: number, options: PayloadOptions): Buffer[][] {
  const workload = createWorkload({ kind: 'zipf', customers: options.customers, exponent: options.zipfExponent }, options.seed);
  const encoder = new BatchEncoder(`reference-${options.seed}`, createRandom(options.seed + 1));
  const customers = new Int32Array(options.batchSize);
  const result: Buffer[][] = [];

  for (let i = 0; i < batches; i++) {
    encoder.begin();
    workload.fill(encoder, customers, options.batchSize);
    result.push(splitEvents(encoder.finish(String(i))));
  }
  return result;
}

/** Returns the bytes of each Event in an encoded IngestBatchRequest, as views into `batch`. */
export function splitEvents(batch: Buffer): Buffer[] {
  const reader = new BinaryReader(batch);
  const events: Buffer[] = [];

  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 !== EVENTS_FIELD) {
      reader.skip(tag & 7);
      continue;
    }
    const bytes = reader.bytes();
    events.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
  return events;
}
