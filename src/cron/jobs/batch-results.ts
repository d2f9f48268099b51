// Batches whose results are due in bulk (services/batch-results.ts): one pass over the batch's Task
// Group runs stream a message, within the message's reserved calls; a pass out of budget with more to
// read comes back at once as a follow-up message under the same lease.

import type { BatchResultsItem } from "../../db/batch-results";
import { claimDueBatchResults, releaseBatchResults, takeBatchResults } from "../../db/batch-results";
import { runBatchResultsPass } from "../../services/batch-results";
import { BATCH_RESULTS_LEASE_MS, batchResultsSafetyAt } from "../../services/batch-timing";
import { addMs } from "../../services/timing";
import { COST } from "../costs";
import type { WorkJob } from "../work";

export const batchResultsJob: WorkJob<BatchResultsItem> = {
  name: "batch_results",
  queue: "work",
  outcomes: ["stored", "finished", "completed", "left_to_result", "stream_failed"],
  cost: COST.batch_results,
  // A batch.completed callback: its first attempt and inline retry.
  claim: (ctx, now, leaseUntil, limit) =>
    claimDueBatchResults(ctx.db, now.toISOString(), leaseUntil.toISOString(), limit),
  take: (ctx, id, lease, now) =>
    takeBatchResults(
      ctx.db,
      id,
      now.toISOString(),
      addMs(now, BATCH_RESULTS_LEASE_MS).toISOString(),
      lease,
      batchResultsSafetyAt(ctx.config, now).toISOString(),
    ),
  release: (ctx, held, at, now) =>
    releaseBatchResults(ctx.db, held, at.toISOString(), addMs(now, BATCH_RESULTS_LEASE_MS).toISOString()),
  work: async (ctx, item) => {
    const pass = await runBatchResultsPass(ctx, item, COST.batch_results);
    return {
      outcomes: pass.outcomes,
      ...(pass.more && item.lease_until
        ? { later: { at: ctx.now().toISOString(), lease: item.lease_until } }
        : {}),
    };
  },
};
