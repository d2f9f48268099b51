// What one message of each job may cost at worst, in D1 calls plus outbound requests (a D1 batch is
// one call). Each includes taking the row (1). The consumer reserves this per message of a batch.

/** Taking the row the message names: one guarded UPDATE … RETURNING. */
export const TAKE = 1;
// Finishing a run (run-finished.ts) at worst: the schedule read and its outcome recorded (2), the
// delivery created (1), its first attempt (signing secrets, POST, record: 3), one inline retry 5 s
// later (claim, run, secrets, POST, record: 5), the finish due time cleared (1).
export const FINISH = 12;
// A submission at worst: the create limiter (src/limiter/), the create call, its outcome recorded,
// the run re-read; finished when Parallel refuses it.
export const SUBMIT = 4 + FINISH;

export const COST = {
  // The key, the previous run, the run stored (idempotency read, insert, a lost race's re-read), its
  // submission, the schedule released; the schedule's bookkeeping re-read when its run was refused;
  // a budgeted key's reservation and, after a lost race, its release (issue 16).
  fire_schedules: TAKE + 2 + 3 + SUBMIT + 1 + 1 + 2,
  // The run and the signing secrets, the POST, the attempt recorded, the delayed message for a retry.
  retry_deliveries: TAKE + 2 + 1 + 1 + 1,
  finish_runs: TAKE + FINISH,
  // /result with its one quick retry, a large output put in R2 (services/outputs.ts), the result
  // stored, the run finished.
  fetch_results: TAKE + 2 + 1 + 1 + FINISH,
  // The GET, the status recorded, a lost race's re-read, then as fetch_results.
  poll_runs: TAKE + 3 + 2 + 1 + 1 + FINISH,
  // The key read, the submission, and up to two more asks of the create limiter while the
  // resubmission waits for a slot (services/runs.ts RESUBMIT_MAX_ASKS).
  resubmit_runs: TAKE + 1 + SUBMIT + 2,
  // A batch's bulk result pass (services/batch-results.ts) spends what is left after taking the row:
  // it stops reading the stream when the next page would not fit. Two of them stay within 50.
  batch_results: 24,
} as const;
