// For the callback-delivery tests: a recording callback receiver (MSW), finished runs stored
// straight into D1, a service context with an injected clock, and a runtime that sleeps by
// advancing that clock.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { expect } from "vitest";
import { type Delivery, type DeliveryAttempt, insertDelivery } from "../../src/db/deliveries";
import { listRunEvents } from "../../src/db/run-events";
import { insertRun, type Run } from "../../src/db/runs";
import { newId } from "../../src/ids";
import { createServiceContext, type ServiceContext } from "../../src/services/context";
import type { DeliveryRuntime } from "../../src/services/deliveries";
import { JSON_OUTPUT, type Tenant } from "./harness";
import { network } from "./setup";

export const RECEIVER = "https://receiver.test/hooks/taskrelay";

export interface ReceivedCallback {
  headers: Record<string, string>;
  body: string;
}

type Reply = () => Response | Promise<Response>;

/** A callback receiver answering each POST with the next reply (the last one repeats); records every call. */
export function fakeReceiver(
  replies: Reply[] = [() => new HttpResponse(null, { status: 204 })],
  url = RECEIVER,
) {
  const calls: ReceivedCallback[] = [];
  network.use(
    http.post(url, async ({ request }) => {
      calls.push({ headers: Object.fromEntries(request.headers), body: await request.text() });
      const reply = replies[Math.min(calls.length, replies.length) - 1];
      return reply ? reply() : new HttpResponse(null, { status: 500 });
    }),
  );
  return { calls };
}

export const status =
  (code: number, headers: Record<string, string> = {}) =>
  () =>
    new HttpResponse(code === 204 ? null : "receiver says hi", { status: code, headers });

export function testClock(start = new Date()) {
  let at = start.getTime();
  return {
    now: () => new Date(at),
    advance: (ms: number) => {
      at += ms;
    },
    set: (date: Date) => {
      at = date.getTime();
    },
  };
}
export type TestClock = ReturnType<typeof testClock>;

/** Sleeps by moving the test clock; jitter pinned to the middle (×1.0) so the schedule is exact. */
export function clockRuntime(clock: TestClock, overrides: Partial<DeliveryRuntime> = {}): DeliveryRuntime {
  return {
    sleep: async (ms) => clock.advance(ms),
    timeoutMs: 15_000,
    random: () => 0.5,
    ...overrides,
  };
}

export interface ContextOptions {
  now?: () => Date;
  settings?: Record<string, string>;
}

/** A service context as a route or the cron builds it, with `settle()` to await its waitUntil work. */
export function deliveryContext(options: ContextOptions = {}): {
  ctx: ServiceContext;
  settle: () => Promise<void>;
} {
  const execution = createExecutionContext();
  const ctx = createServiceContext(
    { ...env, ...options.settings },
    execution,
    options.now ? { now: options.now } : {},
  );
  return { ctx, settle: () => waitOnExecutionContext(execution) };
}

/** A finished run as the pipeline leaves it (completed: output and result_stored_at set), stored in D1. */
export async function storeFinishedRun(
  apiKeyId: string,
  overrides: Partial<Run> = {},
  at: Date = new Date(),
): Promise<Run> {
  const iso = at.toISOString();
  const status = overrides.status ?? "completed";
  const completed = status === "completed";
  const run: Run = {
    id: newId("run", at),
    api_key_id: apiKeyId,
    schedule_id: null,
    parallel_run_id: `trun_${crypto.randomUUID().replaceAll("-", "")}`,
    interaction_id: null,
    status,
    processor: "base",
    input: "What was the GDP of France in 2023?",
    task_spec: null,
    metadata: { customer: "acme" },
    source_policy: null,
    previous_interaction_id: null,
    enable_events: null,
    mcp_servers: null,
    callback_url: RECEIVER,
    idempotency_key: null,
    request_hash: null,
    output: completed ? JSON_OUTPUT : null,
    warnings: null,
    error: completed ? null : { code: "parallel_failed", message: "Task execution failed" },
    created_at: iso,
    updated_at: iso,
    submitted_at: iso,
    finished_at: iso,
    result_stored_at: completed ? iso : null,
    deadline_at: null,
    attempts: 0,
    next_sweep_at: null,
    lease_until: null,
    ...overrides,
  };
  await insertRun(env.DB, run).run();
  return run;
}

export async function deliveriesOf(runId: string): Promise<Delivery[]> {
  const { results } = await env.DB.prepare("SELECT * FROM deliveries WHERE run_id = ? ORDER BY id")
    .bind(runId)
    .all<Delivery>();
  return results;
}

export async function onlyDeliveryOf(runId: string): Promise<Delivery> {
  const deliveries = await deliveriesOf(runId);
  expect(deliveries, `deliveries of ${runId}`).toHaveLength(1);
  return deliveries[0] as Delivery;
}

export async function attemptsOf(deliveryId: string): Promise<DeliveryAttempt[]> {
  const { results } = await env.DB.prepare(
    "SELECT * FROM delivery_attempts WHERE delivery_id = ? ORDER BY series, attempt",
  )
    .bind(deliveryId)
    .all<DeliveryAttempt>();
  return results;
}

/** A run's whole timeline as stored (its row, then any run_events overflow), oldest first. */
export async function timelineOf(runId: string) {
  const events = await listRunEvents(env.DB, runId, { afterId: 0, limit: 100_000 });
  return events.map((e) => ({ kind: e.kind, detail: e.detail ?? {} }));
}

/** Polls until `check` passes (work the API left to waitUntil), failing with its last error after `ms`. */
export async function eventually<T>(check: () => Promise<T>, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

/** Every test of a file shares D1; a sweep sees every due delivery, so schedule tests start empty. */
export async function clearDeliveries() {
  await env.DB.batch([
    env.DB.prepare("DELETE FROM delivery_attempts"),
    env.DB.prepare("DELETE FROM deliveries"),
  ]);
}

/** A delivery whose next attempt is due at `at`, after `attemptCount` refused ones. */
export async function dueDelivery(tenant: Pick<Tenant, "id">, at: Date, attemptCount = 2) {
  const run = await storeFinishedRun(tenant.id, {}, at);
  const delivery = await insertDelivery(
    env.DB,
    {
      id: newId("dlv", at),
      run_id: run.id,
      api_key_id: tenant.id,
      event: "run.completed",
      url: RECEIVER,
      status: "pending",
      series: 1,
      attempt_count: attemptCount,
      next_attempt_at: at.toISOString(),
      lease_until: null,
      last_attempt_at: null,
      last_status_code: 503,
      last_error: "down",
      created_at: at.toISOString(),
      updated_at: at.toISOString(),
    },
    { kind: "delivery_created", detail: {} },
  );
  if (!delivery) throw new Error("delivery not stored");
  return delivery;
}
