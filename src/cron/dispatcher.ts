// The scheduled handler: one dispatcher that runs each job as a plain function and logs its summary.
import type { Env } from "../env";
import { createLogger, describeError } from "../log";
import { createServiceContext, type ServiceContext } from "../services/context";

export type JobSummary = Record<string, number | string>;
export type Job = (ctx: ServiceContext, now: Date) => Promise<JobSummary>;

/** Jobs run in this order each tick; each is bounded, so a tick's cost follows due work. */
export const JOBS: ReadonlyArray<{ name: string; run: Job }> = [];

export async function runScheduledTick(
  env: Env,
  execution: Pick<ExecutionContext, "waitUntil">,
  now: Date,
  jobs: ReadonlyArray<{ name: string; run: Job }> = JOBS,
): Promise<Record<string, JobSummary>> {
  const log = createLogger({ tick: now.toISOString() });
  const ctx = createServiceContext(env, execution, { log });
  const summaries: Record<string, JobSummary> = {};
  for (const job of jobs) {
    const started = Date.now();
    try {
      summaries[job.name] = await job.run(ctx, now);
      log.info("cron.job", {
        job: job.name,
        outcome: "ok",
        latency_ms: Date.now() - started,
        ...summaries[job.name],
      });
    } catch (error) {
      // One failing job must not stop the others; the next tick retries it.
      summaries[job.name] = { error: describeError(error) };
      log.error("cron.job", {
        job: job.name,
        outcome: "error",
        latency_ms: Date.now() - started,
        error: describeError(error),
      });
    }
  }
  return summaries;
}
