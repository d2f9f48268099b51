// The queue consumer through the Worker's own queue() handler, with batches from cloudflare:test's
// createMessageBatch and what it acknowledged and retried from getQueueResult, on real migrations:
// per-message acks and retries, leases that make a lost message's row due again, a stale duplicate
// skipped, delivery retries as delayed messages that keep their schedule, and the dead-letter queue.
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { beforeEach, describe, expect, it } from "vitest";
import {
  consumeWork,
  DEAD_LETTER_QUEUE,
  failedRetryDelaySeconds,
  MAX_RETRIES,
} from "../../src/cron/consumer";
import { COST, runWorstCase } from "../../src/cron/costs";
import { runScheduledTick } from "../../src/cron/dispatcher";
import { pollRunsJob } from "../../src/cron/jobs/poll-runs";
import type { WorkMessage } from "../../src/cron/work";
import { readConfig } from "../../src/env";
import worker from "../../src/index";
import { createServiceContext } from "../../src/services/context";
import {
  DELIVERY_BACKOFF_MS,
  DELIVERY_LEASE_MS,
  deadLetterHoldUntil,
  dispatchLeaseUntil,
  LEASE_MS,
} from "../../src/services/timing";
import { attemptsOf, dueDelivery, RECEIVER, storeFinishedRun } from "./delivery-harness";
import {
  ADMIN,
  api,
  createTenant,
  emptyBackgroundWork,
  expectJson,
  fakeParallel,
  resultReply,
  type Tenant,
  taskRun,
} from "./harness";
import { capturingQueue, clockFrom, consume, consumeOnce, failingD1, tickAndWork } from "./queue-harness";
import { network } from "./setup";

const config = readConfig(env);

let ids = 0;
function batchOf(queue: string, bodies: unknown[], attempts = 1) {
  return createMessageBatch(
    queue,
    bodies.map((body) => ({ id: `m${++ids}`, timestamp: new Date(), attempts, body })),
  );
}

/** A batch through the Worker's queue() handler, as Cloudflare delivers it; what it acked and retried. */
async function deliverToWorker(queue: string, bodies: unknown[], attempts = 1) {
  const batch = batchOf(queue, bodies, attempts);
  const ctx = createExecutionContext();
  await worker.queue(batch as MessageBatch<unknown>, env, ctx);
  const result = await getQueueResult(batch, ctx);
  return { ids: batch.messages.map((m) => m.id), result };
}

async function tickAt(at: Date) {
  const captured = capturingQueue();
  await runScheduledTick(env, createExecutionContext(), at, { queue: captured.queue });
  return captured.take().map((m) => m.body);
}

/** `count` active runs whose webhooks were lost, due for a poll at `due`. */
async function storeOverdueRuns(tenant: Tenant, count: number, due: Date) {
  const at = due.toISOString();
  const stored: string[] = [];
  for (let i = 0; i < count; i++) {
    const run = await storeFinishedRun(tenant.id, {
      status: "queued",
      output: null,
      error: null,
      finished_at: null,
      result_stored_at: null,
      callback_url: null,
      deadline_at: "2999-01-01T00:00:00.000Z",
      next_sweep_at: at,
    });
    stored.push(run.id);
  }
  return stored;
}

function parallelReportingRunning() {
  return fakeParallel({
    retrieve: (call) =>
      HttpResponse.json(
        taskRun({ run_id: call.path.split("/")[4] ?? "", status: "running", is_active: true }),
      ),
  });
}

const row = (table: string, id: string) =>
  env.DB.prepare(`SELECT * FROM ${table} WHERE id = ?`).bind(id).first<Record<string, unknown>>();

beforeEach(emptyBackgroundWork);

