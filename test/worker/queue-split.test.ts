// Callback deliveries on a queue of their own (issue 14: no job's work waits for another's): the
// tick sends delivery retries to DELIVERY_QUEUE and every other job's rows to WORK_QUEUE; the
// Worker's one queue() handler consumes a delivery batch from taskrelay-deliveries (createMessageBatch,
// getQueueResult), its delayed and sent-back messages going back to that queue; a batch of the
// deliveries queue's size fits the Free plan's 50 calls at every message's worst case; a replayed
// dead letter goes to its job's queue.
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { beforeEach, describe, expect, it } from "vitest";
import { DEAD_LETTER_QUEUE, DELIVERY_BATCH_SIZE } from "../../src/cron/consumer";
import { COST, SEND_BACK, TAKE_BATCH } from "../../src/cron/costs";
import { runScheduledTick, WORK_JOBS } from "../../src/cron/dispatcher";
import type { WorkMessage } from "../../src/cron/work";
import worker from "../../src/index";
import wranglerToml from "../../wrangler.toml?raw";
import { attemptsOf, dueDelivery, RECEIVER, storeFinishedRun } from "./delivery-harness";
import { ADMIN, createTenant, emptyBackgroundWork, expectJson, type Tenant } from "./harness";
import { capturingQueue } from "./queue-harness";
import { network } from "./setup";

const FREE = "50";

/** The Worker's env with each queue's producer binding capturing what is sent to it. */
function twoQueues(vars: Record<string, string> = {}) {
  const work = capturingQueue();
  const deliveries = capturingQueue();
  return {
    work,
    deliveries,
    env: { ...env, ...vars, WORK_QUEUE: work.queue, DELIVERY_QUEUE: deliveries.queue } as typeof env,
  };
}

let ids = 0;
/** A batch of `queue` through the Worker's queue() handler, as Cloudflare delivers it. */
async function deliverToWorker(queue: string, bodies: WorkMessage[], workerEnv: typeof env) {
  const batch = createMessageBatch(
    queue,
    bodies.map((body) => ({ id: `split-${++ids}`, timestamp: new Date(), attempts: 1, body })),
  );
  const ctx = createExecutionContext();
  await worker.queue(batch as MessageBatch<unknown>, workerEnv, ctx);
  return { ids: batch.messages.map((m) => m.id), result: await getQueueResult(batch, ctx) };
}

/** The tick's messages for `count` due deliveries, from DELIVERY_QUEUE. */
async function dueDeliveryMessages(tenant: Tenant, count: number, at: Date) {
  for (let i = 0; i < count; i++) await dueDelivery(tenant, at);
  const queues = twoQueues();
  await runScheduledTick(queues.env, createExecutionContext(), at);
  expect(queues.work.sent).toEqual([]);
  return queues.deliveries.take().map((m) => m.body);
}

beforeEach(emptyBackgroundWork);

