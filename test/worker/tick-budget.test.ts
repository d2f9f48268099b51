// Every invocation stays within SUBREQUEST_BUDGET (D1 calls plus outbound requests, the work it
// leaves for after it included): Workers Free refuses the 51st. The cron tick only claims and sends,
// so it hands out a backlog of hundreds within the Free plan's 50; each consumer invocation works as
// much of one batch as its budget affords, counted call by call, measured here at each kind's worst
// case and at the ordinary case, and sends the rest back. And no job takes another's share:
// whatever one tenant's schedules cost, every other job's due rows go out in the same tick (issue 13).
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CONSUMER_BATCH_SIZE } from "../../src/cron/consumer";
import { COST, FINISH_DUE, FINISH_SCHEDULE, SEND_BACK, TAKE_BATCH } from "../../src/cron/costs";
import { runScheduledTick, WORK_JOBS } from "../../src/cron/dispatcher";
import type { WorkMessage } from "../../src/cron/work";
import { readConfig } from "../../src/env";
import { ScheduleCreateSchema } from "../../src/schemas/schedules";
import { createServiceContext } from "../../src/services/context";
import { INLINE_OUTPUT_MAX_BYTES } from "../../src/services/outputs";
import { createSchedule } from "../../src/services/schedules";
import {
  DELIVERY_BACKOFF_MS,
  DELIVERY_LEASE_MS,
  DELIVERY_TIMEOUT_MS,
  DISPATCH_BACKLOG_LEASES,
  dispatchLeaseUntil,
  FIRE_LEASE_MS,
  INLINE_RETRY_MAX_WAIT_MS,
} from "../../src/services/timing";
import wranglerToml from "../../wrangler.toml?raw";
import { attemptsOf, deliveriesOf, dueDelivery, RECEIVER, storeFinishedRun } from "./delivery-harness";
import {
  createTenant,
  emptyBackgroundWork,
  expectJson,
  fakeParallel,
  parallelError,
  postJson,
  resultReply,
  TEXT_RUN,
  taskRun,
} from "./harness";
import { capturingQueue, clockFrom, consume, consumeOnce } from "./queue-harness";
import { network } from "./setup";

const FREE = "50";

/** env.DB counting every call that reaches D1: a statement's run/all/first/raw, or one batch. */
function countingDatabase(db: D1Database) {
  let calls = 0;
  const originals = new WeakMap<object, D1PreparedStatement>();
  const wrap = (statement: D1PreparedStatement): D1PreparedStatement => {
    const counted = (<T>(call: () => T): T => {
      calls++;
      return call();
    }) as <T>(call: () => T) => T;
    const wrapped = {
      bind: (...values: unknown[]) => wrap(statement.bind(...values)),
      first: (column?: string) => counted(() => (column ? statement.first(column) : statement.first())),
      run: () => counted(() => statement.run()),
      all: () => counted(() => statement.all()),
      raw: (options?: { columnNames?: boolean }) =>
        counted(() => (options?.columnNames ? statement.raw({ columnNames: true }) : statement.raw())),
    };
    originals.set(wrapped, statement);
    return wrapped as unknown as D1PreparedStatement;
  };
  const database = {
    prepare: (query: string) => wrap(db.prepare(query)),
    batch: (statements: D1PreparedStatement[]) => {
      calls++;
      return db.batch(statements.map((s) => originals.get(s) ?? s));
    },
    exec: (query: string) => {
      calls++;
      return db.exec(query);
    },
  };
  return { database: database as unknown as D1Database, calls: () => calls };
}

/** `target` with each method call counted; `nested` names methods whose answer's calls count too. */
function countingMethods<T extends object>(target: T, count: () => void, nested: string[] = []): T {
  return new Proxy(target, {
    get(real, property) {
      const value: unknown = Reflect.get(real, property, real);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        count();
        const answer = (value as (...a: unknown[]) => unknown).apply(real, args);
        if (!nested.includes(String(property))) return answer;
        return (answer as Promise<object>).then((inner) => countingMethods(inner, count));
      };
    },
  });
}

