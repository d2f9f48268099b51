// A job over runs: its rows are the due runs in some statuses (and matching `also`, for jobs sharing
// a status), claimed through the partial index `runs_due`. The work is the job's own.
import { claimDueRunRows, type Run, type RunStatus, takeDueRun } from "../db/runs";
import type { ServiceContext } from "../services/context";
import { addMs, LEASE_MS } from "../services/timing";
import type { Worked, WorkJob } from "./work";

export function runJob(spec: {
  name: string;
  outcomes: readonly string[];
  cost: number;
  statuses: readonly RunStatus[];
  also?: string;
  work: (ctx: ServiceContext, run: Run, now: Date) => Promise<string>;
}): WorkJob<Run> {
  return {
    name: spec.name,
    outcomes: spec.outcomes,
    cost: spec.cost,
    claim: (ctx, now, leaseUntil, limit) =>
      claimDueRunRows(ctx.db, spec.statuses, now.toISOString(), leaseUntil.toISOString(), limit, spec.also),
    take: (ctx, id, lease, now) =>
      takeDueRun(
        ctx.db,
        id,
        spec.statuses,
        now.toISOString(),
        addMs(now, LEASE_MS).toISOString(),
        lease,
        spec.also,
      ),
    work: async (ctx, run, now): Promise<Worked> => ({ outcomes: [await spec.work(ctx, run, now)] }),
  };
}
