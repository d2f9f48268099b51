// The completion pipeline: apply a terminal status from Parallel (webhook or poll), fetch the result
// once, store it, and hand the finished run to delivery. Every step is a guarded update, so the
// webhook path and the sweeper can race, repeat or crash and a run still finishes exactly once.
import { z } from "zod";
import { FINISH, FIRST_ATTEMPT, RESULT_QUICK_RETRY, RETRY_MESSAGE, runWorstCase } from "../cron/costs";
import { pokeBatchResultsStatement } from "../db/batch-results";
import { type Delivery, insertDeliveryStatement } from "../db/deliveries";
import { appendRunEventsUnlessRecorded, overflowStatement, type RunEvent, runEvent } from "../db/run-events";
import { stepGuard } from "../db/run-states";
import {
  ACTIVE_STATUSES,
  changeRun,
  claimResultFetchSet,
  claimResultFetchStatement,
  findRun,
  findRunByParallelId,
  type ResultClaim,
  type Run,
  type RunChanges,
  type RunError,
  type RunStatus,
  returnedRun,
  updateRun,
} from "../db/runs";
import { recordAcceptedSpend } from "../db/spend";
import type { Config } from "../env";
import type { ParallelFailure, ParallelOutcome } from "../parallel/client";
import { RUN_ID_METADATA_KEY } from "../parallel/task-spec-checks";
import { batchResultsPokeAt, bulkResultGraceUntil } from "./batch-timing";
import type { ServiceContext } from "./context";
import { DEFAULT_DELIVERY_RUNTIME, sendNewDelivery } from "./deliveries";
import { OUTPUT_R2_CALLS } from "./outputs";
import { ResultBodyError, type StoredResult, storeResultBody } from "./result-body";
import { finishingWithResult, onRunFinished } from "./run-finished";
import {
  addMs,
  deadlineAt,
  finishDueAt,
  firstPollAt,
  LEASE_MS,
  RESULT_FAST_RETRY_MS,
  RESULT_TIMEOUT_SECONDS,
  resultBodyIdleMs,
  retryAt,
} from "./timing";

/** What taskrelay needs from a TaskRun, from a webhook or a GET; tolerant of the documented variants. */
export const ParallelRunStateSchema = z.looseObject({
  run_id: z.string(),
  status: z.string(),
  interaction_id: z.string().nullish(),
  metadata: z.record(z.string(), z.unknown()).nullish(),
  warnings: z.array(z.unknown()).nullish(),
  // The schema says {ref_id, message, detail}; the docs' webhook example says {message, details}.
  error: z.looseObject({ message: z.string().optional() }).nullish(),
});
/** The fields of a TaskRun the pipeline reads; the SDK's TaskRun and a parsed webhook both fit. */
export interface ParallelRunState {
  run_id: string;
  status: string;
  interaction_id?: string | null | undefined;
  metadata?: Record<string, unknown> | null | undefined;
  warnings?: unknown[] | null | undefined;
  error?: { message?: string | undefined } | null | undefined;
}

const PARALLEL_TERMINAL = new Set(["completed", "failed", "cancelled"]);
/** A result fetch that keeps failing gives up after this many attempts (hours, with backoff). */
export const RESULT_MAX_ATTEMPTS = 12;
/**
 * /result answering 404 for a run Parallel reported completed: tried this many times (backoff 30 s,
 * 1 min, 2 min, scaled) before taskrelay concludes there is no result. Parallel answers 404 for a
 * failed run's result, but just after a `completed` webhook it can be a result not yet readable.
 */
export const RESULT_NOT_FOUND_ATTEMPTS = 4;

/** Whether taskrelay knows this status from Parallel (the active ones and the terminal ones). */
export function isKnownParallelStatus(status: string): boolean {
  return PARALLEL_TERMINAL.has(status) || (ACTIVE_STATUSES as readonly string[]).includes(status);
}

