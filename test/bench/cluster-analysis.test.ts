import t from 'tap';
import { shardOf } from '../../cluster/routing.js';
import { IngestBatchResponse, EventStatus } from '../../proto/gen/rtcdp/v1/ingest.js';
import { cycleLatencies, cyclesOf, longestWait, percentile, recoveryTime, unservedTime } from '../../bench/cluster-analysis.js';
import type { ShardMoveRecord } from '../../bench/cluster-node-host.js';
import type { ProbeCycle, ProbeOutcome } from '../../bench/cluster-probe.js';
import { probeCustomers } from '../../bench/cluster.js';
import { parseBatchAck, storedIndexes } from '../../bench/ingest-stream.js';

/** Builds a cycle from `startMs` to `endMs`, acknowledged halfway unless its write failed. */
function cycle(startMs: number, endMs: number, outcome: ProbeOutcome = 'ok', customer = 0): ProbeCycle {
  const ackMs = outcome === 'write-failed' ? null : (startMs + endMs) / 2;
  return { customer, startMs, ackMs, endMs, outcome };
}

t.test('longestWait - without a pause is one cycle', async (t) => {
  const cycles = [cycle(0, 10), cycle(60, 70), cycle(120, 135)];
  t.same(longestWait(cycles, 0, 200), { waitMs: 15, startMs: 120, recovered: true });
});

t.test('longestWait - spans failed cycles until a success', async (t) => {
  const cycles = [cycle(0, 10), cycle(60, 2_060, 'read-failed'), cycle(2_110, 2_200, 'write-failed'), cycle(2_250, 2_300), cycle(2_350, 2_360)];
  const wait = longestWait(cycles, 50, 3_000);
  t.equal(wait?.waitMs, 2_240, 'from the start of the first failed cycle to the end of the next success');
  t.equal(wait?.startMs, 60);
  t.equal(wait?.recovered, true);
});

t.test('longestWait - counts only cycles started in the window', async (t) => {
  const cycles = [cycle(0, 5_000, 'read-failed'), cycle(5_050, 5_060), cycle(5_110, 5_130)];
  t.equal(longestWait(cycles, 5_000, 6_000)?.waitMs, 20);
  t.equal(longestWait(cycles, 7_000, 8_000), null, 'no cycle started in the window');
});

t.test('longestWait - reports a wait without recovery', async (t) => {
  const cycles = [cycle(0, 10), cycle(60, 1_060, 'read-failed'), cycle(1_110, 2_110, 'read-failed')];
  t.same(longestWait(cycles, 50, 3_000), { waitMs: 2_050, startMs: 60, recovered: false });
});

function move(nodeId: string, message: string, shard: number, timeMs: number, pauseMs: number | null = null): ShardMoveRecord {
  return { timeMs, nodeId, message, shard, epoch: 1, handoffMs: pauseMs === null ? null : pauseMs + 100, pauseMs };
}

t.test('unservedTime - from when the old owner stopped serving to the takeover', async (t) => {
  const moves = [
    move('n2', 'took over the shard', 3, 500),
    move('n1', 'handed the shard off', 3, 10_100, 250),
    move('n2', 'took over the shard', 3, 10_080),
    move('n2', 'handed the shard off', 4, 10_200, 40),
    move('n3', 'took over the shard', 4, 10_300),
  ];
  t.equal(unservedTime(moves, 3, 'n1', 'n2', 10_000, 20_000), 230, 'a takeover logged before the handoff record counts from when serving stopped');
  t.equal(unservedTime(moves, 4, 'n2', 'n3', 10_000, 20_000), 140);
  t.equal(unservedTime(moves, 4, 'n2', 'n1', 10_000, 20_000), null, 'no takeover by the new owner');
  t.equal(unservedTime(moves, 3, 'n1', 'n2', 11_000, 20_000), null, 'no handoff in the window');
  t.equal(unservedTime([move('n1', 'handed the shard off', 5, 10_100)], 5, 'n1', 'n2', 0, 20_000), null, 'a handoff record without pauseMs');
});

t.test('recoveryTime - first success started after the fault', async (t) => {
  const cycles = [cycle(900, 7_000), cycle(7_050, 7_100, 'read-failed'), cycle(7_150, 7_200), cycle(7_250, 7_260)];
  t.equal(recoveryTime(cycles, 1_000), 6_200, 'the cycle that started before the fault does not count');
  t.equal(recoveryTime(cycles, 8_000), null);
});

t.test('cycleLatencies - successful cycles in the window', async (t) => {
  const cycles = [cycle(0, 20), cycle(100, 140), cycle(200, 260, 'read-failed'), cycle(300, 310), cycle(1_000, 1_100)];
  const latencies = cycleLatencies(cycles, 0, 1_000);
  t.equal(latencies.cycles, 3);
  // The HDR histogram keeps 3 significant digits, so values are within 0.1%.
  t.ok(Math.abs(latencies.write.maxMs - 20) <= 0.02, `write max ${latencies.write.maxMs} ms is 20 ms`);
  t.ok(Math.abs(latencies.ackToVisible.p50Ms - 10) <= 0.01, `ack-to-visible p50 ${latencies.ackToVisible.p50Ms} ms is 10 ms`);
});

t.test('cyclesOf - one customer in start order', async (t) => {
  const cycles = [cycle(50, 60, 'ok', 1), cycle(30, 40, 'ok', 0), cycle(10, 20, 'ok', 1)];
  t.same(cyclesOf(cycles, 1).map((c) => c.startMs), [10, 50]);
});

t.test('percentile - nearest rank', async (t) => {
  t.equal(percentile([300, 100, 200], 50), 200);
  t.equal(percentile([100, 200, 300, 400], 50), 200);
  t.equal(percentile([100, 200, 300, 400], 100), 400);
  t.ok(Number.isNaN(percentile([], 50)), 'no values');
});

t.test('probeCustomers - one per shard', async (t) => {
  const customers = probeCustomers(16, 'abcd');
  t.equal(customers.length, 16);
  customers.forEach((customer, shard) => {
    t.equal(customer.shard, shard);
    t.equal(shardOf(`user:${customer.userId}`, 16), shard, `${customer.userId} routes to shard ${shard}`);
  });
  t.equal(new Set(customers.map((customer) => customer.userId)).size, 16, 'user ids are distinct');
});

t.test('storedIndexes - duplicates count only when resent', async (t) => {
  const statuses = [EventStatus.EVENT_STATUS_ACCEPTED, EventStatus.EVENT_STATUS_DUPLICATE, EventStatus.EVENT_STATUS_REJECTED];
  const bytes = Buffer.from(
    IngestBatchResponse.encode({
      results: statuses.map((status, index) => ({ index, messageId: `m${index}`, status, code: status === EventStatus.EVENT_STATUS_REJECTED ? 'INVALID' : '', field: '', message: '' })),
      batchId: 'b1',
      accepted: 1,
      duplicates: 1,
      rejected: 1,
    }).finish(),
  );
  const ack = parseBatchAck(bytes);

  t.same(storedIndexes(ack, false).indexes, [0], 'first send: only accepted');
  t.same(storedIndexes(ack, true).indexes, [0, 1], 'resent: accepted and duplicate');
  t.match(storedIndexes(ack, true).firstRejection, /^INVALID/);
});
