// Batches with inputs to hand to Parallel: each message sends up to three add-runs chunks of the
// batch to its Task Group (services/batch-submission.ts) and, with more to send, continues in a
// follow-up message under the same lease. A batch whose worker died is due again when its lease
// ends; a chunk in flight then is reconciled with the group's runs before anything is sent again.
import { type Batch, claimDueBatches, releaseBatches, takeDueBatch } from "../../db/batches";
import { BATCH_LEASE_MS, SUBMIT_BATCH_COST, submitBatch } from "../../services/batch-submission";
import { SUBMIT_BATCHES_JOB } from "../../services/batches";
import { addMs } from "../../services/timing";
import type { WorkJob } from "../work";

export const submitBatchesJob: WorkJob<Batch> = {
  name: SUBMIT_BATCHES_JOB,
  queue: "work",
  outcomes: ["chunk_submitted", "chunk_recovered", "chunk_rejected", "retrying", "finished"],
  cost: SUBMIT_BATCH_COST,
  claim: (ctx, now, leaseUntil, limit) =>
    claimDueBatches(ctx.db, now.toISOString(), leaseUntil.toISOString(), limit),
  take: (ctx, id, lease, now) =>
    takeDueBatch(ctx.db, id, now.toISOString(), addMs(now, BATCH_LEASE_MS).toISOString(), lease),
  release: (ctx, held, at, now) =>
    releaseBatches(ctx.db, held, at.toISOString(), addMs(now, BATCH_LEASE_MS).toISOString()),
  work: (ctx, batch, now) => submitBatch(ctx, batch, now),
};
