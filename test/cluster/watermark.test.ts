import t from 'tap';
import { Watermark } from '../../cluster/watermark.js';

function expectAll(mark: Watermark, sequences: number[]): void {
  for (const sequence of sequences) mark.expect(sequence);
}

t.test('watermark - advances over contiguous finished records', async (t) => {
  const mark = new Watermark(10);
  expectAll(mark, [11, 12, 13]);
  mark.finish(12);
  mark.finish(13);
  t.equal(mark.value, 10, 'an unfinished record at 11 holds it');

  mark.finish(11);
  t.equal(mark.value, 13);
});

t.test('watermark - advances over gaps between expected records', async (t) => {
  const mark = new Watermark(0);
  expectAll(mark, [4, 9, 20]);
  mark.finish(9);
  t.equal(mark.value, 0, 'record 4 is not finished');

  mark.finish(4);
  t.equal(mark.value, 9, 'jumps the gap from 4 to 9');

  mark.finish(20);
  t.equal(mark.value, 20);
});

t.test('watermark - ignores sequences that were never expected', async (t) => {
  const mark = new Watermark(0);
  expectAll(mark, [2]);
  mark.finish(5);
  mark.finish(2);
  t.equal(mark.value, 2);

  mark.expect(5);
  t.equal(mark.value, 2, 'the earlier finish of 5 was not kept');
});

t.test('watermark - expect rejects a sequence that does not increase', async (t) => {
  const mark = new Watermark(3);
  t.throws(() => mark.expect(3), RangeError);
  mark.expect(7);
  t.throws(() => mark.expect(6), RangeError);
});

t.test('watermark - reach resolves once passed', async (t) => {
  const mark = new Watermark(0);
  expectAll(mark, [1, 3]);
  let reached = false;
  const waiting = mark.reach(2).then(() => (reached = true));

  mark.finish(1);
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(reached, false);

  mark.finish(3);
  await waiting;
  t.equal(reached, true, 'reaching 3 passes 2, which the partition never had');
});

t.test('watermark - advanceTo passes expected records', async (t) => {
  const mark = new Watermark(0);
  expectAll(mark, [1, 2, 5, 8]);
  mark.finish(5);
  mark.advanceTo(2);
  t.equal(mark.value, 5, 'the finished record 5 now leads and is passed');

  mark.advanceTo(10);
  t.equal(mark.value, 10);
  mark.expect(11);
  mark.finish(11);
  t.equal(mark.value, 11);
});

t.test('watermark - stays correct across many records', async (t) => {
  const mark = new Watermark(0);
  const sequences = Array.from({ length: 20_000 }, (_, i) => i * 3 + 1);
  expectAll(mark, sequences);
  for (let i = sequences.length - 1; i >= 1; i--) mark.finish(sequences[i]);
  t.equal(mark.value, 0);

  mark.finish(sequences[0]);
  t.equal(mark.value, sequences.at(-1));
});
