// One HTTP attempt at a callback, and what it means: only 2xx is success; redirects are not
// followed (3xx fails); 410 stops the delivery; 429 and 503 may say when to come back. A failed
// attempt is recorded in words the user can act on ("could not resolve …", "TLS handshake … failed"),
// from what the Workers runtime gives: it throws for a refused or dropped connection, and (under
// wrangler dev) "internal error; reference = …" for a name that does not resolve or a failed TLS
// handshake, the reason being only in workerd's log; Cloudflare's edge answers those with its own
// 52x/530 statuses instead.
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
  /** `fetch`: the service context's, so that a consumer invocation counts each POST (cron/invocation-calls.ts). */
  options: { timeoutMs: number; now: Date; fetch: typeof fetch },
): Promise<SendResult> {
  // Latency is a duration on the real clock, unlike `now`, which may be a test's injected clock.
  const started = performance.now();
  const latency = () => Math.round(performance.now() - started);
  let response: Response;
  try {
    response = await options.fetch(request.url, {
      method: "POST",
      headers: request.headers,
      body: request.body,
      redirect: "manual",
      signal: AbortSignal.timeout(options.timeoutMs),
    });
  } catch (error) {
    return {
      ok: false,
      statusCode: null,
      latencyMs: latency(),
      error: describeSendFailure(error, request.url, options.timeoutMs),
      gone: false,
    };
  }
  const latencyMs = latency();
  const status = response.status;
  // The body is not used (but for Cloudflare's error code on a 530); cancelling it releases the connection.
  const bodyStart = status === 530 ? await readPrefix(response, 512) : "";
  await response.body?.cancel().catch(() => undefined);
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
  const edge = cloudflareStatusMeaning(status, bodyStart, request.url);
  return { ...failure, error: edge ? `HTTP ${status}: ${edge}` : `HTTP ${status}` };
}

/**
 * What a fetch that threw means, as measured against workerd 1.20261102 (wrangler dev and the test pool, loopback):
 * a closed port, a reset or a server that answers garbage throw "Network connection lost.";
 * an unresolvable name and a TLS handshake with a plain-http server both throw
 * "internal error; reference = …"; the timeout signal throws a TimeoutError.
 */
export function describeSendFailure(error: unknown, rawUrl: string, timeoutMs: number): string {
  if (error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError")) {
    return `no response within ${timeoutMs / 1000} s`;
  }
  const url = new URL(rawUrl);
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  const where = `${url.hostname}:${port}`;
  const message = error instanceof Error ? error.message : String(error);
  if (message === "Network connection lost.") {
    return `could not connect to ${where}, or it closed the connection before answering (connection refused or reset): is the receiver listening there?`;
  }
  if (message.startsWith("internal error")) {
    const literal = /^\d+\.\d+\.\d+\.\d+$/.test(url.hostname) || url.hostname.startsWith("[");
    if (url.protocol === "https:" && literal)
      return `TLS handshake with ${where} failed: does it serve https?`;
    if (url.protocol === "https:") {
      return `could not resolve ${url.hostname}, or the TLS handshake with ${where} failed`;
    }
    if (!literal) return `could not resolve ${url.hostname}`;
  }
  return `request failed: ${describeError(error)}`;
}

/** Statuses Cloudflare's edge answers for a receiver it could not reach, in words. */
const CLOUDFLARE_STATUSES: Record<number, string> = {
  521: "the receiver's server refused the connection",
  522: "connecting to the receiver timed out",
  523: "the receiver's address is unreachable",
  524: "the receiver accepted the connection but did not answer in time",
  525: "the TLS handshake with the receiver failed",
  526: "the receiver's TLS certificate is not valid",
};

function cloudflareStatusMeaning(status: number, body: string, rawUrl: string): string | null {
  if (status !== 530) return CLOUDFLARE_STATUSES[status] ?? null;
  // 530 carries Cloudflare's own error code in the body: "error code: 1016" is "origin DNS error".
  const code = body.match(/error code:?\s*(\d{4})/i)?.[1];
  if (code === "1016") return `could not resolve ${new URL(rawUrl).hostname}`;
  return code ? `Cloudflare error ${code}` : null;
}

/** The first bytes of a body, never more than `maxBytes` read from the network. */
async function readPrefix(response: Response, maxBytes: number): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return "";
  const decoder = new TextDecoder();
  let text = "";
  let bytes = 0;
  try {
    while (bytes < maxBytes) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    // a body cut short tells nothing more
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return text;
}
