/**
 * The behaviour every EventLog implementation must have. Each implementation's test file
 * calls `eventLogContract` with a factory that opens a fresh, empty log.
 */
import type { Test } from 'tap';
import type { EventLog, LogRecord } from '../../storage/event-log.js';

export interface LogFactory {
  /** Opens a fresh empty log. `reopen` closes it and opens the same log again. */
  open(t: Test): Promise<{ log: EventLog; reopen(): Promise<EventLog> }>;
  /** Whether each partition is numbered 1, 2, 3, ... (embedded) rather than with gaps (JetStream). */
  contiguous: boolean;
  /** Whether pruning a record also ends its messageId's deduplication (embedded), or the id stays deduplicated for a time window (JetStream). */
  pruneForgetsMessageIds: boolean;
}

const payload = (text: string) => Buffer.from(text);

export function eventLogContract(t: Test, name: string, factory: LogFactory): void {
  t.test(`${name} - assigns growing sequences per partition`, async (t) => {
    const { log } = await factory.open(t);
    const outcomes = await log.append([
      { workspace: 'w', shard: 0, messageId: 'a', payload: payload('1') },
      { workspace: 'w', shard: 1, messageId: 'b', payload: payload('2') },
      { workspace: 'w', shard: 0, messageId: 'c', payload: payload('3') },
    ]);

    const sequences = outcomes.map((outcome) => (outcome.status === 'appended' ? outcome.sequence : -1));
    t.ok(sequences.every((sequence) => sequence > 0), 'every event is appended');
    t.ok(sequences[2] > sequences[0], 'the second record of shard 0 comes after the first');
    if (factory.contiguous) t.same(sequences, [1, 1, 2], 'each partition counts from 1 without gaps');
    t.equal(await log.headSequence({ workspace: 'w', shard: 0 }), sequences[2]);
    t.equal(await log.headSequence({ workspace: 'w', shard: 9 }), 0);
  });

  t.test(`${name} - reads records after a sequence`, async (t) => {
    const { log } = await factory.open(t);
    await log.append(['a', 'b', 'c'].map((id) => ({ workspace: 'w', shard: 3, messageId: id, payload: payload(id) })));

    const all = await log.read({ workspace: 'w', shard: 3 }, 0, 10);
    t.same(all.map((record) => [record.workspace, record.shard, record.messageId, record.payload.toString()]), [
      ['w', 3, 'a', 'a'],
      ['w', 3, 'b', 'b'],
      ['w', 3, 'c', 'c'],
    ]);

    const after = await log.read({ workspace: 'w', shard: 3 }, all[0].sequence, 10);
    t.same(after.map((record) => record.sequence), [all[1].sequence, all[2].sequence]);
    t.same((await log.read({ workspace: 'w', shard: 3 }, all[0].sequence, 1)).map((record) => record.messageId), ['b'], 'limit caps the page');
    t.same(await log.read({ workspace: 'w', shard: 3 }, all[2].sequence, 10), []);
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
    t.equal(await log.headSequence({ workspace: 'w', shard: 0 }), 1);
  });

  t.test(`${name} - notifies listeners in sequence order`, async (t) => {
    const { log } = await factory.open(t);
    const seen: LogRecord[] = [];
    const unsubscribe = log.onAppend((records) => seen.push(...records));

    await Promise.all(Array.from({ length: 50 }, (_, i) => log.append([{ workspace: 'w', shard: 0, messageId: `m${i}`, payload: payload(String(i)) }])));
    unsubscribe();
    await log.append([{ workspace: 'w', shard: 0, messageId: 'after', payload: payload('x') }]);

    const stored = await log.read({ workspace: 'w', shard: 0 }, 0, 100);
    t.equal(seen.length, 50, 'the record appended after unsubscribing is not seen');
    t.same(seen.map((record) => record.sequence), stored.slice(0, 50).map((record) => record.sequence));
  });

  t.test(`${name} - keeps records, heads and messageIds across reopen`, async (t) => {
    const { log, reopen } = await factory.open(t);
    await log.append([{ workspace: 'w', shard: 2, messageId: 'kept', payload: payload('x') }]);

    const head = await log.headSequence({ workspace: 'w', shard: 2 });

    const reopened = await reopen();
    t.equal(await reopened.headSequence({ workspace: 'w', shard: 2 }), head);
    t.same(await reopened.partitions(), [{ workspace: 'w', shard: 2 }]);
    t.same((await reopened.append([{ workspace: 'w', shard: 2, messageId: 'kept', payload: payload('x') }]))[0], { status: 'duplicate' });

    const next = (await reopened.append([{ workspace: 'w', shard: 2, messageId: 'next', payload: payload('y') }]))[0];
    t.equal(next.status, 'appended');
    t.ok(next.status === 'appended' && next.sequence > head, 'the next record comes after the head');
  });

  t.test(`${name} - prune forgets old records and their messageIds`, async (t) => {
    const { log } = await factory.open(t);
    await log.append(['a', 'b', 'c'].map((id) => ({ workspace: 'w', shard: 0, messageId: id, payload: payload(id) })));
    await log.append([{ workspace: 'w', shard: 1, messageId: 'other', payload: payload('other shard') }]);
    const partition = { workspace: 'w', shard: 0 };
    const [, second, third] = await log.read(partition, 0, 10);

    t.equal(await log.prune(partition, second.sequence, Date.now() - 60_000), 0, 'records newer than the cutoff stay');
    t.equal(await log.prune(partition, second.sequence, Date.now() + 1_000), 2, 'records up to the sequence go');
    t.same((await log.read(partition, 0, 10)).map((record) => record.sequence), [third.sequence]);
    t.equal(await log.headSequence(partition), third.sequence, 'the head does not move');
    t.equal((await log.read({ workspace: 'w', shard: 1 }, 0, 10)).length, 1, 'other partitions keep their records');

    const outcomes = await log.append(['a', 'c'].map((id) => ({ workspace: 'w', shard: 0, messageId: id, payload: payload(id) })));
    t.same(outcomes.map((outcome) => outcome.status), [factory.pruneForgetsMessageIds ? 'appended' : 'duplicate', 'duplicate']);
  });
}
