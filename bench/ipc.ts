/**
 * Request and response over a child process's IPC channel. The harness sends
 * `{ kind: 'request', id, type, payload }`, and the child responds with `{ kind: 'response',
 * id, ok, result | error }`. A child can also send `{ kind: 'event', type, payload }` on its own,
 * for example 'ready' once it listens.
 */
import type { ChildProcess } from 'node:child_process';

interface RequestMessage {
  kind: 'request';
  id: number;
  type: string;
  payload: unknown;
}

interface ResponseMessage {
  kind: 'response';
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

interface EventMessage {
  kind: 'event';
  type: string;
  payload: unknown;
}

type Message = RequestMessage | ResponseMessage | EventMessage;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** The harness side of a child's IPC channel. */
export class IpcChannel {
  readonly #child: ChildProcess;
  readonly #name: string;
  readonly #pending = new Map<number, Pending>();
  readonly #eventHandlers = new Map<string, Array<(payload: unknown) => void>>();
  #nextId = 1;
  #exitReason: string | null = null;

  constructor(child: ChildProcess, name: string) {
    this.#child = child;
    this.#name = name;
    child.on('message', (message: Message) => this.#onMessage(message));
    child.once('exit', (code, signal) => this.#onExit(code, signal));
  }

  get name(): string {
    return this.#name;
  }

  /** Sends a request and resolves with the child's result, or rejects on its error, its exit or the timeout. */
  request<T>(type: string, payload: unknown = null, timeoutMs = 30_000): Promise<T> {
    if (this.#exitReason !== null) {
      return Promise.reject(new Error(`${this.#name} cannot take request "${type}": it ${this.#exitReason}`));
    }

    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${this.#name} did not respond to request "${type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      // A timeout alone must not keep the harness running once everything else is done.
      timer.unref();

      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      // With a callback, a channel that closed in the meantime (a child just killed) fails
      // this request instead of raising an 'error' event that nothing handles.
      this.#child.send({ kind: 'request', id, type, payload } satisfies RequestMessage, (error) => {
        if (error === null || !this.#pending.has(id)) return;
        this.#pending.delete(id);
        clearTimeout(timer);
        reject(new Error(`${this.#name} cannot take request "${type}": ${error.message}`));
      });
    });
  }

  /** Resolves with the payload of the next event of `type`, or rejects when the child exits or the timeout passes. */
  waitForEvent<T>(type: string, timeoutMs: number): Promise<T> {
    if (this.#exitReason !== null) {
      return Promise.reject(new Error(`${this.#name} ${this.#exitReason} before sending "${type}"`));
    }

    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.#name} did not send "${type}" within ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
      const onExit = () => {
        clearTimeout(timer);
        reject(new Error(`${this.#name} ${this.#exitReason} before sending "${type}"`));
      };

      this.#child.once('exit', onExit);
      this.onEvent(type, (payload) => {
        clearTimeout(timer);
        this.#child.off('exit', onExit);
        resolve(payload as T);
      });
    });
  }

  onEvent(type: string, handler: (payload: unknown) => void): void {
    const handlers = this.#eventHandlers.get(type) ?? [];
    handlers.push(handler);
    this.#eventHandlers.set(type, handlers);
  }

  #onMessage(message: Message): void {
    if (message.kind === 'event') {
      for (const handler of this.#eventHandlers.get(message.type) ?? []) handler(message.payload);
      return;
    }

    if (message.kind !== 'response') return;
    const pending = this.#pending.get(message.id);
    if (pending === undefined) return;

    this.#pending.delete(message.id);
    clearTimeout(pending.timer);
    if (message.ok) pending.resolve(message.result);
    else pending.reject(new Error(`${this.#name}: ${message.error}`));
  }

  #onExit(code: number | null, signal: NodeJS.Signals | null): void {
    this.#exitReason = signal === null ? `exited with code ${code}` : `was stopped by ${signal}`;
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new Error(`${this.#name} ${this.#exitReason} before responding`));
    }
    this.#pending.clear();
  }
}

export type RequestHandler = (payload: any) => unknown;

/**
 * Serves requests on the child side with `handlers`. When the parent goes away (the IPC
 * channel closes), `onDisconnect` runs, so a child never outlives a killed harness.
 */
export function serveIpc(handlers: Record<string, RequestHandler>, onDisconnect: () => void): void {
  if (process.send === undefined) {
    throw new Error('this script must be started by the benchmark harness with an IPC channel (child_process.fork)');
  }

  process.on('message', (message: Message) => {
    if (message.kind !== 'request') return;
    void answer(handlers, message);
  });
  process.once('disconnect', onDisconnect);
}

/** Sends an event to the harness; does nothing once the channel has closed. */
export function sendEvent(type: string, payload: unknown = null): void {
  if (process.connected) process.send!({ kind: 'event', type, payload } satisfies EventMessage);
}

async function answer(handlers: Record<string, RequestHandler>, request: RequestMessage): Promise<void> {
  let response: ResponseMessage;
  const handler = handlers[request.type];

  try {
    if (handler === undefined) throw new Error(`unknown request type "${request.type}"`);
    response = { kind: 'response', id: request.id, ok: true, result: await handler(request.payload) };
  } catch (error) {
    response = { kind: 'response', id: request.id, ok: false, error: error instanceof Error ? error.stack ?? error.message : String(error) };
  }

  if (process.connected) process.send!(response);
}
