import t from 'tap';
import { Watermark } from '../../cluster/watermark.js';

t.test('watermark - advances over contiguous finished records', async (t) => {
  const mark = new Watermark(10);
  mark.finish(12);
  mark.finish(13);
  t.equal(mark.value, 10, 'a gap at 11 holds it');

  mark.finish(11);
  t.equal(mark.value, 13);
});

t.test('watermark - reach resolves once passed', async (t) => {
  const mark = new Watermark(0);
  let reached = false;
  const waiting = mark.reach(2).then(() => (reached = true));

  mark.finish(1);
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(reached, false);

  mark.finish(2);
  await waiting;
  t.equal(reached, true);
});

t.test('watermark - advanceTo skips bookkeeping', async (t) => {
  const mark = new Watermark(0);
  mark.finish(7);
  mark.advanceTo(6);
  t.equal(mark.value, 7);
});
