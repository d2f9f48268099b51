// The queue consumer: works each message of a batch with its job (work.ts), acknowledges it on its
// own, and retries it with backoff when its work throws; after the queue's max_retries such a
// message goes to the dead-letter queue, whose consumer records it (`dead_letters`, counted by
// GET /healthz). Each invocation has its own SUBREQUEST_BUDGET: a batch reserves every message's
// worst case, so wrangler.toml's max_batch_size keeps an invocation inside the Free plan's 50.
import { recordDeadLetter } from "../db/dead-letters";
import { usageSince } from "../db/metered";
import { type Env, readConfig } from "../env";
import { createGatheringLogger, describeError } from "../log";
import { createServiceContext } from "../services/context";
import { WORK_JOBS } from "./dispatcher";
import {
  count,
  emptySummary,
  type WorkJob,
  type WorkMessage,
  WorkMessageSchema,
  type WorkSummary,
} from "./work";

/**
 * As wrangler.toml's max_batch_size: two of most messages stay within the Free plan's 50 calls an
 * invocation; the dearest (COST.fire_schedules, 26) does not fit twice, so a second one comes back.
 * within the Free plan's 50 calls an invocation.
 */
export const CONSUMER_BATCH_SIZE = 2;

/** As in wrangler.toml: the queue whose messages kept failing. */
export const DEAD_LETTER_QUEUE = "taskrelay-work-dead";

/** The wait before a failed message's next try: 10 s, 20 s, 40 s… (Queues' delays are in seconds). */
export function failedRetryDelaySeconds(attempts: number): number {
  return Math.min(10 * 2 ** Math.max(0, attempts - 1), 600);
}

export interface ConsumeOptions {
  now?: () => Date;
  jobs?: ReadonlyArray<WorkJob>;
  /** Where a delayed follow-up message goes: the WORK_QUEUE binding unless a test captures it. */
  queue?: Pick<Queue<WorkMessage>, "send">;
}

export async function consumeWork(
  batch: MessageBatch<unknown>,
  env: Env,
  execution: Pick<ExecutionContext, "waitUntil">,
  options: ConsumeOptions = {},
): Promise<Record<string, WorkSummary>> {
  const jobs = new Map((options.jobs ?? WORK_JOBS).map((job) => [job.name, job]));
  const queue = options.queue ?? env.WORK_QUEUE;
  const log = createGatheringLogger({ queue: batch.queue }, readConfig(env).LOG_LEVEL);
  const startedAt = Date.now();
  const ctx = createServiceContext(env, execution, { log, ...(options.now ? { now: options.now } : {}) });
  const report: Record<string, WorkSummary> = {};
  const summaryOf = (job: WorkJob) => {
    report[job.name] ??= emptySummary(job, { messages: 0, not_due: 0, over_budget: 0, retried: 0 });
    return report[job.name] as WorkSummary;
  };
  let budget = ctx.config.SUBREQUEST_BUDGET;

  await Promise.all(
    batch.messages.map(async (message) => {
      const parsed = WorkMessageSchema.safeParse(message.body);
      const job = parsed.success ? jobs.get(parsed.data.kind) : undefined;
      if (!parsed.success || !job) {
        // Not a message of ours: retried, then dead-lettered, where it shows.
        log.error("queue.bad_message", { message_id: message.id, attempts: message.attempts });
        message.retry({ delaySeconds: failedRetryDelaySeconds(message.attempts) });
        return;
      }
      const { id, lease } = parsed.data;
      const summary = summaryOf(job);
      summary.messages = (summary.messages ?? 0) + 1;
      // Reserved before any await, so the batch's messages never overspend together. Only a batch
      // larger than wrangler.toml's max_batch_size reaches this: the rest come back at once.
      if (budget < job.cost) {
        summary.over_budget = (summary.over_budget ?? 0) + 1;
        message.retry({ delaySeconds: 0 });
        return;
      }
      budget -= job.cost;
      try {
        const item = await job.take(ctx, id, lease, ctx.now());
        if (!item) {
          // Someone else holds it (a newer message, the fast path) or it is no longer due: done.
          summary.not_due = (summary.not_due ?? 0) + 1;
          message.ack();
          return;
        }
        const worked = await job.work(ctx, item, ctx.now());
        count(summary, worked.outcomes);
        if (worked.later) {
          if (!queue) throw new Error("the WORK_QUEUE binding is missing");
          const delaySeconds = Math.max(
            0,
            Math.ceil((Date.parse(worked.later.at) - ctx.now().getTime()) / 1000),
          );
          await queue.send({ kind: job.name, id, lease: worked.later.lease }, { delaySeconds });
        }
        message.ack();
      } catch (error) {
        summary.errors = (summary.errors ?? 0) + 1;
        summary.retried = (summary.retried ?? 0) + 1;
        log.error("queue.work_failed", {
          job: job.name,
          id,
          attempts: message.attempts,
          error: describeError(error),
        });
        message.retry({ delaySeconds: failedRetryDelaySeconds(message.attempts) });
      }
    }),
  );
  const before = { d1_queries: 0, d1_rows_read: 0, d1_rows_written: 0 };
  execution.waitUntil(
    ctx.settled().then(() => {
      log.flush("queue.batch", {
        messages: batch.messages.length,
        latency_ms: Date.now() - startedAt,
        ...usageSince(ctx.usage, before),
        jobs: report,
      });
      log.close();
    }),
  );
  return report;
}

/**
 * The dead-letter queue's consumer: one `dead_letters` row per item however often its messages gave
 * up (a count), and an error log line each. The item's own row stays due: the cron tick sends it again.
 */
export async function recordDeadLetters(
  batch: MessageBatch<unknown>,
  env: Env,
  execution: Pick<ExecutionContext, "waitUntil">,
  now: () => Date = () => new Date(),
): Promise<number> {
  const log = createGatheringLogger({ queue: batch.queue }, readConfig(env).LOG_LEVEL);
  const ctx = createServiceContext(env, execution, { log, now });
  const at = ctx.now().toISOString();
  const statements = batch.messages.map((message) => {
    const parsed = WorkMessageSchema.safeParse(message.body);
    const kind = parsed.success ? parsed.data.kind : "unknown";
    const itemId = parsed.success ? parsed.data.id : message.id;
    log.error("queue.dead_letter", { kind, id: itemId, message_id: message.id });
    const body = JSON.stringify(message.body ?? null).slice(0, 10_000);
    return recordDeadLetter(ctx.db, { kind, itemId, body, at });
  });
  if (statements.length > 0) await ctx.db.batch(statements);
  batch.ackAll();
  log.flush("queue.dead_letters", { messages: batch.messages.length, ...ctx.usage });
  log.close();
  return statements.length;
}
