// The overview (/dashboard) in Chromium against the real local stack: a few hundred runs of mixed
// outcomes over the last week (real runs through the simulator, and older history written into the
// local D1 file as the relay would have left it, so the migration's triggers count both), then each
// chart is checked against the runs and deliveries tables themselves — one bar segment per hour and
// outcome with runs, one point per hour with callbacks — with JavaScript on and off. Screenshots go
// to test-artifacts/ (docs/overview.png in the README is one of them).

import { readdirSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CallbackReceiver, startCallbackReceiver } from "../../../scripts/callback-receiver.ts";
import {
  createApiKey,
  executeLocalSql,
  freePort,
  type LocalStack,
  loadSqlite,
  ROOT,
  startLocalStack,
} from "../../../scripts/local-stack.ts";
import { launchChromium } from "./chromium.ts";

const ARTIFACTS = join(ROOT, "test-artifacts");
const ADMIN_TOKEN = "overview-admin-token";
const REAL_RUNS = 40;
const SEEDED_RUNS = 300;
const HOUR = 3_600_000;

type Counts = Map<string, number>;

/** What the charts should show, computed from the source tables (not from the rollup). */
interface Expected {
  /** `hour|series` → count, for runs finished and first deliveries ended in the window. */
  runs: Counts;
  deliveries: Counts;
  /** Hours with at least one succeeded first delivery. */
  latencyHours: Set<string>;
}

