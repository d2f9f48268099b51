// Job 2 (and the expiry check): active runs whose webhook is overdue, polled by services/run-poll.ts.
import { ACTIVE_STATUSES } from "../../db/runs";
import type { ServiceContext } from "../../services/context";
import { pollRun } from "../../services/run-poll";
import { sweepDueRuns } from "../each-claimed";

export async function runPollRuns(ctx: ServiceContext, now: Date, limit: number) {
  return sweepDueRuns(ctx, now, limit, "poll_runs", { statuses: ACTIVE_STATUSES }, (run) =>
    pollRun(ctx, run, now),
  );
}
