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
/** A job claims at most `limit` rows and reports how many it claimed as `claimed`. */
export type Job = (ctx: ServiceContext, now: Date, limit: number) => Promise<JobSummary>;
export interface JobSpec {
  name: string;
  run: Job;
  /**
   * The most D1 calls plus outbound requests one claimed row can cost, the work it leaves for after
   * the tick included; the tick reserves this much budget per row (SUBREQUEST_BUDGET).
   */
  costPerRow: number;
}

// Finishing a run (run-finished.ts) at worst: the schedule read and its outcome recorded (2), the
// delivery created (1), its first attempt (signing secrets, POST, record: 3), one inline retry 5 s
// later (claim, run, secrets, POST, record: 5), the finish due time cleared (1).
const FINISH = 12;
// A submission at worst: the create call, its outcome recorded, the run re-read; finished when
// Parallel refuses it.
const SUBMIT = 3 + FINISH;

/**
 * Jobs run in this order each tick, each claiming a bounded batch, so a tick's cost follows due
 * work. When the budget is short the first jobs get it: occurrences due now and callbacks waiting
 * come before finding and fetching finished runs, then new submissions, then housekeeping.
 */
export const JOBS: ReadonlyArray<JobSpec> = [
  // The key, the previous run, the run stored (idempotency read, insert, a lost race's re-read), its
  // submission, the schedule released.
  { name: "fire_schedules", run: runFireSchedules, costPerRow: 2 + 3 + SUBMIT + 1 },
  // The run and signing secrets, the POST, the attempt recorded (no inline retry from the sweeper).
  { name: "retry_deliveries", run: runRetryDeliveries, costPerRow: 4 },
  { name: "finish_runs", run: runFinishRuns, costPerRow: FINISH },
  // /result with its one quick retry, the result stored, the run finished.
  { name: "fetch_results", run: runFetchResults, costPerRow: 2 + 1 + FINISH },
  // The GET, the status recorded, a lost race's re-read, then as fetch_results.
  { name: "poll_runs", run: runPollRuns, costPerRow: 3 + 2 + 1 + FINISH },
  { name: "resubmit_runs", run: runResubmitRuns, costPerRow: SUBMIT },
  // One DELETE, whatever it deletes: the claim reserved for every job covers it.
  { name: "prune_webhook_events", run: runPruneWebhookEvents, costPerRow: 0 },
];

export async function runScheduledTick(
  env: Env,
  execution: Pick<ExecutionContext, "waitUntil">,
  now: Date,
  jobs: ReadonlyArray<JobSpec> = JOBS,
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
  // Every job's claim query is reserved up front; rows are reserved at their worst case as claimed.
  let budget = ctx.config.SUBREQUEST_BUDGET - jobs.length;
  for (const job of jobs) {
    const started = Date.now();
    const before = { ...ctx.usage };
    const affordable = job.costPerRow > 0 ? Math.floor(Math.max(0, budget) / job.costPerRow) : Infinity;
    const limit = Math.min(ctx.config.SWEEP_BATCH_SIZE, affordable);
    try {
      summaries[job.name] = await job.run(ctx, now, limit);
      budget -= Number(summaries[job.name]?.claimed ?? 0) * job.costPerRow;
      report[job.name] = {
        ...summaries[job.name],
        limit,
        latency_ms: Date.now() - started,
        ...usageSince(ctx.usage, before),
      };
    } catch (error) {
      // One failing job must not stop the others; the next tick retries it. What it may have
      // claimed stays reserved.
      budget -= limit * job.costPerRow;
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
