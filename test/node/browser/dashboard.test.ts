// The dashboard and /docs in a real browser (Chromium driven by playwright-core; see chromium.ts) against
// the real local stack, as a user sees them at 1,400 px: sign in, watch a run go from active (live
// progress bar, across a reconnect to the simulator's event stream) to completed, read its result and
// citations, retry a dead delivery, send a pending one now, pause and resume a schedule and read its
// occurrences, watch relative times count, fail to reach another key's run, read /docs without any
// cloud feature or outside request. Each test sets up what it needs in its own browser context (its own
// cookies), so any one of them runs alone. Every page is screenshotted into test-artifacts/, and no
// table header on it breaks inside a word.
import { mkdir, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApiKey, ROOT } from "../../../scripts/local-stack.ts";
import { ADMIN_TOKEN, type E2EStack, startE2EStack } from "../e2e/stack.ts";
import { launchChromium } from "./chromium.ts";

const ARTIFACTS = join(ROOT, "test-artifacts");
/** The width the dashboard is checked at: a laptop's browser window. */
const DESKTOP = { width: 1400, height: 900 };
/**
 * Well past the simulator's event-stream window (570 s × 0.02 = 11.4 s from when the stream opens,
 * a few seconds after the run is created): the relay must connect again before the run ends.
 */
const WATCHED_RUN_MS = 20_000;
const EVENTS_ENDPOINT = "GET /v1/tasks/runs/{id}/events";

