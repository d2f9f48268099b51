// No run stuck forever, whatever Parallel answers: polls that keep failing, statuses taskrelay does
// not know, a /result 404 just after `completed`, Parallel refusing taskrelay's own key or account,
// and a ?wait that must stay inside the invocation's subrequest budget. Parallel is MSW at HTTP.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse } from "msw";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CONSUMER_BATCH_SIZE } from "../../src/cron/consumer";
import { readConfig } from "../../src/env";
import worker from "../../src/index";
import { deadlineAt, firstPollAt } from "../../src/services/timing";
import {
  api,
  createTenant,
  emptyBackgroundWork,
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
import { tickAndWork } from "./queue-harness";

const MINUTE = 60_000;
const config = readConfig(env);

/** A cron tick at `at` and the queue consumer working every message it sent, on the same clock. */
async function tick(at: Date) {
  return (await tickAndWork(at)).summaries;
}

interface RunBody {
  id: string;
  status: string;
  parallel_run_id: string | null;
  result_available: boolean;
  error: { code: string; message: string } | null;
}

const getRun = async (tenant: Tenant, id: string) =>
  expectJson<RunBody>(await api(`/v1/runs/${id}`, { headers: tenant.auth }), 200);

const timeline = async (tenant: Tenant, id: string) =>
  (
    await expectJson<{ events: Array<{ kind: string; detail: Record<string, unknown> | null }> }>(
      await api(`/v1/runs/${id}/timeline`, { headers: tenant.auth }),
      200,
    )
  ).events;

const idOf = (path: string) => path.split("/")[4] ?? "";
const polls = (parallel: ReturnType<typeof fakeParallel>) =>
  parallel.calls.filter((c) => c.method === "GET" && !c.path.endsWith("/result")).length;

/** Every console line the Worker writes while `flow` runs. */
async function captureLogs<T>(flow: () => Promise<T>): Promise<{ lines: string[]; value: T }> {
  const lines: string[] = [];
  for (const method of ["log", "info", "warn", "error"] as const) {
    vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      lines.push(args.map(String).join(" "));
    });
  }
  const value = await flow();
  vi.restoreAllMocks();
  return { lines, value };
}

async function createRun(tenant: Tenant) {
  return expectJson<RunBody>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
}

beforeEach(emptyBackgroundWork);

afterEach(() => {
  vi.restoreAllMocks();
});

