// Spend: prices, cost_usd on runs, the usage rollup and GET /v1/usage, budgets (402 before anything
// is paid, never overspent under concurrency, released when Parallel refuses), dry runs, and
// schedule occurrences skipped over budget. Through the Worker's fetch handler on real D1.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse } from "msw";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it } from "vitest";
import { stepGuard } from "../../src/db/run-states";
import { recordAcceptedSpend } from "../../src/db/spend";
import { type Env, readConfig } from "../../src/env";
import { ApiError } from "../../src/errors";
import { RUN_ID_METADATA_KEY } from "../../src/parallel/task-spec-checks";
import { priceTable, runPriceMicro } from "../../src/pricing/prices";
import { ScheduleCreateSchema } from "../../src/schemas/schedules";
import { createServiceContext } from "../../src/services/context";
import { onRunFinished } from "../../src/services/run-finished";
import { createSchedule } from "../../src/services/schedules";
import { signedIn } from "./dashboard-harness";
import { deliveryContext, fakeReceiver, storeFinishedRun } from "./delivery-harness";
import {
  ADMIN,
  api,
  createTenant,
  expectJson,
  fakeParallel,
  parallelError,
  postJson,
  signWebhook,
  TEXT_RUN,
  type Tenant,
  taskRun,
  webhookBody,
} from "./harness";
import { runFireSchedules } from "./queue-harness";

interface RunBody {
  id: string;
  status: string;
  cost_usd: number;
}
interface ErrorBody {
  error: { code: string; message: string; details: Array<Record<string, unknown>> };
}
interface UsageBody {
  api_key_id: string | null;
  groups: Array<{ key: string | null; runs: number; cost_usd: number }>;
  totals: { runs: number; cost_usd: number };
  budget: {
    limit_usd: number | null;
    spent_usd: number;
    remaining_usd: number | null;
    resets_at: string;
  } | null;
}

async function budgetedTenant(monthlyBudgetUsd: number | null): Promise<Tenant> {
  const created = await expectJson<{
    id: string;
    key: string;
    signing_secret: string;
    monthly_budget_usd: unknown;
  }>(await postJson("/v1/keys", { name: "budgeted", monthly_budget_usd: monthlyBudgetUsd }, ADMIN), 201);
  expect(created.monthly_budget_usd).toBe(monthlyBudgetUsd);
  return {
    id: created.id,
    key: created.key,
    signingSecret: created.signing_secret,
    auth: { authorization: `Bearer ${created.key}` },
  };
}

const createRun = (tenant: Tenant, body: Record<string, unknown> = TEXT_RUN) =>
  postJson("/v1/runs", body, tenant.auth);

async function usage(auth: Record<string, string>, query = ""): Promise<UsageBody> {
  return expectJson<UsageBody>(await api(`/v1/usage${query}`, { headers: auth }), 200);
}

const today = () => new Date().toISOString().slice(0, 10);

describe("prices", () => {
  it("prices every processor as Parallel's page does, -fast the same as its standard one", () => {
    const table = priceTable({ PARALLEL_PRICES: undefined });
    expect(table.get("lite")?.usd_per_1000_runs).toBe(5);
    expect(table.get("core")?.usd_per_1000_runs).toBe(25);
    expect(table.get("ultra8x")?.usd_per_1000_runs).toBe(2400);
    for (const [name, entry] of table) {
      if (!name.endsWith("-fast")) continue;
      expect(entry.usd_per_1000_runs, name).toBe(table.get(name.slice(0, -5))?.usd_per_1000_runs);
    }
    expect(runPriceMicro({ PARALLEL_PRICES: undefined }, "base")).toBe(10_000); // $0.01
  });

  it("takes PARALLEL_PRICES over the defaults; an override of a processor prices its -fast variant too", () => {
    const config = readConfig({ ...env, PARALLEL_PRICES: '{"pro": 120, "ultra-fast": 310}' } as Env);
    expect(runPriceMicro(config, "pro")).toBe(120_000);
    expect(runPriceMicro(config, "pro-fast")).toBe(120_000);
    expect(runPriceMicro(config, "ultra")).toBe(300_000);
    expect(runPriceMicro(config, "ultra-fast")).toBe(310_000);
    expect(priceTable(config).get("pro")?.source).toBe("PARALLEL_PRICES");
  });

  it("refuses a bad PARALLEL_PRICES at startup, naming the bad entry", () => {
    const refused = (value: string) => {
      try {
        readConfig({ ...env, PARALLEL_PRICES: value } as Env);
      } catch (error) {
        expect(error).toBeInstanceOf(ApiError);
        return (error as ApiError).details.map((d) => d.path);
      }
      throw new Error(`PARALLEL_PRICES=${value} was accepted`);
    };
    expect(refused('{"ultra9": 1, "pro": 100}')).toEqual(["PARALLEL_PRICES.ultra9"]);
    expect(refused('{"pro": -1}')).toEqual(["PARALLEL_PRICES.pro"]);
    expect(refused('{"pro": "cheap"}')).toEqual(["PARALLEL_PRICES.pro"]);
    expect(refused("{pro: 1")).toEqual(["PARALLEL_PRICES"]);
  });
});

