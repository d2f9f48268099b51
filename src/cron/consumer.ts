// The queue consumer: takes the rows of a batch's messages back in one D1 batch, works them
// concurrently (at most CONNECTIONS at once), acknowledges each on its own, and retries it with
// backoff when its work throws; after the queue's max_retries such a message goes to the dead-letter
// queue, whose consumer records it (`dead_letters`, counted by GET /healthz).
//
// Each invocation has its own SUBREQUEST_BUDGET. A message starts only while the calls the
// invocation has made, plus the worst case (costs.ts) of every message still working, plus its own,
// fit; every call is counted as it is made (invocation-calls.ts), so a message that costs less than
// its worst case makes room for the next. What does not fit goes back to the queue as new messages
// (one sendBatch) and is acknowledged: a message.retry() would count toward max_retries and
// dead-letter work that never failed.
//
// The same code consumes both queues (work.ts: the work queue and the deliveries queue); every
// message it sends, a delayed follow-up or a sent-back one, goes to its job's queue.
import { recordDeadLetter } from "../db/dead-letters";
import { findSigningSecrets, type SigningSecrets } from "../db/keys";
import { usageSince } from "../db/metered";
import { type Env, readConfig } from "../env";
import { createGatheringLogger, describeError } from "../log";
import { createServiceContext, type ServiceContext } from "../services/context";
import { addMs, deadLetterHoldUntil } from "../services/timing";
import { RELEASE, SEND_BACK } from "./costs";
import { WORK_JOBS } from "./dispatcher";
import { type CallCount, countedBindings } from "./invocation-calls";
import {
  count,
  emptySummary,
  type HeldRow,
  type Leased,
  queueBinding,
  type WorkJob,
  type WorkMessage,
  WorkMessageSchema,
  type WorkSummary,
} from "./work";

/**
 * As wrangler.toml's max_batch_size: what one Free invocation affords in the ordinary case. A poll
 * that finds its run completed, reads the result and has its callback accepted costs 7 calls against
 * a worst case of 16 (a callback, no schedule), so five fit in 50 (test/worker/tick-budget.test.ts):
 * three start at once, the fourth once their small results and finishing spared part of their worst
 * cases, the fifth once they end; a sixth would not start (its worst case does not fit beside five done).
 * The worst case is never at stake: a message starts only within SUBREQUEST_BUDGET, and one that
 * does not fit goes back to the queue.
 */
export const CONSUMER_BATCH_SIZE = 5;

/** Cloudflare's simultaneous open connections per invocation: at most this many messages work at once. */
export const CONNECTIONS = 6;

/** As in wrangler.toml: the queue whose messages kept failing, the work queue's and the deliveries'. */
export const DEAD_LETTER_QUEUE = "taskrelay-work-dead";

/** As wrangler.toml's max_retries: a message whose try number MAX_RETRIES + 1 fails is dead-lettered. */
export const MAX_RETRIES = 3;

/**
 * As wrangler.toml's max_batch_size of the deliveries queue: a delivery retry costs at most
 * COST.retry_deliveries (5), so nine fit a Free invocation at their worst case beside the take and
 * a send-back (1 + 9 × 5 + 1 = 47): none is ever sent back (test/worker/queue-split.test.ts).
 */
export const DELIVERY_BATCH_SIZE = 9;

/** The wait before a failed message's next try: 10 s, 20 s, 40 s… (Queues' delays are in seconds). */
export function failedRetryDelaySeconds(attempts: number): number {
  return Math.min(10 * 2 ** Math.max(0, attempts - 1), 600);
}

export interface ConsumeOptions {
  now?: () => Date;
  jobs?: ReadonlyArray<WorkJob>;
  /** Where follow-up and sent-back messages go: their job's queue's binding unless a test captures them. */
  queue?: Pick<Queue<WorkMessage>, "send" | "sendBatch">;
}

interface Taken {
  message: Message<unknown>;
  job: WorkJob;
  body: WorkMessage;
  item: Leased;
  /** The item's worst case (costs.ts). */
  cost: number;
}

