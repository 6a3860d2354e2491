import t from 'tap';
import { RocksDbEventLog } from '../../storage/rocksdb-event-log.js';
import { Store } from '../../storage/store.js';
import { eventLogContract } from './event-log-contract.js';

eventLogContract(t, 'rocksdb event log', {
  contiguous: true,
  pruneForgetsMessageIds: true,
  async open(t) {
    const path = t.testdir();
    let store = await Store.open({ path });
    let log = await RocksDbEventLog.open(store);
    t.teardown(async () => {
      await log.close();
      await store.close();
    });

    return {
      log,
      async reopen() {
        await log.close();
        await store.close();
        store = await Store.open({ path });
        log = await RocksDbEventLog.open(store);
        return log;
      },
    };
  },
});
