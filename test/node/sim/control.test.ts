// Lifecycle timing, the /_sim control surface, settings, and the `npm run sim` process.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { configFromEnv, DEFAULT_CONFIG, SimConfigError } from "../../../sim/config.ts";
import { ENDPOINT_KEYS } from "../../../sim/endpoints.ts";
import type { SimHandle } from "../../../sim/server.ts";
import { PROCESSORS } from "../../../src/parallel/processors.ts";
import { call, sdk, startReceiver, startTestSim, until } from "./harness.ts";

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((handle) => handle.close()));
});

async function sim(settings: Record<string, unknown> = {}): Promise<SimHandle> {
  const handle = await startTestSim(settings);
  open.push(handle);
  return handle;
}

describe("lifecycle", () => {
  it("draws each run's duration from its processor's range × time_scale, reproducibly", async () => {
    const durations = async (seed: number): Promise<Record<string, number[]>> => {
      const handle = await sim({ seed, time_scale: 0.0001 });
      const client = sdk(handle);
      const result: Record<string, number[]> = {};
      for (const name of ["lite", "core", "ultra8x", "pro-fast"]) {
        for (let i = 0; i < 3; i++) await client.taskRun.create({ input: name, processor: name });
      }
      for (const view of handle.control.runs()) {
        const processor = PROCESSORS.get(view.run.processor);
        if (!processor) throw new Error("unknown processor");
        expect(view.planned_duration_ms).toBeGreaterThanOrEqual(processor.minLatencyMs * 0.0001);
        expect(view.planned_duration_ms).toBeLessThanOrEqual(processor.maxLatencyMs * 0.0001);
        result[view.run.processor] = [...(result[view.run.processor] ?? []), view.planned_duration_ms];
      }
      return result;
    };
    const a = await durations(5);
    expect(await durations(5)).toEqual(a);
    expect(await durations(6)).not.toEqual(a);
  });

  it("goes queued → running → completed on schedule and records when it ended", async () => {
    const handle = await sim({ run_duration_ms: 600 });
    const run = await sdk(handle).taskRun.create({ input: "x", processor: "lite" });
    const seen: string[] = [];
    const view = await until(() => {
      const current = handle.control.run(run.run_id);
      if (current && seen.at(-1) !== current.run.status) seen.push(current.run.status);
      return current?.completed_at_ms ? { ...current, completed_at_ms: current.completed_at_ms } : undefined;
    });
    expect(seen).toEqual(["queued", "running", "completed"]);
    expect(view.completed_at_ms - view.created_at_ms).toBeGreaterThanOrEqual(595);
    // On schedule: the planned 600 ms ended it, not a control call.
    expect(view.planned_duration_ms).toBe(600);
    expect(view.completed_at).toBe(view.run.modified_at);
    expect(view.finished_by).toBe("schedule");
  });

  it("keeps at most max_runs runs, forgetting the oldest finished ones", async () => {
    const handle = await sim({ max_runs: 5, run_duration_ms: 0 });
    const client = sdk(handle);
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      ids.push((await client.taskRun.create({ input: `r${i}`, processor: "lite" })).run_id);
      await until(() => handle.control.stats().runs.queued + handle.control.stats().runs.running === 0);
    }
    expect(handle.control.stats().runs).toMatchObject({ created: 8, stored: 5 });
    expect((await call(handle, "GET", `/v1/tasks/runs/${ids[0]}`)).status).toBe(404);
    expect((await call(handle, "GET", `/v1/tasks/runs/${ids[7]}`)).status).toBe(200);
  });

  it("handles a burst: 300 runs, each completed and its webhook delivered", async () => {
    const receiver = await startReceiver();
    open.push(receiver);
    const handle = await sim({ run_duration_ms: 50 });
    const client = sdk(handle);
    await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        client.taskRun.create({
          input: `burst ${i}`,
          processor: "lite",
          webhook: { url: receiver.url },
          betas: ["webhook-2025-08-12"],
        }),
      ),
    );
    // Waits up to the test's own timeout: speed is the benchmark's business, not this test's.
    await receiver.waitFor(300, 50_000);
    // Every run's webhook arrived (a loaded machine may make the simulator retry one: same id).
    expect(new Set(receiver.received.map((w) => w.headers["webhook-id"])).size).toBe(300);
    expect(handle.control.stats().runs).toMatchObject({ created: 300, completed: 300 });
  });
});

