// What the dashboard shows and does: runs (list, filter, pages, a run with its output, basis,
// timeline and deliveries), live progress, schedules (pause, resume, run now), deliveries (dead letters
// first, retry); every other key's resource unreachable; every value escaped.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { insertDelivery } from "../../src/db/deliveries";
import { newId } from "../../src/ids";
import { onRunFinished } from "../../src/services/run-finished";
import { attributeValues, signedIn } from "./dashboard-harness";
import {
  deliveryContext,
  eventually,
  fakeReceiver,
  onlyDeliveryOf,
  RECEIVER,
  status,
  storeFinishedRun,
} from "./delivery-harness";
import {
  ADMIN,
  api,
  createTenant,
  expectJson,
  fakeParallel,
  postJson,
  TEXT_RUN,
  type Tenant,
} from "./harness";
import { eventNames, parseSse } from "./progress-harness";

const ADMIN_TOKEN = ADMIN.authorization.replace("Bearer ", "");

const SCHEDULE = {
  name: "Acme news on weekdays",
  cron: "0 9 * * 1-5",
  timezone: "America/New_York",
  template: { processor: "base", input: "What did Acme announce? Today is {{scheduled_date}}." },
};

async function createSchedule(tenant: Tenant, overrides: Record<string, unknown> = {}) {
  return expectJson<{ id: string; enabled: boolean; next_run_at: string }>(
    await postJson("/v1/schedules", { ...SCHEDULE, ...overrides }, tenant.auth),
    201,
  );
}

/** A finished run whose callback got `replies` (410: dead at once). */
async function runWithDelivery(tenant: Tenant, replies = [status(204)]) {
  fakeReceiver(replies);
  const run = await storeFinishedRun(tenant.id);
  // Scaled waits: a retry after a failed attempt follows within milliseconds.
  const { ctx, settle } = deliveryContext({ settings: { POLL_TIME_SCALE: "0.0001" } });
  await onRunFinished(ctx, run);
  await settle();
  return { run, delivery: await onlyDeliveryOf(run.id) };
}

