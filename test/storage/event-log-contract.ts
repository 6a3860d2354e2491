/**
 * The behaviour every EventLog implementation must have. Each implementation's test file
 * calls `eventLogContract` with a factory that opens a fresh, empty log.
 */
import type { Test } from 'tap';
import type { EventLog, LogRecord } from '../../storage/event-log.js';

export interface LogFactory {
  /** Opens a fresh empty log. `reopen` closes it and opens the same log again. */
  open(t: Test): Promise<{ log: EventLog; reopen(): Promise<EventLog> }>;
}

const payload = (text: string) => Buffer.from(text);

export function eventLogContract(t: Test, name: string, factory: LogFactory): void {
  t.test(`${name} - assigns contiguous sequences per partition`, async (t) => {
    const { log } = await factory.open(t);
    const outcomes = await log.append([
      { workspace: 'w', shard: 0, messageId: 'a', payload: payload('1') },
      { workspace: 'w', shard: 1, messageId: 'b', payload: payload('2') },
      { workspace: 'w', shard: 0, messageId: 'c', payload: payload('3') },
    ]);

    t.same(outcomes, [
      { status: 'appended', sequence: 1 },
      { status: 'appended', sequence: 1 },
      { status: 'appended', sequence: 2 },
    ]);
    t.equal(log.headSequence({ workspace: 'w', shard: 0 }), 2);
    t.equal(log.headSequence({ workspace: 'w', shard: 9 }), 0);
  });

  t.test(`${name} - reads records after a sequence`, async (t) => {
    const { log } = await factory.open(t);
    await log.append(['a', 'b', 'c'].map((id) => ({ workspace: 'w', shard: 3, messageId: id, payload: payload(id) })));

    const records = await log.read({ workspace: 'w', shard: 3 }, 1, 10);
    t.same(records.map((record) => [record.sequence, record.messageId, record.payload.toString()]), [
      [2, 'b', 'b'],
      [3, 'c', 'c'],
    ]);
    t.same(await log.read({ workspace: 'w', shard: 3 }, 3, 10), []);
  });

  t.test(`${name} - deduplicates messageIds per workspace`, async (t) => {
    const { log } = await factory.open(t);
    await log.append([{ workspace: 'w', shard: 0, messageId: 'm', payload: payload('first') }]);

    const outcomes = await log.append([
      { workspace: 'w', shard: 5, messageId: 'm', payload: payload('again') },
      { workspace: 'other', shard: 0, messageId: 'm', payload: payload('other workspace') },
      { workspace: 'w', shard: 0, messageId: 'n', payload: payload('new') },
      { workspace: 'w', shard: 0, messageId: 'n', payload: payload('same call') },
    ]);

    t.same(outcomes.map((outcome) => outcome.status), ['duplicate', 'appended', 'appended', 'duplicate']);
  });

  t.test(`${name} - concurrent appends of one messageId store it once`, async (t) => {
    const { log } = await factory.open(t);
    const calls = Array.from({ length: 20 }, () => log.append([{ workspace: 'w', shard: 0, messageId: 'race', payload: payload('x') }]));
    const outcomes = (await Promise.all(calls)).flat();

    t.equal(outcomes.filter((outcome) => outcome.status === 'appended').length, 1);
    t.equal(log.headSequence({ workspace: 'w', shard: 0 }), 1);
  });

  t.test(`${name} - notifies listeners in sequence order`, async (t) => {
    const { log } = await factory.open(t);
    const seen: LogRecord[] = [];
    const unsubscribe = log.onAppend((records) => seen.push(...records));

    await Promise.all(Array.from({ length: 50 }, (_, i) => log.append([{ workspace: 'w', shard: 0, messageId: `m${i}`, payload: payload(String(i)) }])));
    unsubscribe();
    await log.append([{ workspace: 'w', shard: 0, messageId: 'after', payload: payload('x') }]);

    t.same(seen.map((record) => record.sequence), Array.from({ length: 50 }, (_, i) => i + 1));
  });

  t.test(`${name} - keeps records, heads and messageIds across reopen`, async (t) => {
    const { log, reopen } = await factory.open(t);
    await log.append([{ workspace: 'w', shard: 2, messageId: 'kept', payload: payload('x') }]);

    const reopened = await reopen();
    t.equal(reopened.headSequence({ workspace: 'w', shard: 2 }), 1);
    t.same(reopened.partitions(), [{ workspace: 'w', shard: 2 }]);
    t.same((await reopened.append([{ workspace: 'w', shard: 2, messageId: 'kept', payload: payload('x') }]))[0], { status: 'duplicate' });
    t.same((await reopened.append([{ workspace: 'w', shard: 2, messageId: 'next', payload: payload('y') }]))[0], { status: 'appended', sequence: 2 });
  });

  t.test(`${name} - prune forgets old records and their messageIds`, async (t) => {
    const { log } = await factory.open(t);
    await log.append(['a', 'b', 'c'].map((id) => ({ workspace: 'w', shard: 0, messageId: id, payload: payload(id) })));
    const partition = { workspace: 'w', shard: 0 };

    t.equal(await log.prune(partition, 2, Date.now() - 60_000), 0, 'records newer than the cutoff stay');
    t.equal(await log.prune(partition, 2, Date.now() + 1), 2, 'records up to the sequence go');
    t.same((await log.read(partition, 0, 10)).map((record) => record.sequence), [3]);
    t.equal(log.headSequence(partition), 3, 'the head does not move');

    const outcomes = await log.append(['a', 'c'].map((id) => ({ workspace: 'w', shard: 0, messageId: id, payload: payload(id) })));
    t.same(outcomes, [{ status: 'appended', sequence: 4 }, { status: 'duplicate' }]);
  });
}
