// What one message of each job may cost at worst, in D1 calls plus outbound requests and queue sends
// (a D1 batch is one call), once its row is taken. The consumer admits a message only while the calls
// its invocation has made plus the reservation of every message in flight stay within
// SUBREQUEST_BUDGET. A reservation starts at the worst case and drops by the parts the work learns
// cannot happen (ctx.spare, with the parts named here): the run is still active, the result was small,
// the callback was accepted.
import { OUTPUT_R2_CALLS } from "../services/outputs";

/** Taking the rows of a whole batch, every kind together: one D1 batch of guarded UPDATE … RETURNING. */
export const TAKE_BATCH = 1;
/** Sending back, together, the messages an invocation could not afford: one sendBatch. */
export const SEND_BACK = 1;
/** Giving rows back (WorkJob.release): one D1 statement, for a failed message or a failed sendBatch. */
export const RELEASE = 1;
/** A delivery's first attempt, the run known: the signing secrets, the POST, the attempt recorded. */
export const FIRST_ATTEMPT = 3;
// Inside a queue message a refused attempt does not wait for its retry: the delivery keeps its lease
// and its retry is one delayed message (retry_deliveries), sent by the consumer (services/deliveries.ts).
export const RETRY_MESSAGE = 1;
/** The parts of FINISH that only a run with a schedule, or with a callback, costs. */
export const FINISH_SCHEDULE = 2;
export const FINISH_CALLBACK = 1 + FIRST_ATTEMPT + RETRY_MESSAGE;
/**
 * FINISH's last call: the finish due time cleared when no delivery was created, or a batch run's
 * batch poked. A run with a callback that is not a batch run's creates its delivery or clears: never both.
 */
export const FINISH_DUE = 1;
// Finishing a run (run-finished.ts) at worst: the schedule read and its outcome recorded (2), the
// delivery created (1), its first attempt (3), its retry's delayed message (1), then FINISH_DUE.
export const FINISH = FINISH_SCHEDULE + FINISH_CALLBACK + FINISH_DUE;
// A submission at worst: the create limiter (src/limiter/), the create call, its outcome recorded,
// the run re-read; finished when Parallel refuses it.
export const SUBMIT = 4 + FINISH;
// A result fetch at worst: /result with its one quick retry, a large output put in R2 (at most
// OUTPUT_R2_CALLS whatever its size: services/outputs.ts), the result stored; then the run finished.
export const RESULT_QUICK_RETRY = 1;
export const RESULT = 1 + RESULT_QUICK_RETRY + OUTPUT_R2_CALLS + 1;
// A poll's first part: the GET, the status recorded, a lost race's re-read.
export const POLL_STATUS = 3;

export const COST = {
  // The key, the previous run, the run stored (idempotency read, insert, a lost race's re-read), its
  // submission, the schedule released; the schedule's bookkeeping re-read when its run was refused;
  // a budgeted key's reservation and, after a lost race, its release (issue 16).
  fire_schedules: 2 + 3 + SUBMIT + 1 + 1 + 2,
  // The run and the signing secrets, the POST, the attempt recorded, the delayed message for a retry.
  retry_deliveries: 2 + 1 + 1 + 1,
  finish_runs: FINISH,
  // The result fetch claimed (its attempt counted), the result fetched and stored, the run finished.
  fetch_results: 1 + RESULT + FINISH,
  // The status, then as fetch_results.
  poll_runs: POLL_STATUS + RESULT + FINISH,
  // The key read, the submission, and up to two more asks of the create limiter while the
  // resubmission waits for a slot (services/runs.ts RESUBMIT_MAX_ASKS).
  resubmit_runs: 1 + SUBMIT + 2,
  // A batch's bulk result pass (services/batch-results.ts) spends what is left after taking the row:
  // it stops reading the stream when the next page would not fit. Two of them stay within 50.
  batch_results: 24,
} as const;

/**
 * A run's own worst case: FINISH without the schedule bookkeeping of a run without a schedule, the
 * delivery of a run without a callback, or FINISH_DUE for a run with a callback outside a batch. The
 * consumer knows the run once it has taken its row.
 */
export function runWorstCase(cost: number, run: FinishingRun): number {
  return (
    cost -
    (run.schedule_id ? 0 : FINISH_SCHEDULE) -
    (run.callback_url ? 0 : FINISH_CALLBACK) -
    (run.callback_url && !run.batch_id ? FINISH_DUE : 0)
  );
}

/** What of a run makes its finishing dearer. */
export interface FinishingRun {
  schedule_id: string | null;
  callback_url: string | null;
  batch_id?: string | null;
}

/**
 * What a poll that leaves the run active spares of its reservation: all of it but the GET and the
 * status recorded (no lost race's re-read, no result, no finishing).
 */
export function pollSparedWhenActive(run: {
  schedule_id: string | null;
  callback_url: string | null;
}): number {
  return runWorstCase(COST.poll_runs, run) - 2;
}
