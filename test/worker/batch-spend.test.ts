// Spend for batches (issue 16): a batch's cost reserved whole before anything is stored (402 over the
// budget), never overspent by concurrent batches, given back for inputs Parallel never made, counted
// once in the usage rollup as add-runs calls are accepted (also after a chunk in doubt is
// reconciled), and dry_run. Real D1 with the real migrations, Parallel at the HTTP boundary (MSW),
// the submission worked by the real queue consumer.
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { runPriceMicro } from "../../src/pricing/prices";
import { batchClient, fakeTaskGroups, workSubmissions } from "./batch-harness";
import { ADMIN, api, emptyBackgroundWork, expectJson, parallelError, postJson, type Tenant } from "./harness";

const TEMPLATE = { processor: "lite", task_spec: { output_schema: "The CEO's full name" } };
const PRICE = runPriceMicro({ PARALLEL_PRICES: undefined }, "lite");
const inputs = (n: number) => Array.from({ length: n }, (_, i) => ({ input: `Company ${i}` }));

interface BatchBody {
  id: string;
  status: string;
  counts: Record<string, number>;
  cost_usd?: number;
}
interface ErrorBody {
  error: { code: string; message: string; details: Array<Record<string, unknown>> };
}
interface UsageBody {
  groups: Array<{ key: string | null; runs: number; cost_usd: number }>;
  totals: { runs: number; cost_usd: number };
}

async function budgetedTenant(monthlyBudgetUsd: number | null): Promise<Tenant> {
  const created = await expectJson<{ id: string; key: string; signing_secret: string }>(
    await postJson("/v1/keys", { name: "batch-budget", monthly_budget_usd: monthlyBudgetUsd }, ADMIN),
    201,
  );
  return {
    id: created.id,
    key: created.key,
    signingSecret: created.signing_secret,
    auth: { authorization: `Bearer ${created.key}` },
  };
}

/** What the key has reserved this month (micro-USD). */
async function reserved(tenant: Tenant): Promise<number> {
  const row = await env.DB.prepare("SELECT budget_spent_micro_usd AS spent FROM api_keys WHERE id = ?")
    .bind(tenant.id)
    .first<{ spent: number }>();
  return row?.spent ?? -1;
}

async function stored(tenant: Tenant): Promise<{ batches: number; runs: number }> {
  const row = await env.DB.prepare(
    `SELECT (SELECT COUNT(*) FROM batches WHERE api_key_id = ?1) AS batches,
            (SELECT COUNT(*) FROM runs WHERE api_key_id = ?1) AS runs`,
  )
    .bind(tenant.id)
    .first<{ batches: number; runs: number }>();
  return row ?? { batches: -1, runs: -1 };
}

const usd = (micro: number) => micro / 1_000_000;

async function usageByBatch(tenant: Tenant): Promise<UsageBody> {
  return expectJson<UsageBody>(await api("/v1/usage?group_by=batch", { headers: tenant.auth }), 200);
}

