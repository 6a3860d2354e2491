/**
 * Runs asynchronous operations one after another per key: an operation starts once every
 * earlier one on any of its keys has settled, whether it succeeded or failed. Operations
 * that share no key run concurrently.
 */
export class KeyedOrder {
  /** The last operation started per key. */
  readonly #tails = new Map<string, Promise<unknown>>();

  /** Returns whether an operation on `key` has not settled yet. */
  busy(key: string): boolean {
    return this.#tails.has(key);
  }

  run<T>(keys: readonly string[], operation: () => Promise<T>): Promise<T> {
    const earlier = keys.flatMap((key) => this.#tails.get(key) ?? []);
    const result = earlier.length === 0 ? operation() : Promise.all(earlier).then(operation);
    const tail = result.catch(() => undefined);

    for (const key of keys) this.#tails.set(key, tail);
    void tail.then(() => {
      for (const key of keys) if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return result;
  }
}
