import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { beforeEach, describe, expect, it } from "vitest";
import { runScheduledTick } from "../../src/cron/dispatcher";
import { ACTIVE_STATUSES, claimDueRuns } from "../../src/db/runs";
import { readConfig } from "../../src/env";
import worker from "../../src/index";
import { findProcessor } from "../../src/parallel/processors";
import { deadlineAt, finishDueAt, firstPollAt } from "../../src/services/timing";
import {
  api,
  createTenant,
  emptyBackgroundWork,
  expectJson,
  fakeParallel,
  JSON_OUTPUT,
  parallelError,
  postJson,
  resultReply,
  signWebhook,
  TEXT_RUN,
  type Tenant,
  taskRun,
  webhookBody,
} from "./harness";
import { tickAndWork } from "./queue-harness";
import { network } from "./setup";

const MINUTE = 60_000;

/** A cron tick at `at` and the queue consumer working every message it sent, on the same clock. */
async function tick(at: Date) {
  return (await tickAndWork(at)).summaries;
}

const getRun = async (tenant: Tenant, id: string) =>
  expectJson<{
    status: string;
    result_available: boolean;
    error: { code: string; message: string } | null;
    parallel_run_id: string;
  }>(await api(`/v1/runs/${id}`, { headers: tenant.auth }), 200);

const timelineKinds = async (tenant: Tenant, id: string) =>
  (
    await expectJson<{ events: Array<{ kind: string }> }>(
      await api(`/v1/runs/${id}/timeline`, { headers: tenant.auth }),
      200,
    )
  ).events.map((e) => e.kind);

/** Parallel reports every run with the given status; /result answers for completed runs. */
function parallelReporting(status: string) {
  return fakeParallel({
    retrieve: (call) =>
      HttpResponse.json(
        taskRun({ run_id: call.path.split("/")[4] ?? "", status, is_active: status === "running" }),
      ),
    result: (call) => resultReply(call.path.split("/")[4] ?? ""),
  });
}

const config = readConfig(env);

/** D1 whose statements are the query plans of the ones the code prepares, bound the same way. */
function explaining(db: D1Database): D1Database {
  return { prepare: (sql: string) => db.prepare(`EXPLAIN QUERY PLAN ${sql}`) } as unknown as D1Database;
}
const baseMaxLatency = findProcessor("base")?.maxLatencyMs ?? 0;

// D1 is shared by the tests of a file; a sweep sees every due run, so each test starts empty.
beforeEach(emptyBackgroundWork);

