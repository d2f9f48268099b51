// Driving background work as Cloudflare runs it: a cron tick whose messages are captured, then the
// queue consumer working them in batches made with cloudflare:test's createMessageBatch, with
// getQueueResult reading what it acknowledged and retried. Delayed follow-up messages are kept for
// the test to deliver when their time comes.
import {
  createExecutionContext,
  createMessageBatch,
  getQueueResult,
  waitOnExecutionContext,
} from "cloudflare:test";
import { env } from "cloudflare:workers";
import { CONSUMER_BATCH_SIZE, consumeWork } from "../../src/cron/consumer";
import { runScheduledTick } from "../../src/cron/dispatcher";
import { fireSchedulesJob } from "../../src/cron/jobs/fire-schedules";
import { retryDeliveriesJob } from "../../src/cron/jobs/retry-deliveries";
import { type JobSummary, type WorkMessage, workDueNow } from "../../src/cron/work";
import type { Env } from "../../src/env";
import type { ServiceContext } from "../../src/services/context";
import type { DeliveryRuntime } from "../../src/services/deliveries";
import { addMs, DELIVERY_LEASE_MS, FIRE_LEASE_MS } from "../../src/services/timing";

export interface Sent {
  body: WorkMessage;
  delaySeconds: number;
}

/** A WORK_QUEUE that keeps what is sent to it. */
export function capturingQueue() {
  const sent: Sent[] = [];
  const queue = {
    send: async (body: WorkMessage, options?: QueueSendOptions) => {
      sent.push({ body, delaySeconds: options?.delaySeconds ?? 0 });
    },
    sendBatch: async (messages: Iterable<MessageSendRequest<WorkMessage>>) => {
      for (const m of messages) sent.push({ body: m.body, delaySeconds: m.delaySeconds ?? 0 });
    },
  };
  return { sent, queue: queue as unknown as Queue<WorkMessage>, take: () => sent.splice(0) };
}

/** A clock that starts at `at` and runs on in real time. */
export const clockFrom = (at: Date) => {
  const started = Date.now();
  return () => new Date(at.getTime() + (Date.now() - started));
};

let messageIds = 0;

export interface ConsumeOptions {
  now?: () => Date;
  env?: Env;
  /** Where delayed follow-up messages go (the env's WORK_QUEUE unless given). */
  queue?: Queue<WorkMessage>;
  attempts?: number;
}

/**
 * One consumer invocation of `messages` (at most CONSUMER_BATCH_SIZE): what it did, the calls it
 * counted, what it acknowledged and retried, and the messages it sent back for not affording them.
 */
export async function consumeOnce(messages: WorkMessage[], options: ConsumeOptions = {}) {
  const sentBack = capturingQueue();
  const followUps = options.queue ?? (options.env ?? env).WORK_QUEUE;
  const queue: Pick<Queue<WorkMessage>, "send" | "sendBatch"> = {
    send: (body, sendOptions) => {
      if (!followUps) throw new Error("no WORK_QUEUE for a follow-up message");
      return followUps.send(body, sendOptions);
    },
    sendBatch: (batch, sendOptions) => sentBack.queue.sendBatch(batch, sendOptions),
  };
  const batch = createMessageBatch<WorkMessage>(
    "taskrelay-work",
    messages.map((body) => ({
      id: `msg-${++messageIds}`,
      timestamp: new Date(),
      attempts: options.attempts ?? 1,
      body,
    })),
  );
  const ctx = createExecutionContext();
  const { jobs: report, calls } = await consumeWork(batch as MessageBatch<unknown>, options.env ?? env, ctx, {
    ...(options.now ? { now: options.now } : {}),
    queue,
  });
  const result = await getQueueResult(batch, ctx);
  await waitOnExecutionContext(ctx);
  return { report, calls, result, sentBack: sentBack.take().map((m) => m.body) };
}

/**
 * Works `messages` through the consumer in batches of CONSUMER_BATCH_SIZE, as Queues would, the
 * messages an invocation sent back included; returns what it did.
 */
export async function consume(messages: WorkMessage[], options: ConsumeOptions = {}) {
  const reports: Array<Record<string, JobSummary>> = [];
  const results: Array<Awaited<ReturnType<typeof getQueueResult>>> = [];
  const pending = [...messages];
  while (pending.length > 0) {
    const once = await consumeOnce(pending.splice(0, CONSUMER_BATCH_SIZE), options);
    reports.push(once.report);
    results.push(once.result);
    pending.push(...once.sentBack);
  }
  return { report: mergeReports(reports), results };
}