/** A status taskrelay does not know is logged with its value, so someone can teach taskrelay it. */
export function warnUnknownStatus(ctx: ServiceContext, run: Pick<Run, "id">, status: string) {
  ctx.log.warn("run.unknown_status", { run_id: run.id, parallel_status: status, treated_as: "active" });
}

/**
 * The status to record for what Parallel reported. A status taskrelay does not know is treated as
 * active (the run keeps its active status, `queued` if it had none yet) and is never stored: an
 * unknown status stored as-is would leave the run outside every sweep.
 */
export function recordedStatus(reported: string, current: RunStatus): RunStatus {
  if (isKnownParallelStatus(reported)) return reported as RunStatus;
  return (ACTIVE_STATUSES as readonly string[]).includes(current) ? current : "queued";
}

export type StatusSource = "webhook" | "poll" | "batch_stream";

/** The columns a status from Parallel changes on our run (guarded by the parallel_status step). */
export function statusChanges(config: Config, run: Run, state: ParallelRunState, now: Date): RunChanges {
  const at = now.toISOString();
  const terminal = PARALLEL_TERMINAL.has(state.status);
  const changes: RunChanges = {
    status: recordedStatus(state.status, run.status),
    // Set only when new: setting an indexed column, even to its value, moves its index entry (a D1 row written).
    ...(run.parallel_run_id ? {} : { parallel_run_id: state.run_id }),
    interaction_id: run.interaction_id ?? state.interaction_id ?? state.run_id,
    ...(state.warnings ? { warnings: state.warnings } : {}),
  };
  if (terminal) {
    changes.finished_at = at;
    changes.attempts = 0;
    changes.not_found_count = 0;
    // Completed: the result fetch is due now; otherwise finishing is (both the sweeper's safety net
    // should the fast path die).
    // A batch run's result comes in bulk with its batch's (services/batch-results.ts): the per-run
    // fetch waits a grace first, and only fetches what the runs stream did not bring.
    changes.next_sweep_at =
      state.status !== "completed"
        ? finishDueAt(run, now)
        : run.batch_id
          ? bulkResultGraceUntil(config, now).toISOString()
          : at;
    // A late completion of an expired run clears the expiry.
    changes.error = state.status === "completed" ? null : parallelError(state);
    // A submission still in flight has lost its purpose: the run exists and has finished.
    if (run.status === "submitting") changes.lease_until = null;
  }
  if (run.status === "submitting" && !terminal) {
    // Matched a run whose create response was lost: it is at Parallel, so poll it instead of resubmitting.
    changes.submitted_at = at;
    changes.deadline_at = deadlineAt(config, run.processor, now).toISOString();
    changes.next_sweep_at = firstPollAt(config, run.processor, now).toISOString();
    changes.attempts = 0;
    changes.not_found_count = 0;
    changes.lease_until = null;
  }
  return changes;
}

/** Whether a change to `status` finishes the run without a result to fetch (delivery can start). */
export function finishesWithoutResult(status: string): boolean {
  return PARALLEL_TERMINAL.has(status) && status !== "completed";
}

export interface ApplyOptions {
  /** More for the run's timeline event. */
  detail?: Record<string, unknown>;
  /** Statements to run in the same D1 batch, after the change. */
  alongside?: D1PreparedStatement[];
  /**
   * A webhook's de-duplication record (its webhook-id's INSERT … DO NOTHING) and its timeline event:
   * the record runs first, the change is made only if it inserted (a repeated webhook-id does
   * nothing), and the change's write carries the event too; should the change not be made, the event
   * is appended on its own, unless the run's timeline has it already (db/run-events.ts).
   */
  receipt?: { record: D1PreparedStatement; event: RunEvent };
  /**
   * Claim the result fetch (counting its attempt) in the same batch when the status is `completed`:
   * the webhook's fast path, and the poller, which passes the lease it holds on the run.
   */
  claimResult?: boolean | { heldLease: string | null };
  /** Finish the run after the response (waitUntil) rather than before returning (the webhook). */
  finishInBackground?: boolean;
}

