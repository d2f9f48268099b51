// The overview's hourly rollup (migration 0017): its triggers count every run that finishes and every
// delivery that ends, once, in the right hour and latency bucket, on real D1 with the real migrations;
// and the overview page drawn from it, for a key, for the admin and for the admin's key filter.

import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { LATENCY_BUCKETS, LATENCY_EDGES_MS, listOverviewHours } from "../../src/db/overview";
import type { Run } from "../../src/db/runs";
import { newId } from "../../src/ids";
import worker from "../../src/index";
import { histogramQuantile } from "../../src/services/overview";
import { onRunFinished } from "../../src/services/run-finished";
import { attributeValues, signedIn } from "./dashboard-harness";
import {
  deliveryContext,
  fakeReceiver,
  onlyDeliveryOf,
  RECEIVER,
  status,
  storeFinishedRun,
} from "./delivery-harness";
import {
  ADMIN,
  createTenant,
  expectJson,
  fakeParallel,
  parallelError,
  postJson,
  RELAY,
  resultReply,
  signWebhook,
  TEXT_RUN,
  taskRun,
  webhookBody,
} from "./harness";

const ADMIN_TOKEN = ADMIN.authorization.replace("Bearer ", "");

interface HourRow {
  hour: string;
  runs_completed: number;
  runs_failed: number;
  runs_cancelled: number;
  runs_rejected: number;
  runs_expired: number;
  deliveries_first_try: number;
  deliveries_retried: number;
  deliveries_dead: number;
  [latency: `latency_${string}`]: number;
}

async function rollupOf(apiKeyId: string): Promise<HourRow[]> {
  const { results } = await env.DB.prepare("SELECT * FROM overview_hours WHERE api_key_id = ? ORDER BY hour")
    .bind(apiKeyId)
    .all<HourRow>();
  return results;
}

const latencyOf = (row: HourRow | undefined) =>
  Array.from({ length: LATENCY_BUCKETS }, (_, k) =>
    Number(row?.[`latency_${String(k).padStart(2, "0")}`] ?? 0),
  );

/** A run stored straight in its terminal state at `at` (the insert trigger counts it). */
function finishedAt(apiKeyId: string, status: Run["status"], at: Date) {
  return storeFinishedRun(apiKeyId, { status, callback_url: null }, at);
}

/**
 * A delivery of `run` that ends `ms` after the run finished, as the delivery code records it (an
 * UPDATE of a pending delivery). `event` and `series` tell a run's deliveries apart.
 */
async function deliveryEnding(
  run: Run,
  ms: number,
  outcome: "succeeded" | "dead",
  options: { attempts?: number; series?: number; event?: string } = {},
) {
  const id = newId("dlv");
  const finished = Date.parse(run.finished_at as string);
  const created = new Date(finished).toISOString();
  await env.DB.prepare(
    `INSERT INTO deliveries (id, run_id, api_key_id, event, url, status, series, attempt_count, next_attempt_at,
       lease_until, created_at, updated_at)
     VALUES (?, ?, ?, ?, 'https://hooks.example.com/x', 'pending', ?, 0, ?, NULL, ?, ?)`,
  )
    .bind(
      id,
      run.id,
      run.api_key_id,
      options.event ?? "run.completed",
      options.series ?? 1,
      created,
      created,
      created,
    )
    .run();
  return env.DB.prepare("UPDATE deliveries SET status = ?, attempt_count = ?, updated_at = ? WHERE id = ?")
    .bind(outcome, options.attempts ?? 1, new Date(finished + ms).toISOString(), id)
    .run();
}

const HOUR = 3_600_000;
const thisHour = () => new Date(Math.floor(Date.now() / HOUR) * HOUR + 60_000);