function mergeReports(reports: Array<Record<string, JobSummary>>): Record<string, JobSummary> {
  const merged: Record<string, JobSummary> = {};
  for (const report of reports) {
    for (const [job, summary] of Object.entries(report)) {
      const into = merged[job] ?? {};
      merged[job] = into;
      for (const [key, value] of Object.entries(summary)) into[key] = Number(into[key] ?? 0) + Number(value);
    }
  }
  return merged;
}

/**
 * One cron tick at `at`, then every message it sent (not delayed) worked by the consumer on the
 * same clock. Per job: the tick's `claimed` and `sent`, and the consumer's outcomes.
 */
export async function tickAndWork(at: Date, options: { env?: Env } = {}) {
  const captured = capturingQueue();
  const tickCtx = createExecutionContext();
  const dispatched = await runScheduledTick(options.env ?? env, tickCtx, at, { queue: captured.queue });
  await waitOnExecutionContext(tickCtx);
  const messages = captured.take().map((m) => m.body);
  const { report, results } = await consume(messages, {
    now: clockFrom(at),
    queue: captured.queue,
    ...(options.env ? { env: options.env } : {}),
  });
  const summaries: Record<string, JobSummary> = {};
  for (const [job, summary] of Object.entries(dispatched)) summaries[job] = { ...summary, ...report[job] };
  return { summaries, messages, results, later: captured.sent };
}

/** The fire_schedules job claimed and worked in one invocation (a schedule's own behaviour). */
export const runFireSchedules = (ctx: ServiceContext, now: Date, limit: number) =>
  workDueNow(ctx, fireSchedulesJob, now, addMs(now, FIRE_LEASE_MS), limit);

/** The retry_deliveries job claimed and worked in one invocation, its retries left to the cron tick. */
export const runRetryDeliveries = (ctx: ServiceContext, now: Date, limit: number, runtime: DeliveryRuntime) =>
  workDueNow(ctx, retryDeliveriesJob(runtime, 0), now, addMs(now, DELIVERY_LEASE_MS), limit);

/**
 * The test env with its D1 answering an error, as D1 does when its database is busy, for the next
 * `times` runs of a statement whose SQL matches (alone or in a batch): a real failure at the D1
 * boundary for the code under test, which runs unchanged.
 */
export function failingD1(matches: RegExp, times = Number.POSITIVE_INFINITY, base: Env = env) {
  const db = base.DB;
  let left = times;
  let failed = 0;
  const sqlOf = new WeakMap<object, string>();
  const originals = new WeakMap<object, D1PreparedStatement>();
  const fail = (sql: string | undefined) => {
    if (sql === undefined || !matches.test(sql) || left <= 0) return;
    left--;
    failed++;
    throw new Error("D1_ERROR: database is locked: SQLITE_BUSY");
  };
  const wrap = (statement: D1PreparedStatement, sql: string): D1PreparedStatement => {
    const run = <T>(direct: () => Promise<T>) => {
      try {
        fail(sql);
      } catch (error) {
        return Promise.reject(error);
      }
      return direct();
    };
    const wrapped = {
      bind: (...values: unknown[]) => wrap(statement.bind(...values), sql),
      first: (column?: string) =>
        run(() => (column === undefined ? statement.first() : statement.first(column))),
      all: () => run(() => statement.all()),
      run: () => run(() => statement.run()),
      raw: (options?: { columnNames?: boolean }) =>
        run(() => (options?.columnNames ? statement.raw({ columnNames: true }) : statement.raw())),
    };
    sqlOf.set(wrapped, sql);
    originals.set(wrapped, statement);
    return wrapped as unknown as D1PreparedStatement;
  };
  const database = {
    prepare: (query: string) => wrap(db.prepare(query), query),
    batch: async <T = unknown>(statements: D1PreparedStatement[]) => {
      for (const s of statements) fail(sqlOf.get(s));
      return db.batch<T>(statements.map((s) => originals.get(s) ?? s));
    },
    exec: (query: string) => db.exec(query),
    withSession: (constraint?: D1SessionBookmark | D1SessionConstraint) => db.withSession(constraint),
    dump: () => db.dump(),
  };
  return { env: { ...base, DB: database as unknown as D1Database } as Env, failures: () => failed };
}
