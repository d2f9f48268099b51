// When callback delivery's next attempt is due, and what a receiver's Retry-After means. The waits
// themselves (backoff, timeout, lease) live with every other wait in services/timing.ts; the backoff
// scales with TIME_SCALE, so a local stack at 0.001 retries in milliseconds what production retries in minutes.
import type { Config } from "../env";
import { addMs, DELIVERY_BACKOFF_MS, MAX_DELIVERY_RETRY_AFTER_MS } from "./timing";

const SECOND = 1000;

/**
 * When attempt `attemptsDone + 1` is due after a failure at `from`, or null when the series is used up.
 * ±10 % jitter so that deliveries that failed together do not retry together; never sooner than the
 * receiver's Retry-After (capped at an hour, not scaled: it is the receiver's own clock).
 */
export function nextDeliveryAttemptAt(
  config: Config,
  attemptsDone: number,
  from: Date,
  retryAfterMs?: number,
  random: () => number = Math.random,
): Date | null {
  const base = DELIVERY_BACKOFF_MS[attemptsDone];
  if (base === undefined) return null;
  const jittered = base * config.TIME_SCALE * (0.9 + random() * 0.2);
  const floor = retryAfterMs === undefined ? 0 : Math.min(retryAfterMs, MAX_DELIVERY_RETRY_AFTER_MS);
  return addMs(from, Math.max(jittered, floor));
}

/** Retry-After as seconds or an HTTP date, in milliseconds from `now`; undefined when absent or unusable. */
export function parseRetryAfter(header: string | null, now: Date): number | undefined {
  if (!header) return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * SECOND;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now.getTime());
}
