// The batch API and its submission through Task Groups (issue 15): on real D1 with the real
// migrations behind the D1-limits double, Parallel at the HTTP boundary (MSW), the submission worked
// by the real queue consumer.
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { BATCH_LEASE_MS } from "../../src/services/batch-submission";
import { addMs } from "../../src/services/timing";
import { batchClient, fakeTaskGroups, workSubmissions } from "./batch-harness";
import {
  api,
  createTenant,
  emptyBackgroundWork,
  expectJson,
  fakeParallel,
  JSON_OUTPUT,
  PARALLEL,
  parallelError,
  resultReply,
  signWebhook,
  type Tenant,
  webhookBody,
} from "./harness";
import { tickAndWork } from "./queue-harness";

const TEMPLATE = {
  processor: "lite",
  task_spec: {
    input_schema: {
      type: "json",
      json_schema: {
        type: "object",
        properties: { company: { type: "string" } },
        required: ["company"],
        additionalProperties: false,
      },
    },
    output_schema: {
      type: "json",
      json_schema: {
        type: "object",
        properties: { ceo: { type: "string" } },
        required: ["ceo"],
        additionalProperties: false,
      },
    },
  },
  metadata: { source: "crm" },
};

// 10,000-input batches take seconds to store and submit on a loaded machine (no speed is asserted).
vi.setConfig({ testTimeout: 300_000 });

const JSON_HEADERS = { "content-type": "application/json", authorization: "Bearer test-parallel-key" };

const inputs = (n: number, from = 0) =>
  Array.from({ length: n }, (_, i) => ({
    input: { company: `Company ${from + i}` },
    metadata: { row: from + i },
  }));

interface BatchBody {
  id: string;
  status: string;
  counts: Record<string, number>;
  taskgroup_id: string | null;
  eta_at: string | null;
  closed_at: string | null;
  refused?: Array<{ index: number; details: Array<{ path: string; message: string }> }>;
}

interface ErrorBody {
  error: {
    code: string;
    message: string;
    details: Array<{ path?: string; message: string; index?: number }>;
  };
}

async function runRows(batchId: string) {
  const { results } = await env.DB.prepare(
    "SELECT id, status, parallel_run_id, batch_index, metadata, next_sweep_at FROM runs WHERE batch_id = ? ORDER BY batch_index",
  )
    .bind(batchId)
    .all<{
      id: string;
      status: string;
      parallel_run_id: string | null;
      batch_index: number;
      metadata: string | null;
      next_sweep_at: string | null;
    }>();
  return results;
}

async function tenantRunCount(tenant: Tenant) {
  const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE api_key_id = ?")
    .bind(tenant.id)
    .first<{ n: number }>();
  return row?.n ?? -1;
}

