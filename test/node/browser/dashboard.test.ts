// The dashboard in a real browser (Debian's Chromium, driven by playwright-core) against the real
// local stack: sign in, watch a run go from active (live progress bar, across a reconnect to the
// simulator's event stream) to completed, read its result and citations, retry a dead delivery, pause
// and resume a schedule, and fail to reach another key's run. Screenshots land in test-artifacts/.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApiKey, ROOT } from "../../../scripts/local-stack.ts";
import { ADMIN_TOKEN, type E2EStack, startE2EStack } from "../e2e/stack.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = join(ROOT, "test-artifacts");
/** Longer than the simulator's event-stream window (570 s × 0.02 = 11.4 s): the relay must reconnect. */
const WATCHED_RUN_MS = 13_000;

/** A callback URL that answers 410 Gone (a dead letter at once) until told to accept. */
async function startGoneReceiver(): Promise<{ url: string; accept(): void; server: Server }> {
  let gone = true;
  const server = createServer((request, response) => {
    request.resume();
    request.on("end", () => response.writeHead(gone ? 410 : 204).end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/gone`,
    accept: () => {
      gone = false;
    },
    server,
  };
}

describe("the dashboard in Chromium", () => {
  let e2e: E2EStack;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let gone: Awaited<ReturnType<typeof startGoneReceiver>>;

  beforeAll(async () => {
    [e2e, gone, profile] = await Promise.all([
      startE2EStack({ timeScale: 0.02 }),
      startGoneReceiver(),
      mkdtemp(join(tmpdir(), "taskrelay-chromium-")),
    ]);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
      ],
      viewport: { width: 1280, height: 900 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    await mkdir(ARTIFACTS, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await e2e?.stop();
    await new Promise((resolve) => gone?.server.close(resolve));
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  it("signs in with an API key into an HttpOnly, Secure, SameSite=Strict session", async () => {
    await page.goto(`${e2e.stack.relayUrl}/dashboard`);
    expect(new URL(page.url()).pathname).toBe("/dashboard/sign-in");
    await page.fill("#credential", e2e.key.key);
    await page.click("button[type=submit]");
    await page.waitForURL("**/dashboard/runs");
    // Chromium keeps a Secure cookie set over http://127.0.0.1: loopback is a secure context.
    const session = (await context.cookies()).find((c) => c.name === "taskrelay_session");
    expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: "Strict", path: "/dashboard" });
    expect(session?.value).not.toContain(e2e.key.key);
    expect(await page.textContent("[data-who]")).toContain("e2e");
  });

  let deadRunId = "";

  it("watches a run go from active, with a live progress bar, to completed with its result and citations", async () => {
    // First a quick run whose callback answers 410: its delivery is a dead letter for the next test.
    deadRunId = (
      await e2e.createRun({ processor: "lite", input: "Dead letter", callback: { url: gone.url } }, "dead")
    ).id;
    await e2e.simConfig({ run_duration_ms: WATCHED_RUN_MS });
    const run = await e2e.createRun(
      {
        processor: "pro",
        input: { company: "Acme Corp", question: "Who are its main competitors?" },
        task_spec: {
          output_schema: {
            type: "json",
            json_schema: {
              type: "object",
              properties: {
                competitors: { type: "array", items: { type: "string" } },
                summary: { type: "string" },
              },
              required: ["competitors", "summary"],
              additionalProperties: false,
            },
          },
        },
        callback: { url: e2e.receiver.url },
      },
      "watched",
    );

    await page.goto(`${e2e.stack.relayUrl}/dashboard/runs/${run.id}`);
    expect(await page.isVisible("#progress progress")).toBe(true);
    // The bar moves while the run is active, fed by the stream.
    await page.waitForFunction(
      () => (document.querySelector("#progress progress") as HTMLProgressElement).value > 0,
      null,
      {
        timeout: 10_000,
      },
    );
    expect(["queued", "running"]).toContain(await page.getAttribute("[data-run-status]", "data-run-status"));
    await page.waitForFunction(
      () => document.querySelectorAll("[data-progress-messages] li").length >= 3,
      null,
      {
        timeout: 10_000,
      },
    );
    await page.screenshot({ path: join(ARTIFACTS, "run-page-active.png"), fullPage: true });
    const seen = new Set<number>();
    let messages: string[] = [];
    // Until the stream's `end` reloads the page with the finished run.
    const deadline = Date.now() + 30_000;
    while (!(await page.isVisible("#output"))) {
      expect(Date.now(), "the run page to show the result").toBeLessThan(deadline);
      const state = await page
        .evaluate(() => ({
          value: (document.querySelector("#progress progress") as HTMLProgressElement | null)?.value ?? -1,
          messages: [...document.querySelectorAll("[data-progress-messages] li")].map(
            (li) => li.textContent ?? "",
          ),
        }))
        .catch(() => null);
      if (state && state.value >= 0) {
        seen.add(state.value);
        messages = state.messages;
      }
      await page.waitForTimeout(200);
    }
    expect(seen.size, `progress values seen: ${[...seen]}`).toBeGreaterThanOrEqual(2);
    // The simulator's stream closed before the run finished: the relay reconnected, and each message shows once.
    expect(messages.length).toBeGreaterThan(3);
    expect(new Set(messages).size, messages.join(" | ")).toBe(messages.length);

    expect(await page.getAttribute("[data-run-status]", "data-run-status")).toBe("completed");
    expect(await page.isVisible("#progress")).toBe(false);
    expect(await page.textContent("#output")).toContain("competitors");
    expect(await page.textContent("#output")).toContain("summary");
    const citations = page.locator("#basis a");
    expect(await citations.count()).toBeGreaterThan(0);
    expect(await citations.first().getAttribute("rel")).toBe("noopener noreferrer");
    expect(await citations.first().getAttribute("href")).toMatch(/^https:\/\//);
    expect(await page.isVisible("[data-section=task-spec] .tree")).toBe(false);
    await page.click("[data-section=task-spec] > summary");
    expect(await page.textContent("[data-section=task-spec] .tree")).toContain("competitors");
    expect(await page.isVisible("[data-section=task-spec] .tree")).toBe(true);
    expect(await page.textContent("#timeline")).toContain("result fetched");
    await page.waitForTimeout(300);
    await page.reload();
    expect(await page.textContent("#deliveries")).toContain("succeeded");
    await page.screenshot({ path: join(ARTIFACTS, "run-page.png"), fullPage: true });

    // On a phone: the same page without sideways scrolling.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await page.screenshot({ path: join(ARTIFACTS, "run-page-phone.png"), fullPage: true });
    const weight = await page.evaluate(() =>
      performance.getEntries().map((e) => {
        const t = e as PerformanceResourceTiming;
        return { name: t.name, bytes: t.decodedBodySize, transferred: t.transferSize };
      }),
    );
    await writeFile(join(ARTIFACTS, "run-page-weight.json"), JSON.stringify(weight, null, 2));
    await page.setViewportSize({ width: 1280, height: 900 });
  }, 60_000);

  it("retries a dead delivery from the deliveries page", async () => {
    await page.goto(`${e2e.stack.relayUrl}/dashboard/deliveries`);
    const row = page.locator("#deliveries-dead tr[data-delivery-id]", { hasText: deadRunId });
    await row.waitFor({ timeout: 10_000 });
    expect(await row.textContent()).toContain("HTTP 410");
    gone.accept();
    await row.locator("button", { hasText: "Retry delivery" }).click();
    await page.waitForURL("**/dashboard/deliveries?notice=retried");
    expect(await page.textContent(".notice")).toContain("Delivery retried");
    const deadline = Date.now() + 10_000;
    while ((await page.locator("#deliveries-succeeded tr", { hasText: deadRunId }).count()) === 0) {
      expect(Date.now(), "the retried delivery to succeed").toBeLessThan(deadline);
      await page.waitForTimeout(200);
      await page.reload();
    }
    expect(await page.locator("#deliveries-dead tr", { hasText: deadRunId }).count()).toBe(0);
    await page.screenshot({ path: join(ARTIFACTS, "deliveries-page.png"), fullPage: true });
  });

  it("pauses and resumes a schedule", async () => {
    const response = await fetch(`${e2e.stack.relayUrl}/v1/schedules`, {
      method: "POST",
      headers: { authorization: `Bearer ${e2e.key.key}`, "content-type": "application/json" },
      body: JSON.stringify({
        name: "Weekday battery news",
        cron: "30 8 * * 1-5",
        timezone: "Europe/Berlin",
        template: { processor: "lite", input: "Battery news on {{scheduled_date}}" },
      }),
    });
    const schedule = (await response.json()) as { id: string };
    expect(response.status).toBe(201);
    await page.goto(`${e2e.stack.relayUrl}/dashboard/schedules`);
    const row = page.locator(`tr[data-schedule-id="${schedule.id}"]`);
    expect(await row.locator("[data-next-run]").textContent()).toMatch(/08:30 GMT\+[12]$/);
    await row.locator("button", { hasText: "Pause" }).click();
    await page.waitForURL("**/dashboard/schedules?notice=paused");
    expect(await row.locator(".badge").textContent()).toBe("paused");
    expect(await row.locator("[data-next-run]").count()).toBe(0);
    await row.locator("button", { hasText: "Resume" }).click();
    await page.waitForURL("**/dashboard/schedules?notice=resumed");
    expect(await row.locator(".badge").textContent()).toBe("enabled");
    expect(await row.locator("[data-next-run]").textContent()).toMatch(/08:30/);
    await page.screenshot({ path: join(ARTIFACTS, "schedules-page.png"), fullPage: true });
  });

  it("cannot reach another key's run", async () => {
    const other = await createApiKey(e2e.stack.relayUrl, ADMIN_TOKEN, "someone-else");
    const created = await fetch(`${e2e.stack.relayUrl}/v1/runs`, {
      method: "POST",
      headers: { authorization: `Bearer ${other.key}`, "content-type": "application/json" },
      body: JSON.stringify({ processor: "lite", input: "Not yours" }),
    });
    const theirs = (await created.json()) as { id: string };
    const response = await page.goto(`${e2e.stack.relayUrl}/dashboard/runs/${theirs.id}`);
    expect(response?.status()).toBe(404);
    expect(await page.textContent("main")).toContain(`No run ${theirs.id}.`);
    await page.goto(`${e2e.stack.relayUrl}/dashboard/runs`);
    expect(await page.locator(`tr[data-run-id="${theirs.id}"]`).count()).toBe(0);
    expect(await page.locator("tr[data-run-id]").count()).toBeGreaterThanOrEqual(2);
    await page.screenshot({ path: join(ARTIFACTS, "runs-page.png"), fullPage: true });
  });

  it("renders the API reference at /docs from the Worker alone, with no request leaving loopback", async () => {
    const outside: string[] = [];
    page.on("request", (request) => {
      if (!new URL(request.url()).hostname.startsWith("127.0.0.1")) outside.push(request.url());
    });
    await page.goto(`${e2e.stack.relayUrl}/docs`);
    await page.getByText("Start a research run").first().waitFor({ timeout: 30_000 });
    expect(outside).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, "docs-page.png") });
    await page.goto(`${e2e.stack.relayUrl}/dashboard/runs`);
  });

  it("signs out", async () => {
    await page.click("header form button");
    await page.waitForURL("**/dashboard/sign-in?notice=signed_out");
    await page.goto(`${e2e.stack.relayUrl}/dashboard/runs`);
    expect(new URL(page.url()).pathname).toBe("/dashboard/sign-in");
  });
});
