// Finished runs whose finishing did not complete (the worker died between storing the outcome and
// creating the delivery, or updating the schedule): finish them again. Rare; the fast path clears a
// run's due time as soon as it has finished it.
import { onRunFinished } from "../../services/run-finished";
import { COST } from "../costs";
import { runJob } from "../run-job";

export const finishRunsJob = runJob({
  name: "finish_runs",
  queue: "work",
  outcomes: ["finished"],
  cost: COST.finish_runs,
  step: "finish",
  work: async (ctx, run) => {
    await onRunFinished(ctx, run);
    return "finished";
  },
});
