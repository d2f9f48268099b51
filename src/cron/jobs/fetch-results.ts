// Job 3: completed runs whose result is not stored yet (the webhook path's fetch failed, was
// throttled, or its worker died): fetch again, with backoff.
import { RESULT_MISSING_SQL } from "../../db/runs";
import { fetchAndStoreResult } from "../../services/completion";
import type { ServiceContext } from "../../services/context";
import { sweepDueRuns } from "../each-claimed";

export async function runFetchResults(ctx: ServiceContext, now: Date, limit: number) {
  return sweepDueRuns(
    ctx,
    now,
    limit,
    "fetch_results",
    { statuses: ["completed"], also: RESULT_MISSING_SQL },
    async (run) => {
      const after = await fetchAndStoreResult(ctx, run);
      if (after?.result_stored_at) return "stored";
      return after?.status === "failed" ? "failed" : "not_yet";
    },
  );
}
