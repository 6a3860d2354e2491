/**
 * A FIFO queue on a growable ring buffer. Push and shift are O(1) and allocate only when
 * the buffer doubles, which keeps mailboxes and the run queue cheap on the hot path.
 */
export class RingQueue<T> {
  /** Capacity is 0 or a power of two, so `& mask` replaces `%`. */
  #items: Array<T | undefined> = [];
  #head = 0;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(item: T): void {
    if (this.#length === this.#items.length) {
      this.#grow();
    }

    const mask = this.#items.length - 1;
    this.#items[(this.#head + this.#length) & mask] = item;
    this.#length++;
  }

  /** Removes and returns the oldest item, or undefined when the queue is empty. */
  shift(): T | undefined {
    if (this.#length === 0) {
      return undefined;
    }

    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) & (this.#items.length - 1);
    this.#length--;
    return item;
  }

  /** Returns the oldest item without removing it. */
  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#items[this.#head];
  }

  /** Removes and returns every item, oldest first. */
  drain(): T[] {
    const items: T[] = [];
    for (let item = this.shift(); item !== undefined; item = this.shift()) {
      items.push(item);
    }
    return items;
  }

  #grow(): void {
    const capacity = this.#items.length === 0 ? 4 : this.#items.length * 2;
    const items = new Array<T | undefined>(capacity);

    for (let index = 0; index < this.#length; index++) {
      items[index] = this.#items[(this.#head + index) & (this.#items.length - 1)];
    }

    this.#items = items;
    this.#head = 0;
  }
}