/**
 * Counts what `work` costs against `env` with the counting D1: D1 calls, R2 operations (a multipart
 * upload's parts and completion each), outbound fetches; queue sends are the caller's to count.
 */
async function measured<T>(work: (counted: typeof env) => Promise<T>) {
  const d1 = countingDatabase(env.DB);
  let r2 = 0;
  const outputs = countingMethods(env.OUTPUTS, () => r2++, ["createMultipartUpload"]);
  const fetches = vi.spyOn(globalThis, "fetch");
  const result = await work({
    ...env,
    SUBREQUEST_BUDGET: FREE,
    POLL_TIME_SCALE: "0.001",
    DB: d1.database,
    OUTPUTS: outputs,
  });
  const outbound = fetches.mock.calls.length;
  fetches.mockRestore();
  return { result, cost: d1.calls() + r2 + outbound };
}

/** One cron tick at the Free plan's budget, its messages captured; its cost counted (sends included). */
async function measuredTick(at: Date) {
  const captured = capturingQueue();
  let sends = 0;
  const queue: Pick<Queue<WorkMessage>, "sendBatch"> = {
    sendBatch: (messages) => {
      sends++;
      return captured.queue.sendBatch(messages);
    },
  };
  const { result, cost } = await measured(async (counted) => {
    const ctx = createExecutionContext();
    const summaries = await runScheduledTick(counted, ctx, at, { queue });
    await waitOnExecutionContext(ctx);
    return summaries;
  });
  return { summaries: result, cost: cost + sends, messages: captured.take().map((m) => m.body) };
}

/**
 * One consumer invocation (a batch of at most CONSUMER_BATCH_SIZE) at the Free plan's budget, its
 * cost counted: D1 calls, outbound fetches, follow-up and sent-back messages.
 */
async function measuredBatch(messages: WorkMessage[], at: Date) {
  expect(messages.length).toBeLessThanOrEqual(CONSUMER_BATCH_SIZE);
  const followUps = capturingQueue();
  const { result, cost } = await measured((counted) =>
    consumeOnce(messages, { env: counted, now: clockFrom(at), queue: followUps.queue }),
  );
  return {
    ...result,
    followUps: followUps.sent,
    cost: cost + followUps.sent.length + (result.sentBack.length > 0 ? 1 : 0),
  };
}

/** A worked batch's messages add up: each worked, skipped, sent back or retried, none lost. */
function expectAllAccounted(batch: Awaited<ReturnType<typeof measuredBatch>>, job: string, worked: number) {
  const summary = batch.report[job] ?? {};
  expect(summary.messages).toBe(CONSUMER_BATCH_SIZE);
  expect(worked + Number(summary.sent_back) + Number(summary.not_due)).toBe(CONSUMER_BATCH_SIZE);
  expect(batch.sentBack).toHaveLength(Number(summary.sent_back));
  // Sent back is not a failure: acknowledged, not retried, so it never counts toward the dead-letter queue.
  expect(batch.result.retryMessages).toEqual([]);
  expect(batch.result.explicitAcks).toHaveLength(CONSUMER_BATCH_SIZE);
}

/** `count` runs created with a callback whose webhooks were all lost; a tick ten minutes on sends their polls. */
async function overduePolls(
  tenant: { auth: Record<string, string> } | Array<{ auth: Record<string, string> }>,
  count: number,
) {
  fakeParallel();
  // One tenant's runs, or one run of each tenant in turn (a batch whose deliveries share no key).
  const tenants = Array.isArray(tenant) ? tenant : [tenant];
  for (let i = 0; i < count; i++) {
    await expectJson(
      await postJson(
        "/v1/runs",
        { ...TEXT_RUN, callback: { url: RECEIVER } },
        (tenants[i % tenants.length] as { auth: Record<string, string> }).auth,
      ),
      202,
    );
  }
  network.resetHandlers();
  const at = new Date(Date.now() + 10 * 60_000);
  const { messages } = await measuredTick(at);
  expect(messages).toHaveLength(count);
  return { at, messages };
}

