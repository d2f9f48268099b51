// The scheduled handler: one dispatcher that runs each job as a plain function and logs its summary.
import { usageSince } from "../db/metered";
import { type Env, readConfig } from "../env";
import { createGatheringLogger, describeError } from "../log";
import { createServiceContext, type ServiceContext } from "../services/context";
import { runFetchResults } from "./jobs/fetch-results";
import { runFinishRuns } from "./jobs/finish-runs";
import { runFireSchedules } from "./jobs/fire-schedules";
import { runPollRuns } from "./jobs/poll-runs";
import { runPruneWebhookEvents } from "./jobs/prune-webhook-events";
import { runResubmitRuns } from "./jobs/resubmit-runs";
import { runRetryDeliveries } from "./jobs/retry-deliveries";

export type JobSummary = Record<string, number | string>;
export type Job = (ctx: ServiceContext, now: Date) => Promise<JobSummary>;

/** Jobs run in this order each tick; each is bounded, so a tick's cost follows due work. */
export const JOBS: ReadonlyArray<{ name: string; run: Job }> = [
  { name: "resubmit_runs", run: runResubmitRuns },
  { name: "poll_runs", run: runPollRuns },
  { name: "fetch_results", run: runFetchResults },
  { name: "finish_runs", run: runFinishRuns },
  { name: "prune_webhook_events", run: runPruneWebhookEvents },
  { name: "fire_schedules", run: runFireSchedules },
  { name: "retry_deliveries", run: runRetryDeliveries },
];

export async function runScheduledTick(
  env: Env,
  execution: Pick<ExecutionContext, "waitUntil">,
  now: Date,
  jobs: ReadonlyArray<{ name: string; run: Job }> = JOBS,
): Promise<Record<string, JobSummary>> {
  const log = createGatheringLogger({ tick: now.toISOString() }, readConfig(env).LOG_LEVEL);
  // The tick's clock starts at its scheduled time (injectable in tests) and runs on in real time.
  const startedAt = Date.now();
  const clock = () => new Date(now.getTime() + (Date.now() - startedAt));
  const ctx = createServiceContext(env, execution, { log, now: clock });
  const summaries: Record<string, JobSummary> = {};
  // One line per tick ("canonical log line"): each job's summary, latency and D1 cost under `jobs`,
  // the steps they took under `steps`. A job's failure is also written at once, as an error.
  const report: Record<string, JobSummary> = {};
  for (const job of jobs) {
    const started = Date.now();
    const before = { ...ctx.usage };
    try {
      summaries[job.name] = await job.run(ctx, now);
      report[job.name] = {
        ...summaries[job.name],
        latency_ms: Date.now() - started,
        ...usageSince(ctx.usage, before),
      };
    } catch (error) {
      // One failing job must not stop the others; the next tick retries it.
      summaries[job.name] = { error: describeError(error) };
      report[job.name] = { outcome: "error", latency_ms: Date.now() - started, error: describeError(error) };
      log.error("cron.job_failed", { job: job.name, error: describeError(error) });
    }
  }
  // The tick's whole D1 cost, background work (deliveries sent after a job finished) included.
  execution.waitUntil(
    ctx.settled().then(() => {
      log.flush("cron.tick", { latency_ms: Date.now() - startedAt, ...ctx.usage, jobs: report });
      log.close();
    }),
  );
  return summaries;
}
