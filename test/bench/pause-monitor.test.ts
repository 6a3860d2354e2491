import t from 'tap';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { PauseMonitor, attributeSlowCalls, type Pause } from '../../bench/pause-monitor.js';

const pause = (startEpochMs: number, durationMs: number): Pause => ({ startEpochMs, durationMs, kind: 'scavenge' });

t.test('slow call attribution - pauses that explain a call', async (t) => {
  const node = [pause(100, 10), pause(500, 5)];
  const caller = [pause(108, 4), pause(300, 20)];
  const calls = [
    { dueEpochMs: 105, latencyMs: 12 }, // 7 ms over the goal, inside the 10 ms node pause
    { dueEpochMs: 106, latencyMs: 17 }, // 12 ms over: node 10 ms + caller 4 ms
    { dueEpochMs: 310, latencyMs: 8 }, // 3 ms over, inside the 20 ms caller pause
    { dueEpochMs: 400, latencyMs: 50 }, // no pause
    { dueEpochMs: 495, latencyMs: 20 }, // 15 ms over, only a 5 ms node pause
  ];

  const result = attributeSlowCalls(calls, node, caller, 5);
  t.same(result, { slowCalls: 5, explainedByFirst: 1, explainedBySecond: 1, explainedByBoth: 1, unexplained: 2 });
});

t.test('pause monitor - reports a forced collection', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const monitor = new PauseMonitor();
  t.teardown(() => monitor.stop());
  monitor.take();

  gc();
  await new Promise((resolve) => setTimeout(resolve, 50));
  const report = monitor.take();
  t.ok(report.gc.count >= 1, 'the forced collection is counted');
  t.ok(report.byKind['mark-compact'] !== undefined, 'as a mark-compact');
  t.ok(report.pauses.length >= 1, 'and listed with its start');
  t.equal(monitor.take().gc.count, 0, 'take starts a new report');
});
