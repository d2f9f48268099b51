// The completion pipeline: apply a terminal status from Parallel (webhook or poll), fetch the result
// once, store it, and hand the finished run to delivery. Every step is a guarded update, so the
// webhook path and the sweeper can race, repeat or crash and a run still finishes exactly once.
import { z } from "zod";
import { appendRunEventsUnlessRecorded, overflowStatement, type RunEvent, runEvent } from "../db/run-events";
import { stepGuard } from "../db/run-states";
import {
  ACTIVE_STATUSES,
  changeRun,
  claimResultFetchSet,
  claimResultFetchStatement,
  findRun,
  findRunByParallelId,
  type Run,
  type RunChanges,
  type RunError,
  type RunStatus,
  returnedRun,
  updateRun,
} from "../db/runs";
import { recordAcceptedSpend } from "../db/spend";
import type { Config } from "../env";
import { RUN_ID_METADATA_KEY } from "../parallel/task-spec-checks";
import type { ServiceContext } from "./context";
import { placeOutput } from "./outputs";
import { onRunFinished } from "./run-finished";
import { addMs, deadlineAt, finishDueAt, firstPollAt, LEASE_MS, retryAt } from "./timing";

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
const RESULT_MAX_ATTEMPTS = 12;
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

export type StatusSource = "webhook" | "poll";

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
    changes.next_sweep_at = state.status === "completed" ? at : finishDueAt(run, now);
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
  /** Claim the result fetch in the same batch when the status is `completed` (the webhook's fast path). */
  claimResult?: boolean;
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
  const claim = options.claimResult && state.status === "completed";
  const guard = stepGuard("parallel_status");
  // A run Parallel has although its create's answer was lost: its cost enters the usage rollup here
  // (before the change, under its guard; see recordAcceptedSpend).
  const spend = run.parallel_run_id === null ? [recordAcceptedSpend(ctx.db, run.id, at, guard)] : [];
  const leaseUntil = addMs(now, LEASE_MS).toISOString();
  const changes = statusChanges(ctx.config, run, state, now);
  // The claim rides on the change when the change is made (one write of the run, not two); the
  // claim statement covers a run the change leaves alone (a poll recorded the completion first).
  if (claim) delete changes.lease_until;
  const receipt = options.receipt;
  const events = [
    runEvent(at, "status_changed", { source, from: run.status, to: state.status, ...options.detail }),
    ...(receipt ? [receipt.event] : []),
  ];
  // Right after the receipt's record: changes() is its insert.
  const receiptGuard = receipt ? { sql: `(${guard.sql}) AND changes() > 0` } : guard;
  const head = [
    ...spend,
    ...(receipt ? [receipt.record] : []),
    updateRun(
      ctx.db,
      run.id,
      at,
      changes,
      receiptGuard,
      events,
      claim ? claimResultFetchSet(at, leaseUntil) : undefined,
    ),
    overflowStatement(ctx.db, run.id, events),
    ...(receipt ? appendRunEventsUnlessRecorded(ctx.db, run.id, receipt.event, "webhook_id") : []),
  ];
  const results = await ctx.db.batch([
    ...head,
    ...alongside,
    ...(claim ? [claimResultFetchStatement(ctx.db, run.id, at, leaseUntil)] : []),
  ]);
  const offset = spend.length + (receipt ? 1 : 0);
  const updated = returnedRun(results[offset]);
  const claimedByChange = updated?.lease_until === leaseUntil ? updated : null;
  const claimed = claim ? (claimedByChange ?? returnedRun(results[head.length + alongside.length])) : null;
  const alongsideResults = results.slice(head.length, head.length + alongside.length);
  const receiptResult = receipt ? (results[spend.length] ?? null) : null;
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

const RESULT_TIMEOUT_SECONDS = 10;
const FAST_RETRY_MS = 500;

/**
 * Fetches /result for a completed run this worker holds the lease on, and stores it. One quick
 * retry on a transient error; after that the sweeper retries with backoff.
 */
