/**
 * Skips an Error that the NATS client builds for every successful request.
 *
 * In @nats-io/nats-core 3.4, `RequestOne.resolver` settles a request's promise with its
 * reply and then calls `cancel()`, which rejects the same promise with a new
 * `RequestError("cancelled")`. The rejection does nothing, because the promise is settled,
 * but building the Error and its stack trace took 7% of a cluster node's main thread under
 * load (a CPU profile of `npm run bench -- cluster`, 2026-12-06). Every JetStream publish,
 * KV put and KV get is such a request.
 *
 * The patch marks a request settled when its reply arrives, and then passes one shared error
 * to `cancel`, so nothing is built. A request cancelled before any reply, for example when
 * the connection closes, still rejects with a new error of its own.
 */
import { RequestOne } from '@nats-io/nats-core/internal';

const SETTLED = Symbol('rtcdp.settledRequest');

type PatchedRequest = RequestOne & { [SETTLED]?: true };

/** Passed to `cancel` of settled requests only, whose promise ignores it. */
const CANCEL_SETTLED = Object.freeze(new Error('request already settled'));

let installed: { resolver: RequestOne['resolver']; cancel: RequestOne['cancel'] } | null = null;

/**
 * Installs the patch on RequestOne's prototype, once however often it is called. Throws
 * when the client's RequestOne does not have the methods it wraps, so that a client update
 * that changes them fails loudly instead of running unpatched code paths unnoticed.
 */
export function skipSettledRequestErrors(): void {
  if (installed !== null) return;

  const prototype = RequestOne.prototype as PatchedRequest;
  const { resolver, cancel } = prototype;
  if (typeof resolver !== 'function' || typeof cancel !== 'function') {
    throw new TypeError('@nats-io/nats-core RequestOne has no resolver and cancel methods to patch; check settled-requests.ts against the installed version');
  }

  installed = { resolver, cancel };
  prototype.resolver = function settleThenResolve(this: PatchedRequest, error, message) {
    this[SETTLED] = true;
    resolver.call(this, error, message);
  };
  prototype.cancel = function cancelWithoutNewError(this: PatchedRequest, error?: Error) {
    cancel.call(this, error ?? (this[SETTLED] === true ? CANCEL_SETTLED : undefined));
  };
}

/** Restores the methods the patch wrapped. The benchmark measures the client with and without the patch. */
export function restoreSettledRequestErrors(): void {
  if (installed === null) return;

  const prototype = RequestOne.prototype;
  prototype.resolver = installed.resolver;
  prototype.cancel = installed.cancel;
  installed = null;
}
