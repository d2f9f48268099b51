// Active runs whose webhook is overdue (and the expiry check), polled by services/run-poll.ts.
import { pollRun } from "../../services/run-poll";
import { COST } from "../costs";
import { runJob } from "../run-job";

export const pollRunsJob = runJob({
  name: "poll_runs",
  queue: "work",
  outcomes: ["finished", "still_active", "expired", "failed", "retry", "lost_race"],
  cost: COST.poll_runs,
  step: "poll",
  work: (ctx, run, now) => pollRun(ctx, run, now),
});