describe("POST /v1/batches", () => {
  let tenant: Tenant;
  beforeEach(async () => {
    await emptyBackgroundWork();
    tenant = await createTenant("batches");
  });

  it("stores 10,000 inputs as 10,000 runs and submits them in 10 add-runs calls of 1,000", async () => {
    const groups = fakeTaskGroups();
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post(
        "/v1/batches",
        { name: "ten thousand", template: TEMPLATE, inputs: inputs(10_000) },
        tenant.auth,
      ),
      202,
    );
    expect(created.status).toBe("submitting");
    expect(created.counts).toMatchObject({ total: 10_000, submitting: 10_000 });
    const rows = await runRows(created.id);
    expect(rows).toHaveLength(10_000);
    expect(rows.map((r) => r.batch_index)).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
    // Nothing due for a batch run on its own: resubmit_runs never creates them one by one.
    expect(rows.every((r) => r.status === "submitting" && r.next_sweep_at === null)).toBe(true);
    expect(JSON.parse(rows[7]?.metadata ?? "{}")).toEqual({ source: "crm", row: 7 });
    // One message starts the submission.
    expect(client.captured.sent.map((m) => m.body.kind)).toEqual(["submit_batches"]);

    const { messages } = await workSubmissions(client.captured);
    // Three add-runs calls a message: 10 chunks in 4 messages.
    expect(messages).toBe(4);
    expect(groups.creates()).toHaveLength(1);
    // Parallel's metadata keys are at most 16 characters (the simulator refused a longer one).
    const groupMetadata = (groups.creates()[0]?.body as { metadata?: unknown } | undefined)?.metadata;
    expect(groupMetadata).toEqual({ taskrelay_batch: created.id });
    const adds = groups.adds();
    expect(adds).toHaveLength(10);
    for (const add of adds) {
      const body = add.body as {
        inputs: Array<{ metadata: Record<string, unknown>; webhook: { url: string } }>;
        default_task_spec: unknown;
      };
      expect(body.inputs.length).toBeLessThanOrEqual(1000);
      expect(body.default_task_spec).toEqual(TEMPLATE.task_spec);
      expect(add.headers.get("parallel-beta")).toContain("webhook-2025-08-12");
      for (const input of body.inputs) {
        expect(input.webhook.url).toBe("https://relay.test/webhooks/parallel");
        expect(typeof input.metadata.taskrelay_run_id).toBe("string");
      }
    }
    // Every run at Parallel once, in input order, and its Parallel id stored on it.
    const made = groups.allRuns();
    expect(made.map((r) => r.metadata.taskrelay_run_id)).toEqual(rows.map((r) => r.id));
    const after = await runRows(created.id);
    expect(after.every((r, i) => r.status === "queued" && r.parallel_run_id === made[i]?.run_id)).toBe(true);

    const batch = await expectJson<BatchBody>(
      await api(`/v1/batches/${created.id}`, { headers: tenant.auth }),
      200,
    );
    expect(batch.status).toBe("running");
    expect(batch.taskgroup_id).toMatch(/^tgrp_/);
    expect(batch.counts).toMatchObject({ total: 10_000, queued: 10_000, submitting: 0 });
    expect(batch.eta_at).not.toBeNull();
  });

  it("refuses every bad input by its index, and stores nothing", async () => {
    const client = batchClient();
    const list = [
      ...inputs(2),
      { input: { company: 42 } },
      { metadata: { row: 1 } },
      { input: { company: "Ok" }, metadata: { taskrelay_run_id: "x" } },
      { input: { company: "Ok" }, extra: true },
    ];
    const error = await expectJson<ErrorBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: list }, tenant.auth),
      422,
    );
    expect(error.error.code).toBe("validation_failed");
    expect(new Set(error.error.details.map((d) => d.index))).toEqual(new Set([2, 3, 4, 5]));
    const paths = error.error.details.map((d) => d.path);
    expect(paths).toContain("inputs.2.input.company");
    expect(paths).toContain("inputs.3.input");
    expect(paths).toContain("inputs.4.metadata.taskrelay_run_id");
    expect(paths).toContain("inputs.5.extra");
    expect(await tenantRunCount(tenant)).toBe(0);
    expect(client.captured.sent).toHaveLength(0);
  });

  it("reports template problems once, with the inputs' shape problems in the same answer", async () => {
    const client = batchClient();
    const error = await expectJson<ErrorBody>(
      await client.post(
        "/v1/batches",
        {
          template: { processor: "fastest", task_spec: TEMPLATE.task_spec },
          inputs: [{ input: { company: 1 } }, {}],
        },
        tenant.auth,
      ),
      422,
    );
    const details = error.error.details;
    expect(details.filter((d) => d.path === "template.processor")).toHaveLength(1);
    expect(details.find((d) => d.index === 0)?.path).toBe("inputs.0.input.company");
    expect(details.find((d) => d.index === 1)?.path).toBe("inputs.1.input");
  });

  it("with skip_invalid submits the valid inputs and lists the refused", async () => {
    fakeTaskGroups();
    const client = batchClient();
    const list = [...inputs(3), { input: { company: 1 } }, ...inputs(2, 3)];
    const created = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: list, skip_invalid: true }, tenant.auth),
      202,
    );
    expect(created.counts.total).toBe(5);
    expect(created.refused).toEqual([
      { index: 3, details: [{ path: "inputs.3.input.company", message: expect.any(String) }] },
    ]);
    // Accepted inputs are numbered without gaps.
    expect((await runRows(created.id)).map((r) => r.batch_index)).toEqual([0, 1, 2, 3, 4]);
    // All refused: nothing to submit, a 422.
    await expectJson(
      await client.post(
        "/v1/batches",
        { template: TEMPLATE, inputs: [{ input: { company: 1 } }], skip_invalid: true },
        tenant.auth,
      ),
      422,
    );
  });

  it("replays an Idempotency-Key: same body the same batch, another body 409", async () => {
    fakeTaskGroups();
    const client = batchClient();
    const body = { template: TEMPLATE, inputs: inputs(3) };
    const key = { ...tenant.auth, "idempotency-key": "batch-1" };
    const first = await expectJson<BatchBody>(await client.post("/v1/batches", body, key), 202);
    const again = await client.post("/v1/batches", body, key);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect((await expectJson<BatchBody>(again, 202)).id).toBe(first.id);
    expect(await tenantRunCount(tenant)).toBe(3);
    const other = await expectJson<ErrorBody>(
      await client.post("/v1/batches", { ...body, inputs: inputs(4) }, key),
      409,
    );
    expect(other.error.code).toBe("idempotency_conflict");
  });

  it("takes a 10,000-input body over the 1 MB limit of other routes, and refuses 10,001 inputs", async () => {
    const client = batchClient();
    const big = inputs(10_000).map((i) => ({
      ...i,
      input: { company: `${i.input.company} ${"x".repeat(100)}` },
    }));
    expect(JSON.stringify(big).length).toBeGreaterThan(1024 * 1024);
    fakeTaskGroups();
    await expectJson(await client.post("/v1/batches", { template: TEMPLATE, inputs: big }, tenant.auth), 202);
    const error = await expectJson<ErrorBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(10_001) }, tenant.auth),
      422,
    );
    expect(error.error.details[0]?.path).toBe("inputs");
  });
});