export async function fetchAndStoreResult(ctx: ServiceContext, run: Run): Promise<Run | null> {
  const parallelRunId = run.parallel_run_id;
  if (!parallelRunId) throw new Error(`run ${run.id} is completed without a Parallel run id`);
  let outcome = await ctx.parallel.getResult(parallelRunId, RESULT_TIMEOUT_SECONDS);
  if (!outcome.ok && outcome.kind === "transient" && outcome.retryAfterMs === undefined) {
    await new Promise((resolve) => setTimeout(resolve, FAST_RETRY_MS));
    outcome = await ctx.parallel.getResult(parallelRunId, RESULT_TIMEOUT_SECONDS);
  }
  const now = ctx.now();
  const at = now.toISOString();
  const pending = stepGuard("result");

  if (outcome.ok) {
    const { output, run: taskRun } = outcome.value;
    // Over D1's row limit, or just large: R2 holds it and the row its key (services/outputs.ts).
    const placed = await placeOutput(ctx.outputs, run.id, output as unknown as Record<string, unknown>);
    const storedIn = placed.output_key ? "r2" : "d1";
    const stored = await changeRun(
      ctx.db,
      run,
      at,
      {
        ...placed,
        warnings: taskRun.warnings ?? run.warnings,
        result_stored_at: at,
        next_sweep_at: finishDueAt(run, now),
        lease_until: null,
      },
      {
        kind: "result_fetched",
        detail: { output_type: output.type, output_bytes: placed.output_bytes, stored_in: storedIn },
      },
      pending,
    );
    if (stored) {
      ctx.log.info("run.result_stored", {
        run_id: run.id,
        output_type: output.type,
        output_bytes: placed.output_bytes,
        stored_in: storedIn,
      });
      await onRunFinished(ctx, stored);
    }
    return stored;
  }

  const attempt = run.attempts + 1;
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
        attempts: attempt,
        not_found_count: notFound,
      },
      {
        kind: "status_changed",
        detail: { source: "result", from: "completed", to: "failed", attempt, parallel_status: 404, message },
      },
      pending,
    );
    ctx.log.warn("run.result_not_found", { run_id: run.id, attempt });
    if (failed) await onRunFinished(ctx, failed);
    return failed;
  }

  if (attempt >= RESULT_MAX_ATTEMPTS) {
    const message = `The result could not be fetched after ${attempt} attempts; the last error: ${outcome.message}`;
    const failed = await changeRun(
      ctx.db,
      run,
      at,
      {
        status: "failed",
        error: { code: "result_unavailable", message },
        next_sweep_at: finishDueAt(run, now),
        lease_until: null,
        attempts: attempt,
      },
      { kind: "status_changed", detail: { source: "result", from: "completed", to: "failed", message } },
      pending,
    );
    ctx.log.error("run.result_unavailable", { run_id: run.id, attempt });
    if (failed) await onRunFinished(ctx, failed);
    return failed;
  }
  // 404 (not readable yet), 408 (still active), 429, 5xx, or our own credentials refused: try again later.
  const retryAfterMs = outcome.kind === "transient" ? outcome.retryAfterMs : undefined;
  const next = retryAt(ctx.config, attempt, now, retryAfterMs);
  ctx.log.warn("run.result_retry", {
    run_id: run.id,
    attempt,
    parallel_status: outcome.status,
    kind: outcome.kind,
  });
  return changeRun(
    ctx.db,
    run,
    at,
    { attempts: attempt, not_found_count: notFound, next_sweep_at: next.toISOString(), lease_until: null },
    {
      kind: "result_fetch_retry_scheduled",
      detail: {
        attempt,
        parallel_status: outcome.status,
        message: outcome.message,
        next_attempt_at: next.toISOString(),
      },
    },
    pending,
  );
}

export function isParallelTerminal(status: string): boolean {
  return PARALLEL_TERMINAL.has(status);
}