/** A callback URL that answers `refusal` until told to accept (then 204); counts the calls. */
async function startSwitchReceiver(
  refusal: number,
  headers: Record<string, string> = {},
): Promise<{ url: string; calls: () => number; accept(): void; close(): Promise<void> }> {
  let accepting = false;
  let calls = 0;
  const server: Server = createServer((request, response) => {
    calls++;
    request.resume();
    request.on("end", () =>
      (accepting ? response.writeHead(204) : response.writeHead(refusal, headers)).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    calls: () => calls,
    accept: () => {
      accepting = true;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Table headers whose words the layout split across lines ("PROCESSO / R"), measured in the DOM. */
function headerWordsBrokenAcrossLines(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const broken: string[] = [];
    for (const th of document.querySelectorAll("th")) {
      const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        for (const word of (node.textContent ?? "").matchAll(/\S+/g)) {
          const range = document.createRange();
          range.setStart(node, word.index);
          range.setEnd(node, word.index + word[0].length);
          // A word on one line has one line box; a word broken inside has a box on each line.
          const lines = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
          if (lines.size > 1) broken.push(`"${word[0]}" in "${th.textContent?.trim()}"`);
        }
      }
    }
    return broken;
  });
}

describe("the dashboard in Chromium", () => {
  let e2e: E2EStack;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    [e2e, browser] = await Promise.all([startE2EStack({ timeScale: 0.02 }), launchChromium()]);
    await mkdir(ARTIFACTS, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await e2e?.stop();
  });

  /** A page in a browser context of its own (its own cookies), at 1,400 px. */
  async function freshPage(options: { javaScriptEnabled?: boolean } = {}): Promise<Page> {
    const context = await browser.newContext({ viewport: DESKTOP, ...options });
    contexts.push(context);
    return context.newPage();
  }

  async function signedIn(credential = e2e.key.key, options: { javaScriptEnabled?: boolean } = {}) {
    const page = await freshPage(options);
    await page.goto(`${e2e.stack.relayUrl}/dashboard/sign-in`);
    await page.fill("#credential", credential);
    await page.click("button[type=submit]");
    await page.waitForURL("**/dashboard");
    return page;
  }

  /** The screenshot of a page, after checking that none of its table headers breaks inside a word. */
  async function snapshot(page: Page, name: string) {
    expect(await headerWordsBrokenAcrossLines(page), `${name}: headers broken inside a word`).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  }

  /** Reloads `page` until `selector` matches (the relay finishes runs and deliveries on its own). */
  async function reloadUntil(page: Page, selector: string, what: string) {
    const deadline = Date.now() + 30_000;
    while ((await page.locator(selector).count()) === 0) {
      expect(Date.now(), what).toBeLessThan(deadline);
      await page.waitForTimeout(250);
      await page.reload();
    }
  }

  /** A run created with the simulator making every run last `durationMs` (then the default again). */
  async function createRunLasting(durationMs: number, body: Record<string, unknown>, key: string) {
    await e2e.simConfig({ run_duration_ms: durationMs });
    try {
      return await e2e.createRun(body, key);
    } finally {
      await e2e.simConfig({ run_duration_ms: null });
    }
  }

  it("signs in with an API key into an HttpOnly, Secure, SameSite=Strict session", async () => {
    const page = await freshPage();
    await page.goto(`${e2e.stack.relayUrl}/dashboard`);
    expect(new URL(page.url()).pathname).toBe("/dashboard/sign-in");
    await snapshot(page, "sign-in-page");
    await page.fill("#credential", e2e.key.key);
    await page.click("button[type=submit]");
    await page.waitForURL("**/dashboard");
    // Chromium keeps a Secure cookie set over http://127.0.0.1: loopback is a secure context.
    const session = (await page.context().cookies()).find((c) => c.name === "taskrelay_session");
    expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: "Strict", path: "/dashboard" });
    expect(session?.value).not.toContain(e2e.key.key);
    expect(await page.textContent("[data-who]")).toContain("e2e");
  });

  it("watches a run go from active, with a live progress bar, to completed with its result and citations", async () => {
    const run = await createRunLasting(
      WATCHED_RUN_MS,
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
    const page = await signedIn();
    await page.goto(`${e2e.stack.relayUrl}/dashboard/runs/${run.id}`);
    expect(await page.isVisible("#progress progress")).toBe(true);
    // The bar moves while the run is active, fed by the stream.
    await page.waitForFunction(
      () => (document.querySelector("#progress progress") as HTMLProgressElement).value > 0,
      null,
      { timeout: 10_000 },
    );
    expect(["queued", "running"]).toContain(await page.getAttribute("[data-run-status]", "data-run-status"));
    await page.waitForFunction(
      () => document.querySelectorAll("[data-progress-messages] li").length >= 3,
      null,
      {
        timeout: 10_000,
      },
    );
    await snapshot(page, "run-page-active");
    const seen = new Set<number>();
    let messages: string[] = [];
    // Until the stream's `end` reloads the page with the finished run.
    const deadline = Date.now() + 45_000;
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
    // The simulator closed its event stream before the run finished, and the relay connected again:
    // a second connection reached the simulator. Each message still shows once.
    const { parallel_run_id } = await e2e.get<{ parallel_run_id: string }>(`/v1/runs/${run.id}`);
    const simRun = (await (await fetch(`${e2e.stack.simUrl}/_sim/runs/${parallel_run_id}`)).json()) as {
      calls: Record<string, number>;
    };
    expect(simRun.calls[EVENTS_ENDPOINT], "event-stream connections to the simulator").toBeGreaterThanOrEqual(
      2,
    );
    expect(messages.length).toBeGreaterThan(3);
    expect(new Set(messages).size, messages.join(" | ")).toBe(messages.length);

    expect(await page.getAttribute("[data-run-status]", "data-run-status")).toBe("completed");
    expect(await page.isVisible("#progress")).toBe(false);
    expect(await page.textContent("#output")).toContain("competitors");
    expect(await page.textContent("#output")).toContain("summary");
    const citations = page.locator("#basis .citations li");
    expect(await citations.count()).toBeGreaterThan(0);
    const link = citations.first().locator("a");
    expect(await link.getAttribute("rel")).toBe("noopener noreferrer");
    const href = (await link.getAttribute("href")) ?? "";
    expect(href).toMatch(/^https:\/\//);
    // The citation's domain beside its title.
    expect((await citations.first().locator("[data-citation-domain]").textContent())?.trim()).toBe(
      new URL(href).hostname.replace(/^www\./, ""),
    );
    expect(await page.isVisible("[data-section=task-spec] .tree")).toBe(false);
    await page.click("[data-section=task-spec] > summary");
    expect(await page.textContent("[data-section=task-spec] .tree")).toContain("competitors");
    expect(await page.isVisible("[data-section=task-spec] .tree")).toBe(true);
    expect(await page.textContent("#timeline")).toContain("result fetched");
    await reloadUntil(page, "#deliveries .delivery .s-succeeded", "the run's callback to be delivered");
    await snapshot(page, "run-page");

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
  }, 90_000);

  it("retries a dead delivery from the deliveries page", async () => {
    const gone = await startSwitchReceiver(410);
    try {
      const run = await e2e.createRun(
        { processor: "lite", input: "Dead letter", callback: { url: gone.url } },
        "dead",
      );
      const page = await signedIn();
      await page.goto(`${e2e.stack.relayUrl}/dashboard/deliveries`);
      await reloadUntil(page, `#deliveries-dead tr:has-text("${run.id}")`, "the delivery to be dead");
      const row = page.locator("#deliveries-dead tr[data-delivery-id]", { hasText: run.id });
      expect(await row.textContent()).toContain("HTTP 410");
      await snapshot(page, "deliveries-page-dead");
      gone.accept();
      await row.locator("button", { hasText: "Retry delivery" }).click();
      await page.waitForURL("**/dashboard/deliveries?notice=retried");
      expect(await page.textContent(".notice")).toContain("Delivery retried");
      await reloadUntil(
        page,
        `#deliveries-succeeded tr:has-text("${run.id}")`,
        "the retried delivery to succeed",
      );
      expect(await page.locator("#deliveries-dead tr", { hasText: run.id }).count()).toBe(0);
      await snapshot(page, "deliveries-page");
    } finally {
      await gone.close();
    }
  });

  it("shows when a pending delivery's next attempt is due, and sends it now on Retry now", async () => {
    // 429 with Retry-After: 600 puts the next attempt ten minutes out (Retry-After is not scaled).
    const busy = await startSwitchReceiver(429, { "retry-after": "600" });
    try {
      const run = await e2e.createRun(
        { processor: "lite", input: "Busy receiver", callback: { url: busy.url } },
        "busy",
      );
      const page = await signedIn();
      await page.goto(`${e2e.stack.relayUrl}/dashboard/deliveries?status=pending`);
      await reloadUntil(
        page,
        // Its first attempt recorded (the 429), not only the delivery created: until then it is due now.
        `#deliveries-pending tr:has-text("${run.id}"):has-text("series 1, 1 attempt") [data-next-attempt]`,
        "the delivery's first attempt to be refused",
      );
      const row = page.locator("#deliveries-pending tr[data-delivery-id]", { hasText: run.id });
      const due = (await row.locator("[data-next-attempt]").getAttribute("data-next-attempt")) ?? "";
      expect(await row.locator("[data-next-attempt]").textContent()).toMatch(
        /^Next attempt in (9|10) min \(/,
      );
      await snapshot(page, "deliveries-page-pending");
      const callsBefore = busy.calls();
      busy.accept();
      await row.locator("button", { hasText: "Retry now" }).click();
      await page.waitForURL("**/dashboard/deliveries?status=pending&notice=retried");
      await page.goto(`${e2e.stack.relayUrl}/dashboard/runs/${run.id}`);
      await reloadUntil(page, "#deliveries .delivery .s-succeeded", "the delivery sent now to succeed");
      expect(busy.calls()).toBe(callsBefore + 1);
      await snapshot(page, "run-page-retried");
      // Sent before it was due: the retry did not wait for the schedule, and stayed in its series.
      const [delivery] = (
        await e2e.get<{ data: Array<{ series: number; attempts: Array<{ attempted_at: string }> }> }>(
          `/v1/runs/${run.id}/deliveries`,
        )
      ).data;
      expect(delivery?.series).toBe(1);
      expect(delivery?.attempts.at(-1)?.attempted_at.localeCompare(due)).toBeLessThan(0);
    } finally {
      await busy.close();
    }
  });

  it("pauses and resumes a schedule, names it in the runs list, and lists its occurrences as the API does", async () => {
    const name = "Weekday battery news";
    const response = await fetch(`${e2e.stack.relayUrl}/v1/schedules`, {
      method: "POST",
      headers: { authorization: `Bearer ${e2e.key.key}`, "content-type": "application/json" },
      body: JSON.stringify({
        name,
        cron: "30 8 * * 1-5",
        timezone: "Europe/Berlin",
        // Long enough to fill the runs list's widest column, where narrow headers used to break.
        template: {
          processor: "lite",
          input:
            "Battery news on {{scheduled_date}}: which cell makers announced new plants in Europe, and what capacity in GWh did each name?",
        },
      }),
    });
    const schedule = (await response.json()) as { id: string };
    expect(response.status).toBe(201);
    const page = await signedIn();
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
    await snapshot(page, "schedules-page");

    // Run now: the run's page, then the runs list names the schedule, not its id.
    await row.locator("button", { hasText: "Run now" }).click();
    await page.waitForURL("**/dashboard/runs/*?notice=triggered");
    const runId = new URL(page.url()).pathname.split("/").at(-1) ?? "";
    expect(await page.textContent(`[data-schedule-link="${schedule.id}"]`)).toBe(name);
    // The run's page follows its progress and reloads itself once the run has finished
    // (progress-script.ts). A navigation begun before that reload is cut off by it (page.goto fails
    // with net::ERR_ABORTED, or the run's page comes back in place of the runs list): leave the page
    // only once it shows the finished run, with no live section left to reload it.
    await page.locator("#progress").waitFor({ state: "detached" });
    await page.goto(`${e2e.stack.relayUrl}/dashboard/runs`);
    const runRow = page.locator(`tr[data-run-id="${runId}"]`);
    expect((await runRow.locator("[data-label=Schedule]").textContent())?.trim()).toBe(name);
    await snapshot(page, "runs-page");
    // The measurement sees a break when there is one: a header squeezed the way the old stylesheet
    // let the layout squeeze it (styles set through the DOM, which the page's CSP allows).
    await page.evaluate(() => {
      const th = [...document.querySelectorAll("th")].find((h) => h.textContent === "Processor");
      if (th) Object.assign(th.style, { overflowWrap: "anywhere", width: "2ch", maxWidth: "2ch" });
    });
    expect(await headerWordsBrokenAcrossLines(page)).toContain('"Processor" in "Processor"');

    await page.goto(`${e2e.stack.relayUrl}/dashboard/schedules/${schedule.id}`);
    const occurrences = await e2e.get<{ data: Array<{ outcome: string; run_id: string | null }> }>(
      `/v1/schedules/${schedule.id}/occurrences`,
    );
    expect(occurrences.data.map((o) => o.outcome)).toEqual(["triggered"]);
    const shown = await page
      .locator("#occurrences tr[data-occurrence]")
      .evaluateAll((rows) =>
        rows.map((r) => ({ outcome: r.getAttribute("data-occurrence"), text: r.textContent ?? "" })),
      );
    expect(shown.map((o) => o.outcome)).toEqual(occurrences.data.map((o) => o.outcome));
    expect(shown[0]?.text).toContain(runId);
    await snapshot(page, "schedule-page");
  });

  it("keeps relative times counting while the page is open, and shows them without JavaScript too", async () => {
    const run = await e2e.createRun({ processor: "lite", input: "What time is it?" }, "clock");
    const page = await signedIn();
    await page.goto(`${e2e.stack.relayUrl}/dashboard/runs`);
    const age = page.locator(`tr[data-run-id="${run.id}"] [data-label=Age] time`);
    const first = await age.textContent();
    expect(first).toMatch(/^\d+ s ago$/);
    await page.waitForFunction(
      ({ selector, text }) => document.querySelector(selector)?.textContent !== text,
      { selector: `tr[data-run-id="${run.id}"] [data-label=Age] time`, text: first },
      { timeout: 10_000 },
    );
    expect(Number.parseInt((await age.textContent()) ?? "", 10)).toBeGreaterThan(
      Number.parseInt(first ?? "", 10),
    );

    const plain = await signedIn(e2e.key.key, { javaScriptEnabled: false });
    await plain.goto(`${e2e.stack.relayUrl}/dashboard/runs`);
    expect(await plain.locator(`tr[data-run-id="${run.id}"] [data-label=Age] time`).textContent()).toMatch(
      /^\d+ s ago$/,
    );
  });

  it("cannot reach another key's run", async () => {
    const own = await e2e.createRun({ processor: "lite", input: "Mine" }, "mine");
    const other = await createApiKey(e2e.stack.relayUrl, ADMIN_TOKEN, "someone-else");
    const created = await fetch(`${e2e.stack.relayUrl}/v1/runs`, {
      method: "POST",
      headers: { authorization: `Bearer ${other.key}`, "content-type": "application/json" },
      body: JSON.stringify({ processor: "lite", input: "Not yours" }),
    });
    const theirs = (await created.json()) as { id: string };
    const page = await signedIn();
    const response = await page.goto(`${e2e.stack.relayUrl}/dashboard/runs/${theirs.id}`);
    expect(response?.status()).toBe(404);
    expect(await page.textContent("main")).toContain(`No run ${theirs.id}.`);
    await snapshot(page, "not-found-page");
    await page.goto(`${e2e.stack.relayUrl}/dashboard/runs`);
    expect(await page.locator(`tr[data-run-id="${theirs.id}"]`).count()).toBe(0);
    expect(await page.locator(`tr[data-run-id="${own.id}"]`).count()).toBe(1);
    // The admin sees both, with a column more (the key).
    const admin = await signedIn(ADMIN_TOKEN);
    await admin.goto(`${e2e.stack.relayUrl}/dashboard/runs`);
    expect(await admin.locator(`tr[data-run-id="${theirs.id}"] [data-label=Key]`).textContent()).toBe(
      "someone-else",
    );
    await snapshot(admin, "runs-page-admin");
  });

  it("renders /docs from the Worker alone, without Scalar's cloud features, and no click leaves loopback", async () => {
    const page = await freshPage();
    const outside: string[] = [];
    page.on("request", (request) => {
      if (new URL(request.url()).hostname !== "127.0.0.1") outside.push(request.url());
    });
    await page.goto(`${e2e.stack.relayUrl}/docs`);
    await page.getByText("Start a research run").first().waitFor({ timeout: 30_000 });
    await page.screenshot({ path: join(ARTIFACTS, "docs-page.png") });
    const cloud = /ask ai|generate (sdk|mcp)|deploy|share|developer tools|connect mcp|open api client/i;
    expect(await page.getByRole("button", { name: cloud }).count(), "cloud buttons").toBe(0);
    expect(await page.getByRole("link", { name: cloud }).count(), "cloud links").toBe(0);
    for (const feature of ["Ask AI", "Generate SDK", "Generate SDKs & MCP", "Deploy", "Share"]) {
      expect(await page.getByText(feature, { exact: true }).count(), feature).toBe(0);
    }
    // No link into Scalar's services (the "Powered by Scalar" credit links to its home page).
    expect(await page.locator('a[href*="client.scalar.com"], a[href*="dashboard.scalar.com"]').count()).toBe(
      0,
    );
    // Click what a visitor clicks: an operation, the search, the in-page client and its Send.
    await page.getByText("Start a research run").first().click();
    await page.keyboard.press("Control+k");
    await page.keyboard.type("schedule");
    await page.keyboard.press("Escape");
    await page
      .getByRole("button", { name: /Test Request/i })
      .first()
      .click();
    const sent = page.waitForResponse((r) => new URL(r.url()).pathname === "/v1/runs");
    await page.getByRole("button", { name: /^Send/ }).first().click();
    // The client sent the request to this relay (no key: 401), not through a proxy.
    expect((await sent).status()).toBe(401);
    await page.screenshot({ path: join(ARTIFACTS, "docs-page-client.png") });
    await page.keyboard.press("Escape");
    expect(outside).toEqual([]);

    const icon = await fetch(`${e2e.stack.relayUrl}/favicon.ico`);
    expect(icon.status).toBe(200);
    expect(icon.headers.get("content-type")).toBe("image/x-icon");
    // An .ico: reserved 0, type 1 (icon).
    expect([...new Uint8Array(await icon.arrayBuffer()).slice(0, 4)]).toEqual([0, 0, 1, 0]);
  });

  it("signs out", async () => {
    const page = await signedIn();
    await page.click("header form button");
    await page.waitForURL("**/dashboard/sign-in?notice=signed_out");
    await page.goto(`${e2e.stack.relayUrl}/dashboard/runs`);
    expect(new URL(page.url()).pathname).toBe("/dashboard/sign-in");
  });
});