describe("the queue consumer", () => {
  it("works and acknowledges each message on its own, through the Worker's queue() handler", async () => {
    const tenant = await createTenant();
    const now = new Date();
    const [a, b] = await storeOverdueRuns(tenant, 2, new Date(now.getTime() - 1000));
    const messages = await tickAt(now);
    expect(messages.map((m) => m.id).sort()).toEqual([a, b].sort());
    const parallel = parallelReportingRunning();
    const { ids: sent, result } = await deliverToWorker("taskrelay-work", messages);
    expect(result.explicitAcks.sort()).toEqual([...sent].sort());
    expect(result.retryMessages).toEqual([]);
    expect(parallel.calls.filter((c) => c.method === "GET")).toHaveLength(2);
    // Polled: still running, next poll scheduled, lease released.
    expect(await row("runs", a ?? "")).toMatchObject({ status: "running", attempts: 1, lease_until: null });
  });

  it("retries only the message whose work threw, with backoff, and acknowledges the rest", async () => {
    const tenant = await createTenant();
    const now = new Date();
    const [good] = await storeOverdueRuns(tenant, 1, new Date(now.getTime() - 1000));
    // A completed run without a Parallel id: fetching its result throws.
    const broken = await storeFinishedRun(tenant.id, {
      parallel_run_id: null,
      output: null,
      result_stored_at: null,
      next_sweep_at: new Date(now.getTime() - 1000).toISOString(),
    });
    const messages = await tickAt(now);
    expect(messages.map((m) => m.kind).sort()).toEqual(["fetch_results", "poll_runs"]);
    parallelReportingRunning();
    const { ids: sent, result } = await deliverToWorker("taskrelay-work", messages);
    const brokenIndex = messages.findIndex((m) => m.id === broken.id);
    // (getQueueResult does not report the delay: failedRetryDelaySeconds is checked below.)
    expect(result.retryMessages).toEqual([{ msgId: sent[brokenIndex] }]);
    expect(result.explicitAcks).toEqual([sent[1 - brokenIndex]]);
    expect(await row("runs", good ?? "")).toMatchObject({ status: "running" });
  });

  it("retries a message that is not taskrelay's, so that it ends in the dead-letter queue", async () => {
    const { ids: sent, result } = await deliverToWorker("taskrelay-work", [{ hello: "world" }], 3);
    expect(result.retryMessages).toEqual([{ msgId: sent[0] }]);
    // Failed messages back off: 10 s, 20 s, 40 s, then (max_retries 3) the dead-letter queue.
    expect([1, 2, 3].map(failedRetryDelaySeconds)).toEqual([10, 20, 40]);
  });

  it("works a row by whichever of its messages comes first while no consumer has taken it, then skips the rest", async () => {
    const tenant = await createTenant();
    const now = new Date();
    const [id] = await storeOverdueRuns(tenant, 1, new Date(now.getTime() - 1000));
    const [first] = await tickAt(now);
    // Before the lease runs out the row is its message's: no tick sends it again.
    expect(await tickAt(new Date(now.getTime() + 1000))).toEqual([]);
    // The queue is behind: the lease runs out before the message is consumed, and the tick sends it again.
    const later = new Date(dispatchLeaseUntil(config, now).getTime() + 1000);
    const [again] = await tickAt(later);
    expect(again).toMatchObject({ kind: "poll_runs", id });
    expect(again?.lease).not.toBe(first?.lease);
    const parallel = parallelReportingRunning();
    // The first message turns up: no consumer took the row since, so it works it (before, it was
    // dropped as stale and the row's work waited for the newer message at the back of the queue).
    const early = await consume([first as WorkMessage], { now: clockFrom(later) });
    expect(early.report.poll_runs).toMatchObject({ not_due: 0, still_active: 1 });
    // The newer message finds the row worked: it does nothing.
    const late = await consume([again as WorkMessage], { now: clockFrom(later) });
    expect(late.report.poll_runs).toMatchObject({ not_due: 1, still_active: 0 });
    expect(parallel.calls).toHaveLength(1);
  });

  it("does not hand out a row every tick while its message waits: each hand-out not taken doubles the lease, up to 8 times", async () => {
    const tenant = await createTenant();
    const now = new Date();
    const [id] = await storeOverdueRuns(tenant, 1, new Date(now.getTime() - 1000));
    const base = dispatchLeaseUntil(config, now).getTime() - now.getTime();
    const leases: number[] = [];
    let at = now;
    for (let handOut = 0; handOut < 5; handOut++) {
      const [message] = await tickAt(at);
      expect(message).toMatchObject({ kind: "poll_runs", id });
      const until = Date.parse(message?.lease ?? "");
      leases.push(until - at.getTime());
      // Until this lease runs out, no tick sends the row again.
      expect(await tickAt(new Date(until - 1000))).toEqual([]);
      at = new Date(until + 1000);
    }
    expect(leases).toEqual([base, 2 * base, 4 * base, 8 * base, 8 * base]);
    expect(await row("runs", id ?? "")).toMatchObject({ dispatches: 4 });
  });

  it("hands a row out with the first lease again once a consumer has taken it; a lost message makes it due again", async () => {
    const tenant = await createTenant();
    const now = new Date();
    const [id] = await storeOverdueRuns(tenant, 1, new Date(now.getTime() - 1000));
    const base = dispatchLeaseUntil(config, now).getTime() - now.getTime();
    // Two messages lost: the row comes due again after each lease, the second twice as long.
    await tickAt(now);
    const second = new Date(now.getTime() + base + 1000);
    await tickAt(second);
    const third = new Date(second.getTime() + 2 * base + 1000);
    const [message] = await tickAt(third);
    expect(Date.parse(message?.lease ?? "") - third.getTime()).toBe(4 * base);
    parallelReportingRunning();
    const worked = await consume([message as WorkMessage], { now: clockFrom(third) });
    expect(worked.report.poll_runs).toMatchObject({ still_active: 1 });
    // Polled, its next poll due later; when it is, the tick hands it out under the first lease again.
    const polled = await row("runs", id ?? "");
    expect(polled).toMatchObject({ lease_until: null, dispatch_lease: null });
    const due = new Date(Date.parse(String(polled?.next_sweep_at)) + 1000);
    const [next] = await tickAt(due);
    expect(Date.parse(next?.lease ?? "") - due.getTime()).toBe(base);
  });

  it("skips a redelivered message whose consumer died holding the row; the row is due again after that lease", async () => {
    const tenant = await createTenant();
    const now = new Date();
    const [id] = await storeOverdueRuns(tenant, 1, new Date(now.getTime() - 1000));
    const [message] = await tickAt(now);
    // A consumer took the row (its take renews the lease: the row is no longer the tick's) and died.
    const ctx = createServiceContext(env, createExecutionContext(), { now: () => now });
    expect(await pollRunsJob.take(ctx, id ?? "", message?.lease ?? "", now)).toMatchObject({ id });
    const redelivered = await consume([message as WorkMessage], { now: clockFrom(now), attempts: 2 });
    expect(redelivered.report.poll_runs).toMatchObject({ not_due: 1 });
    expect(redelivered.results[0]?.explicitAcks).toHaveLength(1);
    // Due again once the consumer's lease (LEASE_MS) runs out, under the first dispatch lease.
    const after = new Date(now.getTime() + LEASE_MS + 1000);
    const [again] = await tickAt(after);
    expect(again).toMatchObject({ kind: "poll_runs", id });
    expect(Date.parse(again?.lease ?? "")).toBe(dispatchLeaseUntil(config, after).getTime());
  });
});

