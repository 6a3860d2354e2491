import type { sendUnaryData, ServerDuplexStream, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../common/logger.js';
import type { IngestResult } from '../cluster/ingest-batch.js';
import { NodeUnavailableError } from '../cluster/errors.js';
import type { ServingNode } from '../cluster/serving-node.js';
import { EventResult, EventStatus, IngestBatchRequest, IngestBatchResponse, IngestRequest, IngestResponse, IngestServiceService } from '../proto/gen/rtcdp/v1/ingest.js';
import { workspaceOf, type AuthOptions } from './auth.js';
import { eventFromProto } from './convert.js';
import { toServiceError } from './status.js';
import { assertWellFormed, strictDeserializer, type MalformedRequest } from './strict-decoding.js';

/** IngestService with strict request decoding. */
export const ingestServiceDefinition = {
  ...IngestServiceService,
  ingest: { ...IngestServiceService.ingest, requestDeserialize: strictDeserializer(IngestRequest, 'rtcdp.v1.IngestRequest') },
  ingestBatch: { ...IngestServiceService.ingestBatch, requestDeserialize: strictDeserializer(IngestBatchRequest, 'rtcdp.v1.IngestBatchRequest') },
  ingestStream: { ...IngestServiceService.ingestStream, requestDeserialize: strictDeserializer(IngestBatchRequest, 'rtcdp.v1.IngestBatchRequest') },
};

const STATUS: Record<IngestResult['status'], EventStatus> = {
  accepted: EventStatus.EVENT_STATUS_ACCEPTED,
  duplicate: EventStatus.EVENT_STATUS_DUPLICATE,
  rejected: EventStatus.EVENT_STATUS_REJECTED,
};

/** `stopping` aborts when the server stops, which ends every open IngestStream with UNAVAILABLE once the response to its batch in progress is sent. */
export function createIngestService(node: ServingNode, auth: AuthOptions, logger: Logger, stopping: AbortSignal): UntypedServiceImplementation {
  const log = logger.child({ service: 'IngestService' });

  async function ingestBatch(workspace: string, request: IngestBatchRequest): Promise<IngestBatchResponse> {
    const results = await node.ingest(workspace, request.events.map(eventFromProto));
    return toBatchResponse(results, request.batchId);
  }

  return {
    ingest(call: ServerUnaryCall<IngestRequest | MalformedRequest, IngestResponse>, callback: sendUnaryData<IngestResponse>) {
      void (async () => {
        const request = assertWellFormed(call.request);
        const workspace = workspaceOf(call.metadata, auth);
        const [result] = await node.ingest(workspace, [eventFromProto(request.event ?? ({} as never))]);
        return { result: toEventResult(result) };
      })().then(
        (response) => callback(null, response),
        (error) => callback(toServiceError(error, log, { method: 'Ingest' })),
      );
    },

    ingestBatch(call: ServerUnaryCall<IngestBatchRequest | MalformedRequest, IngestBatchResponse>, callback: sendUnaryData<IngestBatchResponse>) {
      void (async () => ingestBatch(workspaceOf(call.metadata, auth), assertWellFormed(call.request)))().then(
        (response) => callback(null, response),
        (error) => callback(toServiceError(error, log, { method: 'IngestBatch' })),
      );
    },

    /**
     * Handles one batch at a time: reading pauses while a batch is appended, so HTTP/2 flow
     * control holds back a client that sends faster than the node appends. A batch that
     * fails ends the stream with that error; responses already sent stay valid.
     */
    ingestStream(call: ServerDuplexStream<IngestBatchRequest | MalformedRequest, IngestBatchResponse>) {
      let workspace: string;
      try {
        workspace = workspaceOf(call.metadata, auth);
      } catch (error) {
        call.emit('error', toServiceError(error, log, { method: 'IngestStream' }));
        return;
      }

      let failed = false;
      let chain = Promise.resolve();
      const fail = (error: unknown) => {
        if (failed) return;
        failed = true;
        call.emit('error', toServiceError(error, log, { method: 'IngestStream', workspace }));
      };

      // A stopping server would wait for the client to end the stream, and then cancel it.
      // Ending it here, after the batch in progress, gives the client the reason, and the
      // responses it got show which batches to send to another node.
      const onStop = () => {
        chain = chain.then(() => fail(new NodeUnavailableError('the node is stopping, so this stream ends here; send the batches that got no response to another node')));
      };
      // A stream that opens while the server is already stopping gets no 'abort' event.
      if (stopping.aborted) onStop();
      else stopping.addEventListener('abort', onStop, { once: true });
      call.on('close', () => stopping.removeEventListener('abort', onStop));

      call.on('data', (request: IngestBatchRequest | MalformedRequest) => {
        call.pause();
        chain = chain
          .then(async () => {
            if (failed) return;
            const response = await ingestBatch(workspace, assertWellFormed(request));
            call.write(response);
          })
          .catch(fail)
          .finally(() => call.resume());
      });
      call.on('end', () => {
        void chain.then(() => {
          if (!failed) call.end();
        });
      });
      call.on('error', () => {
        failed = true;
      });
    },
  };
}

function toBatchResponse(results: IngestResult[], batchId: string): IngestBatchResponse {
  const response: IngestBatchResponse = { results: results.map(toEventResult), batchId, accepted: 0, duplicates: 0, rejected: 0 };
  for (const result of results) {
    if (result.status === 'accepted') response.accepted += 1;
    else if (result.status === 'duplicate') response.duplicates += 1;
    else response.rejected += 1;
  }
  return response;
}

function toEventResult(result: IngestResult): EventResult {
  return {
    index: result.index,
    messageId: result.messageId,
    status: STATUS[result.status],
    code: result.code ?? '',
    field: result.field ?? '',
    message: result.message ?? '',
  };
}
