// Works through a job's claimed rows concurrently (a tick then takes about one slow call, not the
// sum of them) and counts the outcomes. A step that throws is counted as an error and logged; its
// lease runs out and a later tick redoes it.
import { claimDueRunRows, type Run, type RunStatus } from "../db/runs";
import { describeError } from "../log";
import type { ServiceContext } from "../services/context";
import { addMs, LEASE_MS } from "../services/timing";

export async function processClaimed<T extends { id: string }, Outcome extends string>(
  ctx: ServiceContext,
  job: string,
  claimed: T[],
  step: (item: T) => Promise<Outcome>,
): Promise<Record<Outcome | "claimed" | "errors", number>> {
  const summary = { claimed: claimed.length, errors: 0 } as Record<Outcome | "claimed" | "errors", number>;
  const settled = await Promise.allSettled(claimed.map(step));
  for (const [index, result] of settled.entries()) {
    if (result.status === "fulfilled") {
      summary[result.value] = (summary[result.value] ?? 0) + 1;
    } else {
      summary.errors++;
      ctx.log.error("cron.step_error", { job, id: claimed[index]?.id, error: describeError(result.reason) });
    }
  }
  return summary;
}

/**
 * One sweeper job over runs: claims up to `limit` due runs in `statuses` (and matching `also`, for
 * jobs sharing a status) with a lease, and works them with `step`.
 */
export async function sweepDueRuns<Outcome extends string>(
  ctx: ServiceContext,
  now: Date,
  limit: number,
  job: string,
  due: { statuses: readonly RunStatus[]; also?: string },
  step: (run: Run) => Promise<Outcome>,
) {
  const claimed = await claimDueRunRows(
    ctx.db,
    due.statuses,
    now.toISOString(),
    addMs(now, LEASE_MS).toISOString(),
    limit,
    due.also,
  );
  return processClaimed(ctx, job, claimed, step);
}
