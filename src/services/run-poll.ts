// Polling one active run whose webhook is overdue (the sweeper's poll_runs job). One GET; a terminal
// status is processed exactly as a webhook would be; otherwise the next poll backs off, never past
// the run's deadline. At the deadline the run gets one last check and is expired, whatever Parallel
// answered (an error too; a transient one is retried for DEADLINE_RETRY_MS first), so no run stays
// active for good. A few 404s in a row for a run Parallel once accepted end it `failed`
// (`parallel_run_not_found`).
import { pollSparedWhenActive } from "../cron/costs";
import { stepGuard } from "../db/run-states";
import { changeRun, type Run } from "../db/runs";
import type { ParallelFailure } from "../parallel/client";
import {
  applyParallelStatus,
  fetchClaimedResult,
  isKnownParallelStatus,
  isParallelTerminal,
  recordedStatus,
  warnUnknownStatus,
} from "./completion";
import type { ServiceContext } from "./context";
import { noteOperatorProblem } from "./operator-alerts";
import { onRunFinished } from "./run-finished";
import { addMs, finishDueAt, nextPollAt, notAfter, retryAt, runDeadline } from "./timing";

export type PollOutcome = "finished" | "still_active" | "expired" | "failed" | "retry" | "lost_race";

/** Polls in a row that Parallel answered 404 before the run is given up as unknown to Parallel. */
export const POLL_NOT_FOUND_LIMIT = 3;

/**
 * How long past its deadline a run whose last check met a transient error is checked again (about
 * every 30 s, scaled) before it is expired. Not scaled: an outage at Parallel lasts real time.
 */
export const DEADLINE_RETRY_MS = 10 * 60 * 1000;

const ACTIVE_GUARD = stepGuard("poll");

/** Polls a run this worker holds the lease on. */
export async function pollRun(ctx: ServiceContext, run: Run, now: Date): Promise<PollOutcome> {
  const at = now.toISOString();
  const polls = run.attempts + 1;
  const deadline = runDeadline(ctx.config, run);
  const outcome = await ctx.parallel.getRun(run.parallel_run_id ?? "");

  if (!outcome.ok) return pollFailed(ctx, run, now, outcome);

  const state = outcome.value;
  if (isParallelTerminal(state.status)) {
    // We hold the lease, so the result fetch is ours whether or not a webhook recorded the status
    // first: claimed (its attempt counted) in the same batch as the status. A batch run is not
    // claimed: its result comes with its batch's in bulk (services/batch-results.ts).
    const applied = await applyParallelStatus(ctx, run, state, "poll", {
      claimResult: { heldLease: run.lease_until },
    });
    if (applied.claimed) await fetchClaimedResult(ctx, applied.claimed);
    return applied.changed ? "finished" : "lost_race";
  }

  const known = isKnownParallelStatus(state.status);
  if (!known) warnUnknownStatus(ctx, run, state.status);

  if (at >= deadline) {
    return expire(
      ctx,
      run,
      now,
      `Parallel still reported the run ${state.status} at its deadline (${deadline}); taskrelay stopped waiting.`,
      { parallel_status: state.status },
    );
  }

  // Still active (or a status taskrelay does not know, treated as active): back off. Only that write
  // is left of the poll's worst case, so the consumer may start another message now.
  ctx.spare(pollSparedWhenActive(run));
  const nextCheck = notAfter(nextPollAt(ctx.config, polls, now), deadline);
  const updated = await changeRun(
    ctx.db,
    run,
    at,
    {
      status: recordedStatus(state.status, run.status),
      attempts: polls,
      next_sweep_at: nextCheck,
      lease_until: null,
      ...((run.not_found_count ?? 0) > 0 ? { not_found_count: 0 } : {}),
    },
    {
      kind: "polled",
      detail: { outcome: state.status, next_poll_at: nextCheck, ...(known ? {} : { unknown_status: true }) },
    },
    ACTIVE_GUARD,
  );
  return updated ? "still_active" : "lost_race";
}

async function pollFailed(
  ctx: ServiceContext,
  run: Run,
  now: Date,
  outcome: ParallelFailure,
): Promise<PollOutcome> {
  const at = now.toISOString();
  const polls = run.attempts + 1;
  const deadline = runDeadline(ctx.config, run);
  const notFound = outcome.kind === "not_found" ? (run.not_found_count ?? 0) + 1 : 0;
  const error = { parallel_status: outcome.status, message: outcome.message };
  // Logged once per invocation (a request, a consumer batch); the runs it holds back wait for the fix until their deadline.
  if (outcome.kind === "operator") noteOperatorProblem(ctx, outcome, "poll");

  if (notFound >= POLL_NOT_FOUND_LIMIT) {
    const message = `Parallel answered 404 for the run on ${notFound} polls in a row: it no longer knows the run. ${outcome.message}`;
    const failed = await changeRun(
      ctx.db,
      run,
      at,
      {
        status: "failed",
        error: { code: "parallel_run_not_found", message },
        finished_at: at,
        attempts: polls,
        not_found_count: notFound,
        next_sweep_at: finishDueAt(run, now),
        lease_until: null,
      },
      { kind: "status_changed", detail: { source: "poll", from: run.status, to: "failed", ...error } },
      ACTIVE_GUARD,
    );
    ctx.log.warn("run.parallel_not_found", { run_id: run.id, polls: notFound });
    if (failed) await onRunFinished(ctx, failed);
    return failed ? "failed" : "lost_race";
  }

  const pastDeadline = at >= deadline;
  // A transient error (5xx, 429, a timeout) at the last check is not an answer: tried again for a
  // while, so a brief outage at Parallel does not expire a run it may have finished.
  const graceEnd = addMs(new Date(deadline), DEADLINE_RETRY_MS).toISOString();
  if (pastDeadline && (outcome.kind !== "transient" || at >= graceEnd)) {
    return expire(
      ctx,
      run,
      now,
      `Parallel answered HTTP ${outcome.status ?? "(no response)"} to the last check at the run's deadline (${deadline}); taskrelay stopped waiting. ${outcome.message}`,
      error,
    );
  }

  // As for a run still active: only the write of the next poll's time is left.
  ctx.spare(pollSparedWhenActive(run));
  const retryAfterMs = outcome.kind === "transient" ? outcome.retryAfterMs : undefined;
  const next = pastDeadline
    ? notAfter(retryAt(ctx.config, 1, now, retryAfterMs), graceEnd)
    : notAfter(retryAt(ctx.config, polls, now, retryAfterMs), deadline);
  const updated = await changeRun(
    ctx.db,
    run,
    at,
    { attempts: polls, not_found_count: notFound, next_sweep_at: next, lease_until: null },
    { kind: "polled", detail: { outcome: "error", ...error, next_poll_at: next } },
    ACTIVE_GUARD,
  );
  return updated ? "retry" : "lost_race";
}

/** Taskrelay's own judgement: a late terminal status from Parallel still replaces it. */
async function expire(
  ctx: ServiceContext,
  run: Run,
  now: Date,
  message: string,
  detail: Record<string, unknown>,
): Promise<PollOutcome> {
  const at = now.toISOString();
  const expired = await changeRun(
    ctx.db,
    run,
    at,
    {
      status: "expired",
      error: { code: "expired", message },
      finished_at: at,
      next_sweep_at: finishDueAt(run, now),
      lease_until: null,
    },
    { kind: "expired", detail },
    ACTIVE_GUARD,
  );
  if (expired) await onRunFinished(ctx, expired);
  return expired ? "expired" : "lost_race";
}
