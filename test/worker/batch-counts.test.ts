// A batch's counts by status live on its row (migration 0022): the inserts count inputs as
// `submitting`, a trigger on runs counts every change of a batch run's status. This drives one batch
// through a mixed life — chunks accepted, a chunk refused, the rest cancelled, webhooks completing and
// failing runs, a webhook sent twice, a status the poller and a webhook both apply, the bulk results
// stream — and after every step compares the row's counts to a GROUP BY over the runs themselves.
// It also measures what the counts cost: rows read per GET /v1/batches/:id (the log line's
// d1_rows_read), against the grouped read it replaced, and rows written by the trigger.
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { parseStatusCounts } from "../../src/db/batches";
import { readConfig } from "../../src/env";
import { firstPollAt } from "../../src/services/timing";
import { batchClient, fakeTaskGroups, workSubmissions } from "./batch-harness";
import {
  createTenant,
  emptyBackgroundWork,
  expectJson,
  fakeParallel,
  JSON_OUTPUT,
  parallelError,
  signWebhook,
  type Tenant,
  taskRun,
  webhookBody,
} from "./harness";
import { tickAndWork } from "./queue-harness";

vi.setConfig({ testTimeout: 300_000 });

const TEMPLATE = { processor: "lite", task_spec: { output_schema: "The company's CEO." } };
const inputs = (n: number) => Array.from({ length: n }, (_, i) => ({ input: `Company ${i}` }));

/** The truth: the batch's runs grouped by status. */
async function groupedCounts(batchId: string): Promise<{ counts: Record<string, number>; rowsRead: number }> {
  const result = await env.DB.prepare(
    "SELECT status, COUNT(*) AS n FROM runs WHERE batch_id = ? GROUP BY status",
  )
    .bind(batchId)
    .all<{ status: string; n: number }>();
  return {
    counts: Object.fromEntries(result.results.map((r) => [r.status, r.n])),
    rowsRead: result.meta.rows_read,
  };
}

async function rowCounts(batchId: string): Promise<Record<string, number>> {
  const row = await env.DB.prepare("SELECT status_counts FROM batches WHERE id = ?")
    .bind(batchId)
    .first<{ status_counts: string }>();
  return parseStatusCounts(row?.status_counts ?? "null");
}

async function expectExact(batchId: string, step: string) {
  const { counts } = await groupedCounts(batchId);
  expect(await rowCounts(batchId), step).toEqual(counts);
  return counts;
}

/** The rows the GET read, from its one log line (d1_rows_read), and the answer's counts. */
async function readBatch(client: ReturnType<typeof batchClient>, tenant: Tenant, id: string) {
  const lines: string[] = [];
  const record = (...args: unknown[]) => {
    lines.push(args.map(String).join(" "));
  };
  const spies = (["log", "info", "warn", "error", "debug"] as const).map((method) =>
    vi.spyOn(console, method).mockImplementation(record),
  );
  const response = await client.call(`/v1/batches/${id}`, { headers: tenant.auth });
  for (const spy of spies) spy.mockRestore();
  const body = await expectJson<{ counts: Record<string, number> }>(response, 200);
  const line = lines
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((l) => l.event === "http.request" && l.path === "/v1/batches/:id");
  return { counts: body.counts, rowsRead: Number(line?.d1_rows_read) };
}

