// A batch is complete once it is closed and every run is finished (terminal, a completed run's result
// stored). Completing it and creating its batch.completed callback is one D1 batch whose first
// statement only one worker can win (completed_at IS NULL and no unfinished run), and the delivery
// is unique per (first run, event) besides: two consumers noticing completion at once send one
// callback. The callback is an ordinary delivery: signed, retried and recorded like a run's.
import { completeBatchStatement, insertBatchDeliveryStatement } from "../db/batch-results";
import { type Batch, rowToBatch } from "../db/batches";
import type { Delivery } from "../db/deliveries";
import { TIMELINE_INLINE_MAX, timelineAppendSql } from "../db/run-events";
import { newId } from "../ids";
import type { ServiceContext } from "./context";
import { sendNewDelivery } from "./deliveries";
import { addMs, DELIVERY_LEASE_MS } from "./timing";

/**
 * The batch.completed delivery's `delivery_created` event on its run's timeline (db/run-events.ts),
 * only if the statement just before created the delivery; past the inline limit, a run_events row.
 */
function deliveryCreatedEvent(db: D1Database, deliveryId: string, at: string): D1PreparedStatement[] {
  const event = `json_object('at', ?1, 'kind', 'delivery_created', 'detail',
    (SELECT json_object('delivery_id', id, 'event', event, 'url', url, 'batch_id', batch_id) FROM deliveries WHERE id = ?2))`;
  const run = "(SELECT run_id FROM deliveries WHERE id = ?2)";
  return [
    db
      .prepare(`UPDATE runs SET ${timelineAppendSql(event)} WHERE id = ${run} AND changes() > 0`)
      .bind(at, deliveryId),
    db
      .prepare(
        `INSERT INTO run_events (run_id, at, kind, detail)
         SELECT run_id, ?1, 'delivery_created', json_object('delivery_id', id, 'event', event, 'url', url, 'batch_id', batch_id)
         FROM deliveries WHERE id = ?2 AND changes() > 0
           AND (SELECT timeline_count FROM runs WHERE id = ${run}) > ${TIMELINE_INLINE_MAX}`,
      )
      .bind(at, deliveryId),
  ];
}

/** Completes the batch if it is done; returns it when this call completed it (and sent the callback). */
export async function completeBatch(ctx: ServiceContext, batchId: string): Promise<Batch | null> {
  const now = ctx.now();
  const at = now.toISOString();
  const deliveryId = newId("dlv", now);
  const [completed, inserted] = await ctx.db.batch([
    completeBatchStatement(ctx.db, batchId, at),
    insertBatchDeliveryStatement(ctx.db, {
      id: deliveryId,
      batchId,
      at,
      leaseUntil: addMs(now, DELIVERY_LEASE_MS).toISOString(),
    }),
    // The delivery on its run's timeline, as a run's delivery is: in the run's row, if it was created.
    ...deliveryCreatedEvent(ctx.db, deliveryId, at),
  ]);
  const row = completed?.results[0] as Parameters<typeof rowToBatch>[0] | undefined;
  if (!row) return null;
  const batch = rowToBatch(row);
  ctx.log.info("batch.completed", { batch_id: batch.id, status: batch.status });
  const delivery = inserted?.results[0] as Delivery | undefined;
  if (delivery) sendNewDelivery(ctx, delivery);
  return batch;
}