describe("the hourly rollup's triggers", () => {
  it("counts a run through the real webhook path once, and its callback with its latency", async () => {
    const tenant = await createTenant("rollup-webhook");
    const parallel = fakeParallel({ result: (call) => resultReply(call.path.split("/")[4] ?? "") });
    fakeReceiver([status(204)]);
    const run = await expectJson<{ id: string; parallel_run_id: string }>(
      await postJson("/v1/runs", { ...TEXT_RUN, callback: { url: RECEIVER } }, tenant.auth),
      202,
    );
    const body = webhookBody(taskRun({ run_id: run.parallel_run_id, status: "completed" }));
    for (const webhookId of ["msg_1", "msg_1", "msg_2"]) {
      // The same webhook twice and a re-send under another id: one finished run all the same.
      const ctx = createExecutionContext();
      const response = await worker.fetch(
        new Request(`${RELAY}/webhooks/parallel`, {
          method: "POST",
          headers: signWebhook(body, { id: webhookId }),
          body,
        }),
        env,
        ctx,
      );
      expect(response.status).toBe(200);
      await waitOnExecutionContext(ctx);
    }
    expect(parallel.calls.filter((c) => c.path.endsWith("/result"))).toHaveLength(1);
    const rows = await rollupOf(tenant.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      runs_completed: 1,
      runs_failed: 0,
      deliveries_first_try: 1,
      deliveries_retried: 0,
      deliveries_dead: 0,
    });
    expect(latencyOf(rows[0]).reduce((s, n) => s + n, 0)).toBe(1);
  });

  it("counts a submission Parallel refused as rejected", async () => {
    const tenant = await createTenant("rollup-rejected");
    fakeParallel({ create: () => parallelError(422, "The task spec is invalid.") });
    const response = await postJson("/v1/runs", TEXT_RUN, tenant.auth);
    expect(response.status).toBe(422);
    expect((await rollupOf(tenant.id))[0]).toMatchObject({ runs_rejected: 1, runs_completed: 0 });
  });

  it("moves a run between outcomes when a terminal status is replaced, in the hour each was counted", async () => {
    const tenant = await createTenant("rollup-moves");
    const earlier = new Date(thisHour().getTime() - 5 * HOUR);
    const expired = await finishedAt(tenant.id, "expired", earlier);
    const completed = await finishedAt(tenant.id, "completed", earlier);
    const later = new Date().toISOString();
    // A late completion of the expired run (a new finished_at); a result never found for the other
    // (finished_at kept): both as the code writes them.
    await env.DB.prepare("UPDATE runs SET status = 'completed', finished_at = ?, updated_at = ? WHERE id = ?")
      .bind(later, later, expired.id)
      .run();
    await env.DB.prepare("UPDATE runs SET status = 'failed', updated_at = ? WHERE id = ?")
      .bind(later, completed.id)
      .run();
    // Same status again (a guarded update that re-sets it): not counted again.
    await env.DB.prepare("UPDATE runs SET status = 'failed', updated_at = ? WHERE id = ?")
      .bind(later, completed.id)
      .run();
    const rows = await rollupOf(tenant.id);
    const old = rows.find((r) => r.hour === earlier.toISOString().slice(0, 13));
    const now = rows.find((r) => r.hour === later.slice(0, 13));
    expect(old).toMatchObject({ runs_expired: 0, runs_completed: 0, runs_failed: 1 });
    expect(now).toMatchObject({ runs_completed: 1, runs_expired: 0 });
  });

  it("puts each latency in the bucket the read side expects, at every edge", async () => {
    const tenant = await createTenant("rollup-buckets");
    // Just below and at each edge: bucket k, then k + 1 — a run of its own for each delivery, all
    // written in one batch (the trigger fires on the delivery's update, as for the code's).
    const finished = thisHour().getTime();
    const rows = LATENCY_EDGES_MS.flatMap((edge) => [edge - 1, edge]).map((ms, i) => {
      const id = newId("run").replace("run_", "");
      return `('${id}', ${i}, '${new Date(finished + ms).toISOString()}')`;
    });
    const at = new Date(finished).toISOString();
    await env.DB.batch([
      env.DB.prepare(
        `WITH v(id, i, ended) AS (VALUES ${rows.join(", ")})
         INSERT INTO runs (id, api_key_id, status, processor, input, created_at, updated_at, finished_at, attempts)
         SELECT 'run_' || id, ?, 'completed', 'base', '"q"', ?, ?, ?, 0 FROM v`,
      ).bind(tenant.id, at, at, at),
      env.DB.prepare(
        `WITH v(id, i, ended) AS (VALUES ${rows.join(", ")})
         INSERT INTO deliveries (id, run_id, api_key_id, event, url, status, series, attempt_count, next_attempt_at, created_at, updated_at)
         SELECT 'dlv_' || id, 'run_' || id, ?, 'run.completed', 'https://hooks.example.com/x', 'pending', 1, 0, ?, ?, ? FROM v`,
      ).bind(tenant.id, at, at, at),
      env.DB.prepare(
        `WITH v(id, i, ended) AS (VALUES ${rows.join(", ")})
         UPDATE deliveries SET status = 'succeeded', attempt_count = 1,
           updated_at = (SELECT ended FROM v WHERE 'dlv_' || v.id = deliveries.id)
         WHERE id IN (SELECT 'dlv_' || id FROM v)`,
      ),
    ]);
    const rollup = await rollupOf(tenant.id);
    const buckets = rollup.reduce(
      (sum, row) => latencyOf(row).map((n, k) => n + (sum[k] ?? 0)),
      new Array<number>(LATENCY_BUCKETS).fill(0),
    );
    const expected = new Array<number>(LATENCY_BUCKETS).fill(0);
    LATENCY_EDGES_MS.forEach((_, k) => {
      expected[k] = (expected[k] ?? 0) + 1;
      expected[k + 1] = (expected[k + 1] ?? 0) + 1;
    });
    expect(buckets).toEqual(expected);
  });

  it("splits deliveries into first try, after retries and dead; manual retries (series 2) are not counted", async () => {
    const tenant = await createTenant("rollup-deliveries");
    const run = () => finishedAt(tenant.id, "failed", thisHour());
    await deliveryEnding(await run(), 50, "succeeded");
    await deliveryEnding(await run(), 300_000, "succeeded", { attempts: 3 });
    await deliveryEnding(await run(), 900_000, "dead", { attempts: 8 });
    await deliveryEnding(await run(), 50, "succeeded", { series: 2 });
    const rows = await rollupOf(tenant.id);
    const total = (field: keyof HourRow) => rows.reduce((s, r) => s + Number(r[field]), 0);
    expect([total("deliveries_first_try"), total("deliveries_retried"), total("deliveries_dead")]).toEqual([
      1, 1, 1,
    ]);
    // Dead deliveries have no latency.
    expect(rows.reduce((s, r) => s + latencyOf(r).reduce((a, b) => a + b, 0), 0)).toBe(2);
  });

  it("costs one row written per finished run and one per ended delivery", async () => {
    const tenant = await createTenant("rollup-writes");
    const at = new Date().toISOString();
    const setStatus = (id: string, status: string) =>
      env.DB.prepare("UPDATE runs SET status = ?, finished_at = ?, updated_at = ? WHERE id = ?")
        .bind(status, at, at, id)
        .run();
    // The same update of the same row, once between active statuses (no trigger fires: the same
    // index changes) and once to a terminal status: the difference is the rollup's.
    const rowsWrittenFinishing = async () => {
      const run = await storeFinishedRun(tenant.id, {
        status: "queued",
        finished_at: null,
        callback_url: null,
      });
      const active = await setStatus(run.id, "running");
      const finishing = await setStatus(run.id, "completed");
      return { run, extra: finishing.meta.rows_written - active.meta.rows_written };
    };
    const first = await rowsWrittenFinishing(); // inserts the hour's row
    const second = await rowsWrittenFinishing(); // updates it
    // A delivery's end: the same update in series 1 (counted) and in series 2 (a manual retry, not counted).
    const rowsWrittenEnding = async (series: number) => {
      const id = newId("dlv");
      await env.DB.prepare(
        `INSERT INTO deliveries (id, run_id, api_key_id, event, url, status, series, attempt_count, next_attempt_at,
           lease_until, created_at, updated_at)
         VALUES (?, ?, ?, ?, 'https://hooks.example.com/x', 'pending', ?, 0, ?, NULL, ?, ?)`,
      )
        .bind(id, first.run.id, tenant.id, `run.test.${series}`, series, at, at, at)
        .run();
      const ended = await env.DB.prepare(
        "UPDATE deliveries SET status = 'succeeded', attempt_count = 1, updated_at = ? WHERE id = ?",
      )
        .bind(new Date(Date.parse(at) + 40).toISOString(), id)
        .run();
      return ended.meta.rows_written;
    };
    const uncounted = await rowsWrittenEnding(2);
    const counted = await rowsWrittenEnding(1);
    const figures = {
      finishing_a_run_first_in_its_hour: first.extra,
      finishing_a_run: second.extra,
      ending_a_delivery: counted - uncounted,
    };
    console.log("overview rollup: rows written", JSON.stringify(figures));
    expect(figures).toEqual({
      finishing_a_run_first_in_its_hour: 1,
      finishing_a_run: 1,
      ending_a_delivery: 1,
    });
  });
});