describe("the deliveries queue", () => {
  it("gets the tick's delivery retries; every other job's rows go to the work queue", async () => {
    const tenant = await createTenant();
    const at = new Date();
    const delivery = await dueDelivery(tenant, new Date(at.getTime() - 1000));
    // A run whose webhook was lost, overdue for its poll.
    const run = await storeFinishedRun(tenant.id, {
      status: "queued",
      output: null,
      error: null,
      finished_at: null,
      result_stored_at: null,
      callback_url: null,
      deadline_at: "2999-01-01T00:00:00.000Z",
      next_sweep_at: new Date(at.getTime() - 1000).toISOString(),
    });
    const queues = twoQueues();
    await runScheduledTick(queues.env, createExecutionContext(), at);
    expect(queues.deliveries.sent.map((m) => m.body)).toEqual([
      expect.objectContaining({ kind: "retry_deliveries", id: delivery.id }),
    ]);
    expect(queues.work.sent.map((m) => m.body)).toEqual([
      expect.objectContaining({ kind: "poll_runs", id: run.id }),
    ]);
    // Only the delivery job is on the deliveries queue.
    expect(WORK_JOBS.filter((job) => job.queue === "deliveries").map((job) => job.name)).toEqual([
      "retry_deliveries",
    ]);
  });

  it("is consumed by the Worker's queue() handler: a refused attempt's retry is a delayed message on the same queue, then delivered", async () => {
    const tenant = await createTenant();
    const [message] = await dueDeliveryMessages(tenant, 1, new Date(Date.now() - 1000));
    network.use(http.post(RECEIVER, () => new HttpResponse("down", { status: 503 })));
    const queues = twoQueues();
    const first = await deliverToWorker("taskrelay-deliveries", [message as WorkMessage], queues.env);
    expect(first.result.explicitAcks).toEqual(first.ids);
    expect(first.result.retryMessages).toEqual([]);
    expect(queues.work.sent).toEqual([]);
    const [later] = queues.deliveries.take();
    expect(later?.body).toMatchObject({ kind: "retry_deliveries", id: message?.id });
    expect(later?.delaySeconds).toBeGreaterThan(0);
    // Its time come, the delayed message from the deliveries queue delivers it.
    network.use(http.post(RECEIVER, () => new HttpResponse(null, { status: 204 })));
    await env.DB.prepare("UPDATE deliveries SET next_attempt_at = ? WHERE id = ?")
      .bind(new Date(Date.now() - 1000).toISOString(), message?.id ?? "")
      .run();
    const second = await deliverToWorker("taskrelay-deliveries", [later?.body as WorkMessage], queues.env);
    expect(second.result.explicitAcks).toEqual(second.ids);
    expect((await attemptsOf(message?.id ?? "")).map((a) => a.status_code)).toEqual([503, 204]);
  });

  it("works a whole batch of its size within the Free plan's 50 calls at every retry's worst case, none sent back", async () => {
    const tenant = await createTenant();
    const messages = await dueDeliveryMessages(tenant, DELIVERY_BATCH_SIZE, new Date(Date.now() - 1000));
    expect(messages).toHaveLength(DELIVERY_BATCH_SIZE);
    // The worst case: each attempt refused, recorded, and its retry sent as a delayed message.
    network.use(http.post(RECEIVER, () => new HttpResponse("down", { status: 503 })));
    const queues = twoQueues({ SUBREQUEST_BUDGET: FREE });
    const { ids: sent, result } = await deliverToWorker("taskrelay-deliveries", messages, queues.env);
    expect(result.explicitAcks.sort()).toEqual([...sent].sort());
    expect(result.retryMessages).toEqual([]);
    // Each worked: DELIVERY_BATCH_SIZE delayed retries, no message sent back undone.
    const followUps = queues.deliveries.take();
    expect(followUps).toHaveLength(DELIVERY_BATCH_SIZE);
    expect(followUps.every((m) => m.delaySeconds > 0)).toBe(true);
    for (const m of messages) expect(await attemptsOf(m.id)).toHaveLength(1);
    // The size is the most whose worst cases fit (wrangler.toml agrees): one more would not.
    const worst = (n: number) => TAKE_BATCH + n * COST.retry_deliveries + SEND_BACK;
    expect(worst(DELIVERY_BATCH_SIZE)).toBeLessThanOrEqual(50);
    expect(worst(DELIVERY_BATCH_SIZE + 1)).toBeGreaterThan(50);
    const configured = /queue = "taskrelay-deliveries"\s*\nmax_batch_size = (\d+)/.exec(wranglerToml)?.[1];
    expect(Number(configured)).toBe(DELIVERY_BATCH_SIZE);
  });

  it("sends back to the deliveries queue what an invocation cannot afford", async () => {
    const tenant = await createTenant();
    const messages = await dueDeliveryMessages(tenant, 2, new Date(Date.now() - 1000));
    network.use(http.post(RECEIVER, () => new HttpResponse(null, { status: 204 })));
    // A budget for one delivery's worst case beside the take and the send-back.
    const budget = TAKE_BATCH + COST.retry_deliveries + SEND_BACK;
    const queues = twoQueues({ SUBREQUEST_BUDGET: String(budget) });
    const { result } = await deliverToWorker("taskrelay-deliveries", messages, queues.env);
    expect(result.explicitAcks).toHaveLength(2);
    expect(queues.work.sent).toEqual([]);
    const sentBack = queues.deliveries.take().map((m) => m.body);
    expect(sentBack).toHaveLength(1);
    expect(sentBack[0]).toMatchObject({ kind: "retry_deliveries" });
  });

  it("shares the dead-letter queue; a replay sends each dead letter to its job's queue", async () => {
    const delivery = { kind: "retry_deliveries", id: "dlv_01JD0Q4M3ZT6B3X9Y8W7V6U5T4", lease: "" };
    const poll = { kind: "poll_runs", id: "run_01JD0Q4M3ZT6B3X9Y8W7V6U5T4", lease: "" };
    const recorded = await deliverToWorker(DEAD_LETTER_QUEUE, [delivery, poll], env);
    expect(recorded.result.ackAll).toBe(true);
    const queues = twoQueues();
    const response = await worker.fetch(
      new Request("https://relay.test/v1/dead-letters/replay", { method: "POST", headers: ADMIN }),
      queues.env,
      createExecutionContext(),
    );
    expect(await expectJson(response, 200)).toEqual({ replayed: 2, dropped: 0 });
    expect(queues.deliveries.sent.map((m) => m.body)).toEqual([delivery]);
    expect(queues.work.sent.map((m) => m.body)).toEqual([poll]);
  });

  it("refuses a replay with a configuration_error, taking no dead letter, when a queue is not bound", async () => {
    await deliverToWorker(DEAD_LETTER_QUEUE, [{ kind: "poll_runs", id: "run_x", lease: "" }], env);
    const { DELIVERY_QUEUE: _unbound, ...unbound } = twoQueues().env;
    const response = await worker.fetch(
      new Request("https://relay.test/v1/dead-letters/replay", { method: "POST", headers: ADMIN }),
      unbound as typeof env,
      createExecutionContext(),
    );
    const body = await expectJson<{ error: { code: string; message: string } }>(response, 500);
    expect(body.error.code).toBe("configuration_error");
    expect(body.error.message).toContain("DELIVERY_QUEUE");
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM dead_letters").first<number>("n")).toBe(1);
  });
});
