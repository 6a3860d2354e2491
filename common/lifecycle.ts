import type { Logger } from './logger.js';
import { InvalidStateError } from './errors.js';

/** The states every long-lived component moves through, in this order. */
export type LifecycleState = 'created' | 'starting' | 'running' | 'draining' | 'stopped' | 'failed';

/**
 * Holds a component's lifecycle state. `set` is the one place a transition happens, and
 * it logs each one; `assert` lets a public method check the state before doing work.
 */
export class Lifecycle {
  #state: LifecycleState = 'created';

  constructor(
    private readonly component: string,
    private readonly logger: Logger,
  ) {}

  get state(): LifecycleState {
    return this.#state;
  }

  set(next: LifecycleState, fields: Record<string, unknown> = {}): void {
    const previous = this.#state;
    this.#state = next;
    this.logger.info({ lifecycle: this.component, from: previous, to: next, ...fields }, 'lifecycle transition');
  }

  /** Throws InvalidStateError unless the state is one of `allowed`. */
  assert(operation: string, ...allowed: LifecycleState[]): void {
    if (!allowed.includes(this.#state)) {
      throw new InvalidStateError(this.component, this.#state, operation);
    }
  }

  is(...states: LifecycleState[]): boolean {
    return states.includes(this.#state);
  }
}
