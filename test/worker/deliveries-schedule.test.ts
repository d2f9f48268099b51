// When attempts are made: the retry schedule driven by an injected clock, the receiver's answers
// that change it (410, 429/503 with Retry-After, timeouts, redirects), and the lease that keeps
// the fast path and the sweeper (or two sweeps) from sending the same attempt twice.
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { beforeEach, describe, expect, it } from "vitest";
import { claimDelivery } from "../../src/db/deliveries";
import { readConfig } from "../../src/env";
import { sendDelivery, startRunDelivery } from "../../src/services/deliveries";
import { nextDeliveryAttemptAt } from "../../src/services/delivery-schedule";
import { DELIVERY_BACKOFF_MS } from "../../src/services/timing";
import {
  attemptsOf,
  clearDeliveries,
  clockRuntime,
  deliveryContext,
  fakeReceiver,
  onlyDeliveryOf,
  RECEIVER,
  status,
  storeFinishedRun,
  testClock,
  timelineOf,
} from "./delivery-harness";
import { createTenant } from "./harness";
import { runRetryDeliveries } from "./queue-harness";
import { network } from "./setup";

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
/** Rows the sweeper takes per job and tick here. */
const BATCH = 6;

beforeEach(clearDeliveries);

/** A finished run's delivery started at the clock's time: its in-invocation attempts are done on return. */
async function startDelivery(options: { settings?: Record<string, string> } = {}) {
  const tenant = await createTenant();
  const clock = testClock();
  const runtime = clockRuntime(clock);
  const { ctx, settle } = deliveryContext({ now: clock.now, ...options });
  const run = await storeFinishedRun(tenant.id, {}, clock.now());
  const created = await startRunDelivery(ctx, run, runtime);
  await settle();
  if (!created) throw new Error("no delivery created");
  const sweep = () => runRetryDeliveries(ctx, clock.now(), BATCH, runtime);
  return { tenant, clock, runtime, ctx, run, deliveryId: created.id, sweep };
}

describe("the retry schedule", () => {
  it("is at once, 5 s (same invocation), then 5 min, 30 min, 2 h, 5 h, 10 h, 10 h by the sweeper; then dead", async () => {
    const receiver = fakeReceiver([status(500)]);
    const { clock, run, deliveryId, sweep } = await startDelivery();
    const t0 = Date.parse(run.created_at);

    // The first attempt and the 5 s retry happened before the invocation ended.
    expect(receiver.calls).toHaveLength(2);
    let delivery = await onlyDeliveryOf(run.id);
    expect(delivery).toMatchObject({ status: "pending", attempt_count: 2, lease_until: null });
    expect(Date.parse(delivery.next_attempt_at ?? "")).toBe(t0 + 5 * SECOND + 5 * MINUTE);

    for (const wait of [5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR]) {
      const calls = receiver.calls.length;
      clock.advance(wait - SECOND);
      expect((await sweep()).claimed, "not due yet").toBe(0);
      clock.advance(SECOND);
      expect(await sweep()).toMatchObject({ claimed: 1 });
      expect(receiver.calls).toHaveLength(calls + 1);
    }

    delivery = await onlyDeliveryOf(run.id);
    expect(delivery).toMatchObject({
      status: "dead",
      attempt_count: 8,
      next_attempt_at: null,
      last_status_code: 500,
    });
    expect(delivery.last_error).toBe("HTTP 500");
    const attempts = await attemptsOf(deliveryId);
    const gaps = attempts
      .slice(1)
      .map((a, i) => Date.parse(a.attempted_at) - Date.parse(attempts[i]?.attempted_at ?? ""));
    expect(gaps).toEqual(DELIVERY_BACKOFF_MS.slice(1));
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const dead = (await timelineOf(run.id)).filter((e) => e.kind === "delivery_dead");
    expect(dead).toHaveLength(1);
    expect(dead[0]?.detail.reason).toBe("no success after 8 attempts; the last: HTTP 500");

    clock.advance(100 * HOUR);
    expect((await sweep()).claimed).toBe(0);
    expect(receiver.calls).toHaveLength(8);
  });

  it("stops retrying as soon as the receiver takes it", async () => {
    const receiver = fakeReceiver([status(500), status(502), status(202)]);
    const { clock, run, sweep } = await startDelivery();
    clock.advance(5 * MINUTE);
    expect(await sweep()).toMatchObject({ claimed: 1, succeeded: 1 });
    clock.advance(100 * HOUR);
    expect((await sweep()).claimed).toBe(0);
    expect(receiver.calls).toHaveLength(3);
    expect(await onlyDeliveryOf(run.id)).toMatchObject({
      status: "succeeded",
      last_status_code: 202,
      last_error: null,
    });
  });

  it("jitters every wait by ±10 %", () => {
    const config = readConfig(env);
    const from = new Date("2026-01-01T00:00:00.000Z");
    for (const [done, base] of DELIVERY_BACKOFF_MS.slice(1).map((ms, i) => [i + 1, ms] as const)) {
      const low = nextDeliveryAttemptAt(config, done, from, undefined, () => 0);
      const high = nextDeliveryAttemptAt(config, done, from, undefined, () => 0.999999);
      expect(low?.getTime()).toBe(from.getTime() + base * 0.9);
      expect(high?.getTime()).toBeCloseTo(from.getTime() + base * 1.1, -2);
      for (let i = 0; i < 20; i++) {
        const wait = (nextDeliveryAttemptAt(config, done, from)?.getTime() ?? 0) - from.getTime();
        expect(wait).toBeGreaterThanOrEqual(base * 0.9);
        expect(wait).toBeLessThanOrEqual(base * 1.1);
      }
    }
    expect(nextDeliveryAttemptAt(config, 8, from)).toBeNull();
  });

  it("scales every wait with POLL_TIME_SCALE", async () => {
    const receiver = fakeReceiver([status(500)]);
    const { clock, run } = await startDelivery({ settings: { POLL_TIME_SCALE: "0.001" } });
    // 0, 5 ms, 300 ms, 1.8 s, 7.2 s fall within the invocation; 5 h scaled (18 s) is the sweeper's.
    expect(receiver.calls).toHaveLength(5);
    const delivery = await onlyDeliveryOf(run.id);
    const elapsed = 5 + 300 + 1_800 + 7_200;
    expect(Date.parse(delivery.next_attempt_at ?? "") - (clock.now().getTime() - elapsed)).toBe(
      elapsed + 18_000,
    );
  });
});

