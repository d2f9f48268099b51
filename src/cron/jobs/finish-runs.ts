// Job: finished runs whose finishing did not complete (the worker died between storing the outcome
// and creating the delivery, or updating the schedule): finish them again. Rare; the fast path
// clears a run's due time as soon as it has finished it.
import { claimDueRunRows, READY_TO_FINISH_SQL, TERMINAL_STATUSES } from "../../db/runs";
import type { ServiceContext } from "../../services/context";
import { onRunFinished } from "../../services/run-finished";
import { addMs, LEASE_MS } from "../../services/timing";
import { processClaimed } from "../each-claimed";

export async function runFinishRuns(ctx: ServiceContext, now: Date) {
  const claimed = await claimDueRunRows(
    ctx.db,
    TERMINAL_STATUSES,
    now.toISOString(),
    addMs(now, LEASE_MS).toISOString(),
    ctx.config.SWEEP_BATCH_SIZE,
    READY_TO_FINISH_SQL,
  );
  return processClaimed(ctx, "finish_runs", claimed, async (run) => {
    await onRunFinished(ctx, run);
    return "finished";
  });
}