describe("a batch's counts on its row", () => {
  let tenant: Tenant;
  beforeEach(async () => {
    await emptyBackgroundWork();
    tenant = await createTenant("batch-counts");
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("equal a GROUP BY over its runs through a mixed life, and a GET reads the row, not the runs", async () => {
    // The second add-runs call is refused (its 1,000 runs end rejected); everything else is accepted.
    let adds = 0;
    const groups = fakeTaskGroups({
      refuseAdd: () => (++adds === 2 ? parallelError(422, "bad input") : undefined),
    });
    // The poller hears `completed` for runs finished at Parallel, `running` for the rest.
    const finishedAtParallel = new Set<string>();
    fakeParallel({
      retrieve: (call) => {
        const runId = call.path.split("/")[4] ?? "";
        const done = finishedAtParallel.has(runId);
        return Response.json(
          taskRun({ run_id: runId, processor: "lite", status: done ? "completed" : "running" }),
        );
      },
    });
    const client = batchClient();
    const created = await expectJson<{ id: string }>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(3500) }, tenant.auth),
      202,
    );
    const id = created.id;
    expect(await expectExact(id, "stored")).toEqual({ submitting: 3500 });

    // One message: 3 add-runs calls (accepted, refused, accepted), then a follow-up, cancelled before it runs.
    const first = client.captured.take();
    await client.captured.queue.send(first[0]?.body as never);
    await workSubmissions(client.captured, { maxRounds: 1 });
    expect(await expectExact(id, "submitted")).toEqual({ queued: 2000, rejected: 1000, submitting: 500 });
    await expectJson(await client.post(`/v1/batches/${id}/cancel`, {}, tenant.auth), 200);
    await workSubmissions(client.captured);
    expect(await expectExact(id, "cancelled")).toEqual({ queued: 2000, rejected: 1000, cancelled: 500 });

    // Webhooks: 10 completed (one of them sent twice with the same webhook-id), 5 failed, 5 running.
    const runs = groups.allRuns();
    const webhook = async (runId: string, status: string, headers?: Record<string, string>) => {
      const run = runs.find((r) => r.run_id === runId);
      const body = webhookBody({ run_id: runId, status, metadata: run?.metadata ?? null, processor: "lite" });
      const sent = headers ?? signWebhook(body);
      const response = await client.call("/webhooks/parallel", { method: "POST", headers: sent, body });
      expect(response.status).toBe(200);
      return { body, sent };
    };
    const ids = runs.map((r) => r.run_id);
    for (const runId of ids.slice(0, 10)) {
      groups.complete(runId, JSON_OUTPUT);
      finishedAtParallel.add(runId);
    }
    let duplicate: { body: string; sent: Record<string, string> } | undefined;
    for (const [i, runId] of ids.slice(0, 10).entries()) {
      const sent = await webhook(runId, "completed");
      if (i === 0) duplicate = sent;
    }
    for (const runId of ids.slice(10, 15)) await webhook(runId, "failed");
    for (const runId of ids.slice(15, 20)) await webhook(runId, "running");
    // The same webhook again (same id, same body): recorded once, counted once.
    if (duplicate) {
      await client.call("/webhooks/parallel", {
        method: "POST",
        headers: duplicate.sent,
        body: duplicate.body,
      });
    }
    expect(await expectExact(id, "webhooks")).toMatchObject({ completed: 10, failed: 5, running: 5 });

    // Runs 20..24 finish at Parallel; the poller hears it first, then their webhooks say it again.
    for (const runId of ids.slice(20, 25)) {
      groups.complete(runId, JSON_OUTPUT);
      finishedAtParallel.add(runId);
    }
    const config = readConfig(env);
    const pollAt = new Date(firstPollAt(config, "lite", new Date()).getTime() + 1000);
    for (let tick = 0; tick < 3; tick++) await tickAndWork(new Date(pollAt.getTime() + tick * 1000));
    await expectExact(id, "polled");
    for (const runId of ids.slice(15, 25))
      await webhook(runId, ids.indexOf(runId) < 20 ? "running" : "completed");
    const settled = await expectExact(id, "webhook after poll");
    expect(settled.completed).toBeGreaterThanOrEqual(15);
    expect(settled.failed).toBe(5);
    expect(Object.values(settled).reduce((a, b) => a + b, 0)).toBe(3500);

    // The bulk results stream (batch_results) stores the outputs, applying any status not yet heard.
    await tickAndWork(new Date(pollAt.getTime() + 10 * 60_000));
    await expectExact(id, "results stream");

    // What a GET costs: the batch's row (and the key, the spend) — not its 3,500 runs.
    const grouped = await groupedCounts(id);
    const read = await readBatch(client, tenant, id);
    expect(read.counts.total).toBe(3500);
    expect(read.counts.rejected).toBe(1000);
    console.log(
      "batch counts: rows read per GET /v1/batches/:id",
      JSON.stringify({ runs: 3500, get_rows_read: read.rowsRead, grouped_read_rows: grouped.rowsRead }),
    );
    expect(grouped.rowsRead).toBeGreaterThanOrEqual(3500);
    expect(read.rowsRead).toBeLessThan(50);
  });

  it("cost one row written per status change of a batch run, and none for a single run", async () => {
    const client = batchClient();
    fakeTaskGroups();
    const created = await expectJson<{ id: string }>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(3) }, tenant.auth),
      202,
    );
    const first = await env.DB.prepare("SELECT id FROM runs WHERE batch_id = ? AND batch_index = 0")
      .bind(created.id)
      .first<{ id: string }>();
    const at = new Date().toISOString();
    // A single run in the same state (submitting, nothing due): the same UPDATE on both, the
    // difference is the trigger's write.
    const singleId = `run_single_${crypto.randomUUID().replaceAll("-", "")}`;
    await env.DB.prepare(
      `INSERT INTO runs (id, api_key_id, status, processor, input, created_at, updated_at, attempts)
       VALUES (?, ?, 'submitting', 'lite', '"q"', ?, ?, 0)`,
    )
      .bind(singleId, tenant.id, at, at)
      .run();
    const change = async (runId: string, status: string) =>
      (
        await env.DB.prepare("UPDATE runs SET status = ?, updated_at = ? WHERE id = ?")
          .bind(status, at, runId)
          .run()
      ).meta.rows_written;
    const figures = {
      single_run_status_change: await change(singleId, "queued"),
      batch_run_status_change: await change(first?.id ?? "", "queued"),
      batch_run_same_status_again: await change(first?.id ?? "", "queued"),
      bulk_change_of_2_batch_runs: (
        await env.DB.prepare(
          "UPDATE runs SET status = 'queued', updated_at = ? WHERE batch_id = ? AND status = 'submitting'",
        )
          .bind(at, created.id)
          .run()
      ).meta.rows_written,
    };
    console.log("batch counts: rows written", JSON.stringify(figures));
    expect(await expectExact(created.id, "changed by hand")).toEqual({ queued: 3 });
    // A single run's status change writes its row only: the trigger adds nothing (batch_id NULL).
    expect(figures.single_run_status_change).toBe(1);
    // A batch run's writes its row and its runs_batch_unfinished entry (as the same status written
    // again does, which the trigger skips), plus the batch row: one row more per change, bulk or not.
    expect(figures.batch_run_status_change).toBe(figures.batch_run_same_status_again + 1);
    expect(figures.bulk_change_of_2_batch_runs).toBe(2 * figures.batch_run_status_change);
  });
});
