// The structured logs of a whole flow (key minted, run created, Parallel's webhook, result fetched,
// callback delivered after a failed attempt, dashboard sign-in, run page, retry, progress stream, a
// refused key): one wide JSON line per request (its steps inside) or per event written at once, each
// with its request id, and never a secret or a full API key.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { runScheduledTick, TICK_TASKS, WORK_JOBS } from "../../src/cron/dispatcher";
import worker from "../../src/index";
import { browser, signIn } from "./dashboard-harness";
import { eventually, fakeReceiver, onlyDeliveryOf, RECEIVER, status } from "./delivery-harness";
import {
  ADMIN,
  createTenant,
  fakeParallel,
  RELAY,
  resultReply,
  signWebhook,
  TEXT_RUN,
  webhookBody,
} from "./harness";

interface LogLine {
  level: string;
  event: string;
  time: string;
  request_id?: string;
  [field: string]: unknown;
}

/** Every line the Worker writes to the console while `flow` runs. */
async function captureLogs(flow: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const record = (...args: unknown[]) => {
    lines.push(args.map(String).join(" "));
  };
  for (const method of ["log", "info", "warn", "error", "debug"] as const) {
    vi.spyOn(console, method).mockImplementation(record);
  }
  await flow();
  return lines;
}

/** Through the Worker's fetch handler, waiting for its work after the response. */
async function call(path: string, init: RequestInit = {}, settings: Record<string, string> = {}) {
  const ctx = createExecutionContext();
  const response = await worker.fetch(new Request(`${RELAY}${path}`, init), { ...env, ...settings }, ctx);
  const text = await response.text();
  await waitOnExecutionContext(ctx);
  return { response, text };
}

const FAST = { POLL_TIME_SCALE: "0.0001" };

afterEach(() => {
  vi.restoreAllMocks();
});