export interface Applied {
  /** The run as it is now: as changed, or (not changed) as re-read, or as given when finishing in background. */
  run: Run;
  /** Whether this call made the change (false: another path already had, or Parallel had finished it). */
  changed: boolean;
  /** The run with its result-fetch lease, when claimResult and the claim held. */
  claimed: Run | null;
  /** The results of the `alongside` statements. */
  alongside: D1Result[];
  /** The result of the receipt's record (meta.changes 0: the webhook-id was seen before). */
  receipt: D1Result | null;
}

/**
 * Applies the status Parallel reports to our run: the one way the webhook and the poller do it. One
 * D1 batch: the guarded change (the parallel_status step: a run Parallel finished is left alone)
 * with its timeline event, the caller's statements, and the result-fetch claim if asked. A terminal
 * status finishes the run: failed and cancelled runs go straight to delivery; completed runs move on
 * to the result fetch.
 */
export async function applyParallelStatus(
  ctx: ServiceContext,
  run: Run,
  state: ParallelRunState,
  source: StatusSource,
  options: ApplyOptions = {},
): Promise<Applied> {
  const now = ctx.now();
  const at = now.toISOString();
  const alongside = options.alongside ?? [];
  const guard = stepGuard("parallel_status");
  // A run Parallel has although its create's answer was lost: its cost enters the usage rollup here
  // (before the change, under its guard; see recordAcceptedSpend).
  const spend = run.parallel_run_id === null ? [recordAcceptedSpend(ctx.db, run.id, at, guard)] : [];
  // A batch run's result is fetched in bulk, not by this run's own /result.
  const claim = options.claimResult && state.status === "completed" && !run.batch_id;
  // A batch run's terminal status makes its batch's bulk fetch due (after the change: its index stays).
  const poke =
    run.batch_id && isParallelTerminal(state.status)
      ? [pokeBatchResultsStatement(ctx.db, run.batch_id, batchResultsPokeAt(ctx.config, now).toISOString())]
      : [];
  const changes = statusChanges(ctx.config, run, state, now);
  const resultClaim = claim ? resultClaimOf(ctx, run, now, options.claimResult) : null;
  // The claim rides on the change when the change is made (one write of the run, not two), setting
  // what the claim statement would. The claim statement covers a run the change leaves alone (a poll
  // recorded the completion first); it runs before the change, so at most one of the two matches
  // (the claim needs a completed run, the change a run not yet finished) and an attempt counts once.
  let claimSet: ReturnType<typeof claimResultFetchSet> | undefined;
  if (resultClaim) {
    claimSet = claimResultFetchSet(
      at,
      { ...resultClaim, attempt: 1 },
      {
        attempts: changes.attempts ?? run.attempts,
        next_sweep_at: changes.next_sweep_at ?? run.next_sweep_at,
      },
    );
    delete changes.lease_until;
    delete changes.attempts;
    delete changes.next_sweep_at;
  }
  const claimFirst = resultClaim ? [claimResultFetchStatement(ctx.db, run.id, at, resultClaim)] : [];
  const receipt = options.receipt;
  const events = [
    runEvent(at, "status_changed", { source, from: run.status, to: state.status, ...options.detail }),
    ...(receipt ? [receipt.event] : []),
  ];
  // Right after the receipt's record: changes() is its insert.
  const receiptGuard = receipt ? { sql: `(${guard.sql}) AND changes() > 0` } : guard;
  const head = [
    ...spend,
    ...claimFirst,
    ...(receipt ? [receipt.record] : []),
    updateRun(ctx.db, run.id, at, changes, receiptGuard, events, claimSet),
    overflowStatement(ctx.db, run.id, events),
    ...(receipt ? appendRunEventsUnlessRecorded(ctx.db, run.id, receipt.event, "webhook_id") : []),
  ];
  const results = await ctx.db.batch([...head, ...alongside, ...poke]);
  const offset = spend.length + claimFirst.length + (receipt ? 1 : 0);
  const updated = returnedRun(results[offset]);
  const claimedByChange = resultClaim && updated?.lease_until === resultClaim.leaseUntil ? updated : null;
  const claimed = claim ? (claimedByChange ?? returnedRun(results[spend.length])) : null;
  const alongsideResults = results.slice(head.length, head.length + alongside.length);
  const receiptResult = receipt ? (results[offset - 1] ?? null) : null;
  if (!updated) {
    const current = options.finishInBackground ? run : ((await findRun(ctx.db, run.id)) ?? run);
    return { run: current, changed: false, claimed, alongside: alongsideResults, receipt: receiptResult };
  }
  ctx.log.info("run.status", { run_id: run.id, from: run.status, to: updated.status, source });
  if (finishesWithoutResult(updated.status)) {
    if (options.finishInBackground) ctx.waitUntil(onRunFinished(ctx, updated));
    else await onRunFinished(ctx, updated);
  }
  return { run: updated, changed: true, claimed, alongside: alongsideResults, receipt: receiptResult };
}