describe("/_sim control endpoints (no API key needed)", () => {
  it("GET /_sim/runs and /_sim/runs/{id} describe runs, with the API calls made for each", async () => {
    const handle = await sim({ run_duration_ms: 5_000 });
    const client = sdk(handle);
    const run = await client.taskRun.create({
      input: "x",
      processor: "core",
      webhook: { url: "http://127.0.0.1:9/h" },
      betas: ["webhook-2025-08-12"],
    });
    await client.taskRun.retrieve(run.run_id);
    await client.taskRun.retrieve(run.run_id);
    await client.taskRun.retrieveInput(run.run_id);

    const list = await call(handle, "GET", "/_sim/runs", { apiKey: "wrong" });
    expect(list.status).toBe(200);
    const { runs } = list.json as { runs: Record<string, unknown>[] };
    expect(runs).toHaveLength(1);
    expect(runs[0]).toEqual({
      run: expect.objectContaining({ run_id: run.run_id, status: expect.stringMatching(/queued|running/) }),
      seq: 0,
      webhook_url: "http://127.0.0.1:9/h",
      planned_duration_ms: 5_000,
      fail_planned: false,
      events_enabled: false,
      created_at_ms: expect.any(Number),
      started_at_ms: expect.toBeOneOf([null, expect.any(Number)]),
      completed_at: null,
      completed_at_ms: null,
      finished_by: null,
      calls: { "GET /v1/tasks/runs/{id}": 2, "GET /v1/tasks/runs/{id}/input": 1 },
    });
    expect((await call(handle, "GET", `/_sim/runs/${run.run_id}`, { apiKey: null })).json).toEqual(runs[0]);
    expect((await call(handle, "GET", "/_sim/runs/trun_nope", { apiKey: null })).status).toBe(404);
    expect(
      ((await call(handle, "GET", "/_sim/runs?status=completed")).json as { runs: unknown[] }).runs,
    ).toEqual([]);
    expect((await call(handle, "GET", "/_sim/runs?status=bogus")).status).toBe(400);
  });

  it("POST /_sim/runs/{id}/finish ends a run now, completed by default", async () => {
    const handle = await sim({ run_duration_ms: 60_000 });
    const client = sdk(handle);
    const a = await client.taskRun.create({ input: "a", processor: "ultra" });
    const b = await client.taskRun.create({ input: "b", processor: "ultra" });
    const waiting = client.taskRun.result(a.run_id, { timeout: 30 });

    const finished = await call(handle, "POST", `/_sim/runs/${a.run_id}/finish`, { apiKey: null });
    expect(finished.status).toBe(200);
    expect(finished.json).toMatchObject({
      run: { status: "completed" },
      finished_by: "control",
      completed_at_ms: expect.any(Number),
    });
    expect((await waiting).run.status).toBe("completed");

    const failed = await call(handle, "POST", `/_sim/runs/${b.run_id}/finish`, {
      body: { status: "failed" },
    });
    expect(failed.json).toMatchObject({
      run: { status: "failed", error: { message: "Task execution failed" } },
    });
    expect(
      (await call(handle, "POST", `/_sim/runs/${b.run_id}/finish`, { body: { status: "failed" } })).status,
    ).toBe(409);
    expect((await call(handle, "POST", "/_sim/runs/trun_nope/finish")).status).toBe(404);
    const c = await client.taskRun.create({ input: "c", processor: "ultra" });
    const bad = await call(handle, "POST", `/_sim/runs/${c.run_id}/finish`, {
      body: { status: "cancelled" },
    });
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({ type: "error", error: { ref_id: expect.any(String) } });
  });

  it("GET /_sim/stats counts calls per endpoint, by status, and webhook events", async () => {
    const handle = await sim({ run_duration_ms: 0 });
    const client = sdk(handle);
    const run = await client.taskRun.create({ input: "x", processor: "lite" });
    await client.taskRun.result(run.run_id, { timeout: 5 });
    await call(handle, "GET", `/v1/tasks/runs/${run.run_id}`, { apiKey: null });
    await call(handle, "GET", "/v1/nothing/here");

    const stats = (await call(handle, "GET", "/_sim/stats")).json as Record<string, Record<string, unknown>>;
    expect(Object.keys(stats.endpoints ?? {})).toEqual([
      "POST /v1/tasks/runs",
      "GET /v1/tasks/runs/{id}",
      "GET /v1/tasks/runs/{id}/input",
      "GET /v1/tasks/runs/{id}/result",
      "GET /v1/tasks/runs/{id}/events",
      "POST /v1/tasks/groups",
      "GET /v1/tasks/groups/{id}",
      "POST /v1/tasks/groups/{id}/runs",
      "GET /v1/tasks/groups/{id}/events",
      "GET /v1/tasks/groups/{id}/runs",
      "GET /v1/tasks/groups/{id}/runs/{run_id}",
    ]);
    expect(ENDPOINT_KEYS).toEqual(Object.keys(stats.endpoints ?? {}));
    expect(stats).toEqual({
      started_at: expect.any(String),
      endpoints: {
        "POST /v1/tasks/runs": 1,
        "GET /v1/tasks/runs/{id}": 1,
        "GET /v1/tasks/runs/{id}/input": 0,
        "GET /v1/tasks/runs/{id}/result": 1,
        "GET /v1/tasks/runs/{id}/events": 0,
        "POST /v1/tasks/groups": 0,
        "GET /v1/tasks/groups/{id}": 0,
        "POST /v1/tasks/groups/{id}/runs": 0,
        "GET /v1/tasks/groups/{id}/events": 0,
        "GET /v1/tasks/groups/{id}/runs": 0,
        "GET /v1/tasks/groups/{id}/runs/{run_id}": 0,
      },
      statuses: {
        "POST /v1/tasks/runs": { "202": 1 },
        "GET /v1/tasks/runs/{id}": { "401": 1 },
        "GET /v1/tasks/runs/{id}/input": {},
        "GET /v1/tasks/runs/{id}/result": { "200": 1 },
        "GET /v1/tasks/runs/{id}/events": {},
        "POST /v1/tasks/groups": {},
        "GET /v1/tasks/groups/{id}": {},
        "POST /v1/tasks/groups/{id}/runs": {},
        "GET /v1/tasks/groups/{id}/events": {},
        "GET /v1/tasks/groups/{id}/runs": {},
        "GET /v1/tasks/groups/{id}/runs/{run_id}": {},
      },
      unmatched: 1,
      rate_limited: 0,
      injected_errors: 0,
      injected_throttles: 0,
      runs: { created: 1, queued: 0, running: 0, completed: 1, failed: 0, stored: 1 },
      webhooks: {
        sent: 0,
        delivered: 0,
        errored: 0,
        retried: 0,
        failed: 0,
        dropped: 0,
        duplicated: 0,
        delayed: 0,
        pending: 0,
        in_flight: 0,
      },
    });
  });

  it("POST /_sim/reset forgets runs and counters and releases blocked calls", async () => {
    const handle = await sim({ run_duration_ms: 60_000 });
    const client = sdk(handle);
    const run = await client.taskRun.create({ input: "x", processor: "ultra" });
    const blocked = call(handle, "GET", `/v1/tasks/runs/${run.run_id}/result?timeout=30`);
    const stream = call(handle, "GET", `/v1/tasks/runs/${run.run_id}/events`);
    await until(() => handle.control.stats().endpoints["GET /v1/tasks/runs/{id}/events"] === 1);

    expect((await call(handle, "POST", "/_sim/reset")).json).toEqual({ ok: true });
    expect((await blocked).status).toBe(404);
    expect((await stream).text).toMatch(/^event: task_run\.state/);
    const stats = handle.control.stats();
    expect(stats.runs.stored).toBe(0);
    expect(Object.values(stats.endpoints).every((n) => n === 0)).toBe(true);
    // Sequence numbers restart, so seeded decisions replay.
    await client.taskRun.create({ input: "y", processor: "lite" });
    expect(handle.control.runs()[0]?.seq).toBe(0);
  });

  it("GET and POST /_sim/config read and change settings; bad ones are refused", async () => {
    const handle = await sim();
    const before = (await call(handle, "GET", "/_sim/config")).json as Record<string, unknown>;
    expect(Object.keys(before).sort()).toEqual(Object.keys(DEFAULT_CONFIG).sort());
    const changed = await call(handle, "POST", "/_sim/config", {
      body: { error_rate_by_endpoint: { "GET /v1/tasks/runs/{id}": 0.1 }, fail_runs: 0.2, api_key: "k2" },
    });
    expect(changed.json).toMatchObject({
      error_rate_by_endpoint: { "GET /v1/tasks/runs/{id}": 0.1 },
      fail_runs: 0.2,
    });
    expect((await call(handle, "GET", "/v1/tasks/runs/trun_x", { apiKey: "k2" })).status).toBe(404);

    for (const body of [
      { fail_runs: 2 },
      { no_such_setting: 1 },
      { error_rate_by_endpoint: { "GET /v1/tasks/runs": 0.5 } },
      { port: 1234 },
      { signature_mode: "whsec", webhook_secret: "not base64!" },
    ]) {
      const refused = await call(handle, "POST", "/_sim/config", { body });
      expect(refused.status, JSON.stringify(body)).toBe(400);
      expect(refused.json).toMatchObject({
        type: "error",
        error: { detail: { errors: [expect.any(String)] } },
      });
    }
    expect((await call(handle, "GET", "/_sim/config")).json).toMatchObject({
      fail_runs: 0.2,
      signature_mode: "raw",
    });
  });
});

