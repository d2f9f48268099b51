// The scheduled handler finds due work and hands it to the queue; it does none of it. Each job's due
// rows are claimed in pages (one guarded UPDATE … RETURNING a page, leased to their messages) and
// sent with one sendBatch a page. Jobs take pages in turn, so no job can take another's share of the
// tick: a tick costs two calls a page, and the Free plan's 50 affords pages for every job. A job hands
// out at most SWEEP_BATCH_SIZE rows a tick, so a huge backlog drains over ticks, not in one.
import { usageSince } from "../db/metered";
import { type Env, readConfig } from "../env";
import { createGatheringLogger, describeError } from "../log";
import { createServiceContext, type ServiceContext } from "../services/context";
import { dispatchLeaseUntil } from "../services/timing";
import { RELEASE } from "./costs";
import { batchResultsJob } from "./jobs/batch-results";
import { fetchResultsJob } from "./jobs/fetch-results";
import { finishRunsJob } from "./jobs/finish-runs";
import { fireSchedulesJob } from "./jobs/fire-schedules";
import { pollRunsJob } from "./jobs/poll-runs";
import { runPruneWebhookEvents } from "./jobs/prune-webhook-events";
import { resubmitRunsJob } from "./jobs/resubmit-runs";
import { retryDeliveriesJob } from "./jobs/retry-deliveries";
import { submitBatchesJob } from "./jobs/submit-batches";
import {
  type JobSummary,
  type Leased,
  queueBinding,
  type WorkJob,
  type WorkMessage,
  type WorkQueueName,
} from "./work";

export type { JobSummary } from "./work";

/** Work the tick does itself: one statement, whatever it finds (housekeeping). */
export interface TickTask {
  name: string;
  run: (ctx: ServiceContext, now: Date) => Promise<JobSummary>;
}

/** The jobs whose rows become queue messages. The order only breaks ties within a round of pages. */
export const WORK_JOBS: ReadonlyArray<WorkJob> = [
  fireSchedulesJob,
  retryDeliveriesJob(),
  finishRunsJob,
  fetchResultsJob,
  pollRunsJob,
  resubmitRunsJob,
  submitBatchesJob,

  batchResultsJob,
] as ReadonlyArray<WorkJob>;

/** The queue a kind of message goes to: its job's; the work queue for a kind no job has. */
export function queueOfKind(kind: string): WorkQueueName {
  return WORK_JOBS.find((job) => job.name === kind)?.queue ?? "work";
}

export const TICK_TASKS: ReadonlyArray<TickTask> = [
  { name: "prune_webhook_events", run: runPruneWebhookEvents },
];

/** sendBatch takes at most 100 messages (and 256 KB: ours are under 200 bytes each). */
export const PAGE_SIZE = 100;
/** A page's calls: its claim and its sendBatch. */
const PAGE_COST = 2;

export interface TickOptions {
  jobs?: ReadonlyArray<WorkJob>;
  tasks?: ReadonlyArray<TickTask>;
  /** Where every job's messages go, whichever its queue: its queue's binding unless a test captures them. */
  queue?: Pick<Queue<WorkMessage>, "sendBatch">;
}

