// Job 1: submissions still `submitting` whose next attempt is due (Parallel was throttling or
// down, or the worker died mid-request): create them at Parallel again, with backoff.
import { claimDueRunRows } from "../../db/runs";
import type { ServiceContext } from "../../services/context";
import { submitRun } from "../../services/runs";
import { addMs, LEASE_MS } from "../../services/timing";

export async function runResubmitRuns(ctx: ServiceContext, now: Date) {
  const claimed = await claimDueRunRows(
    ctx.db,
    ["submitting"],
    now.toISOString(),
    addMs(now, LEASE_MS).toISOString(),
    ctx.config.SWEEP_BATCH_SIZE,
  );
  const outcomes = { claimed: claimed.length, accepted: 0, retrying: 0, rejected: 0, failed: 0 };
  for (const run of claimed) {
    const after = await submitRun(ctx, run);
    if (after.status === "submitting") outcomes.retrying++;
    else if (after.status === "rejected") outcomes.rejected++;
    else if (after.status === "failed") outcomes.failed++;
    else outcomes.accepted++;
  }
  return outcomes;
}