describe("the sweeper", () => {
  it("leaves a run alone until its webhook is overdue, then finds the missed completion", async () => {
    const tenant = await createTenant();
    const parallel = parallelReporting("completed");
    const run = await expectJson<{ id: string }>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    const now = Date.now();

    // Within the processor's latency: no Parallel call at all.
    await tick(new Date(now + baseMaxLatency));
    expect(parallel.calls).toHaveLength(1);
    expect((await getRun(tenant, run.id)).status).toBe("queued");

    const due = firstPollAt(config, "base", new Date(now + 1000));
    const summary = await tick(due);
    expect(summary.poll_runs).toMatchObject({ claimed: 1, finished: 1 });
    expect(await getRun(tenant, run.id)).toMatchObject({ status: "completed", result_available: true });
    expect(parallel.calls.map((c) => c.method + (c.path.endsWith("/result") ? " result" : ""))).toEqual([
      "POST",
      "GET",
      "GET result",
    ]);
    expect(await timelineKinds(tenant, run.id)).toEqual([
      "stored",
      "submitted",
      "status_changed",
      "result_fetched",
    ]);
  });

  it("backs off while Parallel reports the run active, doubling the wait", async () => {
    const tenant = await createTenant();
    const parallel = parallelReporting("running");
    const run = await expectJson<{ id: string }>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    const first = firstPollAt(config, "base", new Date(Date.now() + 1000));
    await tick(first);
    const polls = () => parallel.calls.filter((c) => c.method === "GET").length;
    expect(polls()).toBe(1);
    await tick(new Date(first.getTime() + 0.5 * MINUTE)); // not due yet: the next wait is a minute
    expect(polls()).toBe(1);
    await tick(new Date(first.getTime() + 1.1 * MINUTE));
    expect(polls()).toBe(2);
    await tick(new Date(first.getTime() + 2.2 * MINUTE)); // next wait is two minutes
    expect(polls()).toBe(2);
    await tick(new Date(first.getTime() + 3.3 * MINUTE));
    expect(polls()).toBe(3);
    expect((await getRun(tenant, run.id)).status).toBe("running");
  });

  it("expires a run still active at its deadline, after one last check", async () => {
    const tenant = await createTenant();
    const parallel = parallelReporting("running");
    const run = await expectJson<{ id: string }>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    const deadline = deadlineAt(config, "base", new Date(Date.now() + 1000));
    const summary = await tick(new Date(deadline.getTime() + 1000));
    expect(summary.poll_runs).toMatchObject({ expired: 1 });
    const expired = await getRun(tenant, run.id);
    expect(expired.status).toBe("expired");
    expect(expired.error?.message).toContain("still reported the run running");
    expect(parallel.calls.filter((c) => c.method === "GET")).toHaveLength(1);
    expect(await tick(new Date(deadline.getTime() + 60 * MINUTE))).toMatchObject({
      poll_runs: { claimed: 0 },
    });
  });

  it("resubmits a run Parallel throttled, and gives up after the last attempt", async () => {
    const tenant = await createTenant();
    let throttle = true;
    const parallel = fakeParallel({
      create: () =>
        throttle ? parallelError(429, "Too many requests") : HttpResponse.json(taskRun(), { status: 202 }),
    });
    const run = await expectJson<{ id: string }>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    let at = Date.now();
    for (let attempt = 2; attempt <= 3; attempt++) {
      at += 60 * MINUTE;
      expect(await tick(new Date(at))).toMatchObject({ resubmit_runs: { claimed: 1, retrying: 1 } });
    }
    throttle = false;
    at += 60 * MINUTE;
    expect(await tick(new Date(at))).toMatchObject({ resubmit_runs: { claimed: 1, accepted: 1 } });
    expect((await getRun(tenant, run.id)).status).toBe("queued");
    expect(parallel.creates()).toHaveLength(4);

    throttle = true;
    const doomed = await expectJson<{ id: string }>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    for (let attempt = 2; attempt <= config.SUBMIT_MAX_ATTEMPTS; attempt++) {
      at += 60 * MINUTE;
      await tick(new Date(at));
    }
    const failed = await getRun(tenant, doomed.id);
    expect(failed.status).toBe("failed");
    expect(failed.error).toMatchObject({ code: "submit_failed" });
    expect(failed.error?.message).toContain(`after ${config.SUBMIT_MAX_ATTEMPTS} attempts`);
  });

  it("fetches a result the fast path could not, honouring Retry-After", async () => {
    const tenant = await createTenant();
    let available = false;
    const parallel = fakeParallel({
      result: (call) =>
        available
          ? resultReply(call.path.split("/")[4] ?? "")
          : parallelError(429, "slow down", { "retry-after": "120" }),
      retrieve: (call) =>
        HttpResponse.json(
          taskRun({ run_id: call.path.split("/")[4] ?? "", status: "completed", is_active: false }),
        ),
    });
    const run = await expectJson<{ id: string }>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    const first = firstPollAt(config, "base", new Date(Date.now() + 1000));
    await tick(first); // finds it completed, /result throttled
    expect((await getRun(tenant, run.id)).status).toBe("completed");
    await tick(new Date(first.getTime() + 60_000)); // before Retry-After: nothing
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(1);
    available = true;
    expect(await tick(new Date(first.getTime() + 121_000))).toMatchObject({
      fetch_results: { claimed: 1, stored: 1 },
    });
    expect((await getRun(tenant, run.id)).result_available).toBe(true);
  });

  it("fetches a result once when a webhook arrives while the poller holds the run", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel({
      // Parallel answers the poll slowly: the webhook lands while the poller holds the run's lease.
      retrieve: async (call) => {
        await new Promise((resolve) => setTimeout(resolve, 100));
        return HttpResponse.json(
          taskRun({ run_id: call.path.split("/")[4] ?? "", status: "completed", is_active: false }),
        );
      },
      result: (call) => resultReply(call.path.split("/")[4] ?? ""),
    });
    const created = await expectJson<{ id: string; parallel_run_id: string }>(
      await postJson("/v1/runs", TEXT_RUN, tenant.auth),
      202,
    );
    const body = webhookBody({ run_id: created.parallel_run_id, status: "completed" });
    const webhook = async () => {
      await new Promise((resolve) => setTimeout(resolve, 30));
      const ctx = createExecutionContext();
      const response = await worker.fetch(
        new Request("https://relay.test/webhooks/parallel", {
          method: "POST",
          headers: signWebhook(body),
          body,
        }),
        env,
        ctx,
      );
      await waitOnExecutionContext(ctx);
      return response.status;
    };
    const [, status] = await Promise.all([
      tick(firstPollAt(config, "base", new Date(Date.now() + 1000))),
      webhook(),
    ]);
    expect(status).toBe(200);
    // A later tick finds nothing left to fetch.
    await tick(new Date(Date.now() + 60 * MINUTE));
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(1);
    expect((await getRun(tenant, created.id)).result_available).toBe(true);
  });

  it("finishes a run whose finishing was cut off: the delivery is created and sent by the sweeper", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const received: string[] = [];
    network.use(
      http.post("https://receiver.test/hook", async ({ request }) => {
        received.push(((await request.json()) as { data: { run: { id: string } } }).data.run.id);
        return new HttpResponse(null, { status: 204 });
      }),
    );
    const run = await expectJson<{ id: string }>(
      await postJson(
        "/v1/runs",
        { ...TEXT_RUN, callback: { url: "https://receiver.test/hook" } },
        tenant.auth,
      ),
      202,
    );
    // The worker stored the result, then died before onRunFinished: no delivery, still due.
    const finishedAt = new Date();
    await env.DB.prepare(
      "UPDATE runs SET status = 'completed', finished_at = ?, result_stored_at = ?, output = ?, next_sweep_at = ?, lease_until = NULL WHERE id = ?",
    )
      .bind(
        finishedAt.toISOString(),
        finishedAt.toISOString(),
        JSON.stringify(JSON_OUTPUT),
        finishDueAt({ callback_url: "https://receiver.test/hook", schedule_id: null }, finishedAt),
        run.id,
      )
      .run();

    expect(await tick(new Date(finishedAt.getTime() + 1000))).toMatchObject({ finish_runs: { claimed: 0 } });
    expect(received).toEqual([]);
    expect(await tick(new Date(finishedAt.getTime() + 31_000))).toMatchObject({
      finish_runs: { claimed: 1, finished: 1 },
    });
    expect(received).toEqual([run.id]);
    const row = await env.DB.prepare("SELECT next_sweep_at FROM runs WHERE id = ?")
      .bind(run.id)
      .first<{ next_sweep_at: string | null }>();
    expect(row?.next_sweep_at).toBeNull();
    expect(await tick(new Date(finishedAt.getTime() + 120_000))).toMatchObject({
      finish_runs: { claimed: 0 },
    });
    expect(received).toEqual([run.id]);
  });

  it("leaves nothing due once a run is finished on the fast path, callback or not", async () => {
    const tenant = await createTenant();
    parallelReporting("completed");
    network.use(http.post("https://receiver.test/hook", () => new HttpResponse(null, { status: 204 })));
    const plain = await expectJson<{ id: string }>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    const withCallback = await expectJson<{ id: string }>(
      await postJson(
        "/v1/runs",
        { ...TEXT_RUN, callback: { url: "https://receiver.test/hook" } },
        tenant.auth,
      ),
      202,
    );
    await tick(firstPollAt(config, "base", new Date(Date.now() + 1000)));
    for (const run of [plain, withCallback]) {
      expect((await getRun(tenant, run.id)).result_available).toBe(true);
      const row = await env.DB.prepare("SELECT next_sweep_at FROM runs WHERE id = ?")
        .bind(run.id)
        .first<{ next_sweep_at: string | null }>();
      expect(row?.next_sweep_at, run.id).toBeNull();
    }
  });

  it("forgets webhook ids after the replay window", async () => {
    const old = new Date(Date.now() - 73 * 60 * MINUTE).toISOString();
    await env.DB.prepare(
      "INSERT INTO webhook_events (webhook_id, received_at) VALUES ('whevent_old', ?), ('whevent_new', ?)",
    )
      .bind(old, new Date().toISOString())
      .run();
    fakeParallel();
    const summary = await tick(new Date());
    expect(summary.prune_webhook_events).toMatchObject({ deleted: 1 });
    const left = await env.DB.prepare(
      "SELECT webhook_id FROM webhook_events WHERE webhook_id LIKE 'whevent_%'",
    ).all();
    expect(left.results.map((r) => r.webhook_id)).toEqual(["whevent_new"]);
  });

  it("keeps going when one job fails, and reports it", async () => {
    const summaries = await runScheduledTick(env, createExecutionContext(), new Date(), {
      jobs: [],
      tasks: [
        { name: "broken", run: async () => Promise.reject(new Error("boom")) },
        { name: "fine", run: async () => ({ ok: 1 }) },
      ],
    });
    expect(summaries).toEqual({ broken: { error: "Error: boom" }, fine: { ok: 1 } });
  });
});

