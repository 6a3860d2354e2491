import type { Logger } from '../common/logger.js';
import type { Clock, TimerHandle } from './clock.js';

/**
 * Runs an async function every `intervalMs` on a Clock, never two runs at once. The next
 * run starts `intervalMs` after the previous one started, or right after it ends when it
 * took longer than that. A run that throws is logged and the schedule goes on.
 */
export class PeriodicTask {
  #timer: TimerHandle | null = null;
  #running: Promise<void> | null = null;
  #stopped = false;

  constructor(
    private readonly name: string,
    private readonly clock: Clock,
    private readonly intervalMs: number,
    private readonly run: () => Promise<void>,
    private readonly logger: Logger,
  ) {}

  /** Schedules the first run after `initialDelayMs`, or runs it now when that is 0. */
  start(initialDelayMs = 0): void {
    if (initialDelayMs === 0) {
      this.#fire();
    } else {
      this.#timer = this.clock.setTimer(initialDelayMs, () => this.#fire());
    }
  }

  /** Cancels the next run and waits for the one in progress, if any. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = null;
    await this.#running;
  }

  #fire(): void {
    this.#timer = null;
    if (this.#stopped) return;

    const startedAtMs = this.clock.nowMs();
    this.#running = this.#runOnce().finally(() => {
      this.#running = null;
      if (this.#stopped) return;
      const delayMs = Math.max(0, startedAtMs + this.intervalMs - this.clock.nowMs());
      this.#timer = this.clock.setTimer(delayMs, () => this.#fire());
    });
  }

  async #runOnce(): Promise<void> {
    try {
      await this.run();
    } catch (error) {
      this.logger.error({ err: error, task: this.name }, 'periodic task failed');
    }
  }
}

/**
 * Logs a streak of failures of one repeated operation without flooding the log: the first
 * failure and every 100th at warn, the others at debug, and the recovery at info with
 * the number of failures.
 */
export class FailureStreak {
  #failures = 0;

  constructor(
    private readonly logger: Logger,
    private readonly operation: string,
  ) {}

  get failures(): number {
    return this.#failures;
  }

  failed(error: unknown, fields: Record<string, unknown> = {}): void {
    this.#failures += 1;
    const level = this.#failures === 1 || this.#failures % 100 === 0 ? 'warn' : 'debug';
    this.logger[level]({ err: error, failures: this.#failures, ...fields }, `${this.operation} failed`);
  }

  succeeded(fields: Record<string, unknown> = {}): void {
    if (this.#failures === 0) return;
    this.logger.info({ failures: this.#failures, ...fields }, `${this.operation} succeeded again after failures`);
    this.#failures = 0;
  }
}