describe("what the receiver answers", () => {
  it("410 Gone makes the delivery dead at once", async () => {
    const receiver = fakeReceiver([status(410)]);
    const { clock, run, sweep } = await startDelivery();
    const delivery = await onlyDeliveryOf(run.id);
    expect(delivery).toMatchObject({ status: "dead", attempt_count: 1, last_status_code: 410 });
    expect(delivery.last_error).toBe("HTTP 410 Gone: the receiver asked to stop");
    clock.advance(30 * HOUR);
    expect((await sweep()).claimed).toBe(0);
    expect(receiver.calls).toHaveLength(1);
  });

  it("429 with Retry-After (seconds) waits as long as the receiver asks, past the 5 s step", async () => {
    const receiver = fakeReceiver([status(429, { "retry-after": "120" }), status(200)]);
    const { clock, run, sweep } = await startDelivery();
    const t0 = clock.now().getTime();

    // Not waited for in the invocation: 120 s is the sweeper's.
    expect(receiver.calls).toHaveLength(1);
    const delivery = await onlyDeliveryOf(run.id);
    expect(Date.parse(delivery.next_attempt_at ?? "")).toBe(t0 + 120 * SECOND);
    expect(delivery.last_error).toBe("HTTP 429 (Retry-After 120 s)");

    clock.advance(119 * SECOND);
    expect((await sweep()).claimed).toBe(0);
    clock.advance(SECOND);
    expect(await sweep()).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(receiver.calls).toHaveLength(2);
  });

  it("503 with a Retry-After date is honoured; one further than an hour is cut to an hour", async () => {
    const clockStart = new Date();
    const inTwoDays = new Date(clockStart.getTime() + 48 * HOUR).toUTCString();
    const receiver = fakeReceiver([status(503, { "retry-after": inTwoDays })]);
    const { clock, run } = await startDelivery();
    expect(receiver.calls).toHaveLength(1);
    const delivery = await onlyDeliveryOf(run.id);
    expect(Date.parse(delivery.next_attempt_at ?? "")).toBe(clock.now().getTime() + HOUR);
  });

  it("a short Retry-After is waited for in the same invocation", async () => {
    const receiver = fakeReceiver([status(503, { "retry-after": "8" }), status(200)]);
    const { run } = await startDelivery();
    expect(receiver.calls).toHaveLength(2);
    expect((await onlyDeliveryOf(run.id)).status).toBe("succeeded");
  });

  it("no response within the timeout is a failed attempt without a status", async () => {
    const tenant = await createTenant();
    // A receiver that never answers: each attempt can only end on its own timeout's abort signal.
    const requests: AbortSignal[] = [];
    network.use(
      http.post(RECEIVER, ({ request }) => {
        requests.push(request.signal);
        // Answers only once the request was given up on: too late to count.
        return new Promise<Response>((resolve) =>
          request.signal.addEventListener("abort", () => resolve(new HttpResponse(null, { status: 200 }))),
        );
      }),
    );
    const clock = testClock();
    const runtime = clockRuntime(clock, { timeoutMs: 50 });
    const { ctx, settle } = deliveryContext({ now: clock.now });
    const run = await storeFinishedRun(tenant.id, {}, clock.now());
    // The sleep between attempts is the test clock's: both attempts time out, then it is the sweeper's.
    await startRunDelivery(ctx, run, runtime);
    await settle();

    expect(requests).toHaveLength(2);
    expect(requests.map((signal) => signal.aborted)).toEqual([true, true]);
    const attempts = await attemptsOf((await onlyDeliveryOf(run.id)).id);
    for (const attempt of attempts) {
      expect(attempt).toMatchObject({ status_code: null, error: "no response within 0.05 s" });
      expect(attempt.latency_ms).toBeGreaterThanOrEqual(40);
    }
    expect((await onlyDeliveryOf(run.id)).status).toBe("pending");
  });

  it("a redirect is a failed attempt and is not followed", async () => {
    const receiver = fakeReceiver([
      () => new HttpResponse(null, { status: 301, headers: { location: "https://receiver.test/moved" } }),
    ]);
    const { run } = await startDelivery();
    expect(receiver.calls).toHaveLength(2);
    const attempts = await attemptsOf((await onlyDeliveryOf(run.id)).id);
    expect(attempts.map((a) => a.status_code)).toEqual([301, 301]);
    expect((await onlyDeliveryOf(run.id)).status).toBe("pending");
  });

  it("a network error is a failed attempt", async () => {
    const receiver = fakeReceiver([() => HttpResponse.error()]);
    const { run } = await startDelivery();
    expect(receiver.calls).toHaveLength(2);
    const [first] = await attemptsOf((await onlyDeliveryOf(run.id)).id);
    expect(first?.status_code).toBeNull();
    expect(first?.error).toMatch(/^request failed: /);
  });
});

