// A job over runs: its rows are the due runs its step may change (db/run-states.ts: the states and
// what else must hold), claimed through the partial index `runs_due`. The work is the job's own.
import { RUN_STEPS, type RunStep } from "../db/run-states";
import { claimDueRunRows, type Run, type RunStatus, releaseRuns, takeDueRun } from "../db/runs";
import type { ServiceContext } from "../services/context";
import { addMs, LEASE_MS } from "../services/timing";
import { runWorstCase } from "./costs";
import type { Worked, WorkJob, WorkQueueName } from "./work";

export function runJob(spec: {
  name: string;
  queue: WorkQueueName;
  outcomes: readonly string[];
  cost: number;
  step: RunStep;
  work: (ctx: ServiceContext, run: Run, now: Date) => Promise<string>;
}): WorkJob<Run> {
  const step: { from: readonly RunStatus[]; also?: string } = RUN_STEPS[spec.step];
  return {
    name: spec.name,
    queue: spec.queue,
    outcomes: spec.outcomes,
    cost: spec.cost,
    worstCase: (run) => runWorstCase(spec.cost, run),
    claim: (ctx, now, leaseUntil, limit) =>
      claimDueRunRows(ctx.db, step.from, now.toISOString(), leaseUntil.toISOString(), limit, step.also),
    take: (ctx, id, lease, now) =>
      takeDueRun(
        ctx.db,
        id,
        step.from,
        now.toISOString(),
        addMs(now, LEASE_MS).toISOString(),
        lease,
        step.also,
      ),
    work: async (ctx, run, now): Promise<Worked> => ({ outcomes: [await spec.work(ctx, run, now)] }),
    release: (ctx, held, at, now) =>
      releaseRuns(ctx.db, held, at.toISOString(), addMs(now, LEASE_MS).toISOString()),
  };
}
