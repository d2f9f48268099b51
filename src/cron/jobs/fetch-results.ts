// Job 3: completed runs whose result is not stored yet (the webhook path's fetch failed, was
// throttled, or its worker died): fetch again, with backoff.
import { claimDueRunRows } from "../../db/runs";
import { fetchAndStoreResult } from "../../services/completion";
import type { ServiceContext } from "../../services/context";
import { addMs, LEASE_MS } from "../../services/timing";

export async function runFetchResults(ctx: ServiceContext, now: Date) {
  const claimed = await claimDueRunRows(
    ctx.db,
    ["completed"],
    now.toISOString(),
    addMs(now, LEASE_MS).toISOString(),
    ctx.config.SWEEP_BATCH_SIZE,
  );
  let stored = 0;
  for (const run of claimed) {
    const after = await fetchAndStoreResult(ctx, run);
    if (after?.result_stored_at) stored++;
  }
  return { claimed: claimed.length, stored, not_yet: claimed.length - stored };
}