describe("runs", () => {
  it("lists the key's runs, newest first, filtered by status and paginated", async () => {
    const tenant = await createTenant();
    const completed = [];
    for (let i = 0; i < 26; i++)
      completed.push(await storeFinishedRun(tenant.id, {}, new Date(Date.now() - (30 - i) * 1000)));
    const failed = await storeFinishedRun(tenant.id, { status: "failed" });
    const b = await signedIn(tenant.key);

    const first = await b.page("/dashboard/runs");
    const listed = attributeValues(first, "data-run-id");
    expect(listed).toHaveLength(25);
    expect(listed[0]).toBe(failed.id);
    const older = /href="(\/dashboard\/runs\?cursor=[^"]+)" rel="next"/.exec(first)?.[1];
    expect(older).toBeDefined();
    const second = await b.page((older ?? "").replaceAll("&amp;", "&"));
    expect(attributeValues(second, "data-run-id")).toEqual([completed[1]?.id, completed[0]?.id]);

    const onlyFailed = await b.page("/dashboard/runs?status=failed");
    expect(attributeValues(onlyFailed, "data-run-id")).toEqual([failed.id]);
    expect(onlyFailed).toContain('<option value="failed" selected="">failed</option>');
    // An unknown status is ignored, not an error page.
    expect(attributeValues(await b.page("/dashboard/runs?status=bogus"), "data-run-id")).toHaveLength(25);
  });

  it("shows a finished run: input, output as a tree, basis with safe links, timeline and deliveries with attempts", async () => {
    const tenant = await createTenant();
    const { run } = await runWithDelivery(tenant, [status(503), status(204)]);
    const b = await signedIn(tenant.key);
    const html = await b.page(`/dashboard/runs/${run.id}`);
    expect(html).toContain("What was the GDP of France in 2023?");
    expect(html).toMatch(/<span class="k">gdp<\/span>: <span class="str">\$3\.1 trillion \(2023\)<\/span>/);
    expect(html).toContain(
      '<a href="https://www.imf.org/en/Publications" rel="noopener noreferrer" target="_blank">IMF</a>',
    );
    expect(html).toContain("IMF figures for 2023.");
    expect(html).toContain("high confidence");
    expect(html).toContain("delivery attempted");
    expect(html).toMatch(/<td data-label="HTTP">503<\/td>/);
    expect(html).toMatch(/<td data-label="HTTP">204<\/td>/);
    expect(html).not.toContain('id="progress"');
    expect(html).not.toContain("new EventSource");
    // The citation's domain beside its title.
    expect(html).toMatch(/>IMF<\/a><span class="sub domain" data-citation-domain="true"> imf\.org<\/span>/);
  });

  it("keeps relative times current with the clock script, under the response's nonce", async () => {
    const tenant = await createTenant();
    const run = await storeFinishedRun(tenant.id);
    const b = await signedIn(tenant.key);
    const response = await b.get(`/dashboard/runs/${run.id}`);
    const html = await response.text();
    const nonce = /script-src 'nonce-([^']+)'/.exec(
      response.headers.get("content-security-policy") ?? "",
    )?.[1];
    expect(html).toContain(`<time datetime="${run.created_at}"`);
    expect(html).toMatch(/<time datetime="[^"]+" title="[^"]+" data-relative="true">\d+ s ago<\/time>/);
    expect(html).toContain(`<script nonce="${nonce}">`);
    expect(html).toContain('document.querySelectorAll("time[data-relative]")');
  });

  it("shows an active run with a live progress section fed by its own cookie-authenticated stream", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const run = await expectJson<{ id: string }>(await postJson("/v1/runs", TEXT_RUN, tenant.auth), 202);
    const b = await signedIn(tenant.key);
    const response = await b.get(`/dashboard/runs/${run.id}`);
    const html = await response.text();
    const nonce = /script-src 'nonce-([^']+)'/.exec(
      response.headers.get("content-security-policy") ?? "",
    )?.[1];
    expect(html).toContain(`data-progress-url="/dashboard/runs/${run.id}/progress"`);
    expect(html).toContain('<progress max="100"');
    expect(html).toContain(`<script nonce="${nonce}">`);
    expect(html).toContain('new EventSource(section.getAttribute("data-progress-url"))');

    const finished = await storeFinishedRun(tenant.id);
    const stream = await b.get(`/dashboard/runs/${finished.id}/progress`);
    expect(stream.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(eventNames(parseSse(await stream.text()))).toEqual(["run", "end"]);
  });

  it("escapes everything the run carries, and links only http(s) citations", async () => {
    const tenant = await createTenant();
    const evil = '<script>alert("x")</script><img src=x onerror=alert(1)>';
    const run = await storeFinishedRun(tenant.id, {
      input: { question: evil, [`${evil}key`]: 1 },
      metadata: { note: evil },
      output: {
        type: "json",
        content: { answer: evil },
        basis: [
          {
            field: evil,
            reasoning: evil,
            confidence: '"><script>alert(2)</script>',
            citations: [
              { url: "javascript:alert(3)", title: evil, excerpts: [evil] },
              { url: 'https://example.com/"><script>alert(4)</script>', title: "ok" },
            ],
          },
        ],
      },
      error: { code: evil, message: evil },
    });
    const b = await signedIn(tenant.key);
    const html = await b.page(`/dashboard/runs/${run.id}`);
    expect(html).not.toContain("<script>alert");
    expect(html).not.toContain("<img src=x");
    expect(html).not.toMatch(/href="javascript:/i);
    expect(html).toContain("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
    expect(html).toContain('href="https://example.com/%22%3E%3Cscript%3Ealert(4)%3C/script%3E"');
    const list = await b.page("/dashboard/runs");
    expect(list).not.toContain("<script>alert");
  });

  it("answers another key's run with a 404 page, and the admin sees every key's runs", async () => {
    const owner = await createTenant("owner-key");
    const intruder = await createTenant();
    const { run, delivery } = await runWithDelivery(owner, [status(410)]);
    const schedule = await createSchedule(owner);
    const b = await signedIn(intruder.key);
    for (const path of [`/dashboard/runs/${run.id}`, `/dashboard/runs/run_01M8GW000000000000000000XX`]) {
      const response = await b.get(path);
      expect(response.status, path).toBe(404);
      expect(await response.text()).toContain("No run ");
    }
    expect((await b.get(`/dashboard/runs/${run.id}/progress`)).status).toBe(404);
    expect((await b.get(`/dashboard/schedules/${schedule.id}`)).status).toBe(404);
    expect(attributeValues(await b.page("/dashboard/runs"), "data-run-id")).not.toContain(run.id);
    expect(await b.page("/dashboard/deliveries")).not.toContain(delivery.id);
    expect(await b.page("/dashboard/schedules")).not.toContain(schedule.id);

    const csrf = await b.csrf();
    expect((await b.post(`/dashboard/deliveries/${delivery.id}/retry`, { csrf })).status).toBe(404);
    expect((await b.post(`/dashboard/schedules/${schedule.id}/pause`, { csrf })).status).toBe(404);
    expect((await b.post(`/dashboard/schedules/${schedule.id}/trigger`, { csrf })).status).toBe(404);
    expect((await onlyDeliveryOf(run.id)).status).toBe("dead");
    const stored = await env.DB.prepare("SELECT enabled FROM schedules WHERE id = ?")
      .bind(schedule.id)
      .first();
    expect(stored?.enabled).toBe(1);

    const admin = await signedIn(ADMIN_TOKEN);
    const all = await admin.page("/dashboard/runs");
    expect(attributeValues(all, "data-run-id")).toContain(run.id);
    expect(all).toContain("owner-key");
    expect(await admin.page(`/dashboard/runs/${run.id}`)).toContain("owner-key");
  });
});

