// What a finished run's callback looks like and when it is sent: Standard Webhooks format verified by
// the standardwebhooks library, one delivery per run and event, the URL checked again at send time.
import { HttpResponse, http } from "msw";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { onRunFinished } from "../../src/services/run-finished";
import {
  attemptsOf,
  deliveriesOf,
  deliveryContext,
  fakeReceiver,
  onlyDeliveryOf,
  RECEIVER,
  status,
  storeFinishedRun,
  timelineOf,
} from "./delivery-harness";
import { api, createTenant, expectJson, JSON_OUTPUT } from "./harness";
import { network } from "./setup";

describe("a finished run's callback", () => {
  it("POSTs the completed run in Standard Webhooks format, verified by the standardwebhooks library", async () => {
    const tenant = await createTenant();
    const receiver = fakeReceiver();
    const run = await storeFinishedRun(tenant.id);
    const { ctx, settle } = deliveryContext();

    await onRunFinished(ctx, run);
    await settle();

    expect(receiver.calls).toHaveLength(1);
    const [call] = receiver.calls;
    if (!call) throw new Error("no callback");
    const payload = new Webhook(tenant.signingSecret).verify(call.body, call.headers);
    const shown = await expectJson(await api(`/v1/runs/${run.id}`, { headers: tenant.auth }), 200);
    expect(payload).toEqual({
      type: "run.completed",
      timestamp: run.finished_at,
      data: { run: shown, output: JSON_OUTPUT, error: null },
    });

    const delivery = await onlyDeliveryOf(run.id);
    expect(delivery.id).toMatch(/^dlv_[0-9A-Z]{26}$/);
    expect(call.headers["webhook-id"]).toBe(delivery.id);
    expect(call.headers["content-type"]).toBe("application/json");
    expect(call.headers["user-agent"]).toMatch(/^taskrelay\/\d+\.\d+\.\d+ \(\+callbacks\)$/);
    expect(Math.abs(Number(call.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(5);
    expect(call.headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(delivery).toMatchObject({ status: "succeeded", attempt_count: 1, last_status_code: 204 });
  });

  it("does not verify with another key's secret or a changed body", async () => {
    const tenant = await createTenant();
    const other = await createTenant("other");
    const receiver = fakeReceiver();
    const { ctx, settle } = deliveryContext();
    await onRunFinished(ctx, await storeFinishedRun(tenant.id));
    await settle();

    const [call] = receiver.calls;
    if (!call) throw new Error("no callback");
    expect(() => new Webhook(other.signingSecret).verify(call.body, call.headers)).toThrow(
      /No matching signature/,
    );
    const tampered = call.body.replace("run.completed", "run.failed");
    expect(() => new Webhook(tenant.signingSecret).verify(tampered, call.headers)).toThrow(
      /No matching signature/,
    );
  });

  it.each(["failed", "cancelled", "rejected", "expired"] as const)(
    "sends run.failed with the reason for a %s run",
    async (runStatus) => {
      const tenant = await createTenant();
      const receiver = fakeReceiver();
      const error = { code: `run_${runStatus}`, message: `The run ended ${runStatus}.` };
      const run = await storeFinishedRun(tenant.id, { status: runStatus, error });
      const { ctx, settle } = deliveryContext();

      await onRunFinished(ctx, run);
      await settle();

      const [call] = receiver.calls;
      if (!call) throw new Error("no callback");
      const payload = new Webhook(tenant.signingSecret).verify(call.body, call.headers) as {
        type: string;
        data: { run: { status: string }; output: unknown; error: unknown };
      };
      expect(payload.type).toBe("run.failed");
      expect(payload.data.run.status).toBe(runStatus);
      expect(payload.data.output).toBeNull();
      expect(payload.data.error).toEqual(error);
      expect((await onlyDeliveryOf(run.id)).event).toBe("run.failed");
    },
  );

  it("creates no delivery for a run without a callback URL", async () => {
    const tenant = await createTenant();
    // No receiver: MSW fails any request, so a callback sent anywhere would fail this test.
    const run = await storeFinishedRun(tenant.id, { callback_url: null });
    const { ctx, settle } = deliveryContext();

    await onRunFinished(ctx, run);
    await settle();

    expect(await deliveriesOf(run.id)).toEqual([]);
    const shown = await expectJson<{ data: unknown[] }>(
      await api(`/v1/runs/${run.id}/deliveries`, { headers: tenant.auth }),
      200,
    );
    expect(shown.data).toEqual([]);
    expect((await timelineOf(run.id)).map((e) => e.kind)).not.toContain("delivery_created");
  });

  it("makes one delivery per run and event however often the hook is called", async () => {
    const tenant = await createTenant();
    const receiver = fakeReceiver();
    const run = await storeFinishedRun(tenant.id);
    const { ctx, settle } = deliveryContext();

    await Promise.all([onRunFinished(ctx, run), onRunFinished(ctx, run)]);
    await onRunFinished(ctx, run);
    await settle();

    expect(await deliveriesOf(run.id)).toHaveLength(1);
    expect(receiver.calls).toHaveLength(1);
  });

  it("writes the delivery onto the run's timeline", async () => {
    const tenant = await createTenant();
    fakeReceiver([status(200)]);
    const run = await storeFinishedRun(tenant.id);
    const { ctx, settle } = deliveryContext();
    await onRunFinished(ctx, run);
    await settle();

    const delivery = await onlyDeliveryOf(run.id);
    const timeline = await expectJson<{ events: Array<{ kind: string; detail: Record<string, unknown> }> }>(
      await api(`/v1/runs/${run.id}/timeline`, { headers: tenant.auth }),
      200,
    );
    const deliveryEvents = timeline.events.filter((e) => e.kind.startsWith("delivery_"));
    expect(deliveryEvents.map((e) => e.kind)).toEqual([
      "delivery_created",
      "delivery_attempted",
      "delivery_succeeded",
    ]);
    expect(deliveryEvents[0]?.detail).toEqual({
      delivery_id: delivery.id,
      event: "run.completed",
      url: RECEIVER,
    });
    expect(deliveryEvents[1]?.detail).toMatchObject({
      delivery_id: delivery.id,
      attempt: 1,
      status_code: 200,
      error: null,
      next_attempt_at: null,
    });
  });

  it("retries a failing receiver in the same invocation: failing twice, it gets the third attempt at once (scale 0.001)", async () => {
    const tenant = await createTenant();
    const receiver = fakeReceiver([status(500), status(503), status(200)]);
    const run = await storeFinishedRun(tenant.id);
    const { ctx, settle } = deliveryContext({ settings: { POLL_TIME_SCALE: "0.001" } });

    // One invocation and no sweeper: all three attempts are made inside it.
    await onRunFinished(ctx, run);
    await settle();

    expect(receiver.calls).toHaveLength(3);
    const delivery = await onlyDeliveryOf(run.id);
    expect(new Set(receiver.calls.map((c) => c.headers["webhook-id"]))).toEqual(new Set([delivery.id]));
    for (const call of receiver.calls) new Webhook(tenant.signingSecret).verify(call.body, call.headers);
    expect(delivery).toMatchObject({ status: "succeeded", attempt_count: 3, lease_until: null });
    const attempts = await attemptsOf(delivery.id);
    expect(attempts.map((a) => [a.attempt, a.status_code, a.error])).toEqual([
      [1, 500, "HTTP 500"],
      [2, 503, "HTTP 503"],
      [3, 200, null],
    ]);
    // Each retry waited its backoff first: 5 s, then 5 min, at scale 0.001 (-10 % jitter at most).
    const at = attempts.map((a) => Date.parse(a.attempted_at));
    expect((at[1] ?? 0) - (at[0] ?? 0)).toBeGreaterThanOrEqual(4);
    expect((at[2] ?? 0) - (at[1] ?? 0)).toBeGreaterThanOrEqual(270);
  });
});

describe("the callback URL, checked again at send time", () => {
  it.each([
    ["http://127.0.0.1:9999/hook", "must use https"],
    ["https://10.1.2.3/hook", "private"],
    ["https://169.254.169.254/latest/meta-data", "link-local or cloud metadata"],
    ["https://localhost/hook", "localhost"],
  ])("refuses %s: the delivery is dead with the reason, nothing is sent", async (url, reason) => {
    const tenant = await createTenant();
    // Stored as if the rules had allowed it at creation (e.g. ALLOW_HTTP_CALLBACKS was on then).
    const run = await storeFinishedRun(tenant.id, { callback_url: url });
    const { ctx, settle } = deliveryContext();

    await onRunFinished(ctx, run);
    await settle();

    const delivery = await onlyDeliveryOf(run.id);
    expect(delivery.status).toBe("dead");
    expect(delivery.last_error).toContain(reason);
    expect(delivery.attempt_count).toBe(0);
    expect(await attemptsOf(delivery.id)).toEqual([]);
    const dead = (await timelineOf(run.id)).find((e) => e.kind === "delivery_dead");
    expect(dead?.detail.reason).toContain(reason);
  });

  it("sends to a local http receiver when ALLOW_HTTP_CALLBACKS is set", async () => {
    const tenant = await createTenant();
    const url = "http://127.0.0.1:9999/hook";
    const receiver = fakeReceiver([status(200)], url);
    const run = await storeFinishedRun(tenant.id, { callback_url: url });
    const { ctx, settle } = deliveryContext({ settings: { ALLOW_HTTP_CALLBACKS: "true" } });

    await onRunFinished(ctx, run);
    await settle();

    expect(receiver.calls).toHaveLength(1);
    expect((await onlyDeliveryOf(run.id)).status).toBe("succeeded");
  });

  it("does not follow a redirect towards another host", async () => {
    const tenant = await createTenant();
    let followed = false;
    network.use(
      http.post("https://elsewhere.test/*", () => {
        followed = true;
        return new HttpResponse(null, { status: 200 });
      }),
    );
    const receiver = fakeReceiver([
      () => new HttpResponse(null, { status: 307, headers: { location: "https://elsewhere.test/x" } }),
      status(200),
    ]);
    const run = await storeFinishedRun(tenant.id);
    const { ctx, settle } = deliveryContext({ settings: { POLL_TIME_SCALE: "0.001" } });

    await onRunFinished(ctx, run);
    await settle();

    expect(followed).toBe(false);
    expect(receiver.calls).toHaveLength(2);
    const [first, second] = await attemptsOf((await onlyDeliveryOf(run.id)).id);
    expect(first).toMatchObject({ status_code: 307 });
    expect(first?.error).toBe("HTTP 307: redirects are not followed (to https://elsewhere.test/x)");
    expect(second).toMatchObject({ status_code: 200, error: null });
  });
});