describe("settings from the environment", () => {
  it("reads SIM_* variables with their types", () => {
    const { patch, unknown } = configFromEnv({
      SIM_PORT: "9999",
      SIM_TIME_SCALE: "0.001",
      SIM_SEED: "42",
      SIM_API_KEY: "k",
      SIM_SIGNATURE_MODE: "whsec",
      SIM_WEBHOOK_SECRET: "whsec_YS0zMi1ieXRlLXRlc3Qtc2lnbmluZy1rZXktMDAwMSE=",
      SIM_ERROR_RATE_BY_ENDPOINT: '{"POST /v1/tasks/runs": 0.5}',
      SIM_RUN_DURATION_MS: "null",
      SIM_DROP_WEBHOOKS: "",
      SIM_TYPO: "1",
      PATH: "/bin",
    });
    expect(patch).toEqual({
      port: 9999,
      time_scale: 0.001,
      seed: 42,
      api_key: "k",
      signature_mode: "whsec",
      webhook_secret: "whsec_YS0zMi1ieXRlLXRlc3Qtc2lnbmluZy1rZXktMDAwMSE=",
      error_rate_by_endpoint: { "POST /v1/tasks/runs": 0.5 },
      run_duration_ms: null,
    });
    expect(unknown).toEqual(["SIM_TYPO"]);
  });

  it("names the variable when a value is wrong", () => {
    for (const [name, value] of [
      ["SIM_ERROR_RATE", "2"],
      ["SIM_PORT", "eighty"],
      ["SIM_SIGNATURE_MODE", "hex"],
      ["SIM_THROTTLE_RATE_BY_ENDPOINT", "{not json"],
    ] as const) {
      expect(() => configFromEnv({ [name]: value })).toThrow(SimConfigError);
      expect(() => configFromEnv({ [name]: value })).toThrow(name);
    }
  });
});

