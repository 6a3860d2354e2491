/**
 * Reads the history an unmerge replays: the records of the survivor's partition from where
 * the merge began (its link command, or the absorb) up to the unmerge command. The log is append-only, so the
 * same range reads the same after a restart, and a replay of the command rebuilds the same
 * states. The survivor sends its checkpoint from that point with its next snapshot, so the
 * checkpoint can come after the command. The reader then looks for it there.
 */
import type { Logger } from '../common/logger.js';
import type { HistoryEntry, IdentityCommandMessage, LogEntry, UnmergeCommand } from '../profiles/identity-commands.js';
import { isIdentityCommand } from '../profiles/identity-commands.js';
import { decode } from '../storage/codec.js';
import type { EventLog, LogRecord, PartitionId } from '../storage/event-log.js';

/** Records read from the log at a time. */
const READ_PAGE_SIZE = 1_000;

/** How long the reader waits for a checkpoint that is not in the log yet. */
const CHECKPOINT_WAIT_MS = 10_000;

const CHECKPOINT_POLL_MS = 50;

/** Reads the history of an unmerge command into `message.history`, or sets `message.historyError`. */
export async function attachUnmergeHistory(log: EventLog, partition: PartitionId, message: IdentityCommandMessage, logger: Logger): Promise<void> {
  const command = message.command as UnmergeCommand;
  const untilSequence = message.position.sequence;
  const records = await readRange(log, partition, command.sinceSequence - 1, untilSequence);

  if (records[0]?.sequence !== command.sinceSequence) {
    message.historyError = `the log of shard ${partition.shard} no longer contains sequence ${command.sinceSequence}, where the merge of ${command.restored} into ${command.profileId} began: the records are older than its retention`;
    return;
  }
  const history = records.map(toHistoryEntry);
  if (!history.some((item) => isCheckpointFor(item.entry, command))) {
    const checkpoint = await awaitCheckpoint(log, partition, untilSequence, command);
    if (checkpoint === undefined) {
      message.historyError = `the log contains no checkpoint of ${command.profileId} from before the merge of ${command.restored}: it was lost with a node, or the merge was made by a version of rtcdp without unmerge`;
      return;
    }
    history.push(checkpoint);
  }

  logger.debug({ ...partition, profileId: command.profileId, restored: command.restored, records: history.length }, 'read the history of an unmerge');
  message.history = history;
}

/** Reads every record with a sequence above `afterSequence` and below `beforeSequence`. */
async function readRange(log: EventLog, partition: PartitionId, afterSequence: number, beforeSequence: number): Promise<LogRecord[]> {
  const records: LogRecord[] = [];
  let after = afterSequence;
  for (;;) {
    const page = await log.read(partition, after, READ_PAGE_SIZE);
    for (const record of page) {
      if (record.sequence >= beforeSequence) return records;
      records.push(record);
    }
    if (page.length === 0) return records;
    after = page.at(-1)!.sequence;
  }
}

/** Looks for the checkpoint after the command, until the wait ends. */
async function awaitCheckpoint(log: EventLog, partition: PartitionId, afterSequence: number, command: UnmergeCommand): Promise<HistoryEntry | undefined> {
  const deadline = Date.now() + CHECKPOINT_WAIT_MS;
  let after = afterSequence;
  for (;;) {
    const page = await log.read(partition, after, READ_PAGE_SIZE);
    for (const record of page) {
      const item = toHistoryEntry(record);
      if (isCheckpointFor(item.entry, command)) return item;
      after = record.sequence;
    }
    if (page.length > 0) continue;
    if (Date.now() >= deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, CHECKPOINT_POLL_MS));
  }
}

function toHistoryEntry(record: LogRecord): HistoryEntry {
  const entry = (record.value as LogEntry | undefined) ?? decode<LogEntry>(record.payload);
  return { position: { shard: record.shard, sequence: record.sequence }, entry, payload: record.payload };
}

function isCheckpointFor(entry: LogEntry, command: UnmergeCommand): boolean {
  if (!isIdentityCommand(entry) || entry.command !== 'checkpoint') return false;
  return entry.profileId === command.profileId && entry.before === command.restored && entry.cause.messageId === command.mergeMessageId;
}