describe("structured logs", () => {
  it("carry the request id and the step's ids, and never a secret or a full API key", async () => {
    const secrets: string[] = [
      "test-admin-token",
      "test-parallel-key",
      "test-webhook-secret",
      ADMIN.authorization,
    ];
    const lines = await captureLogs(async () => {
      const tenant = await createTenant("log-check");
      secrets.push(tenant.key, tenant.key.slice(4), tenant.signingSecret, tenant.signingSecret.slice(6));

      fakeParallel({ result: (c) => resultReply(c.path.split("/")[4] ?? "") });
      fakeReceiver([status(503), status(204)]);
      const created = await call(
        "/v1/runs",
        {
          method: "POST",
          headers: { ...tenant.auth, "content-type": "application/json", "idempotency-key": "log-check" },
          body: JSON.stringify({ ...TEXT_RUN, callback: { url: RECEIVER } }),
        },
        FAST,
      );
      expect(created.response.status, created.text).toBe(202);
      const run = JSON.parse(created.text) as { id: string; parallel_run_id: string };

      const body = webhookBody({ run_id: run.parallel_run_id, status: "completed" });
      const webhook = await call(
        "/webhooks/parallel",
        { method: "POST", headers: signWebhook(body), body },
        FAST,
      );
      expect(webhook.response.status, webhook.text).toBe(200);
      await eventually(async () => expect((await onlyDeliveryOf(run.id)).status).toBe("succeeded"));

      const b = browser(FAST);
      const signedIn = await signIn(b, tenant.key);
      expect(signedIn.status).toBe(303);
      const cookie = b.cookies.get("taskrelay_session") ?? "";
      secrets.push(cookie, cookie.slice(2));
      const csrf = await b.csrf(`/dashboard/runs/${run.id}`);
      secrets.push(csrf);
      const delivery = await onlyDeliveryOf(run.id);
      fakeReceiver([status(204)]);
      expect((await b.post(`/dashboard/deliveries/${delivery.id}/retry`, { csrf })).status).toBe(303);
      await eventually(async () => expect((await onlyDeliveryOf(run.id)).series).toBe(2));
      await eventually(async () => expect((await onlyDeliveryOf(run.id)).status).toBe("succeeded"));
      const progress = await b.get(`/dashboard/runs/${run.id}/progress`);
      await progress.text();

      const wrongKey = `trk_${"W".repeat(43)}`;
      secrets.push(wrongKey);
      const refused = await call("/v1/runs", { headers: { authorization: `Bearer ${wrongKey}` } });
      expect(refused.response.status).toBe(401);
      const wrongSignIn = await signIn(browser(), wrongKey);
      expect(wrongSignIn.status).toBe(401);
    });

    expect(lines.length).toBeGreaterThan(10);
    const parsed = lines.map((line) => {
      let value: LogLine | null = null;
      try {
        value = JSON.parse(line) as LogLine;
      } catch {
        // reported below
      }
      expect(value, `not one JSON object per line: ${line}`).not.toBeNull();
      return value as LogLine;
    });
    for (const line of parsed) {
      expect(["info", "warn", "error"], JSON.stringify(line)).toContain(line.level);
      expect(line.event, JSON.stringify(line)).toMatch(/^[a-z_]+\.[a-z_.]+$/);
      expect(line.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      expect(line.request_id, JSON.stringify(line)).toMatch(/^req_/);
    }
    for (const secret of secrets) {
      const leaking = lines.filter((line) => line.includes(secret));
      expect(leaking, `a log line holds a secret (${secret.slice(0, 6)}…)`).toEqual([]);
    }

    // A request's line carries the steps it took; an event is a line or one of those steps.
    const flattened = parsed.flatMap((line) => [
      line,
      ...((line.steps as Array<Record<string, unknown>> | undefined) ?? []).map(
        ({ step, ...fields }) =>
          ({
            ...fields,
            level: line.level,
            event: String(step),
            time: line.time,
            request_id: line.request_id,
          }) as LogLine,
      ),
    ]);
    for (const step of flattened) expect(step.event, JSON.stringify(step)).toMatch(/^[a-z_]+\.[a-z_.]+$/);
    const events = (name: string) => flattened.filter((l) => l.event === name);
    for (const request of events("http.request")) {
      expect(request).toMatchObject({
        method: expect.any(String),
        path: expect.any(String),
        status: expect.any(Number),
      });
      expect(request.latency_ms).toEqual(expect.any(Number));
    }
    for (const step of flattened.filter((l) => l.event.startsWith("run."))) {
      expect(step.run_id, JSON.stringify(step)).toMatch(/^run_/);
    }
    const attempts = events("delivery.attempt");
    expect(attempts.map((a) => [a.outcome, a.status_code])).toEqual([
      ["pending", 503],
      ["succeeded", 204],
      ["succeeded", 204],
    ]);
    for (const attempt of attempts) {
      expect(attempt).toMatchObject({
        delivery_id: expect.stringMatching(/^dlv_/),
        run_id: expect.stringMatching(/^run_/),
      });
      expect(attempt.latency_ms).toEqual(expect.any(Number));
    }
    expect(events("dashboard.signed_in")).toHaveLength(1);
    expect(events("progress.ended")).toHaveLength(1);
    expect(events("http.request").map((r) => r.status)).toContain(401);
  });

  it("write one line per cron tick, each job's summary and D1 cost under `jobs`, and a failed job at once", async () => {
    const lines = await captureLogs(async () => {
      const ctx = createExecutionContext();
      await runScheduledTick(env, ctx, new Date());
      await waitOnExecutionContext(ctx);
      const failing = createExecutionContext();
      await runScheduledTick(env, failing, new Date(), {
        jobs: WORK_JOBS.slice(0, 1),
        tasks: [
          {
            name: "broken",
            run: async () => {
              throw new Error("the job broke");
            },
          },
        ],
      });
      await waitOnExecutionContext(failing);
    });
    const parsed = lines.map((line) => JSON.parse(line) as LogLine);
    expect(parsed.map((l) => l.event)).toEqual(["cron.tick", "cron.job_failed", "cron.tick"]);
    const [idle, failed, afterFailure] = parsed as [LogLine, LogLine, LogLine];
    const jobs = idle.jobs as Record<string, Record<string, unknown>>;
    expect(Object.keys(jobs)).toEqual([...WORK_JOBS, ...TICK_TASKS].map((j) => j.name));
    for (const job of Object.values(jobs)) {
      expect(job).toMatchObject({ latency_ms: expect.any(Number), d1_queries: expect.any(Number) });
    }
    expect(jobs.poll_runs).toMatchObject({ claimed: 0, d1_queries: 1 });
    expect(idle.d1_queries).toBe(Object.values(jobs).reduce((n, j) => n + Number(j.d1_queries), 0));
    expect(failed).toMatchObject({ level: "error", job: "broken", error: "Error: the job broke" });
    expect(afterFailure.jobs).toMatchObject({
      broken: { outcome: "error", error: "Error: the job broke" },
      [WORK_JOBS[0]?.name ?? ""]: { claimed: 0 },
    });
  });
});