describe("cost_usd on runs", () => {
  it("is the processor's price once Parallel accepted the run, in the create, GET and the list", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const created = await expectJson<RunBody>(
      await createRun(tenant, { ...TEXT_RUN, processor: "core-fast" }),
      202,
    );
    expect(created.cost_usd).toBe(0.025);
    const got = await expectJson<RunBody>(await api(`/v1/runs/${created.id}`, { headers: tenant.auth }), 200);
    expect(got.cost_usd).toBe(0.025);
    const list = await expectJson<{ data: RunBody[] }>(await api("/v1/runs", { headers: tenant.auth }), 200);
    expect(list.data.map((r) => r.cost_usd)).toEqual([0.025]);
  });

  it("is 0 for a run Parallel refused, which is not counted in usage", async () => {
    const tenant = await createTenant();
    fakeParallel({ create: () => parallelError(422, "Input too long") });
    const refused = await expectJson<ErrorBody>(await createRun(tenant), 422);
    const runId = String(refused.error.details[0]?.run_id);
    const run = await expectJson<RunBody>(await api(`/v1/runs/${runId}`, { headers: tenant.auth }), 200);
    expect(run).toMatchObject({ status: "rejected", cost_usd: 0 });
    expect((await usage(tenant.auth)).totals).toEqual({ runs: 0, cost_usd: 0 });
  });

  it("is 0 while Parallel has not accepted the run yet", async () => {
    const tenant = await createTenant();
    fakeParallel({ create: () => parallelError(503, "busy") });
    const waiting = await expectJson<RunBody>(await createRun(tenant), 202);
    expect(waiting).toMatchObject({ status: "submitting", cost_usd: 0 });
  });

  it("shows on the dashboard's run page and in its runs list", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const created = await expectJson<RunBody>(
      await createRun(tenant, { ...TEXT_RUN, processor: "lite" }),
      202,
    );
    const b = await signedIn(tenant.key);
    expect(await b.page(`/dashboard/runs/${created.id}`)).toMatch(
      /<dt>Cost<\/dt><dd data-cost="true">\$0\.005<\/dd>/,
    );
    expect(await b.page("/dashboard/runs")).toContain("$0.005");
  });
});

describe("cost_usd in callbacks", () => {
  it("is in the run a callback carries", async () => {
    const tenant = await createTenant();
    const receiver = fakeReceiver();
    const run = await storeFinishedRun(tenant.id, { processor: "ultra", cost_micro_usd: 300_000 });
    const { ctx, settle } = deliveryContext();
    await onRunFinished(ctx, run);
    await settle();
    const [call] = receiver.calls;
    if (!call) throw new Error("no callback");
    const payload = new Webhook(tenant.signingSecret).verify(call.body, call.headers) as {
      data: { run: { cost_usd: number } };
    };
    expect(payload.data.run.cost_usd).toBe(0.3);
  });
});

