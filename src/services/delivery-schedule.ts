// The waits of callback delivery: when each attempt is due, how long one may take, how long a worker
// owns a delivery. The backoff scales with TIME_SCALE like every other wait (services/timing.ts),
// so a local stack at 0.001 retries in milliseconds what production retries in minutes.
import type { Config } from "../env";
import { addMs } from "./timing";

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** The wait before each attempt of a series, before jitter and scaling: at once, then backing off. */
export const DELIVERY_BACKOFF_MS = [
  0,
  5 * SECOND,
  5 * MINUTE,
  30 * MINUTE,
  2 * HOUR,
  5 * HOUR,
  10 * HOUR,
  10 * HOUR,
] as const;

/** After this many failed attempts in a series the delivery is dead (about 27.6 hours at scale 1). */
export const MAX_DELIVERY_ATTEMPTS = DELIVERY_BACKOFF_MS.length;

/** One attempt's limit, from request to response headers. Not scaled: it is the receiver's time. */
export const DELIVERY_TIMEOUT_MS = 15 * SECOND;

/** How long a worker owns a delivery's next attempt: one attempt's timeout and its writes, with room. */
export const DELIVERY_LEASE_MS = 60 * SECOND;

/** Retry-After from a receiver (429, 503) is honoured up to this; a longer one is cut to it. */
export const MAX_DELIVERY_RETRY_AFTER_MS = HOUR;

/**
 * A retry due within this (after scaling) is waited for in the same invocation; later ones are left
 * to the sweeper. Covers the 5 s retry at scale 1 and stays well inside waitUntil's 30 s after a response.
 */
export const INLINE_RETRY_MAX_WAIT_MS = 10 * SECOND;

/** Signing secrets replaced by a rotation keep signing alongside the new one this long. */
export const SIGNING_SECRET_OVERLAP_MS = 24 * HOUR;

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
