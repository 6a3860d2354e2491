/**
 * The grpc-js reference server, forked by the harness: the same IngestService and
 * DecisionService definitions and messages as rtcdp (the generated ts-proto serializers),
 * but no work behind them. IngestStream only counts the events of each batch and responds
 * with every event accepted. Its rate is what grpc-js and protobuf decoding alone allow on
 * this machine with the same load generator. Decide responds at once with a receipt shaped
 * like the bench definitions' (the request's context and four candidate rules, none
 * chosen), so its latency is the floor that gRPC, loopback and the two processes set.
 *
 * Requests: 'stats' returns the events counted so far. SIGTERM or a closed IPC channel
 * stops the server and exits.
 */
import { Server, ServerCredentials, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { DecisionServiceService, type DecideRequest, type DecideResponse } from '../proto/gen/rtcdp/v1/decisions.js';
import { EventStatus, IngestServiceService, type IngestBatchRequest, type IngestBatchResponse } from '../proto/gen/rtcdp/v1/ingest.js';
import { sendEvent, serveIpc } from './ipc.js';

let events = 0;
let batches = 0;
let decisions = 0;

function acceptAll(request: IngestBatchRequest): IngestBatchResponse {
  const results = request.events.map((event, index) => ({
    index,
    messageId: event.messageId,
    status: EventStatus.EVENT_STATUS_ACCEPTED,
    code: '',
    field: '',
    message: '',
  }));
  return { results, batchId: request.batchId, accepted: results.length, duplicates: 0, rejected: 0 };
}

function ingestStream(call: ServerDuplexStream<IngestBatchRequest, IngestBatchResponse>): void {
  call.on('data', (request: IngestBatchRequest) => {
    events += request.events.length;
    batches++;
    call.write(acceptAll(request));
  });
  call.on('end', () => call.end());
  call.on('error', () => {});
}

/** The rules of bench/definitions/ that serve the web channel, as a receipt lists them when none is eligible. */
const WEB_RULES = ['vip_offer', 'cart_reminder', 'category_discovery', 'app_install'];

function decideAtOnce(request: DecideRequest): DecideResponse {
  decisions++;
  return {
    action: '',
    receipt: {
      decisionId: randomUUID(),
      at: new Date().toISOString(),
      channel: request.channel,
      cause: 'decide',
      messageId: '',
      context: request.context,
      chosen: undefined,
      candidates: WEB_RULES.map((rule) => ({ rule, version: 1, outcome: 'not_eligible', priority: undefined, detail: 'the eligibility condition is false' })),
    },
  };
}

const unimplemented = (_call: unknown, callback: (error: Error) => void) => callback(new Error('the reference server implements only IngestStream and Decide'));

const server = new Server();
server.addService(IngestServiceService, { ingestStream, ingest: unimplemented, ingestBatch: unimplemented });
server.addService(DecisionServiceService, {
  decide: (call: ServerUnaryCall<DecideRequest, DecideResponse>, callback: sendUnaryData<DecideResponse>) => callback(null, decideAtOnce(call.request)),
  listReceipts: unimplemented,
});

const port = await new Promise<number>((resolve, reject) => {
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound)));
});

function stopAndExit(code: number): void {
  server.tryShutdown(() => process.exit(code));
  setTimeout(() => process.exit(code), 2_000).unref();
}

serveIpc({ stats: () => ({ events, batches, decisions }) }, () => stopAndExit(1));
process.on('SIGTERM', () => stopAndExit(0));
sendEvent('ready', { address: `127.0.0.1:${port}`, pid: process.pid });