describe("GET /v1/usage", () => {
  it("groups a key's accepted runs by processor, day and schedule, with totals", async () => {
    const tenant = await createTenant();
    fakeParallel();
    for (const processor of ["base", "base", "core", "lite-fast"]) {
      await expectJson(await createRun(tenant, { ...TEXT_RUN, processor }), 202);
    }
    const byProcessor = await usage(tenant.auth, "?group_by=processor");
    expect(byProcessor.api_key_id).toBe(tenant.id);
    expect(byProcessor.groups).toEqual([
      { key: "base", runs: 2, cost_usd: 0.02 },
      { key: "core", runs: 1, cost_usd: 0.025 },
      { key: "lite-fast", runs: 1, cost_usd: 0.005 },
    ]);
    expect(byProcessor.totals).toEqual({ runs: 4, cost_usd: 0.05 });

    const byDay = await usage(tenant.auth, `?group_by=day&from=${today()}&to=${today()}`);
    expect(byDay.groups).toEqual([{ key: today(), runs: 4, cost_usd: 0.05 }]);
    // Days outside the range are not counted.
    expect((await usage(tenant.auth, "?from=2020-01-01&to=2020-01-31")).totals).toEqual({
      runs: 0,
      cost_usd: 0,
    });

    const bySchedule = await usage(tenant.auth, "?group_by=schedule");
    expect(bySchedule.groups).toEqual([{ key: null, runs: 4, cost_usd: 0.05 }]);
    expect(byProcessor.budget).toMatchObject({ limit_usd: null, spent_usd: 0.05, remaining_usd: null });
  });

  it("gives the admin every key's usage, or one key's with key_id; a key cannot read another's", async () => {
    const a = await createTenant("a");
    const b = await createTenant("b");
    fakeParallel();
    await expectJson(await createRun(a), 202);
    await expectJson(await createRun(b, { ...TEXT_RUN, processor: "pro" }), 202);
    const all = await usage(ADMIN, "?group_by=processor");
    expect(all.api_key_id).toBeNull();
    expect(all.budget).toBeNull();
    expect(all.totals.runs).toBeGreaterThanOrEqual(2);
    const onlyB = await usage(ADMIN, `?group_by=processor&key_id=${b.id}`);
    expect(onlyB.groups).toEqual([{ key: "pro", runs: 1, cost_usd: 0.1 }]);
    const refused = await expectJson<ErrorBody>(
      await api(`/v1/usage?key_id=${b.id}`, { headers: a.auth }),
      422,
    );
    expect(refused.error.details[0]).toMatchObject({ path: "key_id" });
    await expectJson(await api("/v1/usage?key_id=key_nobody", { headers: ADMIN }), 404);
  });

  it("refuses bad dates, a reversed range and an unknown group_by with 422", async () => {
    const tenant = await createTenant();
    for (const query of [
      "?from=2026-13-01",
      "?from=2026-12-10&to=2026-12-01",
      "?group_by=week",
      "?from=2024-01-01&to=2026-01-01",
    ]) {
      const body = await expectJson<ErrorBody>(await api(`/v1/usage${query}`, { headers: tenant.auth }), 422);
      expect(body.error.code, query).toBe("validation_failed");
    }
    await expectJson(await api("/v1/usage"), 401);
  });

  it("writes one rollup row per accepted run, and counts a run accepted twice (create and webhook) once", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const run = await expectJson<RunBody>(await createRun(tenant), 202);
    // A second acceptance of the same run (the webhook path for a run whose create answer was lost)
    // finds it already has its Parallel run: the statement adds nothing.
    const again = await recordAcceptedSpend(env.DB, run.id, new Date().toISOString(), { sql: "1" }).run();
    expect(again.meta.rows_written).toBe(0);
    expect((await usage(tenant.auth)).totals).toEqual({ runs: 1, cost_usd: 0.01 });

    // The rollup's UPSERT on the WITHOUT ROWID table writes one row per accepted run, whether it
    // inserts the group's row or adds to it: two runs still waiting for Parallel, accepted by hand.
    fakeParallel({ create: () => parallelError(503, "busy") });
    const waiting = [
      await expectJson<RunBody>(await createRun(tenant, { ...TEXT_RUN, processor: "ultra8x" }), 202),
      await expectJson<RunBody>(await createRun(tenant, { ...TEXT_RUN, processor: "ultra8x" }), 202),
    ];
    const at = new Date().toISOString();
    const written = [];
    for (const run of waiting) {
      written.push(
        (await recordAcceptedSpend(env.DB, run.id, at, stepGuard("submit")).run()).meta.rows_written,
      );
    }
    expect(written).toEqual([1, 1]);
    expect((await usage(tenant.auth, "?group_by=processor")).groups).toContainEqual({
      key: "ultra8x",
      runs: 2,
      cost_usd: 4.8,
    });
  });
});

