import { status, type Metadata, type StatusObject } from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { ERROR_CODE_TRAILER } from '../../api/status.js';
import type { RtcdpNode } from '../../cluster/node.js';
import type { RawEvent } from '../../profiles/event.js';
import { rawEventToProto } from '../../profiles/segment-json.js';
import type { IngestBatchResponse } from '../../proto/gen/rtcdp/v1/ingest.js';
import { errorCodeOf, expectServiceError, getProfile, ingestBatch, startTestNode, waitFor, type TestNode } from '../helpers/grpc-node.js';

const MAX_IN_FLIGHT = 100;

/**
 * A beforeApply hook that blocks for `delayMs` per event, so the node appends faster than
 * it applies, and that records the highest in-flight count seen while applying.
 */
function slowApply(delayMs: number) {
  const observed = { node: undefined as RtcdpNode | undefined, maxInFlight: 0 };
  const hook = () => {
    const inFlight = observed.node?.stats().inFlightEvents ?? 0;
    observed.maxInFlight = Math.max(observed.maxInFlight, inFlight);

    const end = performance.now() + delayMs;
    while (performance.now() < end) {
      // Busy-wait: application blocks the event loop, as a slow handler would.
    }
  };
  return { hook, observed };
}

async function startSlowNode(t: Test, delayMs: number) {
  const { hook, observed } = slowApply(delayMs);
  const node = await startTestNode(t, { maxInFlightEvents: MAX_IN_FLIGHT, beforeApply: hook });
  observed.node = node.rtcdp.node;
  return { node, observed };
}

function trackEvents(userId: string, prefix: string, count: number): RawEvent[] {
  return Array.from({ length: count }, (_, i) => ({ type: 'track', userId, messageId: `${prefix}-${i}`, event: 'Load', properties: { units: 1 } }));
}

/**
 * Returns one event for each of `count` users. The actor system checks its 5 ms turn
 * budget only between actors, so spreading events over actors lets gRPC calls run while
 * the slow hook applies them.
 */
function spreadEvents(userPrefix: string, prefix: string, count: number): RawEvent[] {
  return Array.from({ length: count }, (_, i) => ({ type: 'track', userId: `${userPrefix}-${i}`, messageId: `${prefix}-${i}`, event: 'Load' }));
}

async function totalEventCount(node: TestNode, userPrefix: string, users: number): Promise<number> {
  let total = 0;
  for (let i = 0; i < users; i++) {
    const profile = await getProfile(node, 'user_id', `${userPrefix}-${i}`).catch(() => undefined);
    total += profile?.eventCount ?? 0;
  }
  return total;
}

async function waitForDrain(node: TestNode): Promise<void> {
  await waitFor(() => node.rtcdp.node.stats().inFlightEvents === 0, 'the in-flight count to reach 0');
}

t.test('backpressure - concurrent batches over limit', async (t) => {
  const { node, observed } = await startSlowNode(t, 2);

  const batches = Array.from({ length: 20 }, (_, b) => trackEvents('load', `load-${b}`, 25));
  const outcomes = await Promise.allSettled(batches.map((events) => ingestBatch(node, events)));

  const succeeded = outcomes.flatMap((outcome, b) => (outcome.status === 'fulfilled' ? [{ batch: b, response: outcome.value }] : []));
  const failed = outcomes.flatMap((outcome, b) => (outcome.status === 'rejected' ? [{ batch: b, error: outcome.reason }] : []));
  t.ok(succeeded.length > 0, `some calls succeed (${succeeded.length} of 20)`);
  t.ok(failed.length > 0, `some calls are rejected (${failed.length} of 20)`);

  t.same(new Set(succeeded.map(({ response }) => response.accepted)), new Set([25]), 'a call that succeeds has all 25 events accepted');
  t.same(new Set(failed.map(({ error }) => error.code)), new Set([status.RESOURCE_EXHAUSTED]), 'every rejected call is RESOURCE_EXHAUSTED');
  t.same(new Set(failed.map(({ error }) => errorCodeOf(error))), new Set(['OVERLOADED']), 'every rejected call has trailer code OVERLOADED');
  t.match(failed[0]?.error.details, `would pass the limit of ${MAX_IN_FLIGHT}`, 'message names the limit');
  t.match(failed[0]?.error.details, 'Retry after a short backoff', 'message says what to do');

  await waitForDrain(node);
  t.ok(observed.maxInFlight <= MAX_IN_FLIGHT, `in-flight count stays within the limit (max seen ${observed.maxInFlight})`);

  const profile = await getProfile(node, 'user_id', 'load');
  t.equal(profile.eventCount, 25 * succeeded.length, 'only events of successful calls are stored');
  t.equal(profile.events.Load?.sums.units, 25 * succeeded.length, 'each stored event is applied once');

  const retried = await ingestBatch(node, batches[failed[0].batch]);
  t.equal(retried.accepted, 25, 'a rejected batch retried as it is is accepted, not DUPLICATE');

  const after = await getProfile(node, 'user_id', 'load');
  t.equal(after.eventCount, 25 * (succeeded.length + 1), 'the retried batch is applied');
});

