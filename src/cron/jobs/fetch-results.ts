// Completed runs whose result is not stored yet (the webhook path's fetch failed, was throttled, or
// its worker died): fetch again, with backoff.
import { fetchAndStoreResult } from "../../services/completion";
import { COST } from "../costs";
import { runJob } from "../run-job";

export const fetchResultsJob = runJob({
  name: "fetch_results",
  queue: "work",
  outcomes: ["stored", "failed", "not_yet"],
  cost: COST.fetch_results,
  step: "result",
  work: async (ctx, run) => {
    const after = await fetchAndStoreResult(ctx, run);
    if (after?.result_stored_at) return "stored";
    return after?.status === "failed" ? "failed" : "not_yet";
  },
});
