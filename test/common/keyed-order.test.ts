import t from 'tap';
import { KeyedOrder } from '../../common/keyed-order.js';

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

t.test('keyed order - shared keys run in order, others concurrently', async (t) => {
  const order = new KeyedOrder();
  const log: string[] = [];
  const step = (name: string) => async () => {
    log.push(`${name} start`);
    await tick();
    log.push(`${name} end`);
    return name;
  };

  const results = await Promise.all([order.run(['a'], step('first')), order.run(['b'], step('other')), order.run(['a', 'b'], step('both'))]);
  t.same(results, ['first', 'other', 'both']);
  t.ok(log.indexOf('other start') < log.indexOf('first end'), 'an operation on another key does not wait');
  t.ok(log.indexOf('both start') > log.indexOf('first end') && log.indexOf('both start') > log.indexOf('other end'), 'an operation waits for every key it shares');
  t.notOk(order.busy('a'), 'no key is busy once all have settled');
});

t.test('keyed order - a failed operation does not stop the next', async (t) => {
  const order = new KeyedOrder();
  const failed = order.run(['a'], async () => {
    throw new Error('boom');
  });
  const next = order.run(['a'], async () => 'ran');
  await t.rejects(failed, /boom/);
  t.equal(await next, 'ran');
});