export async function runScheduledTick(
  env: Env,
  execution: Pick<ExecutionContext, "waitUntil">,
  now: Date,
  options: TickOptions = {},
): Promise<Record<string, JobSummary>> {
  const jobs = options.jobs ?? WORK_JOBS;
  const tasks = options.tasks ?? TICK_TASKS;
  const log = createGatheringLogger({ tick: now.toISOString() }, readConfig(env).LOG_LEVEL);
  // The tick's clock starts at its scheduled time (injectable in tests) and runs on in real time.
  const startedAt = Date.now();
  const clock = () => new Date(now.getTime() + (Date.now() - startedAt));
  const ctx = createServiceContext(env, execution, { log, now: clock });
  const summaries: Record<string, JobSummary> = {};
  // One line per tick ("canonical log line"): each job's summary, latency and D1 cost under `jobs`.
  // A job's failure is also written at once, as an error.
  const report: Record<string, JobSummary> = {};
  let budget = ctx.config.SUBREQUEST_BUDGET - tasks.length;
  // Messages sent so far this tick, all jobs': a page's messages queue behind them (timing.ts).
  let sentThisTick = 0;

  const state = new Map(jobs.map((job) => [job, { pages: 0, claimed: 0, sent: 0, latency: 0, done: false }]));
  const usageBefore = new Map(
    jobs.map((job) => [job, { d1_queries: 0, d1_rows_read: 0, d1_rows_written: 0 }]),
  );
  const failed = new Map<WorkJob, string>();
  // Rounds: every job with rows left claims one page, until none has rows left or the budget is spent.
  for (;;) {
    const round = jobs.filter((job) => {
      const s = state.get(job);
      return s && !s.done && s.claimed < ctx.config.SWEEP_BATCH_SIZE;
    });
    if (round.length === 0 || budget < PAGE_COST) break;
    for (const job of round) {
      const s = state.get(job);
      if (!s) continue;
      if (budget < PAGE_COST) break;
      budget -= PAGE_COST;
      const started = Date.now();
      const before = { ...ctx.usage };
      let rows: Leased[] = [];
      try {
        const page = Math.min(PAGE_SIZE, ctx.config.SWEEP_BATCH_SIZE - s.claimed);
        rows = await job.claim(
          ctx,
          now,
          dispatchLeaseUntil(ctx.config, now, Math.floor(sentThisTick / PAGE_SIZE)),
          page,
        );
        s.pages++;
        s.claimed += rows.length;
        if (rows.length < page) s.done = true;
        if (rows.length > 0) {
          const queue = options.queue ?? queueBinding(env, job.queue);
          await queue.sendBatch(
            rows.map((row) => ({ body: { kind: job.name, id: row.id, lease: row.lease_until ?? "" } })),
          );
          s.sent += rows.length;
          sentThisTick += rows.length;
        }
      } catch (error) {
        s.done = true;
        failed.set(job, describeError(error));
        log.error("cron.job_failed", { job: job.name, error: describeError(error) });
        // The page was claimed but not sent: its rows are given back, due at the next tick, rather
        // than left leased for the whole dispatch lease (one statement, a call of the budget's).
        const held = rows.flatMap((row) => (row.lease_until ? [{ id: row.id, lease: row.lease_until }] : []));
        if (held.length > 0 && budget >= RELEASE) {
          budget -= RELEASE;
          try {
            await job.release(ctx, held, now, ctx.now());
          } catch (releaseError) {
            // Their leases run out as before.
            log.error("cron.release_failed", { job: job.name, error: describeError(releaseError) });
          }
        }
      }
      s.latency += Date.now() - started;
      const spent = usageSince(ctx.usage, before);
      const total = usageBefore.get(job);
      if (total) {
        total.d1_queries += spent.d1_queries;
        total.d1_rows_read += spent.d1_rows_read;
        total.d1_rows_written += spent.d1_rows_written;
      }
    }
  }
  for (const job of jobs) {
    const s = state.get(job);
    if (!s) continue;
    const error = failed.get(job);
    summaries[job.name] = error ? { error } : { claimed: s.claimed, sent: s.sent };
    report[job.name] = {
      ...(error ? { outcome: "error", error } : { claimed: s.claimed, sent: s.sent, pages: s.pages }),
      latency_ms: s.latency,
      ...usageBefore.get(job),
    };
  }
  for (const task of tasks) {
    const started = Date.now();
    const before = { ...ctx.usage };
    try {
      summaries[task.name] = await task.run(ctx, now);
      report[task.name] = {
        ...summaries[task.name],
        latency_ms: Date.now() - started,
        ...usageSince(ctx.usage, before),
      };
    } catch (error) {
      summaries[task.name] = { error: describeError(error) };
      report[task.name] = { outcome: "error", latency_ms: Date.now() - started, error: describeError(error) };
      log.error("cron.job_failed", { job: task.name, error: describeError(error) });
    }
  }
  execution.waitUntil(
    ctx.settled().then(() => {
      log.flush("cron.tick", { latency_ms: Date.now() - startedAt, ...ctx.usage, jobs: report });
      log.close();
    }),
  );
  return summaries;
}
