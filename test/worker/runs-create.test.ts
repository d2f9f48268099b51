import { HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import {
  api,
  createTenant,
  expectJson,
  fakeParallel,
  parallelError,
  postJson,
  TEXT_RUN,
  taskRun,
} from "./harness";

describe("POST /v1/runs", () => {
  it("stores the run, creates it at Parallel with the webhook beta, and answers 202", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const run = await expectJson(
      await postJson("/v1/runs", { ...TEXT_RUN, metadata: { customer: "acme" } }, tenant.auth),
      202,
    );

    expect(run.id).toMatch(/^run_[0-9A-Z]{26}$/);
    expect(run.status).toBe("queued");
    expect(run.parallel_run_id).toMatch(/^trun_/);
    expect(run.processor).toBe("base");
    expect(run.metadata).toEqual({ customer: "acme" });

    const [create] = parallel.creates();
    expect(parallel.creates()).toHaveLength(1);
    expect(create?.headers.get("x-api-key")).toBe("test-parallel-key");
    expect(create?.headers.get("parallel-beta")).toBe("webhook-2025-08-12");
    expect(create?.body).toMatchObject({
      processor: "base",
      input: TEXT_RUN.input,
      metadata: { customer: "acme", taskrelay_run_id: run.id },
      webhook: { url: "https://relay.test/webhooks/parallel", event_types: ["task_run.status"] },
    });

    const stored = await expectJson(await api(`/v1/runs/${run.id}`, { headers: tenant.auth }), 200);
    expect(stored).toEqual(run);
  });

  it("adds every beta the request's fields need, together in one header", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    await expectJson(
      await postJson(
        "/v1/runs",
        {
          ...TEXT_RUN,
          enable_events: true,
          mcp_servers: [
            { name: "crm", url: "https://mcp.example.com", headers: { authorization: "Bearer s3cret" } },
          ],
        },
        tenant.auth,
      ),
      202,
    );
    expect(parallel.creates()[0]?.headers.get("parallel-beta")?.split(",")).toEqual([
      "webhook-2025-08-12",
      "events-sse-2025-07-24",
      "mcp-server-2025-07-17",
    ]);
  });

  it("takes callback: null as no callback, as the document says", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const run = await expectJson(
      await postJson("/v1/runs", { ...TEXT_RUN, callback: null }, tenant.auth),
      202,
    );
    expect(run.callback).toBeNull();
    expect(parallel.creates()).toHaveLength(1);
    // The same request as no callback at all, for an Idempotency-Key.
    const key = { ...tenant.auth, "idempotency-key": "null-callback" };
    const first = await expectJson(await postJson("/v1/runs", TEXT_RUN, key), 202);
    const again = await postJson("/v1/runs", { ...TEXT_RUN, callback: null }, key);
    expect((await expectJson(again, 202)).id).toBe(first.id);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    const schedule = await expectJson(
      await postJson(
        "/v1/schedules",
        { name: "daily", cron: "0 9 * * *", timezone: "UTC", template: TEXT_RUN, callback: null },
        tenant.auth,
      ),
      201,
    );
    expect(schedule.callback).toBeNull();
  });

  it("keeps Parallel's warnings and shows them to the user", async () => {
    const tenant = await createTenant();
    const warnings = [
      { type: "spec_validation_warning", message: "Field 'sources' looks like basis", detail: null },
    ];
    fakeParallel({ create: () => HttpResponse.json(taskRun({ warnings }), { status: 202 }) });
    const run = await expectJson(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    expect(run.warnings).toEqual(warnings);
  });

  it("returns the first run for a repeated Idempotency-Key and makes no second Parallel run", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const headers = { ...tenant.auth, "idempotency-key": "order-4711" };
    const first = await expectJson(await postJson("/v1/runs", TEXT_RUN, headers), 202);
    const againResponse = await postJson("/v1/runs", { input: TEXT_RUN.input, processor: "base" }, headers);
    const again = await expectJson(againResponse, 202);
    expect(again.id).toBe(first.id);
    expect(againResponse.headers.get("idempotent-replayed")).toBe("true");
    expect(parallel.creates()).toHaveLength(1);
  });

  it("answers 409 for a reused Idempotency-Key with a different body", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const headers = { ...tenant.auth, "idempotency-key": "order-4712" };
    await expectJson(await postJson("/v1/runs", TEXT_RUN, headers), 202);
    const body = await expectJson<{ error: { code: string } }>(
      await postJson("/v1/runs", { ...TEXT_RUN, input: "something else" }, headers),
      409,
    );
    expect(body.error.code).toBe("idempotency_conflict");
  });

  it("scopes Idempotency-Keys to the API key", async () => {
    const [a, b] = [await createTenant("a"), await createTenant("b")];
    const parallel = fakeParallel();
    const runA = await expectJson(
      await postJson("/v1/runs", TEXT_RUN, { ...a.auth, "idempotency-key": "same" }),
      202,
    );
    const runB = await expectJson(
      await postJson("/v1/runs", TEXT_RUN, { ...b.auth, "idempotency-key": "same" }),
      202,
    );
    expect(runA.id).not.toBe(runB.id);
    expect(parallel.creates()).toHaveLength(2);
  });

  // 401 and 402 are the operator's problem, not the run's: test/worker/stuck-runs.test.ts.
  it.each([
    [403, "Forbidden: invalid processor in request"],
    [422, "Unprocessable content: request validation error"],
  ])("marks the run rejected when Parallel answers %i, and says why", async (status, message) => {
    const tenant = await createTenant();
    fakeParallel({ create: () => parallelError(status, message) });
    const body = await expectJson<{
      error: { code: string; message: string; details: Array<{ run_id: string }> };
    }>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 422);
    expect(body.error.code).toBe("parallel_rejected");
    expect(body.error.message).toContain(`HTTP ${status}`);
    expect(body.error.message).toContain(message);
    const runId = body.error.details[0]?.run_id;
    const run = await expectJson(await api(`/v1/runs/${runId}`, { headers: tenant.auth }), 200);
    expect(run.status).toBe("rejected");
    expect(run.error).toMatchObject({ code: "parallel_rejected" });
  });

  it.each([
    [
      "a 429",
      () => parallelError(429, "Too many requests: quota temporarily exceeded", { "retry-after": "7" }),
    ],
    ["a 503", () => parallelError(503, "Service unavailable")],
    ["a network failure", () => HttpResponse.error()],
  ])("keeps the run submitting with a next attempt after %s, and still answers 202", async (_, reply) => {
    const tenant = await createTenant();
    fakeParallel({ create: reply });
    const before = Date.now();
    const run = await expectJson(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    expect(run.status).toBe("submitting");
    expect(run.parallel_run_id).toBeNull();
    const timeline = await expectJson<{
      events: Array<{ kind: string; detail: { next_attempt_at: string } }>;
    }>(await api(`/v1/runs/${run.id}/timeline`, { headers: tenant.auth }), 200);
    const retry = timeline.events.find((e) => e.kind === "submit_retry_scheduled");
    expect(retry).toBeDefined();
    expect(Date.parse(retry?.detail.next_attempt_at ?? "")).toBeGreaterThan(before);
  });

  it("honours Retry-After when scheduling the next submission", async () => {
    const tenant = await createTenant();
    fakeParallel({ create: () => parallelError(429, "Too many requests", { "retry-after": "600" }) });
    const before = Date.now();
    const run = await expectJson(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    const timeline = await expectJson<{
      events: Array<{ kind: string; detail: { next_attempt_at: string } }>;
    }>(await api(`/v1/runs/${run.id}/timeline`, { headers: tenant.auth }), 200);
    const next = Date.parse(
      timeline.events.find((e) => e.kind === "submit_retry_scheduled")?.detail.next_attempt_at ?? "",
    );
    expect(next - before).toBeGreaterThanOrEqual(600_000 - 1000);
  });
});
