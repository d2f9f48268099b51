// Job 2 (and the expiry check): active runs whose webhook is overdue. One GET each; a terminal
// status is processed exactly as a webhook would be; otherwise the next poll backs off. A run past
// its deadline that Parallel still reports active gets this one last check and is expired.
import { ACTIVE_STATUSES, changeRun, type Run } from "../../db/runs";
import { applyParallelStatus, fetchAndStoreResult, isParallelTerminal } from "../../services/completion";
import type { ServiceContext } from "../../services/context";
import { onRunFinished } from "../../services/run-finished";
import { finishDueAt, nextPollAt, retryAt } from "../../services/timing";
import { sweepDueRuns } from "../each-claimed";

type PollOutcome = "finished" | "still_active" | "expired" | "retry" | "lost_race";

export async function runPollRuns(ctx: ServiceContext, now: Date, limit: number) {
  return sweepDueRuns(ctx, now, limit, "poll_runs", { statuses: ACTIVE_STATUSES }, (run) =>
    pollRun(ctx, run, now),
  );
}

const ACTIVE_GUARD = { sql: `status IN (${ACTIVE_STATUSES.map((s) => `'${s}'`).join(", ")})` };

async function pollRun(ctx: ServiceContext, run: Run, now: Date): Promise<PollOutcome> {
  const at = now.toISOString();
  const polls = run.attempts + 1;
  const outcome = await ctx.parallel.getRun(run.parallel_run_id ?? "");

  if (!outcome.ok) {
    const next = retryAt(
      ctx.config,
      polls,
      now,
      outcome.kind === "transient" ? outcome.retryAfterMs : undefined,
    );
    await changeRun(
      ctx.db,
      run,
      at,
      { attempts: polls, next_sweep_at: next.toISOString(), lease_until: null },
      {
        kind: "polled",
        detail: { outcome: "error", parallel_status: outcome.status, message: outcome.message },
      },
      ACTIVE_GUARD,
    );
    return "retry";
  }

  const state = outcome.value;
  if (isParallelTerminal(state.status)) {
    const applied = await applyParallelStatus(ctx, run, state, "poll");
    // We hold the lease, so the result fetch is ours whether or not a webhook recorded the status first.
    if (applied.run.status === "completed" && !applied.run.result_stored_at)
      await fetchAndStoreResult(ctx, applied.run);
    return applied.changed ? "finished" : "lost_race";
  }

  if (run.deadline_at && at >= run.deadline_at) {
    const message = `Parallel still reported the run ${state.status} at its deadline (${run.deadline_at}); taskrelay stopped waiting.`;
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
      { kind: "expired", detail: { parallel_status: state.status } },
      ACTIVE_GUARD,
    );
    if (expired) await onRunFinished(ctx, expired);
    return expired ? "expired" : "lost_race";
  }

  // Still active: back off, but never past the deadline, where the last check happens.
  const next = nextPollAt(ctx.config, polls, now).toISOString();
  const nextCheck = run.deadline_at && run.deadline_at < next ? run.deadline_at : next;
  const updated = await changeRun(
    ctx.db,
    run,
    at,
    { status: state.status as Run["status"], attempts: polls, next_sweep_at: nextCheck, lease_until: null },
    { kind: "polled", detail: { outcome: state.status, next_poll_at: nextCheck } },
    ACTIVE_GUARD,
  );
  return updated ? "still_active" : "lost_race";
}
