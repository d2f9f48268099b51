// The one hook point between the run pipeline and callback delivery: called once a run is terminal
// and, when it completed, its result is stored. Every path that finishes a run ends here: the
// webhook, the poller, a rejected or failed submission, expiry — and the sweeper's finish_runs job,
// which redoes it for a run whose finishing was cut off (each step below is idempotent). A completed
// run with nothing to finish but its delivery does it in the batch that stores its result instead
// (finishingWithResult below), so it is never left to redo.
import { pokeBatchResultsStatement } from "../db/batch-results";
import type { Delivery } from "../db/deliveries";
import { type RunEvent, runEvent } from "../db/run-events";
import { clearFinishDue, type Run } from "../db/runs";
import { batchResultsPokeAt } from "./batch-timing";
import type { ServiceContext } from "./context";
import { DEFAULT_DELIVERY_RUNTIME, newRunDelivery, startRunDelivery } from "./deliveries";
import { onScheduledRunFinished } from "./schedule-finished";

export async function onRunFinished(ctx: ServiceContext, run: Run): Promise<void> {
  // Nothing to notify or to record: the run was left with nothing due (see finishDueAt).
  // A batch run's batch may be complete now: its bulk pass looks soon (services/batch-results.ts).
  const poke = run.batch_id
    ? [
        pokeBatchResultsStatement(
          ctx.db,
          run.batch_id,
          batchResultsPokeAt(ctx.config, ctx.now()).toISOString(),
        ),
      ]
    : [];
  if (!run.callback_url && !run.schedule_id) {
    if (poke.length > 0) await ctx.db.batch(poke);
    return;
  }
  // A scheduled run updates its schedule first; with notify: on_change an unchanged output is kept
  // (the run shows output_changed: false) but not delivered.
  let finished = run;
  let notify = true;
  if (run.schedule_id) {
    const outcome = await onScheduledRunFinished(ctx, run);
    notify = outcome.notify;
    finished = outcome.run;
  }
  // A run with a callback URL gets one delivery per event; it is sent after the response. Only then
  // is nothing left to do for the run (until here the sweeper would finish it again): the batch that
  // creates the delivery marks that in the same write of the run as its delivery_created event.
  if (notify && (await startRunDelivery(ctx, finished, DEFAULT_DELIVERY_RUNTIME, run))) {
    if (poke.length > 0) await ctx.db.batch(poke);
    return;
  }
  await ctx.db.batch([clearFinishDue(ctx.db, run), ...poke]);
}

/**
 * What onRunFinished does for a completed run with no schedule to update and no batch to poke, as
 * part of the batch that stores its result (services/completion.ts): the result's write marks the
 * finishing done (`next_sweep_at` NULL) and carries `events` (delivery_created), and the delivery's
 * INSERT follows it in the batch, only if it stored. One transaction, so the run is never finished
 * without its delivery, with no second write of the run and no move of its `runs_due` entry (issue
 * 13). Null for a run whose finishing has more to do: the store leaves it due, onRunFinished follows.
 */
export function finishingWithResult(
  run: Run,
  now: Date,
): { delivery: Delivery | null; events: RunEvent[] } | null {
  if (run.schedule_id || run.batch_id) return null;
  if (!run.callback_url) return { delivery: null, events: [] };
  const { delivery, event } = newRunDelivery(
    { ...run, status: "completed", callback_url: run.callback_url },
    now,
  );
  return { delivery, events: [runEvent(delivery.created_at, event.kind, event.detail)] };
}