t.test('backpressure - stream ends with RESOURCE_EXHAUSTED', async (t) => {
  const { node } = await startSlowNode(t, 3);

  const call = node.ingest.ingestStream();
  const responses: IngestBatchResponse[] = [];
  call.on('data', (response: IngestBatchResponse) => responses.push(response));
  call.on('error', () => {
    // The status event below carries the same code and details.
  });
  const finished = new Promise<StatusObject>((resolve) => call.on('status', resolve));

  for (let b = 0; b < 10; b++) {
    call.write({ events: spreadEvents('streamer', `stream-${b}`, 45).map(rawEventToProto), batchId: `batch-${b}` });
  }
  call.end();
  const final = await finished;

  t.equal(final.code, status.RESOURCE_EXHAUSTED, 'stream ends with RESOURCE_EXHAUSTED');
  t.equal(trailerCode(final.metadata), 'OVERLOADED', 'trailer code is OVERLOADED');
  t.match(final.details, `would pass the limit of ${MAX_IN_FLIGHT}`, 'message names the limit');
  t.ok(responses.length >= 1, `batches before the limit are answered (${responses.length})`);
  t.ok(responses.length < 10, 'the stream stops before the last batch');
  t.same(
    responses.map((response) => response.batchId),
    responses.map((_, b) => `batch-${b}`),
    'responses come in batch order',
  );
  t.same(new Set(responses.map((response) => response.accepted)), new Set([45]), 'each answered batch is fully accepted');

  await waitForDrain(node);
  t.equal(await totalEventCount(node, 'streamer', 45), 45 * responses.length, 'only answered batches are stored');

  const again = node.ingest.ingestStream();
  const againResponses: IngestBatchResponse[] = [];
  again.on('data', (response: IngestBatchResponse) => againResponses.push(response));
  const againFinished = new Promise<StatusObject>((resolve) => again.on('status', resolve));
  again.write({ events: spreadEvents('streamer', 'stream-again', 45).map(rawEventToProto), batchId: 'again' });
  again.end();

  t.equal((await againFinished).code, status.OK, 'a new stream after the backlog drains ends OK');
  t.equal(againResponses[0]?.accepted, 45, 'its batch is accepted');
});

t.test('backpressure - ingestion resumes after drain', async (t) => {
  // 10 ms per event: the 90 events take 900 ms to apply, so few are applied when the second call arrives.
  const { node } = await startSlowNode(t, 10);

  const first = await ingestBatch(node, spreadEvents('resume', 'resume-a', 90));
  t.equal(first.accepted, 90, 'a batch under the limit is accepted');

  const second = spreadEvents('resume', 'resume-b', 20);
  const overloaded = await expectServiceError(ingestBatch(node, second));
  t.equal(overloaded.code, status.RESOURCE_EXHAUSTED, 'a batch that passes the limit while 90 are in flight is rejected');

  await waitForDrain(node);
  const resumed = await ingestBatch(node, second);
  t.equal(resumed.accepted, 20, 'the same batch is accepted after the backlog drains');

  t.equal(await totalEventCount(node, 'resume', 90), 110, 'the profiles have both accepted batches');
});

function trailerCode(metadata: Metadata): string {
  const value = metadata.get(ERROR_CODE_TRAILER)[0];
  return value === undefined ? '' : String(value);
}