/**
 * The claim of a run's result fetch, which counts its attempt. A run that becomes `completed` in the
 * same batch starts again from attempt 1 (statusChanges resets attempts); one already completed
 * (its earlier fetch failed or died) goes on counting.
 */
function resultClaimOf(
  ctx: ServiceContext,
  run: Run,
  now: Date,
  claim: ApplyOptions["claimResult"],
): ResultClaim {
  const attempt = run.status === "completed" ? run.attempts + 1 : 1;
  return {
    leaseUntil: addMs(now, LEASE_MS).toISOString(),
    retryAt: retryAt(ctx.config, attempt, now).toISOString(),
    heldLease: typeof claim === "object" ? claim.heldLease : null,
  };
}

function resultClaim(
  ctx: ServiceContext,
  run: Run,
  now: Date,
  claim: ApplyOptions["claimResult"],
): D1PreparedStatement {
  return claimResultFetchStatement(ctx.db, run.id, now.toISOString(), resultClaimOf(ctx, run, now, claim));
}

function parallelError(state: ParallelRunState): RunError {
  const message = state.error?.message ?? `Parallel reports the run ${state.status}.`;
  return {
    code: state.status === "cancelled" ? "parallel_cancelled" : "parallel_failed",
    message,
    detail: state.error ?? null,
  };
}

/** Finds our run for a Parallel run: by its id, else by the run id we put in its metadata. */
export async function findRunForParallelState(
  ctx: ServiceContext,
  state: ParallelRunState,
): Promise<{ run: Run; matchedBy: "parallel_run_id" | "metadata" } | null> {
  const byId = await findRunByParallelId(ctx.db, state.run_id);
  if (byId) return { run: byId, matchedBy: "parallel_run_id" };
  const ours = state.metadata?.[RUN_ID_METADATA_KEY];
  if (typeof ours !== "string") return null;
  const byMetadata = await findRun(ctx.db, ours);
  // A run of ours already bound to another Parallel run (a resubmission after a lost create): not this one.
  if (!byMetadata || (byMetadata.parallel_run_id && byMetadata.parallel_run_id !== state.run_id)) return null;
  return { run: byMetadata, matchedBy: "metadata" };
}

/**
 * Claims the result fetch of a completed run (counting its attempt, as the webhook's and the
 * poller's batches do) and fetches it: the sweeper's fetch_results job. Null when the claim did not
 * hold (another worker has the run, or its result is stored).
 */
export async function fetchAndStoreResult(ctx: ServiceContext, run: Run): Promise<Run | null> {
  const claimed = returnedRun(
    await resultClaim(ctx, run, ctx.now(), { heldLease: run.lease_until }).all<Run>(),
  );
  return claimed ? fetchClaimedResult(ctx, claimed) : null;
}

/**
 * Fetches /result for a completed run this worker has claimed (its attempt already counted), and
 * stores it. One quick retry on a transient error; after that the sweeper retries with backoff.
 */