/** The statement that records a poll's outcome for a run still active (services/run-poll.ts). */
const POLL_RECORDED = /^UPDATE runs SET status = \?, attempts = \?/;
/** The statement that stores a fetched result (services/completion.ts). */
const RESULT_STORED = /result_stored_at = \?/;

const seconds = (at: Date, s: number) => new Date(at.getTime() + s * 1000);

describe("a message whose work throws", () => {
  it("has its row given back, due at its retry's time, and the retry works it", async () => {
    const tenant = await createTenant();
    const now = new Date();
    const [id] = await storeOverdueRuns(tenant, 1, seconds(now, -1));
    const [message] = await tickAt(now);
    const parallel = parallelReportingRunning();
    // D1 is busy once, as the poll records what Parallel said: the work throws.
    const busy = failingD1(POLL_RECORDED, 1);
    const first = await consumeOnce([message as WorkMessage], { now: clockFrom(now), env: busy.env });
    expect(busy.failures()).toBe(1);
    expect(first.result.retryMessages).toHaveLength(1);
    // Due for the retry in 10 s, free from then for any of its messages; not held for the take's 30 s.
    const given = await row("runs", id ?? "");
    const until = Date.parse(String(given?.lease_until));
    expect(until).toBeGreaterThanOrEqual(seconds(now, failedRetryDelaySeconds(1)).getTime());
    expect(until).toBeLessThan(now.getTime() + LEASE_MS);
    expect(given?.dispatch_lease).toBe(given?.lease_until);
    // The retry (the same message, delayed) takes the row and works it.
    const retry = await consumeOnce([message as WorkMessage], {
      now: clockFrom(new Date(until + 1000)),
      env: busy.env,
      attempts: 2,
    });
    expect(retry.report.poll_runs).toMatchObject({ not_due: 0, still_active: 1 });
    expect(retry.result.explicitAcks).toHaveLength(1);
    expect(parallel.calls.filter((c) => c.method === "GET")).toHaveLength(2);
    expect(await row("runs", id ?? "")).toMatchObject({ status: "running", attempts: 1, lease_until: null });
  });

  it("after recording the run completed has its result fetched by the tick after the retry's time, not after the lease", async () => {
    const tenant = await createTenant();
    const now = new Date();
    const [id] = await storeOverdueRuns(tenant, 1, seconds(now, -1));
    const [message] = await tickAt(now);
    const parallel = fakeParallel({
      retrieve: (call) =>
        HttpResponse.json(
          taskRun({ run_id: call.path.split("/")[4] ?? "", status: "completed", is_active: false }),
        ),
      result: (call) => resultReply(call.path.split("/")[4] ?? ""),
    });
    // The poll records the run completed and fetches its result; storing it meets a busy D1.
    const busy = failingD1(RESULT_STORED, 1);
    const polled = await consumeOnce([message as WorkMessage], { now: clockFrom(now), env: busy.env });
    expect(busy.failures()).toBe(1);
    expect(polled.result.retryMessages).toHaveLength(1);
    expect(await row("runs", id ?? "")).toMatchObject({ status: "completed", result_stored_at: null });
    const retryAt = seconds(now, failedRetryDelaySeconds(1) + 1);
    // The poll's retry finds no poll to do (the run's step is now its result fetch) …
    const retry = await consumeOnce([message as WorkMessage], { now: clockFrom(retryAt), attempts: 2 });
    expect(retry.report.poll_runs).toMatchObject({ not_due: 1 });
    // … and the first tick after the retry's time hands the run to fetch_results (before, it waited
    // for the result fetch's lease of LEASE_MS and its backoff).
    expect(retryAt.getTime()).toBeLessThan(now.getTime() + LEASE_MS);
    const tick = await tickAndWork(retryAt);
    expect(tick.messages).toEqual([expect.objectContaining({ kind: "fetch_results", id })]);
    expect(tick.summaries.fetch_results).toMatchObject({ stored: 1 });
    expect(await row("runs", id ?? "")).toMatchObject({ status: "completed", lease_until: null });
    expect((await row("runs", id ?? ""))?.result_stored_at).not.toBeNull();
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(2);
  });

  it("on every try reaches the dead-letter queue after max_retries, and its row is then held, not looped", async () => {
    const tenant = await createTenant();
    const now = new Date();
    const [id] = await storeOverdueRuns(tenant, 1, seconds(now, -1));
    const [message] = await tickAt(now);
    parallelReportingRunning();
    const busy = failingD1(POLL_RECORDED);
    // Each try takes the row and throws; each is retried (before, the second was acknowledged as
    // not due and the message never reached the dead-letter queue).
    let at = now;
    for (let attempt = 1; attempt <= MAX_RETRIES + 1; attempt++) {
      const tried = await consumeOnce([message as WorkMessage], {
        now: clockFrom(at),
        env: busy.env,
        attempts: attempt,
      });
      expect(tried.report.poll_runs).toMatchObject({ not_due: 0, errors: 1 });
      expect(tried.result.retryMessages).toHaveLength(1);
      if (attempt <= MAX_RETRIES) at = seconds(at, failedRetryDelaySeconds(attempt) + 1);
    }
    expect(busy.failures()).toBe(MAX_RETRIES + 1);
    // Queues moves a message whose try max_retries + 1 failed to the dead-letter queue.
    await deliverToWorker(DEAD_LETTER_QUEUE, [message]);
    const letters = await env.DB.prepare("SELECT kind, item_id, messages FROM dead_letters").all();
    expect(letters.results).toEqual([{ kind: "poll_runs", item_id: id, messages: 1 }]);
    expect((await expectJson<{ dead_letters: number }>(await api("/healthz"), 200)).dead_letters).toBe(1);
    // The row is held for the dead-letter hold: no tick sends it meanwhile; after it, one does.
    const hold = deadLetterHoldUntil(config, at).getTime();
    expect(Date.parse(String((await row("runs", id ?? ""))?.lease_until))).toBeGreaterThanOrEqual(hold);
    expect(await tickAt(new Date(hold - 60_000))).toEqual([]);
    expect(await tickAt(new Date(hold + 60_000))).toEqual([
      expect.objectContaining({ kind: "poll_runs", id }),
    ]);
  });
});