export async function consumeWork(
  batch: MessageBatch<unknown>,
  env: Env,
  execution: Pick<ExecutionContext, "waitUntil">,
  options: ConsumeOptions = {},
): Promise<{ jobs: Record<string, WorkSummary>; calls: number }> {
  const jobs = new Map((options.jobs ?? WORK_JOBS).map((job) => [job.name, job]));
  const log = createGatheringLogger({ queue: batch.queue }, readConfig(env).LOG_LEVEL);
  const startedAt = Date.now();
  const clock = options.now ? { now: options.now } : {};
  const budget = readConfig(env).SUBREQUEST_BUDGET;
  const report: Record<string, WorkSummary> = {};
  const summaryOf = (job: WorkJob) => {
    report[job.name] ??= emptySummary(job, { messages: 0, not_due: 0, sent_back: 0, retried: 0 });
    return report[job.name] as WorkSummary;
  };
  // The invocation's own calls (the takes, follow-up and sent-back messages), then each message's.
  const own: CallCount = { calls: 0 };
  const shared = countedBindings(env, own);
  const takeCtx = createServiceContext(shared.env, execution, { log, parallel: shared.parallel, ...clock });
  const contexts: ServiceContext[] = [takeCtx];
  /** Retries the message with backoff; returns when its row is due again (the retry, or after a dead letter). */
  const failed = (message: Message<unknown>, job: WorkJob, id: string, error: unknown): Date => {
    const summary = summaryOf(job);
    summary.errors = (summary.errors ?? 0) + 1;
    summary.retried = (summary.retried ?? 0) + 1;
    log.error("queue.work_failed", {
      job: job.name,
      id,
      attempts: message.attempts,
      error: describeError(error),
    });
    const now = takeCtx.now();
    const delaySeconds = failedRetryDelaySeconds(message.attempts);
    message.retry({ delaySeconds });
    // The last try goes to the dead-letter queue: the row waits out the hold before the tick sends it again.
    return message.attempts > MAX_RETRIES
      ? deadLetterHoldUntil(takeCtx.config, now)
      : addMs(now, delaySeconds * 1000);
  };
  /** Gives rows back (WorkJob.release), due at `at`; should that fail, their leases run out as before. */
  const release = async (ctx: ServiceContext, job: WorkJob, held: HeldRow[], at: Date) => {
    try {
      const released = await job.release(ctx, held, at, ctx.now());
      const summary = summaryOf(job);
      summary.released = (summary.released ?? 0) + released;
    } catch (error) {
      log.error("queue.release_failed", { job: job.name, rows: held.length, error: describeError(error) });
    }
  };

  // 1. Every message's row taken back in one D1 batch (one call), whatever the kinds.
  shared.database.collect();
  const takes: Array<Promise<Taken | null>> = [];
  for (const message of batch.messages) {
    const parsed = WorkMessageSchema.safeParse(message.body);
    const job = parsed.success ? jobs.get(parsed.data.kind) : undefined;
    if (!parsed.success || !job) {
      // Not a message of ours: retried, then dead-lettered, where it shows.
      log.error("queue.bad_message", { message_id: message.id, attempts: message.attempts });
      message.retry({ delaySeconds: failedRetryDelaySeconds(message.attempts) });
      continue;
    }
    const body = parsed.data;
    const summary = summaryOf(job);
    summary.messages = (summary.messages ?? 0) + 1;
    takes.push(
      job.take(takeCtx, body.id, body.lease, takeCtx.now()).then(
        (item) => {
          if (item) {
            return { message, job, body, item, cost: job.worstCase?.(item) ?? job.cost };
          }
          // Someone else holds it (a newer message, the fast path) or it is no longer due: done.
          summary.not_due = (summary.not_due ?? 0) + 1;
          message.ack();
          return null;
        },
        (error: unknown) => {
          failed(message, job, body.id, error);
          return null;
        },
      ),
    );
  }
  await shared.database.flush();
  const takenAt = takeCtx.now().getTime();
  const waiting = (await Promise.all(takes)).filter((t): t is Taken => t !== null);

  // 2. Worked concurrently, each message started only within the budget.
  // A message's reservation starts at its worst case and drops as its work spares parts of it
  // (ctx.spare); it never counts for less than the calls the message has made.
  interface Slot {
    reserved: number;
    calls: CallCount;
  }
  const inFlight = new Map<Promise<void>, Slot>();
  let spentByFinished = 0;
  const committed = () => {
    let total = own.calls + spentByFinished;
    for (const m of inFlight.values()) total += Math.max(m.reserved, m.calls.calls);
    return total;
  };
  // Wakes the admission loop when a reservation drops, so the next message starts right then.
  let wake = () => {};
  const lowered = () =>
    new Promise<void>((resolve) => {
      wake = resolve;
    });
  // A delayed message for a job's row: due again at `later.at`, held under `later.lease` until then.
  const sendLater = async (
    job: WorkJob,
    id: string,
    later: { at: string; lease: string },
    calls: CallCount,
  ) => {
    // The job's own queue (deliveries have theirs), unless a test captures the messages.
    const queue = options.queue ?? queueBinding(env, job.queue);
    const delaySeconds = Math.max(0, Math.ceil((Date.parse(later.at) - takeCtx.now().getTime()) / 1000));
    calls.calls++;
    await queue.send({ kind: job.name, id, lease: later.lease }, { delaySeconds });
  };
  const deliveryRetries = jobs.get("retry_deliveries");
  // A key's signing secrets, read once in this invocation by the first message that needs them
  // (counted in its calls) and shared by the others, each of which spares the read it did not make.
  // A rotation meanwhile is safe: the replaced secret keeps signing for its 24 h overlap.
  const secrets = new Map<string, Promise<SigningSecrets | null>>();
  const sharedSecrets = (db: D1Database, spare: (calls: number) => void) => (apiKeyId: string) => {
    const known = secrets.get(apiKeyId);
    if (known) {
      spare(1);
      return known;
    }
    const read = findSigningSecrets(db, apiKeyId);
    secrets.set(apiKeyId, read);
    // A failed read is not shared: the next message reads again.
    read.catch(() => secrets.delete(apiKeyId));
    return read;
  };
  const work = async (taken: Taken, slot: Slot) => {
    const { message, job, body, item } = taken;
    const { calls } = slot;
    const bindings = countedBindings(env, calls);
    const spare = (spared: number) => {
      slot.reserved -= spared;
      wake();
    };
    const ctx = createServiceContext(bindings.env, execution, {
      log,
      parallel: bindings.parallel,
      fetch: bindings.fetch,
      ...clock,
      spare,
      signingSecrets: sharedSecrets(bindings.env.DB, spare),
      // A refused callback's retry is a delayed message, not a wait that holds the batch (issue 14).
      ...(deliveryRetries
        ? { retryDeliveryLater: (id, later) => sendLater(deliveryRetries, id, later, calls) }
        : {}),
    });
    contexts.push(ctx);
    try {
      const worked = await job.work(ctx, item, ctx.now());
      count(summaryOf(job), worked.outcomes);
      if (worked.later) await sendLater(job, body.id, worked.later, calls);
      message.ack();
    } catch (error) {
      const at = failed(message, job, body.id, error);
      // Its row back under the lease this take gave it, due for the retry: without this the retry
      // found the row held by the take's (or its work's) renewed lease and was acknowledged as not
      // due, and the row waited for the lease. Only while that lease is still ours (it has not run
      // out) and the call fits: within the message's own reservation (its worst case less what it
      // spared: others may have started in what it spared), or in what is left of the budget.
      const lease = item.lease_until;
      const ours = lease !== null && Date.parse(lease) > ctx.now().getTime();
      const fits = calls.calls + RELEASE <= slot.reserved || committed() + RELEASE + SEND_BACK <= budget;
      if (ours && fits) await release(ctx, job, [{ id: body.id, lease }], at);
    }
    // Done once what it left for after it (its callback's attempts) is done too.
    await ctx.settled();
  };
  const sendBack: Taken[] = [];
  while (waiting.length > 0) {
    // A row taken long ago may have lost its lease by now: its message goes back rather than work it.
    const stale = waiting.findIndex((t) => leaseHalfGone(t.item, takenAt, takeCtx.now().getTime()));
    if (stale >= 0) {
      sendBack.push(...waiting.splice(stale, 1));
      continue;
    }
    const next = waiting.findIndex((t) => committed() + t.cost + SEND_BACK <= budget);
    if (next >= 0 && inFlight.size < CONNECTIONS) {
      const [taken] = waiting.splice(next, 1) as [Taken];
      const slot: Slot = { reserved: taken.cost, calls: { calls: 0 } };
      const running: Promise<void> = work(taken, slot).finally(() => {
        inFlight.delete(running);
        spentByFinished += slot.calls.calls;
      });
      inFlight.set(running, slot);
      continue;
    }
    // Nothing more fits while nothing is working: the rest go back.
    if (inFlight.size === 0) break;
    await Promise.race([...inFlight.keys(), lowered()]);
  }
  await Promise.all(inFlight.keys());
  sendBack.push(...waiting.splice(0));

  // 3. What did not fit goes back as new messages, under the lease its take renewed.
  if (sendBack.length > 0) {
    try {
      // To each message's job's queue. A batch holds its own queue's kinds, so this is one call
      // (SEND_BACK); only a work-queue batch of messages sent before deliveries had their own queue
      // can need two (should the second fail, all are retried as below: a duplicate at most).
      for (const name of new Set(sendBack.map((t) => t.job.queue))) {
        const queue = options.queue ?? queueBinding(env, name);
        const messages = sendBack.filter((t) => t.job.queue === name);
        own.calls++;
        await queue.sendBatch(
          messages.map((t) => ({
            body: { kind: t.job.name, id: t.body.id, lease: t.item.lease_until ?? "" },
          })),
        );
      }
      for (const t of sendBack) {
        const summary = summaryOf(t.job);
        summary.sent_back = (summary.sent_back ?? 0) + 1;
        t.message.ack();
      }
    } catch (error) {
      // Not sent: Queues delivers the messages again (this counts as a retry), and their rows are
      // given back, due now, so the redelivered messages take them (any of a row's messages may) or
      // else the next tick sends them: one statement a job, when it fits what is left of the budget.
      log.error("queue.send_back_failed", { messages: sendBack.length, error: describeError(error) });
      for (const t of sendBack) t.message.retry({ delaySeconds: 0 });
      const byJob = new Map<WorkJob, HeldRow[]>();
      for (const t of sendBack) {
        if (!t.item.lease_until) continue;
        byJob.set(t.job, [...(byJob.get(t.job) ?? []), { id: t.body.id, lease: t.item.lease_until }]);
      }
      for (const [job, held] of byJob) {
        if (committed() + RELEASE > budget) break;
        await release(takeCtx, job, held, takeCtx.now());
      }
    }
  }

  const calls = own.calls + spentByFinished;
  const before = { d1_queries: 0, d1_rows_read: 0, d1_rows_written: 0 };
  execution.waitUntil(
    Promise.all(contexts.map((c) => c.settled())).then(() => {
      const usage = { ...before };
      for (const c of contexts) {
        const spent = usageSince(c.usage, before);
        usage.d1_queries += spent.d1_queries;
        usage.d1_rows_read += spent.d1_rows_read;
        usage.d1_rows_written += spent.d1_rows_written;
      }
      log.flush("queue.batch", {
        messages: batch.messages.length,
        latency_ms: Date.now() - startedAt,
        calls,
        budget,
        ...usage,
        jobs: report,
      });
      log.close();
    }),
  );
  return { jobs: report, calls };
}

/** Whether less than half of the lease a row was taken with is left. */
function leaseHalfGone(item: Leased, takenAt: number, now: number): boolean {
  const until = item.lease_until ? Date.parse(item.lease_until) : takenAt;
  return until - now < (until - takenAt) / 2;
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
