// What a batch.completed callback says: the batch, its counts, where to take its results. Read by
// every attempt (services/deliveries.ts), so a retry days later still says where the results are.
import { type Batch, findBatch } from "../db/batches";
import type { Delivery } from "../db/deliveries";
import { type Config, requireSetting } from "../env";
import type { ServiceContext } from "./context";

/** Where a batch's results are exported (routes/batches-results.ts). */
export function batchResultsUrls(config: Config, batchId: string) {
  const base = requireSetting(config, "PUBLIC_BASE_URL").replace(/\/+$/, "");
  const url = `${base}/v1/batches/${batchId}/results`;
  return { jsonl: `${url}?format=jsonl`, csv: `${url}?format=csv` };
}

/** The counts of a batch's runs, from its row: the statuses its runs are in, and the total. */
export function batchCounts(batch: Pick<Batch, "status_counts">): Record<string, number> {
  const total = Object.values(batch.status_counts).reduce((sum, n) => sum + n, 0);
  return { total, ...batch.status_counts };
}

/**
 * The body of a batch.completed callback: the batch, its counts, and where to take its results.
 * Null when the batch is gone (the delivery gives up).
 */
export async function batchCallbackBody(ctx: ServiceContext, delivery: Delivery) {
  if (!delivery.batch_id) return null;
  const batch = await findBatch(ctx.db, delivery.batch_id);
  if (!batch) return null;
  return {
    type: delivery.event,
    timestamp: batch.completed_at ?? delivery.created_at,
    data: {
      batch: {
        id: batch.id,
        name: batch.name,
        status: batch.status,
        counts: batchCounts(batch),
        created_at: batch.created_at,
        closed_at: batch.closed_at,
        cancelled_at: batch.cancelled_at,
        completed_at: batch.completed_at,
      },
      results_url: batchResultsUrls(ctx.config, batch.id),
    },
  };
}
