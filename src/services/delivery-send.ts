// One HTTP attempt at a callback, and what it means: only 2xx is success; redirects are not
// followed (3xx fails); 410 stops the delivery; 429 and 503 may say when to come back.
import { describeError } from "../log";
import { parseRetryAfter } from "./delivery-schedule";

/** Sent on every callback so receivers (and their firewalls) can tell who calls. */
export const CALLBACK_USER_AGENT = "taskrelay/0.1.0 (+callbacks)";

export interface CallbackRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
}

export interface SendResult {
  ok: boolean;
  /** The receiver's status; null when no response came (timeout, network error). */
  statusCode: number | null;
  latencyMs: number;
  error: string | null;
  /** 410 Gone: the receiver asked us to stop, so no further attempt is made. */
  gone: boolean;
  retryAfterMs?: number;
}

export async function postCallback(
  request: CallbackRequest,
  options: { timeoutMs: number; now: Date },
): Promise<SendResult> {
  // Latency is a duration on the real clock, unlike `now`, which may be a test's injected clock.
  const started = performance.now();
  const latency = () => Math.round(performance.now() - started);
  let response: Response;
  try {
    response = await fetch(request.url, {
      method: "POST",
      headers: request.headers,
      body: request.body,
      redirect: "manual",
      signal: AbortSignal.timeout(options.timeoutMs),
    });
  } catch (error) {
    const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
    return {
      ok: false,
      statusCode: null,
      latencyMs: latency(),
      error: timedOut
        ? `no response within ${options.timeoutMs / 1000} s`
        : `request failed: ${describeError(error)}`,
      gone: false,
    };
  }
  const latencyMs = latency();
  // The body is not used; cancelling it releases the connection.
  await response.body?.cancel().catch(() => undefined);
  const status = response.status;
  if (status >= 200 && status < 300) {
    return { ok: true, statusCode: status, latencyMs, error: null, gone: false };
  }
  const failure = { ok: false, statusCode: status, latencyMs, gone: false };
  if (status >= 300 && status < 400) {
    const location = (response.headers.get("location") ?? "").slice(0, 200);
    return {
      ...failure,
      error: `HTTP ${status}: redirects are not followed${location ? ` (to ${location})` : ""}`,
    };
  }
  if (status === 410) return { ...failure, gone: true, error: "HTTP 410 Gone: the receiver asked to stop" };
  if (status === 429 || status === 503) {
    const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"), options.now);
    const after = retryAfterMs === undefined ? "" : ` (Retry-After ${Math.round(retryAfterMs / 1000)} s)`;
    return {
      ...failure,
      error: `HTTP ${status}${after}`,
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    };
  }
  return { ...failure, error: `HTTP ${status}` };
}