describe("open batches: inputs, close, cancel", () => {
  let tenant: Tenant;
  beforeEach(async () => {
    await emptyBackgroundWork();
    tenant = await createTenant("open-batches");
  });

  it("adds inputs while open, numbered on, then closes", async () => {
    const groups = fakeTaskGroups();
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(2), open: true }, tenant.auth),
      202,
    );
    expect(created.status).toBe("open");
    await workSubmissions(client.captured);
    expect(groups.adds()).toHaveLength(1);
    // All sent, still open: nothing due.
    const open = await expectJson<BatchBody>(
      await api(`/v1/batches/${created.id}`, { headers: tenant.auth }),
      200,
    );
    expect(open).toMatchObject({ status: "open", counts: { total: 2, queued: 2 } });

    const added = await expectJson<BatchBody>(
      await client.post(`/v1/batches/${created.id}/inputs`, { inputs: inputs(3, 2) }, tenant.auth),
      202,
    );
    expect(added.counts.total).toBe(5);
    expect((await runRows(created.id)).map((r) => r.batch_index)).toEqual([0, 1, 2, 3, 4]);
    await workSubmissions(client.captured);
    expect(groups.adds()).toHaveLength(2);
    expect((groups.adds()[1]?.body as { inputs: unknown[] } | undefined)?.inputs).toHaveLength(3);

    const closed = await expectJson<BatchBody>(
      await client.post(`/v1/batches/${created.id}/close`, {}, tenant.auth),
      200,
    );
    expect(closed.status).toBe("running");
    expect(closed.closed_at).not.toBeNull();
    const refused = await expectJson<ErrorBody>(
      await client.post(`/v1/batches/${created.id}/inputs`, { inputs: inputs(1) }, tenant.auth),
      409,
    );
    expect(refused.error.code).toBe("invalid_state");
    // The added inputs are checked too, by their index in the request.
    const open2 = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, open: true }, tenant.auth),
      202,
    );
    const bad = await expectJson<ErrorBody>(
      await client.post(
        `/v1/batches/${open2.id}/inputs`,
        { inputs: [...inputs(1), { input: {} }] },
        tenant.auth,
      ),
      422,
    );
    expect(bad.error.details.map((d) => [d.index, d.path])).toEqual([[1, "inputs.1.input.company"]]);
  });

  it("cancel submits nothing more: unsent inputs end cancelled, runs at Parallel are kept", async () => {
    const groups = fakeTaskGroups();
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(4500) }, tenant.auth),
      202,
    );
    // The first message sends 3 chunks (3,000 inputs), then hands on to a follow-up; cancel before it runs.
    const first = client.captured.take();
    await client.captured.queue.send(first[0]?.body as never);
    await workSubmissions(client.captured, { maxRounds: 1 });
    expect(groups.adds()).toHaveLength(3);
    const cancelled = await expectJson<BatchBody>(
      await client.post(`/v1/batches/${created.id}/cancel`, {}, tenant.auth),
      200,
    );
    expect(cancelled.status).toBe("cancelled");
    expect(cancelled.counts).toMatchObject({ total: 4500, queued: 3000, cancelled: 1500 });
    await workSubmissions(client.captured);
    expect(groups.adds()).toHaveLength(3);
    const rows = await runRows(created.id);
    expect(rows.filter((r) => r.status === "cancelled").every((r) => r.batch_index >= 3000)).toBe(true);
    // A cancelled batch takes no inputs and cannot be closed.
    await expectJson(await client.post(`/v1/batches/${created.id}/close`, {}, tenant.auth), 409);
  });
});