/** Parallel reports every run completed; each run's first /result answers 503, the next the result. */
function parallelFinishedEverything(output?: unknown) {
  const resultCalls = new Map<string, number>();
  return fakeParallel({
    retrieve: (call) =>
      HttpResponse.json(taskRun({ run_id: call.path.split("/")[4] ?? "", status: "completed" })),
    result: (call) => {
      const id = call.path.split("/")[4] ?? "";
      resultCalls.set(id, (resultCalls.get(id) ?? 0) + 1);
      return resultCalls.get(id) === 1 ? parallelError(503, "Service unavailable") : resultReply(id, output);
    },
  });
}

/** A receiver failing each delivery's first attempt (taskrelay retries 5 s later); counts the POSTs it got. */
function receiverFailingFirstAttempts() {
  const seen = new Set<string>();
  let posts = 0;
  network.use(
    http.post(RECEIVER, ({ request }) => {
      posts++;
      const id = request.headers.get("webhook-id") ?? "";
      if (seen.has(id)) return new HttpResponse(null, { status: 204 });
      seen.add(id);
      return new HttpResponse("not yet", { status: 503 });
    }),
  );
  return () => posts;
}

/** An output over INLINE_OUTPUT_MAX_BYTES: stored in R2 (one put), sent to callbacks as output_url. */
function largeOutput() {
  return {
    type: "text",
    content: "Research findings, in full. ".repeat(Math.ceil(INLINE_OUTPUT_MAX_BYTES / 25)),
  };
}

/** A poll's worst case for these runs (a callback, no schedule, not a batch's): the consumer's reservation. */
const POLL_WORST = COST.poll_runs - FINISH_SCHEDULE - FINISH_DUE;

/** `count` deliveries of finished runs, each refused once before and due for its retry now. */
async function storeDueDeliveries(apiKeyId: string, count: number, at: Date) {
  for (let i = 0; i < count; i++) {
    await dueDelivery({ id: apiKeyId }, new Date(at.getTime() - 1000), 1);
  }
}

/** `count` runs Parallel accepted whose webhooks were lost: all due for a poll now, in one statement. */
async function storeOverdueRuns(apiKeyId: string, count: number, prefix: string) {
  const at = new Date(Date.now() - 60_000).toISOString();
  await env.DB.prepare(
    `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?)
     INSERT INTO runs (id, api_key_id, parallel_run_id, status, processor, input, callback_url, created_at,
       updated_at, submitted_at, deadline_at, attempts, next_sweep_at)
     SELECT printf('run_%s%08d', ?, n), ?, printf('trun_%s%08d', ?, n), 'queued', 'base', '"q"', ?, ?, ?, ?,
       '2999-01-01T00:00:00.000Z', 0, ? FROM seq`,
  )
    .bind(count, prefix, apiKeyId, prefix, RECEIVER, at, at, at, at)
    .run();
}

async function newSchedule(apiKeyId: string, fields: Record<string, unknown>, at: Date) {
  const ctx = createServiceContext(env, createExecutionContext(), { now: () => at });
  const body = ScheduleCreateSchema.parse({
    name: "busy",
    cron: "* * * * *",
    timezone: "UTC",
    template: { processor: "base", input: "What changed?" },
    callback: { url: RECEIVER },
    ...fields,
  });
  return createSchedule(ctx, apiKeyId, body);
}

const finishedRuns = async () =>
  (await env.DB.prepare(
    "SELECT COUNT(*) AS n FROM runs WHERE status = 'completed' AND next_sweep_at IS NULL",
  ).first<number>("n")) ?? 0;

beforeEach(emptyBackgroundWork);

afterEach(() => {
  vi.restoreAllMocks();
});