describe("a failed sendBatch", () => {
  it("of the tick gives its claimed page back, due at the next tick", async () => {
    const tenant = await createTenant();
    const now = new Date();
    const ids = await storeOverdueRuns(tenant, 3, seconds(now, -1));
    const refusing = {
      sendBatch: async () => {
        throw new Error("Too Many Requests");
      },
    } as unknown as Queue<WorkMessage>;
    const summaries = await runScheduledTick(env, createExecutionContext(), now, { queue: refusing });
    expect(summaries.poll_runs).toEqual({ error: expect.stringContaining("Too Many Requests") });
    // A minute later, well within the dispatch lease, the next tick sends the page.
    const next = await tickAt(seconds(now, 60));
    expect(next.map((m) => m.id).sort()).toEqual([...ids].sort());
  });

  it("of the consumer's send-back gives the rows back, so their redelivered messages take them", async () => {
    const tenant = await createTenant();
    const now = new Date();
    const [a, b] = await storeOverdueRuns(tenant, 2, seconds(now, -1));
    const messages = await tickAt(now);
    parallelReportingRunning();
    // A budget for one poll at a time: the take, one poll's worst case (no callback, no schedule), the send-back.
    const worst = runWorstCase(COST.poll_runs, { schedule_id: null, callback_url: null });
    const small = { ...env, SUBREQUEST_BUDGET: String(worst + 2) };
    const refusing = {
      send: async () => undefined,
      sendBatch: async () => {
        throw new Error("Too Many Requests");
      },
    } as unknown as Queue<WorkMessage>;
    const batch = batchOf("taskrelay-work", messages);
    const ctx = createExecutionContext();
    const { jobs } = await consumeWork(batch as MessageBatch<unknown>, small, ctx, {
      now: clockFrom(now),
      queue: refusing,
    });
    const result = await getQueueResult(batch, ctx);
    expect(jobs.poll_runs).toMatchObject({ still_active: 1, sent_back: 0 });
    expect(result.retryMessages).toHaveLength(1);
    const back = messages[batch.messages.findIndex((m) => m.id === result.retryMessages[0]?.msgId)];
    expect([a, b]).toContain(back?.id);
    // Redelivered at once: it takes its row (given back) and works it, rather than finding it held.
    const again = await consumeOnce([back as WorkMessage], { now: clockFrom(seconds(now, 1)), attempts: 2 });
    expect(again.report.poll_runs).toMatchObject({ not_due: 0, still_active: 1 });
  });
});

