// Parallel refusing taskrelay's own key (401) or account (402) on a batch's add-runs call: the
// operator's problem, as for a single run (services/runs.ts waitForOperator). The chunk stays
// `submitting` and is tried again with backoff past SUBMIT_MAX_ATTEMPTS, until its runs' deadline,
// with /healthz degraded meanwhile; a 5xx is still given up at SUBMIT_MAX_ATTEMPTS.
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import type { WorkMessage } from "../../src/cron/work";
import { type Env, readConfig } from "../../src/env";
import { deadlineAt } from "../../src/services/timing";
import { batchClient, fakeTaskGroups } from "./batch-harness";
import { api, createTenant, emptyBackgroundWork, expectJson, parallelError, type Tenant } from "./harness";
import { consume } from "./queue-harness";

const TEMPLATE = { processor: "lite", task_spec: { output_schema: "The company's CEO." } };
const inputs = (n: number) => Array.from({ length: n }, (_, i) => ({ input: `Company ${i}` }));
/** Two attempts, so "past SUBMIT_MAX_ATTEMPTS" takes only a few tries. */
const SETTINGS: Env = { ...env, SUBREQUEST_BUDGET: "50", SUBMIT_MAX_ATTEMPTS: "2" };

async function runStatuses(batchId: string) {
  const { results } = await env.DB.prepare(
    "SELECT status, error FROM runs WHERE batch_id = ? ORDER BY batch_index",
  )
    .bind(batchId)
    .all<{ status: string; error: string | null }>();
  return results;
}

async function health() {
  return expectJson<{ status: string }>(await api("/healthz"), 200);
}

describe("401/402 on a batch's add-runs", () => {
  let tenant: Tenant;
  beforeEach(async () => {
    await emptyBackgroundWork();
    await env.DB.prepare("DELETE FROM operator_alerts").run();
    tenant = await createTenant("batch-operator");
  });

  /** One submission message for the batch, worked at `at` (the job takes it only when due). */
  async function submitAt(client: ReturnType<typeof batchClient>, batchId: string, at: Date) {
    client.captured.take();
    const message: WorkMessage = { kind: "submit_batches", id: batchId, lease: "" } as WorkMessage;
    await consume([message], { env: SETTINGS, queue: client.captured.queue, now: () => at });
  }

  async function due(batchId: string) {
    const row = await env.DB.prepare("SELECT next_sweep_at, submit_attempts FROM batches WHERE id = ?")
      .bind(batchId)
      .first<{ next_sweep_at: string; submit_attempts: number }>();
    return { at: new Date(row?.next_sweep_at ?? 0), attempts: row?.submit_attempts ?? -1 };
  }

  it("wait for the operator past SUBMIT_MAX_ATTEMPTS, /healthz degraded, and go through once fixed", async () => {
    let refusals = 5;
    const groups = fakeTaskGroups({
      refuseAdd: () =>
        refusals-- > 0
          ? refusals % 2 === 0
            ? parallelError(401, "Invalid API key")
            : parallelError(402, "Insufficient credit")
          : undefined,
    });
    const client = batchClient();
    const created = await expectJson<{ id: string }>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(5) }, tenant.auth),
      202,
    );
    let at = new Date();
    for (let i = 0; i < 5; i++) {
      await submitAt(client, created.id, at);
      const next = await due(created.id);
      expect(next.attempts).toBe(i + 1);
      expect((await runStatuses(created.id)).every((r) => r.status === "submitting")).toBe(true);
      expect((await health()).status).toBe("degraded");
      at = next.at;
    }
    // 5 refusals, more than SUBMIT_MAX_ATTEMPTS (2): still waiting, not failed. Now fixed.
    await submitAt(client, created.id, at);
    expect(groups.adds()).toHaveLength(6);
    expect((await runStatuses(created.id)).map((r) => r.status)).toEqual(Array(5).fill("queued"));
    expect((await health()).status).toBe("ok");
  });

  it("end the chunk's runs failed at their deadline, not before; a 5xx is given up at SUBMIT_MAX_ATTEMPTS", async () => {
    fakeTaskGroups({
      refuseAdd: (call) =>
        (call.body as { inputs: Array<{ input: string }> }).inputs[0]?.input === "5xx"
          ? parallelError(503, "Unavailable")
          : parallelError(401, "Invalid API key"),
    });
    const client = batchClient();
    const created = await expectJson<{ id: string; created_at: string }>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: inputs(3) }, tenant.auth),
      202,
    );
    const deadline = deadlineAt(readConfig(SETTINGS), "lite", new Date(created.created_at));
    let at = new Date();
    let tries = 0;
    while (at < deadline && tries < 50) {
      await submitAt(client, created.id, at);
      tries++;
      at = (await due(created.id)).at;
      if ((await runStatuses(created.id)).some((r) => r.status !== "submitting")) break;
    }
    // Retried up to the deadline (the last try is at it), well past 2 attempts.
    expect(tries).toBeGreaterThan(2);
    expect((await runStatuses(created.id)).every((r) => r.status === "submitting")).toBe(true);
    await submitAt(client, created.id, deadline);
    const ended = await runStatuses(created.id);
    expect(ended.map((r) => r.status)).toEqual(["failed", "failed", "failed"]);
    expect(JSON.parse(ended[0]?.error ?? "{}")).toMatchObject({ code: "submit_failed", detail: 401 });
    expect(JSON.parse(ended[0]?.error ?? "{}").message).toContain("credentials");

    // A 5xx is Parallel's failure, not the operator's: given up after SUBMIT_MAX_ATTEMPTS tries.
    const other = await expectJson<{ id: string }>(
      await client.post("/v1/batches", { template: TEMPLATE, inputs: [{ input: "5xx" }] }, tenant.auth),
      202,
    );
    let when = new Date();
    for (let i = 0; i < 4; i++) {
      await submitAt(client, other.id, when);
      when = new Date(Math.max((await due(other.id)).at.getTime(), when.getTime()) + 1000);
      // A 503 leaves the chunk in doubt: each try first reads the group's runs (the reconcile).
    }
    const statuses = (await runStatuses(other.id)).map((r) => r.status);
    expect(statuses).toEqual(["failed"]);
  });
});
