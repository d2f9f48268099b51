// Job: finished runs whose finishing did not complete (the worker died between storing the outcome
// and creating the delivery, or updating the schedule): finish them again. Rare; the fast path
// clears a run's due time as soon as it has finished it.
import { READY_TO_FINISH_SQL, TERMINAL_STATUSES } from "../../db/runs";
import type { ServiceContext } from "../../services/context";
import { onRunFinished } from "../../services/run-finished";
import { sweepDueRuns } from "../each-claimed";

export async function runFinishRuns(ctx: ServiceContext, now: Date, limit: number) {
  const due = { statuses: TERMINAL_STATUSES, also: READY_TO_FINISH_SQL };
  return sweepDueRuns(ctx, now, limit, "finish_runs", due, async (run) => {
    await onRunFinished(ctx, run);
    return "finished";
  });
}