describe("the tick budget", () => {
  it("hands out a backlog of 1,000 overdue runs in one tick within the Free plan's 50 calls", async () => {
    const tenant = await createTenant();
    await storeOverdueRuns(tenant.id, 1_000, "a");
    const { summaries, cost, messages } = await measuredTick(new Date());
    expect(cost).toBeLessThanOrEqual(50);
    // Ten pages of 100: one claim and one sendBatch each, beside the other jobs' empty claims.
    expect(summaries.poll_runs).toMatchObject({ claimed: 1_000, sent: 1_000 });
    expect(new Set(messages.map((m) => m.id)).size).toBe(1_000);
    expect(messages.every((m) => m.kind === "poll_runs" && m.lease)).toBe(true);
    // Leased to their messages: the next tick sends none of them again.
    const next = await measuredTick(new Date());
    expect(next.summaries.poll_runs).toMatchObject({ claimed: 0 });
  });

  it("leases a tick's later pages longer, as their messages wait behind the earlier ones; a page not taken in time goes again, under twice its lease", async () => {
    const tenant = await createTenant();
    await storeOverdueRuns(tenant.id, 600, "b");
    const at = new Date();
    const { messages } = await measuredTick(at);
    // As measuredTick's env: at its time scale the lease is LEASE_MS (30 s).
    const config = readConfig({ ...env, POLL_TIME_SCALE: "0.001" });
    const base = dispatchLeaseUntil(config, at).getTime() - at.getTime();
    const leaseOf = (m: WorkMessage | undefined) => Date.parse(m?.lease ?? "") - at.getTime();
    // Pages of 100: one lease for the first, one more for each page ahead, up to DISPATCH_BACKLOG_LEASES.
    expect([0, 100, 200, 300, 400, 500].map((i) => leaseOf(messages[i]) / base)).toEqual([1, 2, 3, 4, 4, 4]);
    expect(DISPATCH_BACKLOG_LEASES).toBe(4);
    // The queue is slow: past the first page's lease, only that page is due again, doubled.
    const later = new Date(at.getTime() + base + 1000);
    const again = await measuredTick(later);
    expect(again.summaries.poll_runs).toMatchObject({ claimed: 100 });
    expect(new Set(again.messages.map((m) => m.id))).toEqual(
      new Set(messages.slice(0, 100).map((m) => m.id)),
    );
    expect(Date.parse(again.messages[0]?.lease ?? "") - later.getTime()).toBe(2 * base);
  });

  it("keeps one consumer invocation of the dearest polls within 50 calls: /result refused once, the output to R2, the callback refused; its retry a delayed message", async () => {
    const tenant = await createTenant();
    const { at, messages } = await overduePolls(tenant, CONSUMER_BATCH_SIZE);
    // The worst case: found completed, /result refused once, an output too large for D1, the callback refused once.
    parallelFinishedEverything(largeOutput());
    const posts = receiverFailingFirstAttempts();
    const batch = await measuredBatch(messages, at);
    const worked = Number(batch.report.poll_runs?.finished);
    expect(batch.cost).toBeLessThanOrEqual(50);
    expect(batch.cost).toBeLessThanOrEqual(TAKE_BATCH + SEND_BACK + worked * POLL_WORST);
    // Each: the poll, /result twice, the R2 put, the callback once and its retry's message, and writes.
    expect(batch.cost).toBeGreaterThan(worked * 8);
    // Three worst cases fit from the start; the cheaper end of each made room for one more.
    expect(worked).toBeGreaterThanOrEqual(3);
    expect(worked).toBeLessThan(CONSUMER_BATCH_SIZE);
    expectAllAccounted(batch, "poll_runs", worked);
    expect(batch.calls).toBe(batch.cost);
    expect(await finishedRuns()).toBe(worked);
    const stored = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM runs WHERE output_key IS NOT NULL",
    ).first<number>("n");
    expect(stored).toBe(worked);
    // No retry waited for inside the batch: one POST a delivery, and its retry a delayed
    // retry_deliveries message under the lease the delivery keeps until then (its next attempt's
    // time plus DELIVERY_LEASE_MS), due when the backoff says.
    expect(posts()).toBe(worked);
    expect(batch.followUps).toHaveLength(worked);
    const deliveries = await env.DB.prepare(
      "SELECT id, status, attempt_count, next_attempt_at, lease_until FROM deliveries ORDER BY id",
    ).all<{
      id: string;
      status: string;
      attempt_count: number;
      next_attempt_at: string;
      lease_until: string;
    }>();
    expect(deliveries.results).toHaveLength(worked);
    for (const delivery of deliveries.results) {
      expect(delivery).toMatchObject({ status: "pending", attempt_count: 1 });
      const message = batch.followUps.find((m) => m.body.id === delivery.id);
      expect(message?.body).toEqual({
        kind: "retry_deliveries",
        id: delivery.id,
        lease: delivery.lease_until,
      });
      expect(Date.parse(delivery.lease_until) - Date.parse(delivery.next_attempt_at)).toBe(DELIVERY_LEASE_MS);
    }
    // The delayed messages, delivered, send the retries; the sent-back polls hold their rows under
    // the lease their take renewed: the next invocation works them.
    const rest = await consume([...batch.sentBack, ...batch.followUps.map((m) => m.body)], {
      env: { ...env, POLL_TIME_SCALE: "0.001" },
      now: clockFrom(new Date(at.getTime() + 1_000)),
    });
    expect(rest.report.poll_runs).toMatchObject({ finished: CONSUMER_BATCH_SIZE - worked, not_due: 0 });
    expect(rest.report.retry_deliveries).toMatchObject({ succeeded: worked });
    expect(await finishedRuns()).toBe(CONSUMER_BATCH_SIZE);
  });

  it("works an ordinary batch of polls in one invocation within 50 calls: one take for all, calls counted as made", async () => {
    const tenant = await createTenant();
    const { at, messages } = await overduePolls(tenant, CONSUMER_BATCH_SIZE);
    // The ordinary recovery: found completed, the result read, the callback accepted.
    fakeParallel({
      retrieve: (call) =>
        HttpResponse.json(taskRun({ run_id: call.path.split("/")[4] ?? "", status: "completed" })),
      result: (call) => resultReply(call.path.split("/")[4] ?? ""),
    });
    network.use(http.post(RECEIVER, () => new HttpResponse(null, { status: 204 })));
    const batch = await measuredBatch(messages, at);
    const worked = Number(batch.report.poll_runs?.finished);
    expect(batch.cost).toBeLessThanOrEqual(50);
    expectAllAccounted(batch, "poll_runs", worked);
    // Five: reserving every message's worst case until it ended allowed 4 (issue 14), up front 2.
    expect(worked).toBe(CONSUMER_BATCH_SIZE);
    expect(await finishedRuns()).toBe(CONSUMER_BATCH_SIZE);
    // The consumer's own count is exact, callback POSTs included: 1 take + 7 a poll, less the
    // signing secrets of the one key, read once for the whole batch.
    expect(batch.calls).toBe(batch.cost);
    expect(batch.cost).toBe(TAKE_BATCH + 7 + (CONSUMER_BATCH_SIZE - 1) * 6);
    expect(batch.followUps).toEqual([]);
  });

  it("starts the next message as soon as the ones working spare part of their worst case, not when they end", async () => {
    const tenant = await createTenant();
    const { at, messages } = await overduePolls(tenant, 4);
    fakeParallel({
      retrieve: (call) =>
        HttpResponse.json(taskRun({ run_id: call.path.split("/")[4] ?? "", status: "completed" })),
      result: (call) => resultReply(call.path.split("/")[4] ?? ""),
    });
    // Three worst cases fill the budget at the start. Their callbacks are held until the fourth
    // message's callback arrives: only sparing (a small result, finished with it) lets it start.
    let release = () => {};
    const fourth = new Promise<void>((resolve) => {
      release = resolve;
    });
    let posts = 0;
    let answeredBeforeFourth = 0;
    let fourthArrived = false;
    network.use(
      http.post(RECEIVER, async () => {
        posts++;
        if (posts <= 3) {
          // A way out should the fourth never start (3 s, inside the test's 5 s).
          await Promise.race([fourth, new Promise((resolve) => setTimeout(resolve, 3_000))]);
          if (!fourthArrived) answeredBeforeFourth++;
        } else {
          fourthArrived = true;
          release();
        }
        return new HttpResponse(null, { status: 204 });
      }),
    );
    expect(TAKE_BATCH + 4 * POLL_WORST + SEND_BACK).toBeGreaterThan(50);
    const followUps = capturingQueue();
    const { result, cost } = await measured((counted) =>
      consumeOnce(messages, { env: counted, now: clockFrom(at), queue: followUps.queue }),
    );
    expect(result.report.poll_runs).toMatchObject({ finished: 4, sent_back: 0 });
    expect(answeredBeforeFourth).toBe(0);
    expect(cost).toBe(TAKE_BATCH + 7 + 3 * 6);
  });

  it("does not start a sixth ordinary poll of six keys: its worst case does not fit beside five done, so the batch stays at five", async () => {
    const tenants = [];
    for (let i = 0; i < CONSUMER_BATCH_SIZE + 1; i++) tenants.push(await createTenant(`key${i}`));
    const { at, messages } = await overduePolls(tenants, CONSUMER_BATCH_SIZE + 1);
    fakeParallel({
      retrieve: (call) =>
        HttpResponse.json(taskRun({ run_id: call.path.split("/")[4] ?? "", status: "completed" })),
      result: (call) => resultReply(call.path.split("/")[4] ?? ""),
    });
    network.use(http.post(RECEIVER, () => new HttpResponse(null, { status: 204 })));
    const followUps = capturingQueue();
    const { result, cost } = await measured((counted) =>
      consumeOnce(messages, { env: counted, now: clockFrom(at), queue: followUps.queue }),
    );
    expect(result.report.poll_runs).toMatchObject({ finished: CONSUMER_BATCH_SIZE, sent_back: 1 });
    // Five done cost 36 (no key twice: each reads its signing secrets); the sixth's worst case and
    // the send-back would pass 50. (Of one key, six fit: 1 + 7 + 5 × 6 = 38, and 38 + 16 + 1 > 50.)
    expect(cost).toBe(TAKE_BATCH + CONSUMER_BATCH_SIZE * 7);
    expect(cost + POLL_WORST + SEND_BACK).toBeGreaterThan(50);
    expect(result.calls).toBe(cost + SEND_BACK);
  });

  it("works fifteen ordinary delivery retries of one key in one invocation within 50 calls (six at a time), sending back the rest", async () => {
    const tenant = await createTenant();
    const at = new Date();
    await storeDueDeliveries(tenant.id, 18, at);
    const { messages } = await measuredTick(at);
    expect(messages.filter((m) => m.kind === "retry_deliveries")).toHaveLength(18);
    network.use(http.post(RECEIVER, () => new HttpResponse(null, { status: 204 })));
    const followUps = capturingQueue();
    const { result, cost } = await measured((counted) =>
      consumeOnce(messages, { env: counted, now: clockFrom(at), queue: followUps.queue }),
    );
    const worked = Number(result.report.retry_deliveries?.succeeded);
    // Each: the run and the signing secrets, the POST, the attempt recorded (4 of a worst case of 5);
    // the key's secrets read once for the batch, so 3 after the first (of different keys: 4, and 11 fit).
    expect(cost).toBe(TAKE_BATCH + 4 + (worked - 1) * 3);
    expect(result.calls).toBe(cost + SEND_BACK);
    expect(result.calls).toBeLessThanOrEqual(50);
    expect(worked).toBe(15);
    expect(cost + COST.retry_deliveries + SEND_BACK).toBeGreaterThan(50);
    expect(result.sentBack).toHaveLength(18 - worked);
  });

  it("does not wait inside a queue message for a refused callback's retry: 5 s later it is a delayed message, the lease held until then", async () => {
    const tenant = await createTenant();
    const at = new Date();
    // A run whose finishing was cut off: the finish_runs job creates its delivery and sends it.
    const run = await storeFinishedRun(tenant.id, {
      next_sweep_at: new Date(at.getTime() - 1000).toISOString(),
    });
    const { messages } = await measuredTick(at);
    expect(messages).toEqual([expect.objectContaining({ kind: "finish_runs", id: run.id })]);
    const posts = receiverFailingFirstAttempts();
    const followUps = capturingQueue();
    const once = await consumeOnce(messages, { now: clockFrom(at), queue: followUps.queue });
    expect(once.report.finish_runs).toMatchObject({ finished: 1 });
    expect(posts()).toBe(1);
    const [delivery] = await deliveriesOf(run.id);
    expect(delivery).toMatchObject({ status: "pending", attempt_count: 1 });
    const { next_attempt_at: next, lease_until: lease } = delivery as {
      next_attempt_at: string;
      lease_until: string;
    };
    expect(Date.parse(lease) - Date.parse(next)).toBe(DELIVERY_LEASE_MS);
    // The backoff as before: the second attempt 5 s (scaled, ±10 %) after the first, to the second.
    const [followUp] = followUps.take();
    expect(followUp?.body).toEqual({ kind: "retry_deliveries", id: delivery?.id, lease });
    const wait = (DELIVERY_BACKOFF_MS[1] as number) * readConfig(env).TIME_SCALE;
    expect(followUp?.delaySeconds).toBeGreaterThanOrEqual(Math.floor((wait * 0.9) / 1000));
    expect(followUp?.delaySeconds).toBeLessThanOrEqual(Math.ceil((wait * 1.1) / 1000));
    // Due, the delayed message sends the retry.
    const second = await consumeOnce([followUp?.body as WorkMessage], {
      now: clockFrom(new Date(Date.parse(next))),
    });
    expect(second.report.retry_deliveries).toMatchObject({ succeeded: 1 });
    expect((await attemptsOf(delivery?.id ?? "")).map((a) => a.status_code)).toEqual([503, 204]);
  });

  it("keeps one consumer invocation of the dearest schedules within 50 calls: refused creates, callbacks refused once", async () => {
    const tenant = await createTenant();
    const at = new Date("2026-06-01T09:00:00Z");
    for (let i = 0; i < CONSUMER_BATCH_SIZE; i++) await newSchedule(tenant.id, { overlap: "skip" }, at);
    const { messages } = await measuredTick(new Date("2026-06-01T09:01:00Z"));
    expect(messages.map((m) => m.kind)).toEqual(Array(CONSUMER_BATCH_SIZE).fill("fire_schedules"));
    fakeParallel({ create: () => parallelError(422, "Unprocessable content: request validation error") });
    receiverFailingFirstAttempts();
    const batch = await measuredBatch(messages, new Date("2026-06-01T09:01:00Z"));
    const worked = Number(batch.report.fire_schedules?.fired);
    expect(worked).toBeGreaterThanOrEqual(2);
    expect(batch.cost).toBeLessThanOrEqual(50);
    expect(batch.cost).toBeLessThanOrEqual(TAKE_BATCH + SEND_BACK + worked * COST.fire_schedules);
    expectAllAccounted(batch, "fire_schedules", worked);
  });

  it("sizes the consumer's batch (wrangler.toml) so that any message fits a fresh invocation", () => {
    const configured = /queue = "taskrelay-work"\s*\nmax_batch_size = (\d+)/.exec(wranglerToml)?.[1];
    expect(Number(configured)).toBe(CONSUMER_BATCH_SIZE);
    // Every message can be worked by some invocation, so sending back always makes progress.
    const dearest = Math.max(...WORK_JOBS.map((job) => job.cost));
    expect(TAKE_BATCH + SEND_BACK + dearest).toBeLessThanOrEqual(50);
  });

  it("leases a schedule for longer than the worst case of firing it", () => {
    // One message fires one schedule: the create (15 s timeout), and when Parallel refuses it the
    // callback's first attempt and inline retry (15 s each, 5 s apart), D1 calls aside.
    const worstMs = 15_000 + 2 * DELIVERY_TIMEOUT_MS + INLINE_RETRY_MAX_WAIT_MS;
    expect(FIRE_LEASE_MS).toBeGreaterThan(worstMs * 2);
  });
});