describe("the overview's read", () => {
  /** The query plans of the statements listOverviewHours prepares, bound the same way. */
  async function plansOf(apiKeyId: string | null): Promise<string[]> {
    const plans: string[] = [];
    const explaining = {
      prepare: (sql: string) => ({
        bind: (...values: unknown[]) => ({
          all: async () => {
            const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
              .bind(...values)
              .all<{ detail: string }>();
            plans.push(...results.map((r) => r.detail));
            return { results: [] };
          },
        }),
      }),
    } as unknown as D1Database;
    await listOverviewHours(explaining, { apiKeyId, fromHour: "2026-12-01T00" });
    return plans;
  }

  it("seeks each key's range of hours through the primary key, never scanning the history", async () => {
    for (const apiKeyId of ["key_x", null]) {
      const plans = await plansOf(apiKeyId);
      expect(
        plans.some((p) => /SEARCH overview_hours USING PRIMARY KEY \(api_key_id=\? AND hour>\?\)/.test(p)),
        plans.join("; "),
      ).toBe(true);
      expect(
        plans.some((p) => p.startsWith("SCAN overview_hours")),
        plans.join("; "),
      ).toBe(false);
    }
  });
});

describe("percentiles from a histogram", () => {
  it("is within the bucket ratio (√2) of the true percentile", () => {
    const samples = Array.from({ length: 997 }, (_, i) => 5 + ((i * 7919) % 4000) * 1.7);
    const buckets = new Array<number>(LATENCY_BUCKETS).fill(0);
    for (const ms of samples) {
      const k = LATENCY_EDGES_MS.filter((edge) => ms >= edge).length;
      buckets[k] = (buckets[k] ?? 0) + 1;
    }
    const sorted = [...samples].sort((a, b) => a - b);
    for (const q of [0.5, 0.95, 0.99]) {
      const truth = sorted[Math.ceil(q * sorted.length) - 1] as number;
      const estimate = histogramQuantile(buckets, q) as number;
      expect(
        Math.max(estimate / truth, truth / estimate),
        `q=${q}: ${estimate} vs ${truth}`,
      ).toBeLessThanOrEqual(Math.SQRT2);
    }
    expect(histogramQuantile(new Array<number>(LATENCY_BUCKETS).fill(0), 0.5)).toBeNull();
  });
});

