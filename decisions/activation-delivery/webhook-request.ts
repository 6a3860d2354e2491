/**
 * One delivery attempt: a signed POST of a batch with Node's fetch (undici), and the rule
 * that decides whether a failed attempt is worth retrying.
 */
import { IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER } from './webhook-payload.js';

/** The result of one POST. `retryable` is false for a rejection that a retry cannot change. */
export type AttemptResult =
  | { ok: true; status: number }
  | { ok: false; retryable: boolean; status?: number; retryAfterMs?: number; error: string }
  | { ok: false; stopped: true };

export interface SignedRequest {
  url: URL;
  body: string;
  signature: string;
  idempotencyKey: string;
  timeoutMs: number;
  /** Aborts the request when the dispatcher stops without waiting for it. */
  signal: AbortSignal;
  /** Current time in ms, for the timestamp header and for Retry-After dates. */
  nowMs: number;
}

/** The response text kept in an error message, in characters. */
const MAX_ERROR_BODY = 200;

/** Sends one request. Network errors, timeouts and stops are returned as results, not thrown. */
export async function postBatch(request: SignedRequest): Promise<AttemptResult> {
  const timeout = AbortSignal.timeout(request.timeoutMs);
  let response: Response;
  let bodyText: string;
  try {
    response = await fetch(request.url, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        [SIGNATURE_HEADER]: request.signature,
        [TIMESTAMP_HEADER]: String(Math.floor(request.nowMs / 1_000)),
        [IDEMPOTENCY_HEADER]: request.idempotencyKey,
      },
      body: request.body,
      // A redirect could send the signed batch to another host, so it counts as a failure.
      redirect: 'manual',
      signal: AbortSignal.any([timeout, request.signal]),
    });
    bodyText = await readStart(response);
  } catch (error) {
    if (request.signal.aborted) return { ok: false, stopped: true };
    if (timeout.aborted) return { ok: false, retryable: true, error: `timed out after ${request.timeoutMs} ms` };
    return { ok: false, retryable: true, error: `request failed: ${describeNetworkError(error)}` };
  }

  return classify(response, bodyText, request.nowMs);
}

/** Maps a response to a result: 2xx succeeds; 408, 429 and 5xx may be retried; every other status may not. */
export function classify(response: Response, bodyText: string, nowMs: number): AttemptResult {
  const status = response.status;
  if (status >= 200 && status < 300) return { ok: true, status };

  const error = `received HTTP ${status}${bodyText === '' ? '' : `: ${bodyText}`}`;
  const retryable = status === 408 || status === 429 || status >= 500;
  const retryAfterMs = retryable ? parseRetryAfter(response.headers.get('retry-after'), nowMs) : undefined;
  return retryAfterMs === undefined ? { ok: false, retryable, status, error } : { ok: false, retryable, status, retryAfterMs, error };
}

/** Returns the delay that a Retry-After header requests, in ms. The header is delay-seconds or an HTTP date (RFC 9110, section 10.2.3). */
export function parseRetryAfter(header: string | null, nowMs: number): number | undefined {
  if (header === null) return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1_000;

  const dateMs = Date.parse(text);
  if (Number.isNaN(dateMs)) return undefined;
  return Math.max(0, dateMs - nowMs);
}

/** Reads up to MAX_ERROR_BODY characters of the response body and discards the rest. */
async function readStart(response: Response): Promise<string> {
  if (response.body === null) return '';
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  try {
    while (text.length < MAX_ERROR_BODY) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return text.slice(0, MAX_ERROR_BODY).replace(/\s+/g, ' ').trim();
}

/** undici reports "fetch failed" with the socket error as its cause. */
function describeNetworkError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  return cause === undefined ? error.message : `${error.message} (${cause})`;
}