describe("submission faults", () => {
  let tenant: Tenant;
  beforeEach(async () => {
    await emptyBackgroundWork();
    tenant = await createTenant("batch-faults");
  });

  it("a chunk whose answer was lost is found in the group's runs, not sent twice", async () => {
    let lose = 1;
    // The second add-runs call makes its runs and then its answer is lost (a 502 from a proxy).
    let calls = 0;
    const groups = fakeTaskGroups({
      add: () => {
        calls++;
        if (calls === 2 && lose-- > 0) return parallelError(502, "Bad gateway");
        return undefined;
      },
    });
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(2500) }, tenant.auth),
      202,
    );
    await workSubmissions(client.captured);
    expect(groups.adds()).toHaveLength(2);
    // Retried after backoff: the chunk is in doubt, so the next try reads the runs stream first.
    const later = new Date(Date.now() + 10 * 60_000);
    await client.captured.queue.send({ kind: "submit_batches", id: created.id, lease: "" });
    await workSubmissions(client.captured, { now: () => later });
    expect(groups.streams()).toHaveLength(1);
    // From the cursor of the last chunk accepted: that chunk's runs and the lost one's.
    expect(new URL(`https://x${groups.streams()[0]?.path}`).pathname).toContain("/runs");
    // The lost chunk was not sent again: 3 add-runs calls for 3 chunks, 2,500 runs at Parallel.
    expect(groups.adds()).toHaveLength(3);
    const made = groups.allRuns();
    expect(made).toHaveLength(2500);
    const rows = await runRows(created.id);
    expect(new Set(made.map((r) => r.metadata.taskrelay_run_id)).size).toBe(2500);
    expect(rows.every((r, i) => r.parallel_run_id === made[i]?.run_id)).toBe(true);
    const batch = await expectJson<BatchBody>(
      await api(`/v1/batches/${created.id}`, { headers: tenant.auth }),
      200,
    );
    expect(batch.status).toBe("running");
  });

  it("a worker killed mid-call leaves the chunk in flight; after its lease the tick's worker reconciles", async () => {
    const groups = fakeTaskGroups();
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(5) }, tenant.auth),
      202,
    );
    client.captured.take(); // the start message is lost with the worker
    // What the dying worker did: created the group, marked the chunk in flight (lease renewed), made the
    // add-runs call that Parallel carried out; it died before recording the answer.
    const start = new Date();
    const group = await expectJson<{ taskgroup_id: string }>(
      await fetch(`${PARALLEL}/v1/tasks/groups`, { method: "POST", headers: JSON_HEADERS, body: "{}" }),
      200,
    );
    const rows = await runRows(created.id);
    await fetch(`${PARALLEL}/v1/tasks/groups/${group.taskgroup_id}/runs`, {
      method: "POST",
      headers: JSON_HEADERS,
      body: JSON.stringify({
        inputs: rows.map((r) => ({ processor: "lite", input: "x", metadata: { taskrelay_run_id: r.id } })),
      }),
    });
    await env.DB.prepare("UPDATE batches SET taskgroup_id = ?, chunk_end = 5, lease_until = ? WHERE id = ?")
      .bind(group.taskgroup_id, addMs(start, BATCH_LEASE_MS).toISOString(), created.id)
      .run();
    // While the lease lasts nobody touches the batch.
    const early = await tickAndWork(addMs(start, 60_000));
    expect(early.summaries.submit_batches).toMatchObject({ claimed: 0 });
    const late = await tickAndWork(addMs(start, BATCH_LEASE_MS + 60_000));
    expect(late.summaries.submit_batches).toMatchObject({ claimed: 1, chunk_recovered: 1, finished: 1 });
    // One reconciling read (the bulk result fetch may also have read the stream, with outputs).
    expect(groups.reconcilingReads()).toBe(1);
    expect(groups.adds()).toHaveLength(1);
    expect(groups.allRuns()).toHaveLength(5);
    const after = await runRows(created.id);
    expect(
      after.every((r, i) => r.status === "queued" && r.parallel_run_id === groups.allRuns()[i]?.run_id),
    ).toBe(true);
  });

  it("a 429 made nothing: the chunk is sent again without reading the stream", async () => {
    let throttled = 1;
    const groups = fakeTaskGroups({
      refuseAdd: () =>
        throttled-- > 0 ? parallelError(429, "Too many requests", { "retry-after": "1" }) : undefined,
    });
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(5) }, tenant.auth),
      202,
    );
    await workSubmissions(client.captured);
    const later = new Date(Date.now() + 10 * 60_000);
    await client.captured.queue.send({ kind: "submit_batches", id: created.id, lease: "" });
    await workSubmissions(client.captured, { now: () => later });
    expect(groups.streams()).toHaveLength(0);
    expect(groups.adds()).toHaveLength(2);
    expect(groups.allRuns()).toHaveLength(5);
    expect((await runRows(created.id)).every((r) => r.parallel_run_id)).toBe(true);
  });

  it("a chunk Parallel refuses ends its runs rejected and the batch goes on", async () => {
    let refuse = 1;
    const groups = fakeTaskGroups({
      refuseAdd: () => (refuse-- > 0 ? parallelError(422, "bad input") : undefined),
    });
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(1500) }, tenant.auth),
      202,
    );
    await workSubmissions(client.captured);
    expect(groups.adds()).toHaveLength(2);
    const batch = await expectJson<BatchBody>(
      await api(`/v1/batches/${created.id}`, { headers: tenant.auth }),
      200,
    );
    expect(batch.counts).toMatchObject({ rejected: 1000, queued: 500 });
    expect(batch.status).toBe("running");
  });
});