describe("a poll that keeps failing", () => {
  it("ends a run Parallel answers 404 for on three polls in a row `failed`, saying so", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel({ retrieve: () => parallelError(404, "Run id not found") });
    const run = await createRun(tenant);
    let at = firstPollAt(config, "base", new Date(Date.now() + 1000));
    for (let poll = 1; poll <= 2; poll++) {
      expect(await tick(at)).toMatchObject({ poll_runs: { claimed: 1, retry: 1 } });
      expect((await getRun(tenant, run.id)).status).toBe("queued");
      at = new Date(at.getTime() + 5 * MINUTE);
    }
    expect(await tick(at)).toMatchObject({ poll_runs: { claimed: 1, failed: 1 } });
    const failed = await getRun(tenant, run.id);
    expect(failed.status).toBe("failed");
    expect(failed.error?.code).toBe("parallel_run_not_found");
    expect(failed.error?.message).toContain("3 polls in a row");
    expect(polls(parallel)).toBe(3);
    // Nothing left to poll.
    expect(await tick(new Date(at.getTime() + 60 * MINUTE))).toMatchObject({ poll_runs: { claimed: 0 } });
  });

  it("counts only 404s in a row: an answer in between starts the count again", async () => {
    const tenant = await createTenant();
    const answers = [404, 200, 404, 404, 200];
    const parallel = fakeParallel({
      retrieve: (call) =>
        answers.shift() === 404
          ? parallelError(404, "Run id not found")
          : HttpResponse.json(taskRun({ run_id: idOf(call.path), status: "running" })),
    });
    const run = await createRun(tenant);
    let at = firstPollAt(config, "base", new Date(Date.now() + 1000));
    for (let poll = 1; poll <= 5; poll++) {
      await tick(at);
      at = new Date(at.getTime() + 5 * MINUTE);
    }
    expect(polls(parallel)).toBe(5);
    expect((await getRun(tenant, run.id)).status).toBe("running");
  });

  it("expires a run whose polls Parallel answers 401 at its deadline", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel({
      retrieve: () => parallelError(401, "Unauthorized: invalid or missing credentials"),
    });
    const run = await createRun(tenant);
    const deadline = deadlineAt(config, "base", new Date(Date.now() + 1000));
    // A first failed poll well before the deadline backs off...
    expect(await tick(firstPollAt(config, "base", new Date(Date.now() + 1000)))).toMatchObject({
      poll_runs: { claimed: 1, retry: 1 },
    });
    const row = await env.DB.prepare("SELECT next_sweep_at, deadline_at FROM runs WHERE id = ?")
      .bind(run.id)
      .first<{ next_sweep_at: string; deadline_at: string }>();
    expect(row?.next_sweep_at && row.next_sweep_at <= row.deadline_at).toBe(true);
    // ...and the check at the deadline ends the run.
    expect(await tick(new Date(deadline.getTime() + 1000))).toMatchObject({
      poll_runs: { claimed: 1, expired: 1 },
    });
    const expired = await getRun(tenant, run.id);
    expect(expired.status).toBe("expired");
    expect(expired.error?.message).toContain("HTTP 401");
    expect(polls(parallel)).toBe(2);
    expect(await tick(new Date(deadline.getTime() + 120 * MINUTE))).toMatchObject({
      poll_runs: { claimed: 0 },
    });
  });

  it("retries a 5xx at the deadline's check for a few minutes, then expires the run", async () => {
    const tenant = await createTenant();
    let failing = true;
    const parallel = fakeParallel({
      retrieve: (call) =>
        failing
          ? parallelError(503, "Service unavailable")
          : HttpResponse.json(taskRun({ run_id: idOf(call.path), status: "completed", is_active: false })),
      result: (call) => resultReply(idOf(call.path)),
    });
    const lost = await createRun(tenant);
    const found = await createRun(tenant);
    const deadline = deadlineAt(config, "base", new Date(Date.now() + 1000)).getTime();
    // Both past their deadline, Parallel erroring: not expired yet, checked again soon.
    expect(await tick(new Date(deadline + 1000))).toMatchObject({ poll_runs: { claimed: 2, retry: 2 } });
    expect((await getRun(tenant, lost.id)).status).toBe("queued");
    // Parallel answers again within the grace: the run it finished is found, not lost.
    await env.DB.prepare("UPDATE runs SET next_sweep_at = ? WHERE id = ?")
      .bind(new Date(deadline + 11 * MINUTE).toISOString(), lost.id)
      .run();
    failing = false;
    expect(await tick(new Date(deadline + 2 * MINUTE))).toMatchObject({
      poll_runs: { claimed: 1, finished: 1 },
    });
    expect(await getRun(tenant, found.id)).toMatchObject({ status: "completed", result_available: true });
    // Still erroring once the grace is over: expired.
    failing = true;
    expect(await tick(new Date(deadline + 11 * MINUTE))).toMatchObject({
      poll_runs: { claimed: 1, expired: 1 },
    });
    const expired = await getRun(tenant, lost.id);
    expect(expired.status).toBe("expired");
    expect(expired.error?.message).toContain("HTTP 503");
    expect(polls(parallel)).toBe(4);
  });

  it("polls a run on a bad key no later than its deadline, however long the backoff", async () => {
    const tenant = await createTenant();
    fakeParallel({ retrieve: () => parallelError(401, "Unauthorized") });
    const run = await createRun(tenant);
    const deadline = deadlineAt(config, "base", new Date(Date.now() + 1000));
    // A poll 2 minutes before the deadline: its 30 s+ backoff would be capped at the deadline anyway;
    // pretend many polls went before (the backoff is 30 minutes by then).
    await env.DB.prepare("UPDATE runs SET attempts = 20 WHERE id = ?").bind(run.id).run();
    await tick(new Date(deadline.getTime() - 2 * MINUTE));
    const row = await env.DB.prepare("SELECT next_sweep_at, deadline_at FROM runs WHERE id = ?")
      .bind(run.id)
      .first<{ next_sweep_at: string; deadline_at: string }>();
    expect(row?.next_sweep_at).toBe(row?.deadline_at);
  });
});