describe("the overview in Chromium", () => {
  let stack: LocalStack;
  let receiver: CallbackReceiver;
  let browser: Browser;
  let persistDir: string;
  let key: { id: string; key: string; signing_secret: string };
  // Closed at the end, not one by one: the packaged Chromium runs single-process.
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    persistDir = await mkdtemp(join(tmpdir(), "taskrelay-overview-"));
    [stack, browser] = await Promise.all([
      startLocalStack({
        port: await freePort(),
        simPort: await freePort(),
        adminToken: ADMIN_TOKEN,
        webhookSecret: "overview-webhook-secret",
        timeScale: 0.02,
        persistDir,
        simEnv: { SIM_SEED: "11", SIM_FAIL_RUNS: "0.3" },
      }),
      launchChromium(),
    ]);
    key = await createApiKey(stack.relayUrl, ADMIN_TOKEN, "overview");
    receiver = await startCallbackReceiver({ secrets: [key.signing_secret] });
    await mkdir(ARTIFACTS, { recursive: true });

    // Real runs, now: completed and failed (the simulator fails 30 %), each with a callback.
    const created = await Promise.all(
      Array.from({ length: REAL_RUNS }, async (_, i) => {
        const response = await fetch(`${stack.relayUrl}/v1/runs`, {
          method: "POST",
          headers: { authorization: `Bearer ${key.key}`, "content-type": "application/json" },
          body: JSON.stringify({
            processor: "lite",
            input: `Overview run ${i}`,
            callback: { url: receiver.url },
          }),
        });
        expect(response.status, await response.clone().text()).toBe(202);
        return ((await response.json()) as { id: string }).id;
      }),
    );
    // Until every real run has finished and its callback has ended.
    const deadline = Date.now() + 90_000;
    for (;;) {
      const open = await scalar(
        `SELECT (SELECT COUNT(*) FROM runs WHERE api_key_id = '${key.id}' AND status NOT IN ('completed','failed','cancelled','rejected','expired'))
              + (SELECT COUNT(*) FROM deliveries WHERE api_key_id = '${key.id}' AND status = 'pending')`,
      );
      if (open === 0) break;
      expect(Date.now(), `${open} runs or deliveries of ${created.length} still open`).toBeLessThan(deadline);
      await stack.tick().catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    await seedHistory(key.id);
    const schedule = await fetch(`${stack.relayUrl}/v1/schedules`, {
      method: "POST",
      headers: { authorization: `Bearer ${key.key}`, "content-type": "application/json" },
      body: JSON.stringify({
        name: "Supplier news, weekday mornings",
        cron: "0 9 * * 1-5",
        timezone: "Europe/Berlin",
        template: { processor: "lite", input: "What did our suppliers announce?" },
      }),
    });
    expect(schedule.status, await schedule.clone().text()).toBe(201);
  }, 240_000);

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await receiver?.close();
    await stack?.stop();
    if (persistDir) await rm(persistDir, { recursive: true, force: true });
  });

  /** The local D1 file, read-only with node:sqlite (the relay keeps writing it). */
  async function readDb<T>(read: (db: import("node:sqlite").DatabaseSync) => T): Promise<T> {
    const { DatabaseSync } = await loadSqlite();
    const dir = join(persistDir, "v3", "d1", "miniflare-D1DatabaseObject");
    const file = readdirSync(dir).find((name) => name.endsWith(".sqlite") && name !== "metadata.sqlite");
    const db = new DatabaseSync(join(dir, file as string), { readOnly: true });
    try {
      return read(db);
    } finally {
      db.close();
    }
  }

  async function scalar(sql: string): Promise<number> {
    return readDb((db) => Number(Object.values(db.prepare(sql).get() ?? { n: -1 })[0]));
  }

  /**
   * SEEDED_RUNS older finished runs spread over the last 7 days (every outcome), two in three with
   * a first delivery that ended: first time, after retries, or dead. Written as the relay writes
   * them: a run inserted finished, a delivery inserted pending and then updated to its end.
   */
  async function seedHistory(apiKeyId: string) {
    const now = Date.now();
    await executeLocalSql(
      persistDir,
      `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ${SEEDED_RUNS})
       INSERT INTO runs (id, api_key_id, status, processor, input, created_at, updated_at, finished_at, attempts)
       SELECT printf('run_seed%08d', n), '${apiKeyId}',
              CASE WHEN n % 10 < 6 THEN 'completed' WHEN n % 10 < 8 THEN 'failed' WHEN n % 10 = 8 THEN 'expired' ELSE 'rejected' END,
              'base', '"q"', t, t, t, 0
       FROM (SELECT n, strftime('%Y-%m-%dT%H:%M:%fZ', (${now} - ((n * 7919) % 167 + 1) * ${HOUR} - ((n * 13) % 60) * 60000) / 1000.0, 'unixepoch') AS t FROM seq);
       INSERT INTO deliveries (id, run_id, api_key_id, event, url, status, series, attempt_count, next_attempt_at, created_at, updated_at)
       SELECT 'dlv_' || substr(id, 5), id, api_key_id, 'run.completed', 'http://127.0.0.1:1/x', 'pending', 1, 0, finished_at, finished_at, finished_at
       FROM runs WHERE id LIKE 'run_seed%' AND CAST(substr(id, 9) AS INTEGER) % 3 <> 0;
       UPDATE deliveries SET
         status = CASE WHEN CAST(substr(id, 9) AS INTEGER) % 7 = 0 THEN 'dead' ELSE 'succeeded' END,
         attempt_count = CASE WHEN CAST(substr(id, 9) AS INTEGER) % 7 = 0 THEN 8 WHEN CAST(substr(id, 9) AS INTEGER) % 5 = 0 THEN 3 ELSE 1 END,
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', julianday(created_at) + (20 + (CAST(substr(id, 9) AS INTEGER) * 37) % 900) / 86400000.0)
       WHERE id LIKE 'dlv_seed%';
       INSERT INTO batches (id, api_key_id, name, status, template, input_count, created_at, updated_at)
       VALUES ('bat_seed0000000000000000000001', '${apiKeyId}', 'Q4 supplier checks', 'running', '{}', 120,
               strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-3 hours'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
       UPDATE runs SET batch_id = 'bat_seed0000000000000000000001', batch_index = CAST(substr(id, 9) AS INTEGER)
       WHERE id LIKE 'run_seed%' AND CAST(substr(id, 9) AS INTEGER) <= 80;
       UPDATE batches SET status_counts = (SELECT json_group_object(status, n) FROM
         (SELECT status, COUNT(*) AS n FROM runs WHERE runs.batch_id = batches.id GROUP BY status))
       WHERE id = 'bat_seed0000000000000000000001'`,
    );
  }

  async function expected(fromHour: string): Promise<Expected> {
    return readDb((db) => {
      const runs: Counts = new Map();
      for (const row of db
        .prepare(
          `SELECT substr(finished_at, 1, 13) AS hour, status, COUNT(*) AS n FROM runs
           WHERE api_key_id = ? AND status IN ('completed','failed','cancelled','rejected','expired') GROUP BY 1, 2`,
        )
        .all(key.id) as Array<{ hour: string; status: string; n: number }>) {
        if (row.hour < fromHour) continue;
        const series = row.status === "cancelled" ? "failed" : row.status;
        runs.set(`${row.hour}|${series}`, (runs.get(`${row.hour}|${series}`) ?? 0) + row.n);
      }
      const deliveries: Counts = new Map();
      const latencyHours = new Set<string>();
      for (const row of db
        .prepare(
          `SELECT substr(updated_at, 1, 13) AS hour, status, attempt_count FROM deliveries
           WHERE api_key_id = ? AND series = 1 AND status IN ('succeeded', 'dead')`,
        )
        .all(key.id) as Array<{ hour: string; status: string; attempt_count: number }>) {
        if (row.hour < fromHour) continue;
        const series = row.status === "dead" ? "dead" : row.attempt_count > 1 ? "retried" : "first_try";
        deliveries.set(`${row.hour}|${series}`, (deliveries.get(`${row.hour}|${series}`) ?? 0) + 1);
        if (row.status === "succeeded") latencyHours.add(row.hour);
      }
      return { runs, deliveries, latencyHours };
    });
  }

  /** What a chart draws: `hour|series` → value of each bar segment, and the points of a line chart. */
  async function drawn(page: Page, chart: string) {
    return page.evaluate((id) => {
      const svg = document.querySelector(`svg[data-chart="${id}"]`);
      const segments: Record<string, number> = {};
      for (const rect of svg?.querySelectorAll("rect[data-series]") ?? []) {
        const hour = rect.closest("g[data-x]")?.getAttribute("data-x");
        segments[`${hour}|${rect.getAttribute("data-series")}`] = Number(rect.getAttribute("data-value"));
      }
      const points: Record<string, string[]> = {};
      for (const circle of svg?.querySelectorAll("circle[data-series]") ?? []) {
        const series = circle.getAttribute("data-series") as string;
        points[series] = [...(points[series] ?? []), circle.getAttribute("data-x") as string];
      }
      const hours = [...(svg?.querySelectorAll("g[data-x]") ?? [])].map((g) => g.getAttribute("data-x"));
      return {
        segments,
        points,
        hours,
        tableRows: svg?.closest("figure")?.querySelectorAll("tbody tr").length ?? 0,
      };
    }, chart);
  }

  async function signedIn(javaScriptEnabled = true) {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, javaScriptEnabled });
    contexts.push(context);
    const page = await context.newPage();
    await page.goto(`${stack.relayUrl}/dashboard/sign-in`);
    await page.fill("#credential", key.key);
    await page.click("button[type=submit]");
    await page.waitForURL("**/dashboard");
    return page;
  }

  for (const [range, hours] of [
    ["24h", 24],
    ["7d", 168],
  ] as const) {
    it(`draws every hour's runs, callbacks and latency of the ${range} from the data`, async () => {
      const page = await signedIn();
      await page.goto(`${stack.relayUrl}/dashboard?range=${range}`);
      const runs = await drawn(page, "runs-chart");
      expect(runs.hours).toHaveLength(hours);
      expect(runs.tableRows).toBe(hours);
      const want = await expected(runs.hours[0] as string);
      expect(new Map(Object.entries(runs.segments))).toEqual(want.runs);

      const deliveries = await drawn(page, "deliveries-chart");
      expect(new Map(Object.entries(deliveries.segments))).toEqual(want.deliveries);

      const latency = await drawn(page, "latency-chart");
      const pointHours = [...want.latencyHours].sort();
      expect(latency.points.p50).toEqual(pointHours);
      expect(latency.points.p95).toEqual(pointHours);
      // The next schedule runs, and the open batch's progress: 80 of its 120 runs finished.
      expect(await page.locator("[data-upcoming]").count()).toBe(10);
      const progress = page.locator('[data-batch="bat_seed0000000000000000000001"] progress');
      expect([await progress.getAttribute("value"), await progress.getAttribute("max")]).toEqual([
        "80",
        "120",
      ]);
      // The data is rich enough to mean something: most hours of the week have runs.
      expect(want.runs.size).toBeGreaterThan(range === "7d" ? 150 : 20);

      await page.screenshot({ path: join(ARTIFACTS, `overview-${range}.png`), fullPage: true });
    });
  }

  it("works with JavaScript off: the same charts, and each chart's table opens", async () => {
    const page = await signedIn(false);
    const runs = await drawn(page, "runs-chart");
    const want = await expected(runs.hours[0] as string);
    expect(new Map(Object.entries(runs.segments))).toEqual(want.runs);
    await page.click("#runs-chart details summary");
    expect(await page.locator("#runs-chart details table").isVisible()).toBe(true);
    // The spend section draws the real runs' cost (Parallel accepted them) from the usage rollup.
    expect(await page.locator("#spend-chart svg").count()).toBe(1);
    await page.screenshot({ path: join(ARTIFACTS, "overview-no-javascript.png"), fullPage: true });
  });

  it("lets the admin see every key and filter to one", async () => {
    const other = await createApiKey(stack.relayUrl, ADMIN_TOKEN, "overview-other");
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    contexts.push(context);
    const page = await context.newPage();
    await page.goto(`${stack.relayUrl}/dashboard/sign-in`);
    await page.fill("#credential", ADMIN_TOKEN);
    await page.click("button[type=submit]");
    await page.waitForURL("**/dashboard");
    await page.selectOption("select[name=key]", other.id);
    await page.click("form.filters button[type=submit]");
    await page.waitForURL(`**/dashboard?range=24h&key=${other.id}`);
    expect(Object.keys((await drawn(page, "runs-chart")).segments)).toEqual([]);
    await page.selectOption("select[name=key]", key.id);
    await page.click("form.filters button[type=submit]");
    const runs = await drawn(page, "runs-chart");
    expect(new Map(Object.entries(runs.segments))).toEqual((await expected(runs.hours[0] as string)).runs);
    await page.screenshot({ path: join(ARTIFACTS, "overview-admin.png"), fullPage: true });
  });
});
