import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse } from "msw";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { signatureMatches } from "../../src/webhooks/verify";
import {
  api,
  createTenant,
  expectJson,
  fakeParallel,
  parallelError,
  postJson,
  RELAY,
  resultReply,
  signWebhook,
  TEXT_RUN,
  type Tenant,
  taskRun,
  webhookBody,
} from "./harness";

/** Sends a webhook through the Worker's fetch handler with the given env, and waits for its background work. */
async function deliver(
  body: string,
  headers: Record<string, string>,
  envOverrides: Partial<Cloudflare.Env> = {},
) {
  const ctx = createExecutionContext();
  const response = await worker.fetch(
    new Request(`${RELAY}/webhooks/parallel`, { method: "POST", headers, body }),
    { ...env, ...envOverrides },
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return response;
}

async function startRun(
  tenant: Tenant,
  parallel = fakeParallel({ result: (call) => resultReply(call.path.split("/")[4] ?? "") }),
) {
  const run = await expectJson<{ id: string; parallel_run_id: string }>(
    await postJson("/v1/runs", TEXT_RUN, tenant.auth),
    202,
  );
  return { run, parallel };
}

const getRun = async (tenant: Tenant, id: string) =>
  expectJson<Record<string, unknown>>(await api(`/v1/runs/${id}`, { headers: tenant.auth }), 200);

/** Every row a webhook could write: its de-duplication record and any run's timeline. */
async function writtenRows(): Promise<{ webhooks: number; events: number }> {
  const [webhooks, events] = await env.DB.batch<{ n: number }>([
    env.DB.prepare("SELECT COUNT(*) AS n FROM webhook_events"),
    // Timeline events live in the run rows (and past the inline limit in run_events).
    env.DB.prepare(
      "SELECT (SELECT COALESCE(SUM(timeline_count), 0) FROM runs) + (SELECT COUNT(*) FROM run_events) AS n",
    ),
  ]);
  return { webhooks: webhooks?.results[0]?.n ?? -1, events: events?.results[0]?.n ?? -1 };
}

async function webhookRowCount(id: string): Promise<number> {
  const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM webhook_events WHERE webhook_id = ?")
    .bind(id)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

describe("signed-request matrix", () => {
  const body = webhookBody({ run_id: "trun_00000000000000000000000000000000", status: "completed" });
  const now = () => Math.floor(Date.now() / 1000);

  it("accepts a valid signature", async () => {
    fakeParallel();
    const response = await deliver(body, signWebhook(body));
    expect(await expectJson(response, 200)).toMatchObject({ received: true, outcome: "unknown_run" });
  });

  const rejected: Array<[string, () => { body: string; headers: Record<string, string> }]> = [
    ["a wrong secret", () => ({ body, headers: signWebhook(body, { secret: "another-secret" }) })],
    ["a tampered body", () => ({ body: body.replace("completed", "failed"), headers: signWebhook(body) })],
    ["a stale timestamp", () => ({ body, headers: signWebhook(body, { timestamp: now() - 301 }) })],
    ["a future timestamp", () => ({ body, headers: signWebhook(body, { timestamp: now() + 301 }) })],
    [
      "a non-numeric timestamp",
      () => ({ body, headers: { ...signWebhook(body), "webhook-timestamp": "soon" } }),
    ],
    ...(["webhook-id", "webhook-timestamp", "webhook-signature"] as const).map(
      (name): [string, () => { body: string; headers: Record<string, string> }] => [
        `no ${name} header`,
        () => {
          const headers = signWebhook(body);
          delete headers[name];
          return { body, headers };
        },
      ],
    ),
    [
      "a signature of another version",
      () => ({
        body,
        headers: {
          ...signWebhook(body),
          "webhook-signature": signWebhook(body)["webhook-signature"]?.replace("v1,", "v2,") ?? "",
        },
      }),
    ],
    [
      "a malformed signature header",
      () => ({ body, headers: { ...signWebhook(body), "webhook-signature": "v1,not base64!!" } }),
    ],
    [
      "a signature of the wrong length",
      () => ({ body, headers: { ...signWebhook(body), "webhook-signature": "v1,AAAA" } }),
    ],
  ];

  it.each(rejected)("refuses %s with 401 and writes nothing", async (_, make) => {
    const { body: sent, headers } = make();
    const before = await writtenRows();
    const response = await deliver(sent, headers);
    const error = await expectJson<{ error: { code: string; message: string } }>(response, 401);
    expect(error.error.code).toBe("invalid_signature");
    // Every case, with a webhook-id or without one: no row anywhere.
    expect(await writtenRows()).toEqual(before);
  });

  it("names the missing header", async () => {
    const headers = signWebhook(body);
    delete headers["webhook-timestamp"];
    const error = await expectJson<{ error: { message: string } }>(await deliver(body, headers), 401);
    expect(error.error.message).toContain("webhook-timestamp");
  });

  it("accepts a header with several signatures when one of them is valid", async () => {
    fakeParallel();
    const valid = signWebhook(body);
    const other = signWebhook(body, {
      secret: "rotated-away",
      id: valid["webhook-id"],
      timestamp: Number(valid["webhook-timestamp"]),
    });
    const headers = {
      ...valid,
      "webhook-signature": `${other["webhook-signature"]} ${valid["webhook-signature"]}`,
    };
    await expectJson(await deliver(body, headers), 200);
  });

  it("accepts a whsec_ secret used as a Standard Webhooks key, and as a raw string", async () => {
    fakeParallel();
    const secret = "whsec_YS0zMi1ieXRlLXRlc3Qtc2lnbmluZy1rZXktMDAwMSE=";
    await expectJson(
      await deliver(body, signWebhook(body, { secret, mode: "whsec" }), { PARALLEL_WEBHOOK_SECRET: secret }),
      200,
    );
    await expectJson(
      await deliver(body, signWebhook(body, { secret, mode: "raw" }), { PARALLEL_WEBHOOK_SECRET: secret }),
      200,
    );
  });

  it("accepts the previous secret during a rotation, and refuses it after", async () => {
    fakeParallel();
    const rotating = {
      PARALLEL_WEBHOOK_SECRET: "new-secret",
      PARALLEL_WEBHOOK_SECRET_PREVIOUS: "test-webhook-secret",
    };
    await expectJson(await deliver(body, signWebhook(body), rotating), 200);
    await expectJson(await deliver(body, signWebhook(body, { secret: "new-secret" }), rotating), 200);
    await expectJson(await deliver(body, signWebhook(body), { PARALLEL_WEBHOOK_SECRET: "new-secret" }), 401);
  });

  it("answers 500 with a configuration error when no secret is set", async () => {
    const error = await expectJson<{ error: { code: string; message: string } }>(
      await deliver(body, signWebhook(body), { PARALLEL_WEBHOOK_SECRET: "" }),
      500,
    );
    expect(error.error.code).toBe("configuration_error");
    expect(error.error.message).toContain("PARALLEL_WEBHOOK_SECRET");
  });

  it("verifies a signature over the webhook-timestamp header as sent, leading zero and all", async () => {
    fakeParallel();
    const id = `whevent_${crypto.randomUUID().replaceAll("-", "")}`;
    const timestamp = `0${now()}`;
    // Signed independently of the relay's code: HMAC-SHA256 over the characters sent.
    const key = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode("test-webhook-secret"),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${id}.${timestamp}.${body}`));
    const signature = `v1,${btoa(String.fromCharCode(...new Uint8Array(mac)))}`;
    const headers = {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": timestamp,
      "webhook-signature": signature,
    };
    expect(await expectJson(await deliver(body, headers), 200)).toMatchObject({ outcome: "unknown_run" });
    // The same signature does not verify for the timestamp without its zero: another signed text.
    const refused = await deliver(body, { ...headers, "webhook-timestamp": timestamp.slice(1) });
    expect(refused.status).toBe(401);
  });

  it("reproduces the reference test vectors for both key schemes", async () => {
    const vectorBody =
      '{"timestamp":"2025-04-23T20:21:48.037943Z","type":"task_run.status","data":{"run_id":"trun_9907962f83aa4d9d98fd7f4bf745d654","interaction_id":"trun_9907962f83aa4d9d98fd7f4bf745d654","status":"completed","is_active":false,"warnings":null,"error":null,"processor":"core","metadata":{"key":"value"},"taskgroup_id":null,"created_at":"2025-04-23T20:21:48.037943Z","modified_at":"2025-04-23T20:22:47.819416Z"}}';
    const webhook = { id: "whevent_abc123def456", timestamp: "1751498975", body: vectorBody };
    expect(
      await signatureMatches(
        ["test-webhook-secret"],
        webhook,
        "v1,4uy8qTlF+zmPelY3+wLTdj//o0Uk53WTA8QyQjxCai4=",
      ),
    ).toBe(true);
    const whsec = "whsec_YS0zMi1ieXRlLXRlc3Qtc2lnbmluZy1rZXktMDAwMSE=";
    expect(await signatureMatches([whsec], webhook, "v1,HHR/WVLUiwo8afKOXtXwlGUmRuoErUyEqcFeK9V5F5E=")).toBe(
      true,
    );
    expect(await signatureMatches([whsec], webhook, "v1,TmaWyzoY1OD4VAtwty2xXIOyoOzHbPPVU/6io+5oJO4=")).toBe(
      true,
    );
    expect(
      await signatureMatches(
        ["test-webhook-secret"],
        webhook,
        "v1,HHR/WVLUiwo8afKOXtXwlGUmRuoErUyEqcFeK9V5F5E=",
      ),
    ).toBe(false);
  });
});

describe("handling a verified webhook", () => {
  it("records completion, fetches the result once, and stores output and basis: two Parallel calls in all", async () => {
    const tenant = await createTenant();
    const { run, parallel } = await startRun(tenant);
    const body = webhookBody({ run_id: run.parallel_run_id, status: "completed" });
    const receipt = await expectJson(await deliver(body, signWebhook(body)), 200);
    expect(receipt).toMatchObject({ outcome: "applied", run_id: run.id });

    const stored = await getRun(tenant, run.id);
    expect(stored).toMatchObject({ status: "completed", result_available: true });
    const result = await expectJson<{ output: { content: unknown; basis: unknown[] } }>(
      await api(`/v1/runs/${run.id}/result`, { headers: tenant.auth }),
      200,
    );
    expect(result.output.content).toEqual({ gdp: "$3.1 trillion (2023)" });
    expect(result.output.basis).toHaveLength(1);
    expect(parallel.calls.map((c) => `${c.method} ${c.path.replace(/trun_\w+/, "{id}")}`)).toEqual([
      "POST /v1/tasks/runs",
      "GET /v1/tasks/runs/{id}/result",
    ]);
  });

  it("does no work twice for a repeated webhook-id", async () => {
    const tenant = await createTenant();
    const { run, parallel } = await startRun(tenant);
    const body = webhookBody({ run_id: run.parallel_run_id, status: "completed" });
    const headers = signWebhook(body);
    await expectJson(await deliver(body, headers), 200);
    const again = await expectJson(await deliver(body, { ...headers }), 200);
    expect(again).toMatchObject({ outcome: "duplicate" });
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(1);
    // The timeline records the webhook once, not once per delivery of it.
    const timeline = await expectJson<{ events: Array<{ kind: string; detail: { webhook_id?: string } }> }>(
      await api(`/v1/runs/${run.id}/timeline`, { headers: tenant.auth }),
      200,
    );
    const received = timeline.events.filter((e) => e.kind === "webhook_received");
    expect(received.map((e) => e.detail.webhook_id)).toEqual([headers["webhook-id"]]);
  });

  it("fetches the result once when two different webhooks for the run arrive together", async () => {
    const tenant = await createTenant();
    const { run, parallel } = await startRun(tenant);
    const body = webhookBody({ run_id: run.parallel_run_id, status: "completed" });
    await Promise.all([deliver(body, signWebhook(body)), deliver(body, signWebhook(body))]);
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(1);
    expect(await getRun(tenant, run.id)).toMatchObject({ result_available: true });
  });

  it("answers 200 for a run taskrelay does not know, and records it", async () => {
    fakeParallel();
    const body = webhookBody({ run_id: "trun_ffffffffffffffffffffffffffffffff", status: "completed" });
    const headers = signWebhook(body);
    expect(await expectJson(await deliver(body, headers), 200)).toMatchObject({
      outcome: "unknown_run",
      run_id: null,
    });
    expect(await webhookRowCount(headers["webhook-id"] ?? "")).toBe(1);
  });

  it("matches a run whose create response was lost by the run id in its metadata", async () => {
    const tenant = await createTenant();
    let parallelRunId = "";
    // Parallel creates the run but the response never arrives.
    const parallel = fakeParallel({
      create: (call) => {
        parallelRunId = taskRun().run_id;
        void call;
        return HttpResponse.error();
      },
      result: () => resultReply(parallelRunId),
    });
    const run = await expectJson<{ id: string; status: string }>(
      await postJson("/v1/runs", TEXT_RUN, tenant.auth),
      202,
    );
    expect(run.status).toBe("submitting");
    const metadata = (parallel.creates()[0]?.body as { metadata?: Record<string, string> } | undefined)
      ?.metadata;
    expect(metadata?.taskrelay_run_id).toBe(run.id);
    const body = webhookBody({ run_id: parallelRunId, status: "completed", metadata });
    expect(await expectJson(await deliver(body, signWebhook(body)), 200)).toMatchObject({
      outcome: "applied",
      run_id: run.id,
    });
    expect(await getRun(tenant, run.id)).toMatchObject({
      status: "completed",
      parallel_run_id: parallelRunId,
      result_available: true,
    });
    const timeline = await expectJson<{ events: Array<{ kind: string; detail: Record<string, unknown> }> }>(
      await api(`/v1/runs/${run.id}/timeline`, { headers: tenant.auth }),
      200,
    );
    expect(timeline.events.find((e) => e.kind === "webhook_received")?.detail).toMatchObject({
      matched_by: "metadata",
    });
  });

  it.each([
    ["the schema's shape", { ref_id: "r1", message: "Task execution failed", detail: null }],
    ["the docs' example shape", { message: "Task execution failed", details: "Additional error details" }],
  ])("stores Parallel's error for a failed run (%s) and fetches no result", async (_, error) => {
    const tenant = await createTenant();
    const { run, parallel } = await startRun(tenant);
    const body = webhookBody({ run_id: run.parallel_run_id, status: "failed", error });
    await expectJson(await deliver(body, signWebhook(body)), 200);
    expect(await getRun(tenant, run.id)).toMatchObject({
      status: "failed",
      error: { code: "parallel_failed", message: "Task execution failed" },
      result_available: false,
    });
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(0);
    const failed = await expectJson<{ error: { code: string } }>(
      await api(`/v1/runs/${run.id}/result`, { headers: tenant.auth }),
      409,
    );
    expect(failed.error.code).toBe("run_failed");
  });

  it("keeps the run completed and retries when /result answers 404 just after the webhook", async () => {
    const tenant = await createTenant();
    const { run } = await startRun(
      tenant,
      fakeParallel({ result: () => parallelError(404, "Run failed or run id not found") }),
    );
    const body = webhookBody({ run_id: run.parallel_run_id, status: "completed" });
    await expectJson(await deliver(body, signWebhook(body)), 200);
    // A few 404s in a row end it failed (test/worker/stuck-runs.test.ts); one is retried.
    expect(await getRun(tenant, run.id)).toMatchObject({ status: "completed", result_available: false });
  });

  it("keeps the run completed with a result fetch scheduled when /result keeps failing", async () => {
    const tenant = await createTenant();
    const { run, parallel } = await startRun(
      tenant,
      fakeParallel({ result: () => parallelError(503, "unavailable") }),
    );
    const body = webhookBody({ run_id: run.parallel_run_id, status: "completed" });
    await expectJson(await deliver(body, signWebhook(body)), 200);
    expect(await getRun(tenant, run.id)).toMatchObject({ status: "completed", result_available: false });
    // One quick retry in the same invocation, then the sweeper's turn.
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(2);
    const timeline = await expectJson<{ events: Array<{ kind: string }> }>(
      await api(`/v1/runs/${run.id}/timeline`, { headers: tenant.auth }),
      200,
    );
    expect(timeline.events.map((e) => e.kind)).toContain("result_fetch_retry_scheduled");
  });

  it("takes a late completion of a run taskrelay had expired, and fetches its result", async () => {
    const tenant = await createTenant();
    const { run } = await startRun(tenant);
    await env.DB.prepare(
      'UPDATE runs SET status = \'expired\', error = \'{"code":"expired","message":"too slow"}\', next_sweep_at = NULL WHERE id = ?',
    )
      .bind(run.id)
      .run();
    const body = webhookBody({ run_id: run.parallel_run_id, status: "completed" });
    expect(await expectJson(await deliver(body, signWebhook(body)), 200)).toMatchObject({
      outcome: "applied",
    });
    expect(await getRun(tenant, run.id)).toMatchObject({
      status: "completed",
      error: null,
      result_available: true,
    });
  });

  it("never changes a run Parallel already finished", async () => {
    const tenant = await createTenant();
    const { run, parallel } = await startRun(tenant);
    const failed = webhookBody({ run_id: run.parallel_run_id, status: "failed", error: { message: "boom" } });
    await expectJson(await deliver(failed, signWebhook(failed)), 200);
    const completed = webhookBody({ run_id: run.parallel_run_id, status: "completed" });
    expect(await expectJson(await deliver(completed, signWebhook(completed)), 200)).toMatchObject({
      outcome: "already_applied",
    });
    expect(await getRun(tenant, run.id)).toMatchObject({ status: "failed" });
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(0);
  });

  it("ignores a signed event of another type, answering 200", async () => {
    const body = JSON.stringify({
      type: "monitor.event.detected",
      timestamp: new Date().toISOString(),
      data: {},
    });
    expect(await expectJson(await deliver(body, signWebhook(body)), 200)).toMatchObject({
      outcome: "ignored",
    });
  });

  it("answers 400 for a signed body that is not JSON", async () => {
    const body = "not json";
    const error = await expectJson<{ error: { code: string } }>(await deliver(body, signWebhook(body)), 400);
    expect(error.error.code).toBe("invalid_json");
  });
});