describe("no job takes another's share (issue 13)", () => {
  it("two every-minute schedules of one tenant leave every other job's due work in the same tick", async () => {
    const busy = await createTenant("busy");
    const other = await createTenant("other");
    const at = new Date();
    await newSchedule(busy.id, {}, new Date(at.getTime() - 120_000));
    await newSchedule(busy.id, {}, new Date(at.getTime() - 120_000));
    // The other tenant: a run overdue for its poll, a submission due again, a callback due for a retry.
    await storeOverdueRuns(other.id, 1, "poll");
    fakeParallel({ create: () => parallelError(503, "Service unavailable") });
    const submitting = await expectJson<{ id: string }>(
      await postJson("/v1/runs", TEXT_RUN, other.auth),
      202,
    );
    network.resetHandlers();
    await env.DB.prepare("UPDATE runs SET next_sweep_at = ?, lease_until = NULL WHERE id = ?")
      .bind(new Date(at.getTime() - 1000).toISOString(), submitting.id)
      .run();
    await dueDelivery(other, new Date(at.getTime() - 1000), 2);

    const { summaries, cost, messages } = await measuredTick(at);
    expect(cost).toBeLessThanOrEqual(50);
    expect(summaries).toMatchObject({
      fire_schedules: { claimed: 2, sent: 2 },
      retry_deliveries: { claimed: 1, sent: 1 },
      poll_runs: { claimed: 1, sent: 1 },
      resubmit_runs: { claimed: 1, sent: 1 },
    });

    // Each message has its own budget: working them all (in batches, as Queues would) does it all.
    const parallel = fakeParallel({
      retrieve: (call) =>
        HttpResponse.json(taskRun({ run_id: call.path.split("/")[4] ?? "", status: "running" })),
    });
    network.use(http.post(RECEIVER, () => new HttpResponse(null, { status: 204 })));
    const { report } = await consume(messages, { now: clockFrom(at) });
    expect(report).toMatchObject({
      fire_schedules: { fired: 2 },
      retry_deliveries: { succeeded: 1 },
      poll_runs: { still_active: 1 },
      resubmit_runs: { accepted: 1 },
    });
    expect(parallel.creates()).toHaveLength(3);
  });

  it("fires seven schedules due in the same minute with missed: skip, none skipped for lack of budget", async () => {
    const tenant = await createTenant();
    const created = new Date("2026-06-01T08:00:00Z");
    const schedules = [];
    for (let i = 0; i < 7; i++)
      schedules.push(await newSchedule(tenant.id, { cron: "0 9 * * *", missed: "skip" }, created));
    const at = new Date("2026-06-01T09:00:00Z");
    const { summaries, cost, messages } = await measuredTick(at);
    expect(cost).toBeLessThanOrEqual(50);
    expect(summaries.fire_schedules).toMatchObject({ claimed: 7, sent: 7 });
    const parallel = fakeParallel();
    // Queues works the batches whenever it can; a minute late is still on time.
    const { report } = await consume(messages, { now: clockFrom(new Date("2026-06-01T09:01:00Z")) });
    expect(report.fire_schedules).toMatchObject({ fired: 7, skipped_missed: 0 });
    expect(parallel.creates()).toHaveLength(7);
  });
});
