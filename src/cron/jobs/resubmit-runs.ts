// Job 1: submissions still `submitting` whose next attempt is due (Parallel was throttling or
// down, or the worker died mid-request): create them at Parallel again, with backoff.
import { claimDueRunRows } from "../../db/runs";
import type { ServiceContext } from "../../services/context";
import { submitRun } from "../../services/runs";
import { addMs, LEASE_MS } from "../../services/timing";
import { processClaimed } from "../each-claimed";

export async function runResubmitRuns(ctx: ServiceContext, now: Date) {
  const claimed = await claimDueRunRows(
    ctx.db,
    ["submitting"],
    now.toISOString(),
    addMs(now, LEASE_MS).toISOString(),
    ctx.config.SWEEP_BATCH_SIZE,
  );
  return processClaimed(ctx, "resubmit_runs", claimed, async (run) => {
    const after = await submitRun(ctx, run);
    if (after.status === "submitting") return "retrying";
    if (after.status === "rejected" || after.status === "failed") return after.status;
    return "accepted";
  });
}