describe("npm run sim (sim/main.ts as a process)", () => {
  const main = fileURLToPath(new URL("../../../sim/main.ts", import.meta.url));

  it("prints its URL first, serves, and shuts down cleanly on SIGTERM", async () => {
    const child = spawn(process.execPath, [main], {
      env: { ...process.env, SIM_PORT: "0", SIM_API_KEY: "proc-key" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      const lines = createInterface({ input: child.stdout });
      const [firstLine] = (await once(lines, "line")) as [string];
      const url = /(http:\/\/127\.0\.0\.1:\d+)$/.exec(firstLine)?.[1];
      expect(url, firstLine).toBeDefined();
      expect((await fetch(`${url}/_sim/health`)).status).toBe(200);
      const unauthorized = await fetch(`${url}/v1/tasks/runs/trun_x`);
      expect(unauthorized.status).toBe(401);
      child.kill("SIGTERM");
      const [code] = (await once(child, "exit")) as [number | null];
      expect(code).toBe(0);
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("refuses bad settings with exit code 2", async () => {
    const child = spawn(process.execPath, [main], {
      env: { ...process.env, SIM_PORT: "0", SIM_FAIL_RUNS: "1.5" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code).toBe(2);
    expect(stderr).toContain("SIM_FAIL_RUNS");
  });
});