describe("delivery retries from the queue", () => {
  it("keep their schedule as a delayed message holding the lease, which the cron tick leaves alone", async () => {
    const tenant = await createTenant();
    const now = new Date();
    // Two attempts made (at once and 5 s later, inline): the third is due now.
    const delivery = await dueDelivery(tenant, now, 2);
    const messages = await tickAt(now);
    expect(messages).toEqual([expect.objectContaining({ kind: "retry_deliveries", id: delivery.id })]);
    network.use(http.post(RECEIVER, () => new HttpResponse("down", { status: 503 })));
    const followUps = capturingQueue();
    const first = await consume(messages, { now: clockFrom(now), queue: followUps.queue });
    expect(first.report.retry_deliveries).toMatchObject({ retrying: 1 });
    // The fourth attempt is 30 min later (scaled): one delayed message for it, the lease held until then.
    const [followUp] = followUps.take();
    const wait = (DELIVERY_BACKOFF_MS[3] as number) * config.TIME_SCALE;
    expect(followUp?.body).toMatchObject({ kind: "retry_deliveries", id: delivery.id });
    expect(followUp?.delaySeconds).toBeGreaterThanOrEqual(Math.floor((wait * 0.9) / 1000));
    expect(followUp?.delaySeconds).toBeLessThanOrEqual(Math.ceil((wait * 1.1) / 1000));
    const held = await row("deliveries", delivery.id);
    expect(Date.parse(String(held?.lease_until)) - Date.parse(String(held?.next_attempt_at))).toBe(
      DELIVERY_LEASE_MS,
    );
    // Due, but held for the delayed message: the tick does not send it again.
    const dueAt = new Date(Date.parse(String(held?.next_attempt_at)) + 1000);
    expect(await tickAt(dueAt)).toEqual([]);
    network.use(http.post(RECEIVER, () => new HttpResponse(null, { status: 204 })));
    const second = await consume([followUp?.body as WorkMessage], { now: clockFrom(dueAt) });
    expect(second.report.retry_deliveries).toMatchObject({ succeeded: 1 });
    expect((await attemptsOf(delivery.id)).map((a) => a.status_code)).toEqual([503, 204]);
  });
});

