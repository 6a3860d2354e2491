/**
 * The highest sequence of a partition below which every record is done, when records
 * finish out of order. Sequences are contiguous (1, 2, 3, ...), so finished records above
 * the watermark wait in a set until the gap below them closes.
 */
export class Watermark {
  #value: number;
  readonly #finishedAbove = new Set<number>();
  readonly #waiters: Array<{ sequence: number; resolve: () => void }> = [];

  constructor(start: number) {
    this.#value = start;
  }

  get value(): number {
    return this.#value;
  }

  /** Marks `sequence` done and advances the watermark over every contiguous done record. */
  finish(sequence: number): void {
    if (sequence <= this.#value) return;
    if (sequence !== this.#value + 1) {
      this.#finishedAbove.add(sequence);
      return;
    }

    this.#value = sequence;
    while (this.#finishedAbove.delete(this.#value + 1)) this.#value += 1;
    this.#wake();
  }

  /** Moves the watermark forward to `sequence` without per-record bookkeeping (records skipped as already applied). */
  advanceTo(sequence: number): void {
    if (sequence <= this.#value) return;
    this.#value = sequence;
    for (const finished of this.#finishedAbove) if (finished <= sequence) this.#finishedAbove.delete(finished);
    while (this.#finishedAbove.delete(this.#value + 1)) this.#value += 1;
    this.#wake();
  }

  /** Resolves once the watermark reaches `sequence`. */
  reach(sequence: number): Promise<void> {
    if (this.#value >= sequence) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ sequence, resolve }));
  }

  #wake(): void {
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      if (this.#waiters[i].sequence > this.#value) continue;
      this.#waiters[i].resolve();
      this.#waiters.splice(i, 1);
    }
  }
}