export async function fetchClaimedResult(ctx: ServiceContext, run: Run): Promise<Run | null> {
  const parallelRunId = run.parallel_run_id;
  if (!parallelRunId) throw new Error(`run ${run.id} is completed without a Parallel run id`);
  const attempt = run.attempts;
  // The attempts before this one were claimed but never finished (their invocation died: out of
  // memory or time while downloading): the ceiling holds for them too, so no result is fetched forever.
  if (attempt > RESULT_MAX_ATTEMPTS) {
    return giveUpResult(
      ctx,
      run,
      `The result could not be fetched: ${attempt - 1} attempts began and the last never finished (the invocation ended during the download).`,
    );
  }
  let outcome: ParallelOutcome<Response> = await ctx.parallel.getResult(
    parallelRunId,
    RESULT_TIMEOUT_SECONDS,
  );
  const retried = !outcome.ok && outcome.kind === "transient" && outcome.retryAfterMs === undefined;
  if (retried) {
    await new Promise((resolve) => setTimeout(resolve, RESULT_FAST_RETRY_MS));
    outcome = await ctx.parallel.getResult(parallelRunId, RESULT_TIMEOUT_SECONDS);
  }
  if (!outcome.ok) return resultFailed(ctx, run, outcome);

  let result: StoredResult;
  try {
    // Large or small, the output ends where it belongs (services/result-body.ts): a large one is
    // streamed into R2 as it arrives and the row keeps its key.
    result = await storeResultBody(ctx.outputs, run.id, outcome.value, {
      idleMs: resultBodyIdleMs(ctx.config),
    });
  } catch (error) {
    const message = `Reading the result failed: ${error instanceof Error ? error.message : String(error)}`;
    // Too large to store: the next download would be refused the same way, so the run ends here.
    if (error instanceof ResultBodyError && error.code === "result_too_large")
      return giveUpResult(ctx, run, message, "result_too_large");
    return resultFailed(
      ctx,
      run,
      { ok: false, kind: "transient", status: 200, message },
      error instanceof ResultBodyError ? error.code : "result_body_unreadable",
    );
  }
  // Read whole: no quick retry is left, and a small output made no R2 call (cron/costs.ts RESULT).
  ctx.spare((retried ? 0 : RESULT_QUICK_RETRY) + (result.placed.output_key ? 0 : OUTPUT_R2_CALLS));
  const taskRun = ParallelRunStateSchema.safeParse(result.run);
  const now = ctx.now();
  const at = now.toISOString();
  const { placed, outputType } = result;
  const storedIn = placed.output_key ? "r2" : "d1";
  // A run with nothing to finish but its delivery finishes in this same write (run-finished.ts).
  const finishing = finishingWithResult(run, now);
  const events = [
    runEvent(at, "result_fetched", {
      output_type: outputType,
      output_bytes: placed.output_bytes,
      stored_in: storedIn,
    }),
    ...(finishing?.events ?? []),
  ];
  const changes: RunChanges = {
    ...placed,
    warnings: (taskRun.success ? taskRun.data.warnings : null) ?? run.warnings,
    result_stored_at: at,
    next_sweep_at: finishing ? null : finishDueAt(run, now),
    lease_until: null,
  };
  const insert = finishing?.delivery ? [insertDeliveryStatement(ctx.db, finishing.delivery, true)] : [];
  // The delivery's INSERT right after the write (its changes() guard); the overflow statement then
  // follows the INSERT, which inserted exactly when the write stored (nothing else creates a run's
  // run.completed delivery before its result is stored).
  const results = await ctx.db.batch([
    updateRun(ctx.db, run.id, at, changes, RESULT_PENDING, events),
    ...insert,
    overflowStatement(ctx.db, run.id, events),
  ]);
  const stored = returnedRun(results[0]);
  if (stored) {
    ctx.log.info("run.result_stored", {
      run_id: run.id,
      output_type: outputType,
      output_bytes: placed.output_bytes,
      stored_in: storedIn,
      read: result.read,
    });
    if (!finishing) await onRunFinished(ctx, stored);
    else {
      const created = insert.length > 0 ? (results[1]?.results[0] as Delivery | undefined) : undefined;
      // Finished in this write: of FINISH only the delivery's attempt and its retry can follow.
      ctx.spare(runWorstCase(FINISH, run) - (created ? FIRST_ATTEMPT + RETRY_MESSAGE : 0));
      if (created) sendNewDelivery(ctx, created, DEFAULT_DELIVERY_RUNTIME, stored);
    }
  }
  return stored;
}

