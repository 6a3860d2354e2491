/**
 * The highest sequence of a partition below which every record is done, when records
 * finish out of order. Sequences may have gaps (a JetStream subject's records carry
 * stream sequences), so the owner registers each record with expect() in log order before
 * it can finish, and the watermark moves only over expected records that are done.
 */
export class Watermark {
  #value: number;
  /** Expected records not yet passed by the watermark, in log order, from `#pendingStart`. */
  readonly #pending: number[] = [];
  #pendingStart = 0;
  readonly #finishedAhead = new Set<number>();
  #lastExpected: number;
  readonly #waiters: Array<{ sequence: number; resolve: () => void }> = [];

  constructor(start: number) {
    this.#value = start;
    this.#lastExpected = start;
  }

  get value(): number {
    return this.#value;
  }

  /** Registers the next record of the partition. Sequences must increase from call to call. */
  expect(sequence: number): void {
    if (sequence <= this.#lastExpected) throw new RangeError(`expected sequence ${sequence} is not above the last one, ${this.#lastExpected}`);
    this.#pending.push(sequence);
    this.#lastExpected = sequence;
  }

  /** Marks an expected record done and advances the watermark over every leading done record. */
  finish(sequence: number): void {
    if (sequence <= this.#value || sequence > this.#lastExpected) return;
    this.#finishedAhead.add(sequence);

    let advanced = false;
    while (this.#pendingStart < this.#pending.length && this.#finishedAhead.delete(this.#pending[this.#pendingStart])) {
      this.#value = this.#pending[this.#pendingStart];
      this.#pendingStart += 1;
      advanced = true;
    }
    if (!advanced) return;

    this.#compact();
    this.#wake();
  }

  /** Moves the watermark forward to `sequence`, treating every expected record up to it as done. */
  advanceTo(sequence: number): void {
    if (sequence <= this.#value) return;
    this.#value = sequence;
    if (sequence > this.#lastExpected) this.#lastExpected = sequence;

    while (this.#pendingStart < this.#pending.length && this.#pending[this.#pendingStart] <= sequence) {
      this.#finishedAhead.delete(this.#pending[this.#pendingStart]);
      this.#pendingStart += 1;
    }
    // Records above `sequence` that finished earlier may now lead.
    while (this.#pendingStart < this.#pending.length && this.#finishedAhead.delete(this.#pending[this.#pendingStart])) {
      this.#value = this.#pending[this.#pendingStart];
      this.#pendingStart += 1;
    }
    this.#compact();
    this.#wake();
  }

  /** Resolves once the watermark reaches `sequence`. */
  reach(sequence: number): Promise<void> {
    if (this.#value >= sequence) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ sequence, resolve }));
  }

  #compact(): void {
    if (this.#pendingStart === this.#pending.length) {
      this.#pending.length = 0;
      this.#pendingStart = 0;
    } else if (this.#pendingStart >= 4_096 && this.#pendingStart * 2 >= this.#pending.length) {
      this.#pending.splice(0, this.#pendingStart);
      this.#pendingStart = 0;
    }
  }

  #wake(): void {
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      if (this.#waiters[i].sequence > this.#value) continue;
      this.#waiters[i].resolve();
      this.#waiters.splice(i, 1);
    }
  }
}
