// What one message of each job may cost at worst, in D1 calls plus outbound requests (a D1 batch is
// one call), once its row is taken. The consumer admits a message only while the calls its
// invocation has made plus the worst case of every message in flight stay within SUBREQUEST_BUDGET.
import { OUTPUT_R2_CALLS } from "../services/outputs";

/** Taking the rows of a whole batch, every kind together: one D1 batch of guarded UPDATE … RETURNING. */
export const TAKE_BATCH = 1;
/** Sending back, together, the messages an invocation could not afford: one sendBatch. */
export const SEND_BACK = 1;
// Finishing a run (run-finished.ts) at worst: the schedule read and its outcome recorded (2), the
// delivery created (1), its first attempt (signing secrets, POST, record: 3), one inline retry 5 s
// later (claim, run, secrets, POST, record: 5), the finish due time cleared (1).
export const FINISH = 12;
/** The parts of FINISH that only a run with a schedule, or with a callback, costs. */
export const FINISH_SCHEDULE = 2;
export const FINISH_CALLBACK = 1 + 3 + 5;
// A submission at worst: the create limiter (src/limiter/), the create call, its outcome recorded,
// the run re-read; finished when Parallel refuses it.
export const SUBMIT = 4 + FINISH;

export const COST = {
  // The key, the previous run, the run stored (idempotency read, insert, a lost race's re-read), its
  // submission, the schedule released; the schedule's bookkeeping re-read when its run was refused;
  // a budgeted key's reservation and, after a lost race, its release (issue 16).
  fire_schedules: 2 + 3 + SUBMIT + 1 + 1 + 2,
  // The run and the signing secrets, the POST, the attempt recorded, the delayed message for a retry.
  retry_deliveries: 2 + 1 + 1 + 1,
  finish_runs: FINISH,
  // /result with its one quick retry, a large output put in R2 (at most OUTPUT_R2_CALLS whatever its
  // size: services/outputs.ts), the result stored, the run finished.
  fetch_results: 2 + OUTPUT_R2_CALLS + 1 + FINISH,
  // The GET, the status recorded, a lost race's re-read, then as fetch_results.
  poll_runs: 3 + 2 + OUTPUT_R2_CALLS + 1 + FINISH,
  // The key read, the submission, and up to two more asks of the create limiter while the
  // resubmission waits for a slot (services/runs.ts RESUBMIT_MAX_ASKS).
  resubmit_runs: 1 + SUBMIT + 2,
  // A batch's bulk result pass (services/batch-results.ts) spends what is left after taking the row:
  // it stops reading the stream when the next page would not fit. Two of them stay within 50.
  batch_results: 24,
} as const;

/**
 * A run's own worst case: FINISH without the schedule bookkeeping of a run without a schedule, or
 * the delivery of a run without a callback. The consumer knows the run once it has taken its row.
 */
export function runWorstCase(
  cost: number,
  run: { schedule_id: string | null; callback_url: string | null },
): number {
  return cost - (run.schedule_id ? 0 : FINISH_SCHEDULE) - (run.callback_url ? 0 : FINISH_CALLBACK);
}