describe("sweep cost", () => {
  /** Fills the table with finished runs (completed, result stored, nothing due) in one statement. */
  async function storeFinishedRuns(apiKeyId: string, count: number, prefix: string) {
    const at = new Date().toISOString();
    await env.DB.prepare(
      `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?)
       INSERT INTO runs (id, api_key_id, status, processor, input, created_at, updated_at, finished_at, result_stored_at, attempts)
       SELECT printf('run_%s%08d', ?, n), ?, 'completed', 'base', '"q"', ?, ?, ?, ?, 0 FROM seq`,
    )
      .bind(count, prefix, apiKeyId, at, at, at, at)
      .run();
  }

  async function sweepRowsRead(): Promise<number> {
    const now = new Date(Date.now() + 365 * 24 * 60 * MINUTE).toISOString();
    let rows = 0;
    for (const statuses of [["submitting"], ACTIVE_STATUSES, ["completed"]] as const) {
      // Claims nothing (lease in the past), but reads exactly what a real sweep reads.
      const result = await claimDueRuns(env.DB, statuses, now, now, 10).all();
      rows += result.meta.rows_read;
    }
    return rows;
  }

  it("reads the same rows with 10,000 and with 100,000 finished runs, through the runs_due index", async () => {
    const tenant = await createTenant();
    fakeParallel();
    for (let i = 0; i < 5; i++) await expectJson(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);

    await storeFinishedRuns(tenant.id, 10_000, "a");
    const at10k = await sweepRowsRead();
    await storeFinishedRuns(tenant.id, 90_000, "b");
    const at100k = await sweepRowsRead();
    expect(at100k).toBe(at10k);
    // 5 due runs claimed: about 8 rows each (index, table, lease update); nothing for finished runs.
    expect(at10k).toBeLessThan(100);

    // The plan of the very statement a sweep runs (the code builds it, with its parameters).
    const now = new Date().toISOString();
    for (const statuses of [["submitting"], ACTIVE_STATUSES, ["completed"]] as const) {
      const plan = await claimDueRuns(explaining(env.DB), statuses, now, now, 10).all<{ detail: string }>();
      expect(plan.results.map((r) => r.detail).join(" | "), statuses.join()).toContain("runs_due");
    }
  }, 60_000);
});
