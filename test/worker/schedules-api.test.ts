// The schedule API through the Worker's fetch handler: create, read, list, change, pause and resume,
// delete, trigger, the schedule's runs and occurrences, validation, and tenant isolation.
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { dateInZone } from "../../src/services/schedule-times";
import { api, createTenant, expectJson, fakeParallel, parallelError, postJson, type Tenant } from "./harness";

const SCHEDULE = {
  name: "Acme news on weekdays",
  cron: "0 9 * * 1-5",
  timezone: "America/New_York",
  template: {
    processor: "base",
    input:
      "What did Acme announce since {{last_success_date|the start of the month}}? Today is {{scheduled_date}}.",
  },
};

interface FireTime {
  utc: string;
  local: string;
}
interface ScheduleBody {
  id: string;
  name: string;
  cron: string;
  timezone: string;
  template: Record<string, unknown>;
  callback: { url: string } | null;
  overlap: string;
  missed: string;
  notify: string;
  chain_interactions: boolean;
  enabled: boolean;
  next_run_at: string | null;
  last_run_id: string | null;
  next_fire_times: FireTime[];
}
interface ErrorBody {
  error: { code: string; message: string; details: Array<{ path?: string; message: string }> };
}

function send(method: string, path: string, tenant: Tenant, body?: unknown): Promise<Response> {
  return api(path, {
    method,
    headers: { ...tenant.auth, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function createSchedule(
  tenant: Tenant,
  overrides: Record<string, unknown> = {},
): Promise<ScheduleBody> {
  return expectJson<ScheduleBody>(
    await postJson("/v1/schedules", { ...SCHEDULE, ...overrides }, tenant.auth),
    201,
  );
}

async function refused(response: Response): Promise<ErrorBody["error"]> {
  const body = await expectJson<ErrorBody>(response, 422);
  expect(body.error.code).toBe("validation_failed");
  return body.error;
}

afterEach(async () => {
  await env.DB.prepare("DELETE FROM schedules").run();
});

describe("POST /v1/schedules", () => {
  it("stores the schedule with its defaults and answers 201 with the next five fire times", async () => {
    const tenant = await createTenant();
    const before = Date.now();
    const schedule = await createSchedule(tenant, { cron: "0   9 * * 1-5" });

    expect(schedule).toMatchObject({
      name: SCHEDULE.name,
      cron: "0 9 * * 1-5",
      timezone: "America/New_York",
      template: SCHEDULE.template,
      callback: null,
      overlap: "skip",
      missed: "run_once",
      notify: "always",
      chain_interactions: false,
      enabled: true,
      last_run_id: null,
    });
    expect(schedule.id).toMatch(/^sch_[0-9A-Z]{26}$/);
    expect(Date.parse(schedule.next_run_at ?? "")).toBeGreaterThan(before);
    expect(schedule.next_fire_times).toHaveLength(5);
    expect(schedule.next_fire_times[0]?.utc).toBe(schedule.next_run_at);
    for (const time of schedule.next_fire_times) {
      // 09:00 local, Monday to Friday, and the local text is the same instant as the UTC one.
      expect(time.local).toMatch(/^\d{4}-\d\d-\d\dT09:00:00-0[45]:00$/);
      expect(Date.parse(time.local)).toBe(Date.parse(time.utc));
      expect([1, 2, 3, 4, 5]).toContain(new Date(time.local.slice(0, 10)).getUTCDay());
    }

    const stored = await expectJson<ScheduleBody>(
      await send("GET", `/v1/schedules/${schedule.id}`, tenant),
      200,
    );
    expect(stored).toEqual({ ...schedule, spend: { runs: 0, cost_usd: 0 } });
  });

  it("keeps every option it is given", async () => {
    const tenant = await createTenant();
    const schedule = await createSchedule(tenant, {
      callback: { url: "https://example.com/hooks/acme" },
      overlap: "allow",
      missed: "skip",
      notify: "on_change",
      chain_interactions: true,
      enabled: false,
    });
    expect(schedule).toMatchObject({
      callback: { url: "https://example.com/hooks/acme" },
      overlap: "allow",
      missed: "skip",
      notify: "on_change",
      chain_interactions: true,
      enabled: false,
      next_run_at: null,
      next_fire_times: [],
    });
  });

  it("refuses a six-field cron with seconds, saying why", async () => {
    const tenant = await createTenant();
    const error = await refused(
      await postJson("/v1/schedules", { ...SCHEDULE, cron: "0 0 9 * * 1-5" }, tenant.auth),
    );
    expect(error.details).toEqual([{ path: "cron", message: expect.stringContaining("seconds") }]);
    expect(error.message).toContain("five-field");
  });

  it.each([
    ["a cron that is not one", { cron: "every day at nine" }, "cron"],
    ["a cron out of range", { cron: "0 25 * * *" }, "cron"],
    ["a cron that never fires", { cron: "0 9 30 2 *" }, "cron"],
    ["an unknown time zone", { timezone: "America/Gotham" }, "timezone"],
    ["a UTC offset for a time zone", { timezone: "+05:30" }, "timezone"],
    ["an unknown processor", { template: { processor: "fastest", input: "x" } }, "template.processor"],
    [
      "taskrelay's reserved metadata key",
      { template: { ...SCHEDULE.template, metadata: { taskrelay_run_id: "x" } } },
      "template.metadata.taskrelay_run_id",
    ],
    [
      "an unknown placeholder",
      { template: { processor: "base", input: { topic: "Acme", since: "{{yesterday}}" } } },
      "template.input.since",
    ],
    [
      "a fallback on a placeholder that always has a value",
      { template: { processor: "base", input: "News on {{scheduled_date|today}}" } },
      "template.input",
    ],
    ["a callback to localhost", { callback: { url: "https://localhost/hook" } }, "callback.url"],
    ["a plain-http callback", { callback: { url: "http://example.com/hook" } }, "callback.url"],
    [
      "a field a template cannot have",
      { template: { ...SCHEDULE.template, mcp_servers: [] } },
      "template.mcp_servers",
    ],
    ["an unknown overlap policy", { overlap: "queue" }, "overlap"],
  ])("refuses %s with 422 at its path", async (_, overrides, path) => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const error = await refused(await postJson("/v1/schedules", { ...SCHEDULE, ...overrides }, tenant.auth));
    expect(error.details.map((d) => d.path)).toContain(path);
    expect(parallel.calls).toHaveLength(0);
  });

  it("lists every problem at once", async () => {
    const tenant = await createTenant();
    const error = await refused(
      await postJson(
        "/v1/schedules",
        {
          ...SCHEDULE,
          cron: "* * *",
          timezone: "Nowhere/Special",
          template: { processor: "base", input: "{{tomorrow}}" },
        },
        tenant.auth,
      ),
    );
    expect(error.details.map((d) => d.path)).toEqual(["cron", "timezone", "template.input"]);
  });

  it("refuses a missing field", async () => {
    const tenant = await createTenant();
    const { name: _, ...nameless } = SCHEDULE;
    const error = await refused(await postJson("/v1/schedules", nameless, tenant.auth));
    expect(error.details.map((d) => d.path)).toContain("name");
  });
});

describe("GET /v1/schedules", () => {
  it("lists the key's schedules newest first, page by page, and nobody else's", async () => {
    const tenant = await createTenant();
    const other = await createTenant("other");
    await createSchedule(other);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await createSchedule(tenant, { name: `s${i}` })).id);

    const first = await expectJson<{ data: ScheduleBody[]; next_cursor: string | null }>(
      await send("GET", "/v1/schedules?limit=2", tenant),
      200,
    );
    expect(first.data.map((s) => s.id)).toEqual([ids[2], ids[1]]);
    expect(first.next_cursor).toBeTruthy();
    const second = await expectJson<{ data: ScheduleBody[]; next_cursor: string | null }>(
      await send("GET", `/v1/schedules?limit=2&cursor=${first.next_cursor}`, tenant),
      200,
    );
    expect(second.data.map((s) => s.id)).toEqual([ids[0]]);
    expect(second.next_cursor).toBeNull();
  });
});

describe("PATCH /v1/schedules/:id", () => {
  it("pauses (no next fire time) and resumes from now", async () => {
    const tenant = await createTenant();
    const schedule = await createSchedule(tenant, { cron: "*/5 * * * *", timezone: "UTC" });

    const paused = await expectJson<ScheduleBody>(
      await send("PATCH", `/v1/schedules/${schedule.id}`, tenant, { enabled: false }),
      200,
    );
    expect(paused).toMatchObject({ enabled: false, next_run_at: null, next_fire_times: [] });

    const before = Date.now();
    const resumed = await expectJson<ScheduleBody>(
      await send("PATCH", `/v1/schedules/${schedule.id}`, tenant, { enabled: true }),
      200,
    );
    const next = Date.parse(resumed.next_run_at ?? "");
    expect(resumed.enabled).toBe(true);
    expect(next).toBeGreaterThan(before);
    expect(next - before).toBeLessThanOrEqual(5 * 60_000);
    expect(new Date(next).getUTCMinutes() % 5).toBe(0);
  });

  it("recomputes the fire times for a new cron and time zone, and keeps the rest", async () => {
    const tenant = await createTenant();
    const schedule = await createSchedule(tenant, { notify: "on_change" });
    const changed = await expectJson<ScheduleBody>(
      await send("PATCH", `/v1/schedules/${schedule.id}`, tenant, {
        cron: "30 9 * * *",
        timezone: "Asia/Kolkata",
        name: "Daily",
      }),
      200,
    );
    expect(changed).toMatchObject({
      name: "Daily",
      cron: "30 9 * * *",
      timezone: "Asia/Kolkata",
      notify: "on_change",
    });
    for (const time of changed.next_fire_times) {
      expect(time.local).toMatch(/T09:30:00\+05:30$/);
      expect(time.utc).toMatch(/T04:00:00\.000Z$/);
    }
  });

  it("replaces the template, sets and removes the callback", async () => {
    const tenant = await createTenant();
    const schedule = await createSchedule(tenant, { callback: { url: "https://example.com/a" } });
    const template = { processor: "core", input: { topic: "Acme", as_of: "{{scheduled_at}}" } };
    const changed = await expectJson<ScheduleBody>(
      await send("PATCH", `/v1/schedules/${schedule.id}`, tenant, { template, callback: null }),
      200,
    );
    expect(changed.template).toEqual(template);
    expect(changed.callback).toBeNull();
    expect(changed.next_run_at).toBe(schedule.next_run_at);
  });

  it("checks the changed schedule as a new one and changes nothing when it fails", async () => {
    const tenant = await createTenant();
    const schedule = await createSchedule(tenant);
    const error = await refused(
      await send("PATCH", `/v1/schedules/${schedule.id}`, tenant, {
        cron: "0 0 9 * * *",
        template: { processor: "base", input: "Since {{last_run}}" },
      }),
    );
    expect(error.details.map((d) => d.path)).toEqual(["cron", "template.input"]);
    const stored = await expectJson<ScheduleBody>(
      await send("GET", `/v1/schedules/${schedule.id}`, tenant),
      200,
    );
    expect(stored).toEqual({ ...schedule, spend: { runs: 0, cost_usd: 0 } });
  });
});

describe("DELETE /v1/schedules/:id", () => {
  it("deletes the schedule and keeps its runs", async () => {
    const tenant = await createTenant();
    fakeParallel();
    const schedule = await createSchedule(tenant);
    const run = await expectJson<{ id: string }>(
      await send("POST", `/v1/schedules/${schedule.id}/trigger`, tenant),
      202,
    );

    const response = await send("DELETE", `/v1/schedules/${schedule.id}`, tenant);
    expect(response.status).toBe(204);
    await expectJson(await send("GET", `/v1/schedules/${schedule.id}`, tenant), 404);
    await expectJson(await send("DELETE", `/v1/schedules/${schedule.id}`, tenant), 404);
    const kept = await expectJson<{ schedule_id: string }>(
      await send("GET", `/v1/runs/${run.id}`, tenant),
      200,
    );
    expect(kept.schedule_id).toBe(schedule.id);
  });
});

describe("POST /v1/schedules/:id/trigger", () => {
  it("starts one run now from the template, with placeholders filled and the schedule's callback", async () => {
    const tenant = await createTenant();
    const parallel = fakeParallel();
    const schedule = await createSchedule(tenant, {
      callback: { url: "https://example.com/hooks/acme" },
      template: { ...SCHEDULE.template, metadata: { customer: "acme" } },
      enabled: false,
    });

    const before = new Date();
    const run = await expectJson<{ id: string; schedule_id: string; status: string; callback: unknown }>(
      await send("POST", `/v1/schedules/${schedule.id}/trigger`, tenant),
      202,
    );
    expect(run).toMatchObject({
      schedule_id: schedule.id,
      status: "queued",
      callback: { url: "https://example.com/hooks/acme" },
    });
    const [create] = parallel.creates();
    expect(parallel.creates()).toHaveLength(1);
    const today = dateInZone(before, "America/New_York");
    expect(create?.body).toMatchObject({
      processor: "base",
      input: `What did Acme announce since the start of the month? Today is ${today}.`,
      metadata: { customer: "acme", taskrelay_run_id: run.id },
    });
    expect(create?.body).not.toHaveProperty("previous_interaction_id");

    const after = await expectJson<ScheduleBody>(
      await send("GET", `/v1/schedules/${schedule.id}`, tenant),
      200,
    );
    expect(after).toMatchObject({ last_run_id: run.id, enabled: false, next_run_at: null });

    const runs = await expectJson<{ data: Array<{ id: string }> }>(
      await send("GET", `/v1/schedules/${schedule.id}/runs`, tenant),
      200,
    );
    expect(runs.data.map((r) => r.id)).toEqual([run.id]);
    const occurrences = await expectJson<{ data: Array<{ outcome: string; run_id: string }> }>(
      await send("GET", `/v1/schedules/${schedule.id}/occurrences`, tenant),
      200,
    );
    expect(occurrences.data).toEqual([expect.objectContaining({ outcome: "triggered", run_id: run.id })]);
  });

  it("answers 422 when Parallel refuses the run, and still records it", async () => {
    const tenant = await createTenant();
    fakeParallel({ create: () => parallelError(403, "Forbidden: invalid processor in request") });
    const schedule = await createSchedule(tenant);
    const body = await expectJson<ErrorBody>(
      await send("POST", `/v1/schedules/${schedule.id}/trigger`, tenant),
      422,
    );
    expect(body.error.code).toBe("parallel_rejected");
    const runs = await expectJson<{ data: Array<{ status: string }> }>(
      await send("GET", `/v1/schedules/${schedule.id}/runs`, tenant),
      200,
    );
    expect(runs.data.map((r) => r.status)).toEqual(["rejected"]);
  });
});

describe("tenant isolation", () => {
  const ROUTES: Array<[string, (id: string) => string, unknown?]> = [
    ["GET", (id) => `/v1/schedules/${id}`],
    ["PATCH", (id) => `/v1/schedules/${id}`, { name: "mine now" }],
    ["DELETE", (id) => `/v1/schedules/${id}`],
    ["POST", (id) => `/v1/schedules/${id}/trigger`],
    ["GET", (id) => `/v1/schedules/${id}/runs`],
    ["GET", (id) => `/v1/schedules/${id}/occurrences`],
  ];
  const UNKNOWN = "sch_01M8GW000000000000000000XX";

  it("answers another key's schedule on every route exactly as an unknown id, and touches nothing", async () => {
    const owner = await createTenant("owner");
    const intruder = await createTenant("intruder");
    const parallel = fakeParallel();
    const schedule = await createSchedule(owner);

    for (const [method, path, body] of ROUTES) {
      const theirs = await expectJson<ErrorBody>(await send(method, path(schedule.id), intruder, body), 404);
      const unknown = await expectJson<ErrorBody>(await send(method, path(UNKNOWN), intruder, body), 404);
      expect(theirs.error.code, `${method} ${path(":id")}`).toBe("not_found");
      expect(theirs.error.message.replace(schedule.id, "ID")).toBe(
        unknown.error.message.replace(UNKNOWN, "ID"),
      );
    }
    const list = await expectJson<{ data: unknown[] }>(await send("GET", "/v1/schedules", intruder), 200);
    expect(list.data).toEqual([]);
    expect(parallel.calls).toHaveLength(0);
    const stored = await expectJson<ScheduleBody>(
      await send("GET", `/v1/schedules/${schedule.id}`, owner),
      200,
    );
    expect(stored).toEqual({ ...schedule, spend: { runs: 0, cost_usd: 0 } });
  });

  it("refuses every schedule route without a valid key", async () => {
    const routes: Array<[string, string, unknown?]> = [
      ["POST", "/v1/schedules", SCHEDULE],
      ["GET", "/v1/schedules"],
      ...ROUTES.map(([method, path, body]): [string, string, unknown?] => [method, path(UNKNOWN), body]),
    ];
    for (const [method, path, body] of routes) {
      const response = await api(path, {
        method,
        headers: { authorization: "Bearer trk_unknown", "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const error = await expectJson<ErrorBody>(response, 401);
      expect(error.error.code, `${method} ${path}`).toBe("unauthorized");
    }
  });
});