describe("deliveries", () => {
  it("shows when a pending delivery's next attempt is due, and sends it now on Retry now", async () => {
    const tenant = await createTenant();
    // Two attempts failed; the third is due in five minutes.
    const run = await storeFinishedRun(tenant.id);
    const now = new Date();
    const nextAttemptAt = new Date(now.getTime() + 300_000).toISOString();
    const pending = await insertDelivery(
      env.DB,
      {
        id: newId("dlv", now),
        run_id: run.id,
        api_key_id: tenant.id,
        event: "run.completed",
        url: RECEIVER,
        status: "pending",
        series: 1,
        attempt_count: 2,
        next_attempt_at: nextAttemptAt,
        lease_until: null,
        last_attempt_at: now.toISOString(),
        last_status_code: 503,
        last_error: "HTTP 503",
        created_at: now.toISOString(),
        updated_at: now.toISOString(),
      },
      { kind: "delivery_created", detail: {} },
    );
    if (!pending) throw new Error("the delivery was not stored");
    const b = await signedIn(tenant.key);
    for (const path of ["/dashboard/deliveries", `/dashboard/runs/${run.id}`]) {
      const html = await b.page(path);
      expect(html, path).toContain(`data-next-attempt="${nextAttemptAt}"`);
      expect(html, path).toMatch(/Next attempt <time[^>]*>in [45] min<\/time>/);
      expect(html, path).toContain(">Retry now</button>");
    }

    fakeReceiver([status(204)]);
    const response = await b.post(`/dashboard/deliveries/${pending.id}/retry`, {
      csrf: await b.csrf("/dashboard/deliveries"),
      back: "/dashboard/deliveries",
    });
    expect(response.headers.get("location")).toBe("/dashboard/deliveries?notice=retried");
    await eventually(async () => expect((await onlyDeliveryOf(run.id)).status).toBe("succeeded"));
    expect(await onlyDeliveryOf(run.id)).toMatchObject({ series: 1, attempt_count: 3 });
  });

  it("shows dead letters first and retries one from the page", async () => {
    const tenant = await createTenant();
    const dead = await runWithDelivery(tenant, [status(410)]);
    const ok = await runWithDelivery(tenant, [status(204)]);
    const b = await signedIn(tenant.key);
    const html = await b.page("/dashboard/deliveries");
    const deadSection = html.indexOf('id="deliveries-dead"');
    const succeededSection = html.indexOf('id="deliveries-succeeded"');
    expect(deadSection).toBeGreaterThan(-1);
    expect(deadSection).toBeLessThan(html.indexOf('id="deliveries-pending"'));
    expect(html.indexOf(dead.delivery.id)).toBeGreaterThan(deadSection);
    expect(html.indexOf(dead.delivery.id)).toBeLessThan(succeededSection);
    expect(html.indexOf(ok.delivery.id)).toBeGreaterThan(succeededSection);

    fakeReceiver([status(204)]);
    const response = await b.post(`/dashboard/deliveries/${dead.delivery.id}/retry`, {
      csrf: await b.csrf("/dashboard/deliveries"),
      back: "/dashboard/deliveries",
    });
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/dashboard/deliveries?notice=retried");
    await eventually(async () => expect((await onlyDeliveryOf(dead.run.id)).status).toBe("succeeded"));
    expect(await b.page("/dashboard/deliveries?notice=retried")).toContain("Delivery retried");
  });

  it("never redirects a form back to another site", async () => {
    const tenant = await createTenant();
    const dead = await runWithDelivery(tenant, [status(410)]);
    const b = await signedIn(tenant.key);
    fakeReceiver([status(204)], RECEIVER);
    const response = await b.post(`/dashboard/deliveries/${dead.delivery.id}/retry`, {
      csrf: await b.csrf(),
      back: "//evil.test/dashboard/",
    });
    expect(response.headers.get("location")).toBe(`/dashboard/runs/${dead.run.id}?notice=retried`);
    await eventually(async () => expect((await onlyDeliveryOf(dead.run.id)).status).toBe("succeeded"));
  });
});