describe("leases", () => {
  it("two sweeps at once send a due attempt once", async () => {
    const receiver = fakeReceiver([status(500), status(500), status(200)]);
    const { clock, ctx, runtime } = await startDelivery();
    clock.advance(6 * MINUTE);
    const [a, b] = await Promise.all([
      runRetryDeliveries(ctx, clock.now(), BATCH, runtime),
      runRetryDeliveries(ctx, clock.now(), BATCH, runtime),
    ]);
    expect((a?.claimed ?? 0) + (b?.claimed ?? 0)).toBe(1);
    expect(receiver.calls).toHaveLength(3);
  });

  it("the fast path and a sweep at once send a due attempt once", async () => {
    const receiver = fakeReceiver([status(500), status(500), status(200)]);
    const { clock, ctx, runtime, deliveryId } = await startDelivery();
    clock.advance(6 * MINUTE);
    await Promise.all([
      sendDelivery(ctx, deliveryId, runtime),
      runRetryDeliveries(ctx, clock.now(), BATCH, runtime),
    ]);
    expect(receiver.calls).toHaveLength(3);
  });

  it("a delivery whose worker died mid-attempt is taken over once its lease runs out", async () => {
    const receiver = fakeReceiver([status(500), status(500), status(200)]);
    const { clock, ctx, run, deliveryId, sweep } = await startDelivery();
    clock.advance(6 * MINUTE);
    // A worker takes the lease and dies before sending.
    const now = clock.now();
    const claimed = await claimDelivery(
      ctx.db,
      deliveryId,
      now.toISOString(),
      new Date(now.getTime() + MINUTE).toISOString(),
    );
    expect(claimed).not.toBeNull();
    expect((await sweep()).claimed).toBe(0);
    clock.advance(MINUTE);
    expect(await sweep()).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(receiver.calls).toHaveLength(3);
    expect((await onlyDeliveryOf(run.id)).attempt_count).toBe(3);
  });

  it("a sweep takes a bounded batch, the longest due first", async () => {
    const receiver = fakeReceiver([status(500)]);
    const tenant = await createTenant();
    const clock = testClock();
    const runtime = clockRuntime(clock);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { ctx, settle } = deliveryContext({ now: clock.now });
      const run = await storeFinishedRun(tenant.id, {}, clock.now());
      ids.push((await startRunDelivery(ctx, run, runtime))?.id ?? "");
      await settle();
      clock.advance(SECOND);
    }
    expect(receiver.calls).toHaveLength(6);

    clock.advance(HOUR);
    const { ctx } = deliveryContext({ now: clock.now });
    expect((await runRetryDeliveries(ctx, clock.now(), 2, runtime)).claimed).toBe(2);
    const swept = await env.DB.prepare("SELECT id FROM deliveries WHERE attempt_count = 3 ORDER BY id").all<{
      id: string;
    }>();
    expect(swept.results.map((r) => r.id)).toEqual(ids.slice(0, 2));
    expect((await runRetryDeliveries(ctx, clock.now(), 2, runtime)).claimed).toBe(1);
  });
});
