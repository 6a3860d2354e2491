import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Creates the process logger. JSON lines on stderr, so stdout stays free for command
 * output. RTCDP_LOG_LEVEL overrides the level (trace, debug, info, warn, error, silent).
 */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  const level = process.env.RTCDP_LOG_LEVEL ?? options.level ?? 'info';
  return pino({ name: options.name ?? 'rtcdp', level }, pino.destination({ fd: 2, sync: false }));
}

/** Creates a logger that drops everything, for tests and embedded use without output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
