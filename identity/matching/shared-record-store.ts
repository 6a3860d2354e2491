/**
 * Prepared records in shared memory, so that comparison tasks carry only pair indices.
 * The main thread appends each record's record-codec string once. Every worker decodes a
 * record the first time a task refers to it and keeps the decoded object, so a record is
 * neither copied nor parsed again per task.
 *
 * Records are append-only: a slot, once written, never changes. A slot is written before
 * any task that refers to it is posted, and the worker reads it after receiving the task,
 * so the message passing between the threads orders the write before the read.
 */

/** UTF-16 code units per text segment: 8 MiB. */
const CHARS_PER_SEGMENT = 4 * 1024 * 1024;
/** Records per index segment (512 KiB). Each record has its start and length as two Int32 values. */
const RECORDS_PER_INDEX_SEGMENT = 65_536;
/** Text segments a store can have, because a slot's position is an Int32 character offset. */
const MAX_TEXT_SEGMENTS = Math.floor(2 ** 31 / CHARS_PER_SEGMENT);
/** Maximum length of a record-codec string in a slot. Prepared persons are a few hundred characters. */
export const MAX_RECORD_CHARS = 65_536;

/** The part of a store that a task carries: the shared buffers, which postMessage shares rather than copies. */
export interface RecordStoreView {
  /** Unique within the process, so that a worker can tell when its decoded records belong to another store. */
  readonly id: number;
  readonly textSegments: readonly SharedArrayBuffer[];
  readonly indexSegments: readonly SharedArrayBuffer[];
}

let nextStoreId = 1;

export class SharedRecordStore {
  readonly id = nextStoreId++;
  readonly #textSegments: SharedArrayBuffer[] = [];
  readonly #indexSegments: SharedArrayBuffer[] = [];
  #text: Uint16Array | undefined;
  #index: Int32Array | undefined;
  #usedChars = CHARS_PER_SEGMENT;
  #count = 0;
  #chars = 0;

  /** Number of records appended. */
  get size(): number {
    return this.#count;
  }

  /** Bytes of shared memory allocated. */
  get allocatedBytes(): number {
    return this.#textSegments.length * CHARS_PER_SEGMENT * 2 + this.#indexSegments.length * RECORDS_PER_INDEX_SEGMENT * 8;
  }

  /** Characters stored, a measure of the memory that live and replaced records take. */
  get storedChars(): number {
    return this.#chars;
  }

  /** Appends one record-codec string and returns its slot. Throws RangeError for a string over MAX_RECORD_CHARS. */
  append(encoded: string): number {
    if (encoded.length > MAX_RECORD_CHARS) throw new RangeError(`a prepared record must be at most ${MAX_RECORD_CHARS} characters, received ${encoded.length}`);

    if (this.#usedChars + encoded.length > CHARS_PER_SEGMENT) this.#addTextSegment();
    const text = this.#text as Uint16Array;
    const start = this.#usedChars;
    for (let i = 0; i < encoded.length; i++) text[start + i] = encoded.charCodeAt(i);
    this.#usedChars += encoded.length;
    this.#chars += encoded.length;

    const slot = this.#count;
    if (slot % RECORDS_PER_INDEX_SEGMENT === 0) this.#addIndexSegment();
    const index = this.#index as Int32Array;
    const entry = (slot % RECORDS_PER_INDEX_SEGMENT) * 2;
    index[entry] = (this.#textSegments.length - 1) * CHARS_PER_SEGMENT + start;
    index[entry + 1] = encoded.length;
    this.#count++;
    return slot;
  }

  view(): RecordStoreView {
    return { id: this.id, textSegments: [...this.#textSegments], indexSegments: [...this.#indexSegments] };
  }

  #addTextSegment(): void {
    if (this.#textSegments.length === MAX_TEXT_SEGMENTS) throw new RangeError(`the record store is full: it has reached its maximum of ${MAX_TEXT_SEGMENTS * 8} MiB of prepared records. Start a new matcher`);
    const buffer = new SharedArrayBuffer(CHARS_PER_SEGMENT * 2);
    this.#textSegments.push(buffer);
    this.#text = new Uint16Array(buffer);
    this.#usedChars = 0;
  }

  #addIndexSegment(): void {
    const buffer = new SharedArrayBuffer(RECORDS_PER_INDEX_SEGMENT * 8);
    this.#indexSegments.push(buffer);
    this.#index = new Int32Array(buffer);
  }
}

/** Reads records of a store in a worker. */
export class RecordStoreReader {
  readonly id: number;
  #text: Uint16Array[] = [];
  #index: Int32Array[] = [];

  constructor(view: RecordStoreView) {
    this.id = view.id;
    this.update(view);
  }

  /** Takes the segments that were added since the reader last saw the store. */
  update(view: RecordStoreView): void {
    for (let i = this.#text.length; i < view.textSegments.length; i++) this.#text.push(new Uint16Array(view.textSegments[i]));
    for (let i = this.#index.length; i < view.indexSegments.length; i++) this.#index.push(new Int32Array(view.indexSegments[i]));
  }

  read(slot: number): string {
    const index = this.#index[Math.floor(slot / RECORDS_PER_INDEX_SEGMENT)];
    if (index === undefined) throw new RangeError(`record slot ${slot} is not in the store`);
    const entry = (slot % RECORDS_PER_INDEX_SEGMENT) * 2;
    const position = index[entry];
    const length = index[entry + 1];
    const text = this.#text[Math.floor(position / CHARS_PER_SEGMENT)];
    const start = position % CHARS_PER_SEGMENT;
    return String.fromCharCode.apply(null, text.subarray(start, start + length) as unknown as number[]);
  }
}
