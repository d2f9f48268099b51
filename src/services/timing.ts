// Every wait the relay schedules, in one place. All of them scale with TIME_SCALE so that a
// local stack on a time-scaled simulator recovers in seconds what production recovers in minutes.
import type { Config } from "../env";
import { findProcessor } from "../parallel/processors";

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** How long a worker owns a run's next step. Not scaled: it must outlast a real call to Parallel. */
export const LEASE_MS = 30 * SECOND;
export const MAX_POLL_INTERVAL_MS = 30 * MINUTE;

/**
 * A finished run with something left to do (schedule bookkeeping, creating its delivery) stays due
 * this long after it finished: if the worker doing it dies, the sweeper's finish_runs job does it
 * again. Cleared once onRunFinished is done. Not scaled: it must outlast the invocation doing the
 * work. A run with neither a callback nor a schedule has nothing left: nothing is due.
 */
export function finishDueAt(
  run: { callback_url: string | null; schedule_id: string | null },
  finishedAt: Date,
): string | null {
  return run.callback_url || run.schedule_id ? addMs(finishedAt, LEASE_MS).toISOString() : null;
}
/**
 * How long a row the cron tick hands to the queue stays leased to its message the first time: should
 * the message be lost (or its consumer die before taking it), the row is due again after this. A row
 * sent behind `pagesAhead` pages of the same tick waits behind their messages too, so each page ahead
 * adds one lease, up to DISPATCH_BACKLOG_LEASES; each further hand-out that no consumer took in
 * between doubles it, up to 8 times (db/dispatch.ts). So a backlog that outlives one lease is not sent
 * again every tick. Scaled, so that a local stack recovers a lost message in seconds, but never below
 * LEASE_MS.
 */
export function dispatchLeaseUntil(config: Config, now: Date, pagesAhead = 0): Date {
  const lease = Math.max(LEASE_MS, 5 * MINUTE * config.TIME_SCALE);
  return addMs(now, lease * Math.min(DISPATCH_BACKLOG_LEASES, 1 + pagesAhead));
}

/** The most leases the pages ahead of a row in its tick add up to: 20 min deployed, 2 min at 0.1. */
export const DISPATCH_BACKLOG_LEASES = 4;

/**
 * A row whose message goes to the dead-letter queue (its work threw on every try) is held this long
 * before the tick sends it again: a row that always throws costs one round of tries (4 messages, one
 * dead letter counted) an hour, 6 min at TIME_SCALE 0.1, instead of a round every 2½ minutes.
 * Replaying its dead letter takes it at once (a run, delivery or schedule: the row is free for any of
 * its messages). Scaled, never below LEASE_MS.
 */
export function deadLetterHoldUntil(config: Config, now: Date): Date {
  return addMs(now, Math.max(LEASE_MS, HOUR * config.TIME_SCALE));
}

/** Cloudflare Queues' longest message delay: a later retry is a row the cron tick finds when due. */
export const MAX_MESSAGE_DELAY_MS = 12 * 60 * MINUTE;

// Callback delivery (services/delivery-schedule.ts computes each attempt's time from these).

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

// Schedules (services/schedule-firing.ts).

/**
 * An occurrence no tick handled within this is *missed* (one lost or late tick, or a full batch that
 * left it for the next tick, is not yet "missed"). Not scaled: it is the schedule's own clock.
 */
export const MISSED_AFTER_MS = 2 * MINUTE;

/**
 * How long a consumer owns a schedule it is firing. Longer than firing one (a Parallel create, 15 s
 * timeout, and a refused run's callback), so a slow firing is not overtaken; if the consumer dies,
 * the schedule fires this much late.
 */
export const FIRE_LEASE_MS = 5 * MINUTE;

// Result fetches (services/completion.ts).

/** How long /result may hold the request open for a run not yet readable (Parallel's `timeout`, seconds). */
export const RESULT_TIMEOUT_SECONDS = 10;
/** The wait before the one quick retry of a /result call that failed transiently. */
export const RESULT_FAST_RETRY_MS = 500;
/**
 * A /result body that sends nothing for this long is given up (the attempt fails and is retried
 * with backoff) instead of holding the invocation until Cloudflare ends it. The SDK's timeout ends
 * at the headers; this covers the body (from our reads: not while a part goes to R2). Scaled, but
 * never below 5 s: a local stack at a small scale still moves 50 MB bodies through a loaded machine.
 */
export function resultBodyIdleMs(config: Config): number {
  return Math.max(5 * SECOND, 20 * SECOND * config.TIME_SCALE);
}

const DEFAULT_MAX_LATENCY_MS = 25 * MINUTE;
const MAX_RETRY_AFTER_MS = 60 * MINUTE;

export const addMs = (at: Date, ms: number): Date => new Date(at.getTime() + ms);

function maxLatencyMs(processor: string): number {
  return findProcessor(processor)?.maxLatencyMs ?? DEFAULT_MAX_LATENCY_MS;
}

/**
 * The first poll waits for the processor's typical maximum latency plus a grace period that covers
 * Parallel's first webhook retries (5 s, 10 s, 20 s…), so with healthy webhooks it never fires.
 */
export function firstPollAt(config: Config, processor: string, submittedAt: Date): Date {
  const latency = maxLatencyMs(processor);
  const grace = Math.max(MINUTE, latency * 0.2);
  return addMs(submittedAt, (latency + grace) * config.TIME_SCALE);
}

/** After the first poll: doubling from a minute, capped at 30 minutes (both scaled). */
export function nextPollAt(config: Config, pollsDone: number, from: Date): Date {
  const wait = Math.min(MINUTE * 2 ** Math.max(0, pollsDone - 1), MAX_POLL_INTERVAL_MS);
  return addMs(from, wait * config.TIME_SCALE);
}

/** An active run not terminal by then gets one last check and is expired. */
export function deadlineAt(config: Config, processor: string, submittedAt: Date): Date {
  return addMs(
    submittedAt,
    (maxLatencyMs(processor) + config.RUN_EXPIRY_MARGIN_SECONDS * SECOND) * config.TIME_SCALE,
  );
}

/**
 * The run's deadline: set when Parallel accepted it; a run still `submitting` (Parallel never took
 * it) counts from when it was stored, so it has one too.
 */
export function runDeadline(
  config: Config,
  run: { deadline_at: string | null; processor: string; created_at: string },
): string {
  return run.deadline_at ?? deadlineAt(config, run.processor, new Date(run.created_at)).toISOString();
}

/** `next`, but never later than the deadline, where the run's last check happens. */
export function notAfter(next: Date, deadline: string): string {
  const at = next.toISOString();
  return deadline < at ? deadline : at;
}

/**
 * Backoff for a retried call (submit, result fetch): 30 s doubling to 30 min, scaled, with ±10 %
 * jitter so that runs throttled together do not retry together; never sooner than Parallel's Retry-After.
 */
export function retryAt(config: Config, attempt: number, from: Date, retryAfterMs?: number): Date {
  const base =
    Math.min(30 * SECOND * 2 ** Math.max(0, attempt - 1), MAX_POLL_INTERVAL_MS) * config.TIME_SCALE;
  const jittered = base * (0.9 + Math.random() * 0.2);
  const floor = retryAfterMs === undefined ? 0 : Math.min(retryAfterMs, MAX_RETRY_AFTER_MS);
  return addMs(from, Math.max(jittered, floor));
}
