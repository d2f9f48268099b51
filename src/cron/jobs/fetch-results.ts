// Job 3: completed runs whose result is not stored yet (the webhook path's fetch failed, was
// throttled, or its worker died): fetch again, with backoff.
import { claimDueRunRows, RESULT_MISSING_SQL } from "../../db/runs";
import { fetchAndStoreResult } from "../../services/completion";
import type { ServiceContext } from "../../services/context";
import { addMs, LEASE_MS } from "../../services/timing";
import { processClaimed } from "../each-claimed";

export async function runFetchResults(ctx: ServiceContext, now: Date) {
  const claimed = await claimDueRunRows(
    ctx.db,
    ["completed"],
    now.toISOString(),
    addMs(now, LEASE_MS).toISOString(),
    ctx.config.SWEEP_BATCH_SIZE,
    RESULT_MISSING_SQL,
  );
  return processClaimed(ctx, "fetch_results", claimed, async (run) => {
    const after = await fetchAndStoreResult(ctx, run);
    if (after?.result_stored_at) return "stored";
    return after?.status === "failed" ? "failed" : "not_yet";
  });
}
