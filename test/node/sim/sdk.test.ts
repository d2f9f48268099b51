// The official parallel-web SDK, pointed at the simulator, cannot tell it from Parallel.

import type Parallel from "parallel-web";
import {
  APIError,
  AuthenticationError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  UnprocessableEntityError,
} from "parallel-web";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SimHandle } from "../../../sim/server.ts";
import { call, expectRejects, GDP_SCHEMA, sdk, startTestSim } from "./harness.ts";

const RUN_ID = /^trun_[0-9a-f]{32}$/;
const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let sim: SimHandle;
let client: Parallel;

beforeAll(async () => {
  // Every run takes 300 ms of wall-clock time, so the states can be watched.
  sim = await startTestSim({ run_duration_ms: 300 });
  client = sdk(sim);
});
afterAll(() => sim.close());

describe("create, retrieve, input, result", () => {
  it("creates a queued run with a webhook and betas, then runs it to completion", async () => {
    const params = {
      input: { country: "France", year: 2023 },
      processor: "core",
      metadata: { my_key: "my_value", n: 3, flag: true },
      task_spec: { output_schema: { type: "json" as const, json_schema: GDP_SCHEMA } },
      webhook: { url: "http://127.0.0.1:9/unused", event_types: ["task_run.status" as const] },
      betas: ["webhook-2025-08-12" as const, "events-sse-2025-07-24" as const],
    };
    const run = await client.taskRun.create(params);
    expect(run.run_id).toMatch(RUN_ID);
    expect(run.interaction_id).toBe(run.run_id);
    expect(run.status).toBe("queued");
    expect(run.is_active).toBe(true);
    expect(run.processor).toBe("core");
    expect(run.metadata).toEqual(params.metadata);
    expect(run.created_at).toMatch(RFC3339_UTC);
    expect(run.modified_at).toBe(run.created_at);
    expect(run.warnings).toBeNull();
    expect(run.error).toBeNull();

    const input = await client.taskRun.retrieveInput(run.run_id);
    const { betas: _betas, ...body } = params;
    expect(input).toEqual(body);

    await expect.poll(() => client.taskRun.retrieve(run.run_id).then((r) => r.status)).toBe("running");
    const result = await client.taskRun.result(run.run_id, { timeout: 5 });
    expect(result.run.status).toBe("completed");
    expect(result.run.is_active).toBe(false);
    expect((result.run.modified_at ?? "") > (result.run.created_at ?? "")).toBe(true);
    expect(result.output.type).toBe("json");
    expect(result.output.content).toEqual({ gdp: expect.any(String) });
    expect(result.output.basis.map((b) => b.field)).toEqual(["gdp"]);

    const retrieved = await client.taskRun.retrieve(run.run_id);
    expect(retrieved).toEqual(result.run);
  });

  it("a short timeout on an active run surfaces as the SDK's 408 APIError", async () => {
    const run = await client.taskRun.create({ input: "slow", processor: "lite" });
    const error = await expectRejects(client.taskRun.result(run.run_id, { timeout: 0 }), APIError);
    expect(error.status).toBe(408);
    expect(error.error).toMatchObject({
      type: "error",
      error: { message: "Request timed out; run still active" },
    });
  });

  it("result blocks until the run ends", async () => {
    const run = await client.taskRun.create({ input: "wait for me", processor: "base" });
    const started = Date.now();
    const result = await client.taskRun.result(run.run_id, { timeout: 30 });
    expect(result.run.status).toBe("completed");
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    // It answered when the run ended: the run was not done when the call began, and is now.
    expect(sim.control.run(run.run_id)?.finished_by).toBe("schedule");
  });

  it("a failed run's result is a 404, and the run carries an error", async () => {
    const run = await client.taskRun.create({ input: "doomed", processor: "lite" });
    sim.control.finishRun(run.run_id, "failed");
    const error = await expectRejects(client.taskRun.result(run.run_id), NotFoundError);
    expect(error.error).toMatchObject({ error: { message: "Run failed or run id not found" } });
    const failed = await client.taskRun.retrieve(run.run_id);
    expect(failed.status).toBe("failed");
    expect(failed.is_active).toBe(false);
    expect(failed.error).toMatchObject({
      ref_id: expect.stringMatching(UUID),
      message: "Task execution failed",
    });
  });

  it("unknown runs are 404 on every read endpoint", async () => {
    const id = "trun_00000000000000000000000000000000";
    const notFound = await expectRejects(client.taskRun.retrieve(id), NotFoundError);
    expect(notFound.error).toMatchObject({ error: { message: "Run id not found" } });
    await expectRejects(client.taskRun.retrieveInput(id), NotFoundError);
    await expectRejects(client.taskRun.result(id, { timeout: 1 }), NotFoundError);
    await expectRejects(client.taskRun.events(id), NotFoundError);
  });
});

