// Submissions still `submitting` whose next attempt is due (Parallel was throttling or down, or the
// worker died mid-request): create them at Parallel again, with backoff (not for a revoked key:
// services/runs.ts resubmitRun).
import { resubmitRun } from "../../services/runs";
import { COST } from "../costs";
import { runJob } from "../run-job";

export const resubmitRunsJob = runJob({
  name: "resubmit_runs",
  queue: "work",
  outcomes: ["accepted", "retrying", "rejected", "failed"],
  cost: COST.resubmit_runs,
  step: "submit",
  work: async (ctx, run) => {
    const after = await resubmitRun(ctx, run);
    if (after.status === "submitting") return "retrying";
    if (after.status === "rejected" || after.status === "failed") return after.status;
    return "accepted";
  },
});