describe("the overview page", () => {
  async function seedMixed(apiKeyId: string) {
    const now = thisHour().getTime();
    const plan: Array<[number, Run["status"], number]> = [
      // hours ago, outcome, how many
      [0, "completed", 3],
      [0, "failed", 1],
      [2, "completed", 2],
      [2, "expired", 1],
      [5, "rejected", 2],
      [30, "completed", 4],
    ];
    const runs: Run[] = [];
    for (const [ago, outcome, count] of plan) {
      for (let i = 0; i < count; i++)
        runs.push(await finishedAt(apiKeyId, outcome, new Date(now - ago * HOUR)));
    }
    // Callbacks in two hours of the last 24: now (2) and 2 h ago (1, after retries); one dead 5 h ago.
    const [a, b, , , , , c, d] = runs;
    await deliveryEnding(a as Run, 30, "succeeded");
    await deliveryEnding(b as Run, 60, "succeeded");
    await deliveryEnding(c as Run, 400_000, "succeeded", { attempts: 3 });
    await deliveryEnding(d as Run, 900_000, "dead", { attempts: 8 });
    return runs;
  }

  const count = (html: string, pattern: RegExp) => [...html.matchAll(pattern)].length;
  const chart = (html: string, id: string) => {
    const start = html.indexOf(`<figure class="chart" id="${id}"`);
    expect(start, `chart ${id}`).toBeGreaterThan(-1);
    return html.slice(start, html.indexOf("</figure>", start));
  };

  it("draws the key's runs, latency and deliveries per hour, each with its table", async () => {
    const tenant = await createTenant("overview-page");
    const other = await createTenant("overview-other");
    await seedMixed(tenant.id);
    await finishedAt(other.id, "completed", thisHour());
    const b = await signedIn(tenant.key);
    const html = await b.page("/dashboard");

    const runs = chart(html, "runs-chart");
    // Hours with completed runs in the last 24: now and 2 h ago (30 h ago is outside).
    expect(count(runs, /data-series="completed"/g)).toBe(2);
    expect(count(runs, /data-series="failed"/g)).toBe(1);
    expect(count(runs, /data-series="expired"/g)).toBe(1);
    expect(count(runs, /data-series="rejected"/g)).toBe(1);
    // The stack's values are the counts; the other tenant's run is not among them.
    expect(attributeValues(runs, 'data-series="completed" data-value').sort()).toEqual(["2", "3"]);
    // One table row per hour of the window.
    expect(count(runs, /<th scope="row">/g)).toBe(24);
    expect(runs).toContain("runs per hour");

    const latency = chart(html, "latency-chart");
    expect(count(latency, /<circle[^>]*data-series="p50"/g)).toBe(2);
    expect(count(latency, /<circle[^>]*data-series="p95"/g)).toBe(2);

    const deliveries = chart(html, "deliveries-chart");
    expect(count(deliveries, /data-series="first_try"/g)).toBe(1);
    expect(count(deliveries, /data-series="retried"/g)).toBe(1);
    expect(count(deliveries, /data-series="dead"/g)).toBe(1);

    // Spend has its section, read from the usage rollup (these runs were written without a cost).
    expect(html).toContain('data-section="spend"');
    expect(html).toContain("Nothing spent in the last 30 days.");
    // Nothing the CSP (style-src 'self', scripts by nonce) would block: no inline style, no script.
    expect(html).not.toMatch(/\sstyle=/);
    expect(html).not.toMatch(/<script(?![^>]*nonce=)/);
    // A key's page has no key filter.
    expect(html).not.toContain('name="key"');

    const week = await b.page("/dashboard?range=7d");
    const weekRuns = chart(week, "runs-chart");
    expect(count(weekRuns, /<th scope="row">/g)).toBe(168);
    expect(count(weekRuns, /data-series="completed"/g)).toBe(3);
  });

  it("shows the admin every key summed, or one key with the filter", async () => {
    const tenant = await createTenant("overview-admin-a");
    const other = await createTenant("overview-admin-b");
    await finishedAt(tenant.id, "completed", thisHour());
    await finishedAt(other.id, "completed", thisHour());
    await finishedAt(other.id, "completed", thisHour());
    const b = await signedIn(ADMIN_TOKEN);
    const hourValue = (html: string) =>
      Number(
        new RegExp(
          `data-x="${thisHour().toISOString().slice(0, 13)}"><rect class="k-completed"[^>]*data-value="(\\d+)"`,
        ).exec(chart(html, "runs-chart"))?.[1] ?? 0,
      );
    const all = await b.page("/dashboard");
    expect(all).toContain('name="key"');
    expect(hourValue(all)).toBeGreaterThanOrEqual(3);
    expect(hourValue(await b.page(`/dashboard?key=${other.id}`))).toBe(2);
    expect(hourValue(await b.page(`/dashboard?key=${tenant.id}`))).toBe(1);
  });

  it("ignores a key filter from a key: it sees its own figures only", async () => {
    const tenant = await createTenant("overview-own");
    const other = await createTenant("overview-own-other");
    await finishedAt(other.id, "completed", thisHour());
    const b = await signedIn(tenant.key);
    const html = await b.page(`/dashboard?key=${other.id}`);
    expect(count(chart(html, "runs-chart"), /data-series=/g)).toBe(0);
  });

  it("lists the next schedule runs", async () => {
    const tenant = await createTenant("overview-schedules");
    fakeParallel();
    await expectJson(
      await postJson(
        "/v1/schedules",
        {
          name: "Hourly news",
          cron: "0 * * * *",
          timezone: "UTC",
          template: { processor: "base", input: "News?" },
        },
        tenant.auth,
      ),
      201,
    );
    const html = await (await signedIn(tenant.key)).page("/dashboard");
    expect(count(html, /data-upcoming="sch_/g)).toBe(10);
    expect(html).toContain("Hourly news");
  });

  it("uses the finished-run hook's delivery path end to end", async () => {
    const tenant = await createTenant("overview-hook");
    fakeReceiver([status(503), status(204)]);
    const run = await storeFinishedRun(tenant.id);
    const { ctx, settle } = deliveryContext({ settings: { POLL_TIME_SCALE: "0.0001" } });
    await onRunFinished(ctx, run);
    await settle();
    expect((await onlyDeliveryOf(run.id)).status).toBe("succeeded");
    const rows = await rollupOf(tenant.id);
    expect(rows.reduce((s, r) => s + r.deliveries_retried, 0)).toBe(1);
  });
});