describe("a status taskrelay does not know", () => {
  it("is treated as active: polled again with backoff and a warning, until a known terminal one", async () => {
    const tenant = await createTenant();
    let status = "paused_for_review";
    const parallel = fakeParallel({
      retrieve: (call) =>
        HttpResponse.json(taskRun({ run_id: idOf(call.path), status, is_active: status !== "completed" })),
      result: (call) => resultReply(idOf(call.path)),
    });
    const run = await createRun(tenant);
    const first = firstPollAt(config, "base", new Date(Date.now() + 1000));
    const { lines } = await captureLogs(() => tick(first));
    const warning = lines.find((l) => l.includes('"run.unknown_status"'));
    expect(warning).toContain('"parallel_status":"paused_for_review"');
    expect(warning).toContain(run.id);
    expect((await getRun(tenant, run.id)).status).toBe("queued");
    expect((await timeline(tenant, run.id)).at(-1)).toMatchObject({
      kind: "polled",
      detail: { outcome: "paused_for_review", unknown_status: true },
    });

    // Backed off: not polled again at once, but polled once the wait is over.
    await tick(new Date(first.getTime() + 0.5 * MINUTE));
    expect(polls(parallel)).toBe(1);
    await tick(new Date(first.getTime() + 1.1 * MINUTE));
    expect(polls(parallel)).toBe(2);

    status = "completed";
    expect(await tick(new Date(first.getTime() + 3.3 * MINUTE))).toMatchObject({
      poll_runs: { claimed: 1, finished: 1 },
    });
    expect(await getRun(tenant, run.id)).toMatchObject({ status: "completed", result_available: true });
  });

  it("from create or a webhook is not stored either", async () => {
    const tenant = await createTenant();
    fakeParallel({
      create: (call) =>
        HttpResponse.json(
          taskRun({
            status: "warming_up",
            metadata: (call.body as { metadata: Record<string, unknown> }).metadata,
          }),
          { status: 202 },
        ),
    });
    const run = await createRun(tenant);
    expect(run.status).toBe("queued");
    const body = webhookBody({ run_id: run.parallel_run_id ?? "", status: "on_hold" });
    const ctx = createExecutionContext();
    const response = await worker.fetch(
      new Request(`${RELAY}/webhooks/parallel`, { method: "POST", headers: signWebhook(body), body }),
      env,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(response.status).toBe(200);
    expect((await getRun(tenant, run.id)).status).toBe("queued");
    // Still swept: the first poll finds it.
    expect(await tick(firstPollAt(config, "base", new Date(Date.now() + 1000)))).toMatchObject({
      poll_runs: { claimed: 1 },
    });
  });
});

describe("/result answering 404 just after `completed`", () => {
  async function completedByWebhook(tenant: Tenant, result: () => Response) {
    const parallel = fakeParallel({ result });
    const run = await createRun(tenant);
    const body = webhookBody({ run_id: run.parallel_run_id ?? "", status: "completed" });
    const ctx = createExecutionContext();
    const response = await worker.fetch(
      new Request(`${RELAY}/webhooks/parallel`, { method: "POST", headers: signWebhook(body), body }),
      env,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(response.status).toBe(200);
    return { run, parallel };
  }

  it("is retried with backoff, and the result stored once Parallel has it", async () => {
    const tenant = await createTenant();
    let readable = false;
    let runId = "";
    const { run, parallel } = await completedByWebhook(tenant, () =>
      readable ? resultReply(runId) : parallelError(404, "Run failed or run id not found"),
    );
    runId = run.parallel_run_id ?? "";
    expect(await getRun(tenant, run.id)).toMatchObject({ status: "completed", result_available: false });
    const retry = (await timeline(tenant, run.id)).find((e) => e.kind === "result_fetch_retry_scheduled");
    expect(retry?.detail).toMatchObject({ attempt: 1, parallel_status: 404 });

    const now = Date.now();
    // Backoff: not at once.
    expect(await tick(new Date(now + 5_000))).toMatchObject({ fetch_results: { claimed: 0 } });
    readable = true;
    expect(await tick(new Date(now + 2 * MINUTE))).toMatchObject({
      fetch_results: { claimed: 1, stored: 1 },
    });
    expect(await getRun(tenant, run.id)).toMatchObject({ status: "completed", result_available: true });
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(2);
  });

  it("ends the run `failed` (result_not_found) only after a few 404s in a row, each recorded", async () => {
    const tenant = await createTenant();
    const { run, parallel } = await completedByWebhook(tenant, () =>
      parallelError(404, "Run failed or run id not found"),
    );
    let at = Date.now();
    for (let attempt = 2; attempt <= 4; attempt++) {
      at += 30 * MINUTE;
      await tick(new Date(at));
    }
    const failed = await getRun(tenant, run.id);
    expect(failed.status).toBe("failed");
    expect(failed.error?.code).toBe("result_not_found");
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(4);
    const events = await timeline(tenant, run.id);
    expect(events.filter((e) => e.kind === "result_fetch_retry_scheduled")).toHaveLength(3);
    expect(events.at(-1)).toMatchObject({
      kind: "status_changed",
      detail: { source: "result", to: "failed", attempt: 4, parallel_status: 404 },
    });
  });
});

describe("Parallel refusing taskrelay's own key or account (401, 402)", () => {
  it.each([
    [401, "Unauthorized: invalid or missing credentials", "PARALLEL_API_KEY"],
    [402, "Payment required: insufficient credit in account", "credit"],
  ])(
    "keeps runs submitting on %i, logs once per tick, reports degraded, and goes through once fixed",
    async (status, message, hint) => {
      const tenant = await createTenant();
      let refuse = true;
      const parallel = fakeParallel({
        create: (call) =>
          refuse
            ? parallelError(status, message)
            : HttpResponse.json(
                taskRun({ metadata: (call.body as { metadata: Record<string, unknown> }).metadata }),
                { status: 202 },
              ),
      });
      const created = [await createRun(tenant), await createRun(tenant), await createRun(tenant)];
      expect(created.map((r) => r.status)).toEqual(["submitting", "submitting", "submitting"]);

      const health = await expectJson<{
        status: string;
        problems: Array<{ parallel_status: number; reason: string }>;
      }>(await api("/healthz"), 200);
      expect(health.status).toBe("degraded");
      expect(health.problems).toEqual([
        expect.objectContaining({ parallel_status: status, reason: expect.stringContaining(hint) }),
      ]);
      expect(JSON.stringify(health)).not.toContain("test-parallel-key");

      // The queue tries all three again; one error line per consumer invocation (a batch of
      // CONSUMER_BATCH_SIZE), not one per run.
      const { lines, value: summary } = await captureLogs(() => tick(new Date(Date.now() + 10 * MINUTE)));
      expect(summary.resubmit_runs).toMatchObject({ claimed: 3, retrying: 3 });
      expect(lines.filter((l) => l.includes('"parallel.operator_error"'))).toHaveLength(
        Math.ceil(3 / CONSUMER_BATCH_SIZE),
      );
      for (const run of created) expect((await getRun(tenant, run.id)).status).toBe("submitting");

      refuse = false;
      expect(await tick(new Date(Date.now() + 60 * MINUTE))).toMatchObject({
        resubmit_runs: { claimed: 3, accepted: 3 },
      });
      for (const run of created) expect((await getRun(tenant, run.id)).status).toBe("queued");
      expect(parallel.creates()).toHaveLength(9);
      expect(await expectJson(await api("/healthz"), 200)).toMatchObject({ status: "ok", problems: [] });
    },
  );

  it("ends a run still refused at its deadline `failed` (submit_failed), not before", async () => {
    const tenant = await createTenant();
    fakeParallel({ create: () => parallelError(401, "Unauthorized") });
    const run = await createRun(tenant);
    const deadline = deadlineAt(config, "base", new Date(Date.now() - 1000));
    // Far more attempts than SUBMIT_MAX_ATTEMPTS (a transient error's limit), before the deadline.
    await env.DB.prepare("UPDATE runs SET attempts = ? WHERE id = ?")
      .bind(config.SUBMIT_MAX_ATTEMPTS + 5, run.id)
      .run();
    expect(await tick(new Date(Date.now() + 10 * MINUTE))).toMatchObject({
      resubmit_runs: { claimed: 1, retrying: 1 },
    });
    expect((await getRun(tenant, run.id)).status).toBe("submitting");
    // Backed off 30 minutes, but never past the deadline, where the last attempt happens.
    const row = await env.DB.prepare("SELECT next_sweep_at FROM runs WHERE id = ?")
      .bind(run.id)
      .first<{ next_sweep_at: string }>();
    const latestDeadline = deadlineAt(config, "base", new Date(Date.now() + 1000)).toISOString();
    expect(row && row.next_sweep_at <= latestDeadline).toBe(true);
    await tick(new Date(deadline.getTime() + 2 * MINUTE));
    const failed = await getRun(tenant, run.id);
    expect(failed.status).toBe("failed");
    expect(failed.error?.code).toBe("submit_failed");
    expect(failed.error?.message).toContain("deadline");
  });

  it.each([
    [403, "Forbidden: invalid processor in request"],
    [422, "Unprocessable content: request validation error"],
  ])("still rejects the run on %i, and /healthz stays ok", async (status, message) => {
    const tenant = await createTenant();
    fakeParallel({ create: () => parallelError(status, message) });
    const body = await expectJson<{ error: { code: string } }>(
      await postJson("/v1/runs", TEXT_RUN, tenant.auth),
      422,
    );
    expect(body.error.code).toBe("parallel_rejected");
    expect(await expectJson(await api("/healthz"), 200)).toMatchObject({ status: "ok" });
  });
});

describe("GET /v1/runs/:id/result?wait=N", () => {
  /** env.DB behind a counter of every query and batch the Worker makes. */
  function countingEnv(settings: Record<string, string>) {
    let calls = 0;
    const targets = new WeakMap<object, D1PreparedStatement>();
    const wrap = (statement: D1PreparedStatement): D1PreparedStatement => {
      const proxy = new Proxy(statement, {
        get(target, prop) {
          const value = Reflect.get(target, prop, target) as unknown;
          if (typeof value !== "function") return value;
          if (prop === "bind") return (...args: unknown[]) => wrap(value.apply(target, args));
          if (prop === "first" || prop === "all" || prop === "run" || prop === "raw") {
            return (...args: unknown[]) => {
              calls++;
              return value.apply(target, args);
            };
          }
          return value.bind(target);
        },
      });
      targets.set(proxy, statement);
      return proxy;
    };
    const db = {
      prepare: (query: string) => wrap(env.DB.prepare(query)),
      batch: (statements: D1PreparedStatement[]) => {
        calls++;
        return env.DB.batch(statements.map((s) => targets.get(s) ?? s));
      },
      exec: (query: string) => env.DB.exec(query),
      withSession: env.DB.withSession.bind(env.DB),
      dump: env.DB.dump.bind(env.DB),
    } as D1Database;
    return { env: { ...env, ...settings, DB: db }, calls: () => calls };
  }

  async function waitFor(tenant: Tenant, id: string, wait: number, settings: Record<string, string>) {
    const counted = countingEnv(settings);
    const ctx = createExecutionContext();
    const response = await worker.fetch(
      new Request(`${RELAY}/v1/runs/${id}/result?wait=${wait}`, { headers: tenant.auth }),
      counted.env,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    return { response, calls: counted.calls() };
  }

  it("ends the wait early with 409 rather than make more D1 calls than SUBREQUEST_BUDGET", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const run = await createRun(tenant);
    const { response, calls } = await waitFor(tenant, run.id, 5, { SUBREQUEST_BUDGET: "4" });
    expect((await expectJson<{ error: { code: string } }>(response, 409)).error.code).toBe(
      "result_not_ready",
    );
    expect(calls).toBeLessThanOrEqual(4);
  });

  it("backs off between reads: a 3 s wait reads the run a handful of times, not every 250 ms", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const run = await createRun(tenant);
    const { response, calls } = await waitFor(tenant, run.id, 3, {});
    expect(response.status).toBe(409);
    // The key lookup and reads at about 0, 0.25, 0.75, 1.75 and 3 s; polling every 250 ms made 13.
    expect(calls).toBeLessThanOrEqual(6);
  });

  it("still returns the result as soon as a read finds it", async () => {
    const tenant = await createTenant();
    fakeParallel({ result: (call) => resultReply(idOf(call.path)) });
    const run = await createRun(tenant);
    const body = webhookBody({ run_id: run.parallel_run_id ?? "", status: "completed" });
    const ctx = createExecutionContext();
    await worker.fetch(
      new Request(`${RELAY}/webhooks/parallel`, { method: "POST", headers: signWebhook(body), body }),
      env,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    const { response } = await waitFor(tenant, run.id, 5, { SUBREQUEST_BUDGET: "4" });
    expect(response.status).toBe(200);
  });
});