describe("a run accepted although its create's answer was lost", () => {
  it("is counted once, by the webhook that tells taskrelay Parallel has it", async () => {
    const tenant = await createTenant();
    fakeParallel({ create: () => parallelError(503, "busy") });
    const run = await expectJson<RunBody>(await createRun(tenant, { ...TEXT_RUN, processor: "core2x" }), 202);
    expect(run.status).toBe("submitting");
    const parallelRunId = `trun_${crypto.randomUUID().replaceAll("-", "")}`;
    for (const id of ["whevent_lost_1", "whevent_lost_2"]) {
      const body = webhookBody({
        run_id: parallelRunId,
        status: "running",
        metadata: { [RUN_ID_METADATA_KEY]: run.id },
      });
      const response = await api("/webhooks/parallel", {
        method: "POST",
        headers: signWebhook(body, { id }),
        body,
      });
      expect(response.status, await response.text()).toBeLessThan(300);
    }
    const got = await expectJson<RunBody>(await api(`/v1/runs/${run.id}`, { headers: tenant.auth }), 200);
    expect(got).toMatchObject({ status: "running", cost_usd: 0.05 });
    expect((await usage(tenant.auth)).totals).toEqual({ runs: 1, cost_usd: 0.05 });
  });
});

describe("budgets", () => {
  it("lets exactly the runs that fit through when 20 requests arrive at once (5 fit)", async () => {
    const tenant = await budgetedTenant(0.05); // five base runs at $0.01
    let decided = 0;
    let releaseCreates: () => void = () => {};
    const allDecided = new Promise<void>((resolve) => {
      releaseCreates = resolve;
    });
    const decide = () => {
      decided += 1;
      if (decided === 20) releaseCreates();
    };
    // Parallel holds every create until all 20 requests have reserved or been refused: the five
    // that pass are all in flight together while the other fifteen are judged.
    const parallel = fakeParallel({
      create: async (call) => {
        decide();
        await allDecided;
        const body = call.body as { processor: string; metadata: Record<string, unknown> };
        return HttpResponse.json(taskRun({ processor: body.processor, metadata: body.metadata }), {
          status: 202,
        });
      },
    });
    const responses = await Promise.all(
      Array.from({ length: 20 }, () =>
        createRun(tenant).then(async (response) => {
          if (response.status === 402) decide();
          return { status: response.status, body: (await response.json()) as ErrorBody };
        }),
      ),
    );
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 202)).toHaveLength(5);
    expect(statuses.filter((s) => s === 402)).toHaveLength(15);
    expect(parallel.creates()).toHaveLength(5);
    const refusal = responses.find((r) => r.status === 402)?.body;
    expect(refusal?.error.code).toBe("budget_exceeded");
    expect(refusal?.error.details[0]).toMatchObject({
      limit_usd: 0.05,
      spent_usd: 0.05,
      cost_usd: 0.01,
      remaining_usd: 0,
      resets_at: expect.stringMatching(/^\d{4}-\d{2}-01T00:00:00\.000Z$/),
    });
    const { budget } = await usage(tenant.auth);
    expect(budget).toMatchObject({ limit_usd: 0.05, spent_usd: 0.05, remaining_usd: 0 });
    const next = new Date();
    expect(budget?.resets_at).toBe(
      new Date(Date.UTC(next.getUTCFullYear(), next.getUTCMonth() + 1, 1)).toISOString(),
    );
  });

  it("refuses a run that would pass the budget before anything is stored or sent to Parallel", async () => {
    const tenant = await budgetedTenant(0.05);
    const parallel = fakeParallel();
    const refused = await expectJson<ErrorBody>(
      await createRun(tenant, { ...TEXT_RUN, processor: "pro" }),
      402,
    );
    expect(refused.error.message).toContain("$0.1");
    expect(parallel.creates()).toHaveLength(0);
    const list = await expectJson<{ data: unknown[] }>(await api("/v1/runs", { headers: tenant.auth }), 200);
    expect(list.data).toHaveLength(0);
  });

  it("gives the reservation back when Parallel refuses the run", async () => {
    const tenant = await budgetedTenant(0.01);
    let refuse = true;
    fakeParallel({
      create: (call) => {
        if (refuse) return parallelError(422, "Input too long");
        const body = call.body as { processor: string; metadata: Record<string, unknown> };
        return HttpResponse.json(taskRun({ processor: body.processor, metadata: body.metadata }), {
          status: 202,
        });
      },
    });
    await expectJson(await createRun(tenant), 422);
    expect((await usage(tenant.auth)).budget?.spent_usd).toBe(0);
    refuse = false;
    await expectJson(await createRun(tenant), 202);
    expect((await usage(tenant.auth)).budget?.spent_usd).toBe(0.01);
    await expectJson(await createRun(tenant), 402);
  });

  it("answers a replay of an Idempotency-Key without charging it again", async () => {
    const tenant = await budgetedTenant(0.01);
    fakeParallel();
    const headers = { ...tenant.auth, "idempotency-key": "once" };
    const first = await expectJson<RunBody>(await postJson("/v1/runs", TEXT_RUN, headers), 202);
    const again = await expectJson<RunBody>(await postJson("/v1/runs", TEXT_RUN, headers), 202);
    expect(again.id).toBe(first.id);
  });

  it("is set and removed by the admin with PATCH /v1/keys/:id, counting what the month already spent", async () => {
    const tenant = await createTenant();
    fakeParallel();
    await expectJson(await createRun(tenant), 202);
    await expectJson(await createRun(tenant), 202);
    const patch = (body: unknown, auth: Record<string, string> = ADMIN) =>
      api(`/v1/keys/${tenant.id}`, {
        method: "PATCH",
        headers: { "content-type": "application/json", ...auth },
        body: JSON.stringify(body),
      });
    expect(await expectJson(await patch({ monthly_budget_usd: 0.03 }), 200)).toMatchObject({
      monthly_budget_usd: 0.03,
    });
    expect((await usage(tenant.auth)).budget).toMatchObject({
      limit_usd: 0.03,
      spent_usd: 0.02,
      remaining_usd: 0.01,
    });
    await expectJson(await createRun(tenant), 202);
    await expectJson(await createRun(tenant), 402);
    // The key reads its budget, but cannot change it.
    await expectJson(await patch({ monthly_budget_usd: 100 }, tenant.auth), 401);
    await expectJson(await patch({ monthly_budget_usd: -1 }), 422);
    await expectJson(
      await api("/v1/keys/key_nobody", {
        method: "PATCH",
        headers: { "content-type": "application/json", ...ADMIN },
        body: '{"monthly_budget_usd": 1}',
      }),
      404,
    );
    expect(await expectJson(await patch({ monthly_budget_usd: null }), 200)).toMatchObject({
      monthly_budget_usd: null,
    });
    await expectJson(await createRun(tenant), 202);
    expect((await usage(tenant.auth)).budget).toMatchObject({ limit_usd: null, spent_usd: 0.04 });
  });
});

