// The one shape of background work: a job declares how to claim its due rows and how to work one
// of them; the cron tick (dispatcher.ts) claims rows in pages and sends one queue message per row,
// and the queue consumer (consumer.ts) takes each row back and works it. Every row is leased from
// its claim on, so a message that is lost, or a consumer that dies, leaves a row that is due again
// once its lease runs out.
//
// Two queues (wrangler.toml): callback deliveries have their own, so a user's callback never waits
// behind a backlog of polls, and its batch size fits a delivery's cost, not a poll's; every other job
// goes to the work queue. A job names its queue; every send of its messages goes there.
import { z } from "zod";
import type { HeldRow } from "../db/dispatch";
import type { Env } from "../env";
import { ApiError } from "../errors";
import { describeError } from "../log";
import type { ServiceContext } from "../services/context";

/** A queue message: which job, which row, and the lease the row was claimed with. Never an output. */
export const WorkMessageSchema = z.object({
  kind: z.string(),
  id: z.string(),
  lease: z.string(),
});
export type WorkMessage = z.infer<typeof WorkMessageSchema>;
export type { HeldRow } from "../db/dispatch";

/** Which queue a job's messages go to: `deliveries` (callback retries) or `work` (everything else). */
export type WorkQueueName = "work" | "deliveries";

/** The producer binding of a queue (wrangler.toml [[queues.producers]]); throws when it is not bound. */
export function queueBinding(env: Env, name: WorkQueueName): Queue<WorkMessage> {
  const [binding, queue] =
    name === "deliveries" ? ["DELIVERY_QUEUE", env.DELIVERY_QUEUE] : ["WORK_QUEUE", env.WORK_QUEUE];
  if (!queue) {
    throw new ApiError(
      "configuration_error",
      `taskrelay is misconfigured: the ${binding} binding is missing (wrangler.toml [[queues.producers]]).`,
    );
  }
  return queue;
}

/** A row a job works: a run, a delivery or a schedule, each with its lease column. */
export interface Leased {
  id: string;
  lease_until: string | null;
}

export interface Worked {
  /** What happened, counted in the job's summary (firing a schedule can record several). */
  outcomes: string[];
  /**
   * The work is due again at `at` and the row stays held under `lease` until then: the consumer
   * sends a delayed message for it (a delivery retry within Queues' 12 h delay).
   */
  later?: { at: string; lease: string };
}

export interface WorkJob<Item extends Leased = Leased> {
  /** The job's name: its messages' `kind` and its key in the tick's and the consumer's log lines. */
  name: string;
  /** The queue its messages go to: the tick's, the consumer's delayed and sent-back ones, a replay's. */
  queue: WorkQueueName;
  /** Outcomes a summary always shows, at 0 when none happened. */
  outcomes: readonly string[];
  /**
   * The most D1 calls plus outbound requests one message costs the consumer once its row is taken
   * (costs.ts): the work, the work it leaves for after it, and a delayed message. The consumer
   * admits a message only while this fits what is left of SUBREQUEST_BUDGET.
   */
  cost: number;
  /** `cost` for this row, when its fields make it smaller (a run without a callback). */
  worstCase?(item: Item): number;
  /**
   * Claims up to `limit` due rows, leased to their messages: one guarded UPDATE … RETURNING. The lease
   * is `leaseUntil`, doubled for each earlier hand-out of the row that no consumer took (runs,
   * deliveries and schedules: db/dispatch.ts; a batch's two jobs, few rows, keep `leaseUntil`).
   */
  claim(ctx: ServiceContext, now: Date, leaseUntil: Date, limit: number): Promise<Item[]>;
  /**
   * Takes one row for its message: due and free, still held under `lease`, or still under the tick's
   * lease (no consumer took it since: any of its messages may work it; not for a batch's jobs);
   * renews the lease.
   * One D1 statement, started before any await: the consumer sends a batch's takes as one D1 batch.
   */
  take(ctx: ServiceContext, id: string, lease: string, now: Date): Promise<Item | null>;
  work(ctx: ServiceContext, item: Item, now: Date): Promise<Worked>;
  /**
   * Gives rows back, due again at `at`, in one statement (db/dispatch.ts releaseSql): the row of a
   * message whose work threw, for its retry (or, should its step have changed, the tick after `at`),
   * and the rows of a sendBatch that failed, due at the next tick. Only rows still held under the
   * lease named, or under a renewal of it by the holder's own work no later than a take at `now`
   * would give. How many were given back.
   */
  release(ctx: ServiceContext, held: readonly HeldRow[], at: Date, now: Date): Promise<number>;
}

export type JobSummary = Record<string, number | string>;
/** A job's counts: rows claimed, messages, each outcome. */
export type WorkSummary = Record<string, number>;

/** A summary with the job's outcomes at 0, the counts to be added. */
export function emptySummary(job: Pick<WorkJob, "outcomes">, fields: Record<string, number>): WorkSummary {
  return { ...fields, ...Object.fromEntries(job.outcomes.map((o) => [o, 0])), errors: 0 };
}

export function count(summary: WorkSummary, outcomes: string[]) {
  for (const outcome of outcomes) summary[outcome] = (summary[outcome] ?? 0) + 1;
}

/**
 * Claims and works a job's due rows in this invocation, concurrently, without the queue: what the
 * consumer does, for the tests of a job's own behaviour. A `later` is left to the row's lease.
 */
export async function workDueNow<Item extends Leased>(
  ctx: ServiceContext,
  job: WorkJob<Item>,
  now: Date,
  leaseUntil: Date,
  limit: number,
): Promise<WorkSummary> {
  const claimed = await job.claim(ctx, now, leaseUntil, limit);
  const summary = emptySummary(job, { claimed: claimed.length });
  const settled = await Promise.allSettled(claimed.map((item) => job.work(ctx, item, now)));
  for (const [index, result] of settled.entries()) {
    if (result.status === "fulfilled") count(summary, result.value.outcomes);
    else {
      summary.errors = (summary.errors ?? 0) + 1;
      ctx.log.error("work.step_error", {
        job: job.name,
        id: claimed[index]?.id,
        error: describeError(result.reason),
      });
    }
  }
  return summary;
}