describe("schedules", () => {
  it("shows next fire times in the schedule's zone, pauses, resumes and runs one now", async () => {
    const tenant = await createTenant();
    const schedule = await createSchedule(tenant, { name: "<b>Acme</b> news" });
    const b = await signedIn(tenant.key);
    const list = await b.page("/dashboard/schedules");
    expect(list).toContain("&lt;b&gt;Acme&lt;/b&gt; news");
    expect(list).toMatch(/data-next-run="true">[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4}, 09:00 GMT-[45]</);
    const detail = await b.page(`/dashboard/schedules/${schedule.id}`);
    expect(detail.match(/, 09:00 GMT-[45]/g)).toHaveLength(5);

    const csrf = await b.csrf("/dashboard/schedules");
    const paused = await b.post(`/dashboard/schedules/${schedule.id}/pause`, {
      csrf,
      back: "/dashboard/schedules",
    });
    expect(paused.headers.get("location")).toBe("/dashboard/schedules?notice=paused");
    const pausedPage = await b.page("/dashboard/schedules");
    expect(pausedPage).toContain('<span class="badge s-paused">paused</span>');
    expect(pausedPage).toContain(`action="/dashboard/schedules/${schedule.id}/resume"`);

    const resumed = await b.post(`/dashboard/schedules/${schedule.id}/resume`, { csrf });
    expect(resumed.headers.get("location")).toBe(`/dashboard/schedules/${schedule.id}?notice=resumed`);
    const row = await env.DB.prepare("SELECT enabled, next_run_at FROM schedules WHERE id = ?")
      .bind(schedule.id)
      .first<{ enabled: number; next_run_at: string | null }>();
    expect(row?.enabled).toBe(1);
    expect(row?.next_run_at).not.toBeNull();

    fakeParallel();
    const triggered = await b.post(`/dashboard/schedules/${schedule.id}/trigger`, { csrf });
    expect(triggered.status).toBe(303);
    const location = triggered.headers.get("location") ?? "";
    expect(location).toMatch(/^\/dashboard\/runs\/run_[0-9A-Z]{26}\?notice=triggered$/);
    const runPage = await b.page(location);
    expect(runPage).toContain("Schedule run started.");
    expect(runPage).toContain(`/dashboard/schedules/${schedule.id}`);
    expect(await b.page(`/dashboard/schedules/${schedule.id}`)).toContain(location.split("?")[0] ?? "");
    // The runs list names the schedule a run came from (escaped), not its id.
    const runs = await b.page("/dashboard/runs");
    expect(runs).toContain(
      `<a href="/dashboard/schedules/${schedule.id}" data-schedule-link="${schedule.id}">&lt;b&gt;Acme&lt;/b&gt; news</a>`,
    );
  });

  it("lists a schedule's occurrences as GET /v1/schedules/:id/occurrences does", async () => {
    const tenant = await createTenant();
    const schedule = await createSchedule(tenant);
    // What ticks leave behind: one fired, one skipped (run in flight), one missed (no tick reached it).
    const fired = await storeFinishedRun(tenant.id, { schedule_id: schedule.id });
    const rows: Array<[string, string, string | null, string | null]> = [
      ["2026-11-30T14:00:00.000Z", "fired", fired.id, null],
      ["2026-12-01T14:00:00.000Z", "skipped_overlap", null, "the previous run is still in flight"],
      ["2026-12-02T14:00:00.000Z", "skipped_missed", null, "missed: no tick reached it in time"],
    ];
    await env.DB.batch(
      rows.map(([at, outcome, runId, reason]) =>
        env.DB.prepare(
          "INSERT INTO schedule_occurrences (schedule_id, scheduled_at, decided_at, outcome, run_id, reason) VALUES (?, ?, ?, ?, ?, ?)",
        ).bind(schedule.id, at, at, outcome, runId, reason),
      ),
    );
    const listed = await expectJson<{ data: Array<{ outcome: string; run_id: string | null }> }>(
      await api(`/v1/schedules/${schedule.id}/occurrences`, { headers: tenant.auth }),
      200,
    );
    const html = await (await signedIn(tenant.key)).page(`/dashboard/schedules/${schedule.id}`);
    expect(attributeValues(html, "data-occurrence")).toEqual(listed.data.map((o) => o.outcome));
    expect(attributeValues(html, "data-occurrence")).toEqual(["skipped_missed", "skipped_overlap", "fired"]);
    expect(html).toContain("skipped: previous run in flight");
    expect(html).toContain("the previous run is still in flight");
    expect(html).toContain(`<a href="/dashboard/runs/${fired.id}">`);
  });
});

describe("the API reference", () => {
  it("serves /docs over /openapi.json", async () => {
    const response = await (await signedIn(ADMIN_TOKEN)).get("/docs");
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain("/openapi.json");
    expect(html).toContain("taskrelay API reference");
  });
});
