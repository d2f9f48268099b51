// The one hook point between the run pipeline and callback delivery: called once a run is terminal
// and, when it completed, its result is stored. Every path that finishes a run ends here: the
// webhook, the poller, a rejected or failed submission, expiry — and the sweeper's finish_runs job,
// which redoes it for a run whose finishing was cut off (each step below is idempotent).
import { pokeBatchResultsStatement } from "../db/batch-results";
import { clearFinishDue, type Run } from "../db/runs";
import { batchResultsPokeAt } from "./batch-timing";
import type { ServiceContext } from "./context";
import { DEFAULT_DELIVERY_RUNTIME, startRunDelivery } from "./deliveries";
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
