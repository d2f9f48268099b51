// The waits of a batch's bulk result fetch (services/batch-results.ts). Scaled with TIME_SCALE like
// every wait (services/timing.ts), so a local stack on a time-scaled simulator moves in seconds.
import type { Config } from "../env";
import { addMs, LEASE_MS } from "./timing";

const SECOND = 1000;
const MINUTE = 60 * SECOND;

/**
 * A batch run Parallel reports completed is left to the bulk fetch this long before the per-run
 * `/result` path (fetch_results) may take it: several ticks, so the runs stream has brought its
 * output long before, and a run the stream did not bring is still fetched.
 */
export function bulkResultGraceUntil(config: Config, now: Date): Date {
  return addMs(now, Math.max(LEASE_MS, 10 * MINUTE * config.TIME_SCALE));
}

/** A batch run's terminal status makes the bulk fetch due this soon: the runs finishing meanwhile share one read. */
export function batchResultsPokeAt(config: Config, now: Date): Date {
  return addMs(now, 5 * SECOND * config.TIME_SCALE);
}

/**
 * While a batch is not complete, the bulk fetch looks again after this even without a new terminal
 * status (a run expired or refused by taskrelay itself, a worker that died mid-read).
 */
export function batchResultsSafetyAt(config: Config, now: Date): Date {
  return addMs(now, Math.max(LEASE_MS, 10 * MINUTE * config.TIME_SCALE));
}

/** How long one pass over the runs stream holds the batch. Not scaled: it must outlast a real read. */
export const BATCH_RESULTS_LEASE_MS = 2 * MINUTE;