describe("events stream", () => {
  it("starts with task_run.state, reports progress, and ends with the output", async () => {
    const run = await client.taskRun.create({
      input: "Stream me",
      processor: "pro",
      task_spec: { output_schema: { type: "json", json_schema: GDP_SCHEMA } },
    });
    const stream = await client.taskRun.events(run.run_id);
    const events: Parallel.TaskRunEventsResponse[] = [];
    for await (const event of stream) events.push(event);

    const first = events[0];
    const last = events.at(-1);
    expect(first?.type).toBe("task_run.state");
    expect(last?.type).toBe("task_run.state");
    if (last?.type !== "task_run.state") throw new Error("unreachable");
    expect(last.run.status).toBe("completed");
    expect(last.output?.type).toBe("json");
    expect(last.output?.content).toEqual({ gdp: expect.any(String) });

    const types = new Set(events.map((e) => e.type));
    for (const type of [
      "task_run.progress_msg.exec_status",
      "task_run.progress_msg.plan",
      "task_run.progress_msg.search",
      "task_run.progress_msg.result",
      "task_run.progress_stats",
    ]) {
      expect(types).toContain(type);
    }
    const meters = events.flatMap((e) => (e.type === "task_run.progress_stats" ? [e.progress_meter] : []));
    expect(meters.at(-1)).toBe(100);
    expect([...meters].sort((a, b) => a - b)).toEqual(meters);
  });

  it("sends keep-alives as comment lines, and replays a finished run", async () => {
    const run = await client.taskRun.create({ input: "pings", processor: "lite", enable_events: true });
    // Keep-alives every 15 s × 0.001 = 15 ms (floored at 20 ms); the run lasts 300 ms.
    const live = await call(sim, "GET", `/v1/tasks/runs/${run.run_id}/events`);
    expect(live.headers.get("content-type")).toContain("text/event-stream");
    expect(live.text).toMatch(/^: ping$/m);
    expect(live.text.startsWith("event: task_run.state\ndata: ")).toBe(true);
    for (const block of live.text.split("\n\n").filter((b) => b.startsWith("event:"))) {
      const [eventLine, dataLine] = block.split("\n");
      const data = JSON.parse(dataLine?.replace(/^data: /, "") ?? "") as { type: string };
      expect(eventLine).toBe(`event: ${data.type}`);
    }

    const replay = await call(sim, "GET", `/v1/tasks/runs/${run.run_id}/events`);
    const types = replay.text
      .split("\n")
      .filter((line) => line.startsWith("event: "))
      .map((line) => line.slice("event: ".length));
    expect(types[0]).toBe("task_run.state");
    expect(types.at(-1)).toBe("task_run.state");
    // Replay: the full trace, but only the latest progress_stats.
    expect(types.filter((t) => t === "task_run.progress_stats")).toHaveLength(1);
    expect(types.filter((t) => t.startsWith("task_run.progress_msg.")).length).toBeGreaterThan(3);
  });

  it("closes after 570 s of Parallel's time", async () => {
    const slow = await startTestSim({ time_scale: 0.0005, run_duration_ms: 60_000 });
    try {
      const run = await sdk(slow).taskRun.create({ input: "long", processor: "ultra" });
      const started = Date.now();
      const stream = await call(slow, "GET", `/v1/tasks/runs/${run.run_id}/events`);
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(250);
      // Closed by the 570 s limit, not by the run's end: the run is still active after it.
      expect(stream.text).not.toContain('"status":"completed"');
      expect(slow.control.run(run.run_id)?.completed_at_ms).toBeNull();
    } finally {
      await slow.close();
    }
  });
});

describe("errors arrive as the SDK's classes, in Parallel's envelope", () => {
  it("401 for a missing or wrong key", async () => {
    const error = await expectRejects(
      sdk(sim, { apiKey: "wrong" }).taskRun.create({ input: "x", processor: "lite" }),
      AuthenticationError,
    );
    expect(error.error).toEqual({
      type: "error",
      error: {
        ref_id: expect.stringMatching(UUID),
        message: "Unauthorized: invalid or missing credentials",
        detail: null,
      },
    });
    const raw = await call(sim, "GET", "/v1/tasks/runs/trun_x", { apiKey: null });
    expect(raw.status).toBe(401);
  });

  it("403 for an unknown processor", async () => {
    const error = await expectRejects(
      client.taskRun.create({ input: "x", processor: "mega-ultra" }),
      PermissionDeniedError,
    );
    expect(error.error).toMatchObject({ error: { message: "Forbidden: invalid processor in request" } });
  });

  it("422 for a bad request, with details", async () => {
    const error = await expectRejects(
      client.taskRun.create({ input: "x", processor: "lite", metadata: { "a-key-longer-than-16": "v" } }),
      UnprocessableEntityError,
    );
    expect(error.error).toMatchObject({
      type: "error",
      error: {
        message: "Unprocessable content: request validation error",
        detail: { errors: [expect.objectContaining({ loc: expect.arrayContaining(["body", "metadata"]) })] },
      },
    });
  });

  it("422 for a webhook without the webhook beta", async () => {
    const error = await expectRejects(
      client.taskRun.create({ input: "x", processor: "lite", webhook: { url: "http://127.0.0.1:9/h" } }),
      UnprocessableEntityError,
    );
    expect(JSON.stringify(error.error)).toContain("webhook-2025-08-12");
    // Accepted among other flags, and with X-Stainless-* headers (the SDK sends them) ignored.
    const ok = await client.taskRun.create({
      input: "x",
      processor: "lite",
      webhook: { url: "http://127.0.0.1:9/h" },
      betas: ["events-sse-2025-07-24", "webhook-2025-08-12"],
    });
    expect(ok.status).toBe("queued");
  });

  it("429 past the create rate limit, with retry-after", async () => {
    const limited = await startTestSim({ rate_limit_per_minute: 3 });
    try {
      const limitedClient = sdk(limited);
      for (let i = 0; i < 3; i++) await limitedClient.taskRun.create({ input: `r${i}`, processor: "lite" });
      const error = await expectRejects(
        limitedClient.taskRun.create({ input: "r3", processor: "lite" }),
        RateLimitError,
      );
      expect(Number(error.headers.get("retry-after"))).toBeGreaterThanOrEqual(59);
      expect(error.error).toMatchObject({
        error: { message: "Too many requests: quota temporarily exceeded" },
      });
      // Reads do not count against the limit.
      const runs = limited.control.runs();
      await limitedClient.taskRun.retrieve(runs[0]?.run.run_id ?? "");
      expect(limited.control.stats().rate_limited).toBe(1);
    } finally {
      await limited.close();
    }
  });
});
