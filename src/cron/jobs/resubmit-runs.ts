// Job 1: submissions still `submitting` whose next attempt is due (Parallel was throttling or
// down, or the worker died mid-request): create them at Parallel again, with backoff (not for a
// revoked key: services/runs.ts resubmitRun).
import type { ServiceContext } from "../../services/context";
import { resubmitRun } from "../../services/runs";
import { sweepDueRuns } from "../each-claimed";

export async function runResubmitRuns(ctx: ServiceContext, now: Date, limit: number) {
  return sweepDueRuns(ctx, now, limit, "resubmit_runs", { statuses: ["submitting"] }, async (run) => {
    const after = await resubmitRun(ctx, run);
    if (after.status === "submitting") return "retrying";
    if (after.status === "rejected" || after.status === "failed") return after.status;
    return "accepted";
  });
}