describe("batch runs are ordinary runs", () => {
  let tenant: Tenant;
  beforeEach(async () => {
    await emptyBackgroundWork();
    tenant = await createTenant("batch-runs");
  });

  it("complete through the webhook path, list by batch_id, and stream the counts to the end", async () => {
    const groups = fakeTaskGroups();
    const parallel = fakeParallel({ result: (call) => resultReply(call.path.split("/")[4] ?? "") });
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(3) }, tenant.auth),
      202,
    );
    await workSubmissions(client.captured);
    for (const run of groups.allRuns()) {
      groups.complete(run.run_id, JSON_OUTPUT);
      const body = webhookBody({
        run_id: run.run_id,
        status: "completed",
        metadata: run.metadata,
        processor: "lite",
      });
      const response = await client.call("/webhooks/parallel", {
        method: "POST",
        headers: signWebhook(body),
        body,
      });
      expect(response.status).toBe(200);
    }
    // The results come in bulk: the webhooks made the batch's result fetch due, and one read of the
    // group's runs stream with outputs stores all three; no run's own /result is fetched.
    await tickAndWork(new Date(Date.now() + 60_000));
    expect(groups.outputReads.length).toBeGreaterThanOrEqual(1);
    expect(groups.outputReads.length).toBeLessThanOrEqual(2);
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(0);
    const listed = await expectJson<{ data: Array<Record<string, unknown>> }>(
      await api(`/v1/runs?batch_id=${created.id}`, { headers: tenant.auth }),
      200,
    );
    expect(listed.data).toHaveLength(3);
    expect(
      listed.data.every((r) => r.batch_id === created.id && r.status === "completed" && r.result_available),
    ).toBe(true);
    expect(listed.data.map((r) => r.batch_index).sort()).toEqual([0, 1, 2]);
    const first = listed.data.find((r) => r.batch_index === 0);
    const result = await expectJson<{ output: unknown }>(
      await api(`/v1/runs/${first?.id}/result`, { headers: tenant.auth }),
      200,
    );
    expect(result.output).toMatchObject({ type: "json" });
    const timeline = await expectJson<{ events: Array<{ kind: string }> }>(
      await api(`/v1/runs/${first?.id}/timeline`, { headers: tenant.auth }),
      200,
    );
    expect(timeline.events.map((e) => e.kind)).toEqual([
      "stored",
      "submitted",
      "status_changed",
      "webhook_received",
      "result_fetched",
    ]);
    // Another tenant sees none of it.
    const other = await createTenant("other");
    await expectJson(await api(`/v1/batches/${created.id}`, { headers: other.auth }), 404);
    const none = await expectJson<{ data: unknown[] }>(
      await api(`/v1/runs?batch_id=${created.id}`, { headers: other.auth }),
      200,
    );
    expect(none.data).toHaveLength(0);

    const progress = await api(`/v1/batches/${created.id}/progress`, { headers: tenant.auth });
    expect(progress.headers.get("content-type")).toContain("text/event-stream");
    const text = await progress.text();
    expect(text).toContain("event: end");
    const end = text.split("event: end\ndata: ")[1]?.split("\n")[0] ?? "{}";
    expect(JSON.parse(end)).toMatchObject({
      id: created.id,
      counts: { total: 3, completed: 3 },
      eta_at: null,
    });

    const page = await expectJson<{ data: BatchBody[] }>(
      await api("/v1/batches", { headers: tenant.auth }),
      200,
    );
    expect(page.data.map((b) => b.id)).toEqual([created.id]);
    expect(page.data[0]?.counts.completed).toBe(3);
  });

  it("a per_run callback is each run's callback URL", async () => {
    fakeTaskGroups();
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post(
        "/v1/batches",
        {
          template: TEMPLATE,
          inputs: inputs(2),
          callback: { url: "https://hooks.example/b", per_run: true },
        },
        tenant.auth,
      ),
      202,
    );
    const { results } = await env.DB.prepare("SELECT callback_url FROM runs WHERE batch_id = ?")
      .bind(created.id)
      .all<{ callback_url: string | null }>();
    expect(results.map((r) => r.callback_url)).toEqual([
      "https://hooks.example/b",
      "https://hooks.example/b",
    ]);
    const plain = await expectJson<BatchBody>(
      await client.post(
        "/v1/batches",
        { template: TEMPLATE, inputs: inputs(1), callback: { url: "https://hooks.example/b" } },
        tenant.auth,
      ),
      202,
    );
    const row = await env.DB.prepare("SELECT callback_url FROM runs WHERE batch_id = ?")
      .bind(plain.id)
      .first();
    expect(row).toEqual({ callback_url: null });
  });
});