const RESULT_PENDING = stepGuard("result");

/**
 * A failed attempt (already counted at its claim): retried with backoff, or given up. `code` says
 * what went wrong after a 200 (the body stalled or could not be read), in the timeline and the log.
 */
async function resultFailed(
  ctx: ServiceContext,
  run: Run,
  outcome: ParallelFailure,
  code?: string,
): Promise<Run | null> {
  const now = ctx.now();
  const at = now.toISOString();
  const attempt = run.attempts;
  const notFound = outcome.kind === "not_found" ? (run.not_found_count ?? 0) + 1 : 0;
  if (notFound >= RESULT_NOT_FOUND_ATTEMPTS) {
    // Parallel answers 404 for the result of a run that failed; after a few tries in a row, believe it.
    const message = `Parallel reported the run completed but has no result for it (HTTP 404 on ${notFound} attempts in a row): ${outcome.message}`;
    const failed = await changeRun(
      ctx.db,
      run,
      at,
      {
        status: "failed",
        error: { code: "result_not_found", message },
        next_sweep_at: finishDueAt(run, now),
        lease_until: null,
        not_found_count: notFound,
      },
      {
        kind: "status_changed",
        detail: { source: "result", from: "completed", to: "failed", attempt, parallel_status: 404, message },
      },
      RESULT_PENDING,
    );
    ctx.log.warn("run.result_not_found", { run_id: run.id, attempt });
    if (failed) await onRunFinished(ctx, failed);
    return failed;
  }

  if (attempt >= RESULT_MAX_ATTEMPTS) {
    return giveUpResult(
      ctx,
      run,
      `The result could not be fetched after ${attempt} attempts; the last error: ${outcome.message}`,
    );
  }
  // 404 (not readable yet), 408 (still active), 429, 5xx, a body that could not be read, or our own
  // credentials refused: try again later.
  const retryAfterMs = outcome.kind === "transient" ? outcome.retryAfterMs : undefined;
  const next = retryAt(ctx.config, attempt, now, retryAfterMs);
  ctx.log.warn("run.result_retry", {
    run_id: run.id,
    attempt,
    parallel_status: outcome.status,
    kind: outcome.kind,
    ...(code ? { code } : {}),
  });
  return changeRun(
    ctx.db,
    run,
    at,
    { not_found_count: notFound, next_sweep_at: next.toISOString(), lease_until: null },
    {
      kind: "result_fetch_retry_scheduled",
      detail: {
        attempt,
        parallel_status: outcome.status,
        ...(code ? { code } : {}),
        message: outcome.message,
        next_attempt_at: next.toISOString(),
      },
    },
    RESULT_PENDING,
  );
}

/**
 * The result fetch given up (after RESULT_MAX_ATTEMPTS attempts, or at once for an output too large
 * to store): the run ends `failed`.
 */
async function giveUpResult(
  ctx: ServiceContext,
  run: Run,
  message: string,
  code: "result_unavailable" | "result_too_large" = "result_unavailable",
): Promise<Run | null> {
  const now = ctx.now();
  const failed = await changeRun(
    ctx.db,
    run,
    now.toISOString(),
    {
      status: "failed",
      error: { code, message },
      next_sweep_at: finishDueAt(run, now),
      lease_until: null,
    },
    { kind: "status_changed", detail: { source: "result", from: "completed", to: "failed", message } },
    RESULT_PENDING,
  );
  ctx.log.error(`run.${code}`, { run_id: run.id, attempt: run.attempts });
  if (failed) await onRunFinished(ctx, failed);
  return failed;
}

export function isParallelTerminal(status: string): boolean {
  return PARALLEL_TERMINAL.has(status);
}