describe("batch spend", () => {
  beforeEach(async () => {
    await emptyBackgroundWork();
  });

  it("refuses a batch over the budget whole with 402, storing and reserving nothing", async () => {
    const tenant = await budgetedTenant(usd(PRICE * 4));
    const groups = fakeTaskGroups();
    const client = batchClient();
    const refused = await expectJson<ErrorBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(5) }, tenant.auth),
      402,
    );
    expect(refused.error.code).toBe("budget_exceeded");
    expect(refused.error.message).toMatch(/^This batch would cost/);
    expect(refused.error.details[0]).toMatchObject({
      limit_usd: usd(PRICE * 4),
      spent_usd: 0,
      cost_usd: usd(PRICE * 5),
      remaining_usd: usd(PRICE * 4),
    });
    expect(await stored(tenant)).toEqual({ batches: 0, runs: 0 });
    expect(await reserved(tenant)).toBe(0);
    expect(client.captured.take()).toHaveLength(0);
    expect(groups.calls).toHaveLength(0);
  });

  it("reserves a batch that fits once, prices its runs, and counts the accepted runs once in usage", async () => {
    const tenant = await budgetedTenant(usd(PRICE * 10));
    fakeTaskGroups();
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(5) }, tenant.auth),
      202,
    );
    expect(await reserved(tenant)).toBe(PRICE * 5);
    const { results } = await env.DB.prepare(
      "SELECT cost_micro_usd, spend_month FROM runs WHERE batch_id = ?",
    )
      .bind(created.id)
      .all<{ cost_micro_usd: number; spend_month: string }>();
    expect(results).toHaveLength(5);
    const month = new Date().toISOString().slice(0, 7);
    expect(results.every((r) => r.cost_micro_usd === PRICE && r.spend_month === month)).toBe(true);

    await workSubmissions(client.captured);
    // Accepted: the reservation stays (it is the spend), the rollup has the 5 runs once.
    expect(await reserved(tenant)).toBe(PRICE * 5);
    const usage = await usageByBatch(tenant);
    expect(usage.groups).toEqual([{ key: created.id, runs: 5, cost_usd: usd(PRICE * 5) }]);
    const batch = await expectJson<BatchBody>(
      await api(`/v1/batches/${created.id}`, { headers: tenant.auth }),
      200,
    );
    expect(batch.cost_usd).toBe(usd(PRICE * 5));
    // The run view shows each run's cost once Parallel has it.
    const list = await expectJson<{ data: Array<{ cost_usd: number }> }>(
      await api(`/v1/runs?batch_id=${created.id}`, { headers: tenant.auth }),
      200,
    );
    expect(list.data.map((r) => r.cost_usd)).toEqual(Array(5).fill(usd(PRICE)));
  });

  it("of two batches that each fit but not together, exactly one is stored", async () => {
    const tenant = await budgetedTenant(usd(PRICE * 15));
    fakeTaskGroups();
    const client = batchClient();
    const answers = await Promise.all(
      [0, 1].map(() => client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(10) }, tenant.auth)),
    );
    expect(answers.map((a) => a.status).sort()).toEqual([202, 402]);
    expect(await stored(tenant)).toEqual({ batches: 1, runs: 10 });
    expect(await reserved(tenant)).toBe(PRICE * 10);
  });

  it("refuses inputs added to an open batch over the budget, adding nothing", async () => {
    const tenant = await budgetedTenant(usd(PRICE * 6));
    fakeTaskGroups();
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(4), open: true }, tenant.auth),
      202,
    );
    const refused = await expectJson<ErrorBody>(
      await client.post(`/v1/batches/${created.id}/inputs`, { inputs: inputs(3) }, tenant.auth),
      402,
    );
    expect(refused.error.code).toBe("budget_exceeded");
    expect(await stored(tenant)).toEqual({ batches: 1, runs: 4 });
    expect(await reserved(tenant)).toBe(PRICE * 4);
    await expectJson(
      await client.post(`/v1/batches/${created.id}/inputs`, { inputs: inputs(2) }, tenant.auth),
      202,
    );
    expect(await reserved(tenant)).toBe(PRICE * 6);
  });

  it("gives back the cost of a chunk Parallel refuses", async () => {
    const tenant = await budgetedTenant(usd(PRICE * 10));
    fakeTaskGroups({ refuseAdd: () => parallelError(422, "bad input") });
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(5) }, tenant.auth),
      202,
    );
    expect(await reserved(tenant)).toBe(PRICE * 5);
    await workSubmissions(client.captured);
    const batch = await expectJson<BatchBody>(
      await api(`/v1/batches/${created.id}`, { headers: tenant.auth }),
      200,
    );
    expect(batch.counts.rejected).toBe(5);
    expect(batch.cost_usd).toBe(0);
    expect(await reserved(tenant)).toBe(0);
    expect((await usageByBatch(tenant)).totals).toEqual({ runs: 0, cost_usd: 0 });
  });

  it("gives back the cost of inputs a cancel ends before they are sent", async () => {
    const tenant = await budgetedTenant(usd(PRICE * 10));
    const groups = fakeTaskGroups();
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(5) }, tenant.auth),
      202,
    );
    await expectJson(await client.post(`/v1/batches/${created.id}/cancel`, {}, tenant.auth), 200);
    await workSubmissions(client.captured);
    expect(groups.adds()).toHaveLength(0);
    expect(await reserved(tenant)).toBe(0);
  });

  it("counts a chunk whose answer was lost once, after it is reconciled", async () => {
    const tenant = await budgetedTenant(usd(PRICE * 10));
    let lose = 1;
    const groups = fakeTaskGroups({
      add: () => (lose-- > 0 ? parallelError(502, "Bad gateway") : undefined),
    });
    const client = batchClient();
    const created = await expectJson<BatchBody>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(5) }, tenant.auth),
      202,
    );
    await workSubmissions(client.captured);
    expect((await usageByBatch(tenant)).totals.runs).toBe(0);
    const later = new Date(Date.now() + 10 * 60_000);
    await client.captured.queue.send({ kind: "submit_batches", id: created.id, lease: "" });
    await workSubmissions(client.captured, { now: () => later });
    expect(groups.reconcilingReads()).toBe(1);
    expect(groups.adds()).toHaveLength(1);
    const usage = await usageByBatch(tenant);
    expect(usage.groups).toEqual([{ key: created.id, runs: 5, cost_usd: usd(PRICE * 5) }]);
    expect(await reserved(tenant)).toBe(PRICE * 5);
  });

  it("dry_run answers the checks, inputs, cost and budget, and stores, reserves and submits nothing", async () => {
    const tenant = await budgetedTenant(usd(PRICE * 4));
    const groups = fakeTaskGroups();
    const client = batchClient();
    const fits = await expectJson<Record<string, unknown>>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(3), dry_run: true }, tenant.auth),
      200,
    );
    expect(fits).toMatchObject({
      dry_run: true,
      would_submit: true,
      processor: "lite",
      inputs: 3,
      cost_usd: usd(PRICE * 3),
      budget: { limit_usd: usd(PRICE * 4), spent_usd: 0 },
    });
    const over = await expectJson<{
      would_submit: boolean;
      checks: Array<{ check: string; passed: boolean }>;
    }>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(5), dry_run: true }, tenant.auth),
      200,
    );
    expect(over.would_submit).toBe(false);
    expect(over.checks).toContainEqual(expect.objectContaining({ check: "budget", passed: false }));
    // A bad input is the same 422 as without dry_run.
    await expectJson(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: [{}], dry_run: true }, tenant.auth),
      422,
    );
    expect(await stored(tenant)).toEqual({ batches: 0, runs: 0 });
    expect(await reserved(tenant)).toBe(0);
    expect(client.captured.take()).toHaveLength(0);
    expect(groups.calls).toHaveLength(0);
  });
});
