// The batches page in a real browser (Chromium, chromium.ts) against the real local stack, at 1,400 px:
// a batch half done shows its progress bar, counts by status and ETA; the CSV download is a file a
// CSV parser reads back in input order; the batch's runs are in the runs list with their batch.
// The batch is written into the stack's D1 as the batch API stores one (migration 0014's contract).
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { executeLocalSql, ROOT } from "../../../scripts/local-stack.ts";
import { type E2EStack, startE2EStack } from "../e2e/stack.ts";
import { launchChromium } from "./chromium.ts";

const ARTIFACTS = join(ROOT, "test-artifacts");
const DESKTOP = { width: 1400, height: 900 };
const BATCH = "bat_01M8BROWSERTESTBATCH00001";

/** A batch of 8 created 10 minutes ago: 4 completed (JSON outputs with a citation), 1 failed, 2 running, 1 submitting. */
function batchSql(apiKeyId: string): string {
  const created = new Date(Date.now() - 10 * 60_000).toISOString();
  const now = new Date().toISOString();
  const statuses = [
    "completed",
    "completed",
    "failed",
    "completed",
    "running",
    "completed",
    "running",
    "submitting",
  ];
  const runs = statuses.map((status, i) => {
    const output =
      status === "completed"
        ? `'${JSON.stringify({ type: "json", content: { company: `Company ${i}`, founded: 1990 + i }, basis: [{ field: "founded", reasoning: "r", citations: [{ url: `https://example.com/${i}` }] }] })}'`
        : "NULL";
    const error =
      status === "failed"
        ? `'${JSON.stringify({ code: "parallel_failed", message: "Task execution failed" })}'`
        : "NULL";
    return `('run_01M8BROWSERTESTRUN00000${i}', '${apiKeyId}', '${status}', 'lite', '${JSON.stringify({ company: `Company ${i}` })}', ${output}, ${error}, '${created}', '${now}', ${status === "completed" ? `'${now}'` : "NULL"}, 0, '${BATCH}', ${i})`;
  });
  return [
    `INSERT INTO batches (id, api_key_id, name, status, template, input_count, created_at, updated_at, closed_at)
     VALUES ('${BATCH}', '${apiKeyId}', 'Enrich 8 companies', 'running', '{"processor":"lite"}', 8, '${created}', '${now}', '${created}');`,
    `INSERT INTO runs (id, api_key_id, status, processor, input, output, error, created_at, updated_at, result_stored_at, attempts, batch_id, batch_index)
     VALUES ${runs.join(",\n")};`,
    // Its counts, as the batch API and the runs trigger keep them (migration 0022).
    `UPDATE batches SET status_counts = (SELECT json_group_object(status, n) FROM
         (SELECT status, COUNT(*) AS n FROM runs WHERE runs.batch_id = batches.id GROUP BY status)) WHERE id = '${BATCH}';`,
  ].join("\n");
}

describe("the batches page in Chromium", () => {
  let e2e: E2EStack;
  let browser: Browser;

  beforeAll(async () => {
    [e2e, browser] = await Promise.all([startE2EStack({ timeScale: 0.02 }), launchChromium()]);
    await mkdir(ARTIFACTS, { recursive: true });
    await executeLocalSql(e2e.persistDir, batchSql(e2e.key.id));
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await e2e?.stop();
  });

  it("shows a batch's progress, counts and ETA, downloads its CSV, and lists its runs with their batch", async () => {
    const context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
    const page = await context.newPage();
    await page.goto(`${e2e.stack.relayUrl}/dashboard/sign-in`);
    await page.fill("#credential", e2e.key.key);
    await page.click("button[type=submit]");
    await page.waitForURL("**/dashboard");
    await page.click('nav a[href="/dashboard/batches"]');
    await page.waitForURL("**/dashboard/batches");

    const row = page.locator(`tr[data-batch-id="${BATCH}"]`);
    await expect(row.locator("progress").getAttribute("value")).resolves.toBe("5");
    await expect(row.locator("progress").getAttribute("max")).resolves.toBe("8");
    await expect(row.locator("[data-progress]").textContent()).resolves.toContain("5 of 8 finished (62%)");
    await expect(row.locator('[data-count="completed"]').textContent()).resolves.toContain("4");
    await expect(row.locator('[data-count="running"]').textContent()).resolves.toContain("2");
    await expect(row.locator("[data-eta]").count()).resolves.toBe(1);
    await expect(row.locator("form button", { hasText: "Cancel" }).count()).resolves.toBe(1);
    // The progress bar is drawn: as wide as its cell allows, not collapsed.
    const bar = await row.locator("progress").boundingBox();
    expect(bar?.width ?? 0).toBeGreaterThan(60);
    await page.screenshot({ path: join(ARTIFACTS, "batches-page.png"), fullPage: true });

    const [download] = await Promise.all([
      page.waitForEvent("download"),
      row.locator("a", { hasText: "CSV" }).click(),
    ]);
    expect(download.suggestedFilename()).toBe(`${BATCH}.csv`);
    const file = await readFile((await download.path()) ?? "");
    const rows = parse(file, { bom: true, columns: true }) as Array<Record<string, string>>;
    expect(rows.map((r) => r.index)).toEqual(["0", "1", "2", "3", "4", "5", "6", "7"]);
    expect(rows[0]).toMatchObject({
      company: "Company 0",
      founded: "1990",
      citations: "https://example.com/0",
    });
    expect(rows[2]).toMatchObject({ status: "failed", error: "Task execution failed" });

    await page.goto(`${e2e.stack.relayUrl}/dashboard/runs`);
    await expect(page.locator(`a[href="/dashboard/batches#${BATCH}"]`).count()).resolves.toBe(8);
    await context.close();
  });
});