describe("the dashboard's budget notice", () => {
  it("says what is spent from 80% of the budget, and that runs are refused at 100%", async () => {
    const tenant = await budgetedTenant(0.05);
    fakeParallel();
    const b = await signedIn(tenant.key);
    const notice = async () =>
      (await b.page("/dashboard/runs")).match(/<p[^>]*data-budget-notice[^>]*>([^<]*)</)?.[1];
    for (let i = 0; i < 3; i++) await expectJson(await createRun(tenant), 202);
    expect(await notice()).toBeUndefined(); // 60%
    await expectJson(await createRun(tenant), 202);
    expect(await notice()).toBe(
      "This key has spent $0.04 of its $0.05 monthly budget (80%): a run that would pass it is refused.",
    );
    await expectJson(await createRun(tenant), 202);
    expect(await notice()).toMatch(
      /^This key has spent \$0\.05 of its \$0\.05 monthly budget \(100%\): new runs are refused until the month resets at \d{4}-\d{2}-01T00:00:00\.000Z\.$/,
    );
  });
});

describe("dry_run", () => {
  it("returns the checks and the cost, and stores, reserves and submits nothing", async () => {
    const tenant = await budgetedTenant(0.2);
    const parallel = fakeParallel();
    const fits = await expectJson<Record<string, unknown>>(
      await createRun(tenant, { ...TEXT_RUN, processor: "pro", dry_run: true }),
      200,
    );
    expect(fits).toMatchObject({
      dry_run: true,
      would_submit: true,
      processor: "pro",
      cost_usd: 0.1,
      budget: { limit_usd: 0.2, spent_usd: 0, remaining_usd: 0.2 },
    });
    expect(fits.checks).toEqual([
      expect.objectContaining({ check: "request", passed: true }),
      expect.objectContaining({ check: "budget", passed: true }),
    ]);
    const over = await expectJson<{
      would_submit: boolean;
      checks: Array<{ check: string; passed: boolean }>;
    }>(await createRun(tenant, { ...TEXT_RUN, processor: "ultra", dry_run: true }), 200);
    expect(over.would_submit).toBe(false);
    expect(over.checks.find((c) => c.check === "budget")?.passed).toBe(false);
    expect(parallel.creates()).toHaveLength(0);
    const list = await expectJson<{ data: unknown[] }>(await api("/v1/runs", { headers: tenant.auth }), 200);
    expect(list.data).toHaveLength(0);
    expect((await usage(tenant.auth)).budget?.spent_usd).toBe(0);
    // An invalid request is the same 422 with or without dry_run.
    await expectJson(await createRun(tenant, { ...TEXT_RUN, processor: "fastest", dry_run: true }), 422);
  });
});