describe("the dead-letter queue", () => {
  it("records each item once with a count, shows the count on /healthz, and replays it", async () => {
    const body = {
      kind: "poll_runs",
      id: "run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4",
      lease: "2026-01-01T00:00:00.000Z",
    };
    const { result } = await deliverToWorker(DEAD_LETTER_QUEUE, [
      body,
      body,
      { kind: "fetch_results", id: "run_x", lease: "" },
    ]);
    expect(result.ackAll).toBe(true);
    const letters = await env.DB.prepare(
      "SELECT kind, item_id, messages FROM dead_letters ORDER BY kind",
    ).all();
    expect(letters.results).toEqual([
      { kind: "fetch_results", item_id: "run_x", messages: 1 },
      { kind: "poll_runs", item_id: body.id, messages: 2 },
    ]);
    const health = await expectJson<{ dead_letters: number }>(await api("/healthz"), 200);
    expect(health.dead_letters).toBe(2);

    const sent: MessageSendRequest<WorkMessage>[] = [];
    const replayEnv = {
      ...env,
      WORK_QUEUE: {
        sendBatch: async (messages: Iterable<MessageSendRequest<WorkMessage>>) => {
          sent.push(...messages);
        },
      },
    };
    const response = await worker.fetch(
      new Request("https://relay.test/v1/dead-letters/replay", { method: "POST", headers: ADMIN }),
      replayEnv as unknown as typeof env,
      createExecutionContext(),
    );
    expect(await expectJson(response, 200)).toEqual({ replayed: 2, dropped: 0 });
    expect(sent.map((m) => m.body.kind).sort()).toEqual(["fetch_results", "poll_runs"]);
    expect((await expectJson<{ dead_letters: number }>(await api("/healthz"), 200)).dead_letters).toBe(0);
  });

  it("replays only for the admin", async () => {
    const response = await api("/v1/dead-letters/replay", { method: "POST" });
    expect(response.status).toBe(401);
  });
});