describe("schedules and budgets", () => {
  afterEach(async () => {
    await env.DB.prepare("DELETE FROM schedules").run();
  });

  it("skips an occurrence over budget with reason budget, and fires again next month", async () => {
    const tenant = await budgetedTenant(0.01); // one base run a month
    fakeParallel();
    let now = Date.parse("2026-10-30T08:00:00Z");
    const execution = createExecutionContext();
    const ctx = createServiceContext(env, execution, { now: () => new Date(now) });
    const schedule = await createSchedule(
      ctx,
      tenant.id,
      ScheduleCreateSchema.parse({
        name: "daily",
        cron: "0 9 * * *",
        timezone: "UTC",
        overlap: "allow",
        template: { processor: "base", input: "What changed at Acme?" },
      }),
    );
    const tickAt = async (iso: string) => {
      now = Date.parse(iso);
      await runFireSchedules(ctx, new Date(now), 10);
    };
    await tickAt("2026-10-30T09:00:00Z");
    await tickAt("2026-10-31T09:00:00Z");
    await tickAt("2026-11-01T09:00:00Z");
    await waitOnExecutionContext(execution);
    const occurrences = await expectJson<{
      data: Array<{ outcome: string; reason: string | null; run_id: string | null }>;
    }>(await api(`/v1/schedules/${schedule.id}/occurrences`, { headers: tenant.auth }), 200);
    const byTime = [...occurrences.data].reverse();
    expect(byTime.map((o) => o.outcome)).toEqual(["fired", "skipped_budget", "fired"]);
    expect(byTime[1]?.reason).toMatch(/^budget: /);
    expect(byTime[1]?.run_id).toBeNull();

    const got = await expectJson<{
      spend: { runs: number; cost_usd: number };
      enabled: boolean;
      next_run_at: string;
    }>(await api(`/v1/schedules/${schedule.id}`, { headers: tenant.auth }), 200);
    expect(got.enabled).toBe(true);
    expect(got.next_run_at).toBe("2026-11-02T09:00:00.000Z");
    expect(got.spend).toEqual({ runs: 2, cost_usd: 0.02 });
    const bySchedule = await usage(tenant.auth, "?group_by=schedule&from=2026-10-01&to=2026-11-30");
    expect(bySchedule.groups).toEqual([{ key: schedule.id, runs: 2, cost_usd: 0.02 }]);
  });
});
